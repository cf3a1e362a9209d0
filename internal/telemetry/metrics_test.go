package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/telemetry"
)

type metricsBundle struct {
	metrics  *telemetry.Metrics
	registry *prometheus.Registry
	scrape   func() string
}

func setupMetrics(t *testing.T, cfg telemetry.MetricsConfig) *metricsBundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.NewMetrics(reg, cfg)
	require.NoError(t, err)

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	return &metricsBundle{
		metrics:  m,
		registry: reg,
		scrape: func() string {
			resp, err := http.Get(srv.URL)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			return string(body)
		},
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	t.Run("ObservationsAndScrapeTimeGaugesAppearOnMetrics", func(t *testing.T) {
		t.Parallel()
		b := setupMetrics(t, telemetry.MetricsConfig{
			DomainsByStatus: func(context.Context) (map[string]telemetry.StatusCount, error) {
				return map[string]telemetry.StatusCount{
					"active":              {Count: 12},
					"certificate_issuing": {Count: 2, OldestSince: now.Add(-90 * time.Minute)},
				}, nil
			},
			Statuses:   []string{"pending_dns", "active", "certificate_issuing", "dns_failed"},
			OpenAlerts: func(context.Context) (map[string]int, error) { return map[string]int{"certificate_not_ready": 3}, nil },
			AlertKinds: []string{"certificate_not_ready", "dns_drift"},
			Now:        func() time.Time { return now },
		})

		b.metrics.ObserveStage("verify_dns", "advanced", 250*time.Millisecond)
		b.metrics.DNSCheck("mismatch")
		b.metrics.DNSCheck("mismatch")
		b.metrics.ApplyError("conflict")
		b.metrics.Failed("dns_failed")
		b.metrics.Activated(10 * time.Minute)

		out := b.scrape()
		for _, want := range []string{
			`portal_domains_by_status{status="active"} 12`,
			`portal_domains_by_status{status="certificate_issuing"} 2`,
			// Statuses without rows report 0 instead of disappearing.
			`portal_domains_by_status{status="pending_dns"} 0`,
			`portal_domains_by_status{status="dns_failed"} 0`,
			`portal_domains_oldest_in_status_seconds{status="certificate_issuing"} 5400`,
			`portal_domains_open_alerts{kind="certificate_not_ready"} 3`,
			// Kinds without open alerts report 0.
			`portal_domains_open_alerts{kind="dns_drift"} 0`,
			`portal_domains_stage_duration_seconds_bucket{outcome="advanced",stage="verify_dns",le="0.25"} 1`,
			`portal_domains_stage_duration_seconds_count{outcome="advanced",stage="verify_dns"} 1`,
			`portal_domains_dns_checks_total{outcome="mismatch"} 2`,
			`portal_domains_apply_errors_total{kind="conflict"} 1`,
			`portal_domains_failures_total{status="dns_failed"} 1`,
			`portal_domains_registration_to_active_seconds_bucket{le="600"} 1`,
			`portal_domains_registration_to_active_seconds_count 1`,
			`portal_domains_registration_to_active_seconds_sum 600`,
		} {
			require.Contains(t, out, want)
		}
		// No age for a status whose rows have no known entry time.
		require.NotContains(t, out, `portal_domains_oldest_in_status_seconds{status="active"}`)
	})

	t.Run("FailedQueryDropsItsGaugesAndCountsTheError", func(t *testing.T) {
		t.Parallel()
		b := setupMetrics(t, telemetry.MetricsConfig{
			DomainsByStatus: func(context.Context) (map[string]telemetry.StatusCount, error) {
				return nil, errors.New("connection refused")
			},
			Statuses:   []string{"active"},
			OpenAlerts: func(context.Context) (map[string]int, error) { return nil, nil },
			AlertKinds: []string{"dns_drift"},
		})

		first := b.scrape()
		require.NotContains(t, first, "portal_domains_by_status{", "no false zeros when the query failed")
		require.Contains(t, first, `portal_domains_open_alerts{kind="dns_drift"} 0`, "the other query still reports")

		second := b.scrape()
		require.Contains(t, second, `portal_domains_collect_errors_total{collector="domains_by_status"}`)
	})

	t.Run("QueriesGetABoundedContext", func(t *testing.T) {
		t.Parallel()
		var hadDeadline atomic.Bool
		b := setupMetrics(t, telemetry.MetricsConfig{
			DomainsByStatus: func(ctx context.Context) (map[string]telemetry.StatusCount, error) {
				_, ok := ctx.Deadline()
				hadDeadline.Store(ok)
				return nil, nil
			},
			OpenAlerts: func(context.Context) (map[string]int, error) { return nil, nil },
		})
		b.scrape()
		require.True(t, hadDeadline.Load())
	})

	t.Run("RecheckCountersAndGauges", func(t *testing.T) {
		t.Parallel()
		var window time.Time
		b := setupMetrics(t, telemetry.MetricsConfig{
			DomainsByStatus: func(context.Context) (map[string]telemetry.StatusCount, error) { return nil, nil },
			OpenAlerts:      func(context.Context) (map[string]int, error) { return nil, nil },
			Rechecks: func(_ context.Context, expiringBefore time.Time) (telemetry.RecheckGauges, error) {
				window = expiringBefore
				return telemetry.RecheckGauges{Problems: map[string]int{"dns_drift": 2}, OldestDue: now.Add(-90 * time.Second),
					ExpiringSoon: 3, EarliestNotAfter: now.Add(10 * 24 * time.Hour)}, nil
			},
			Now: func() time.Time { return now },
		})
		b.metrics.Rechecked("ok", 40*time.Millisecond)
		b.metrics.Rechecked("dns_mismatch", 30*time.Millisecond)
		out := b.scrape()
		for _, want := range []string{
			`portal_domains_rechecks_total{outcome="ok"} 1`,
			`portal_domains_rechecks_total{outcome="dns_mismatch"} 1`,
			`portal_domains_recheck_duration_seconds_count 2`,
			`portal_domains_recheck_problems{kind="dns_drift"} 2`,
			// A kind without problems reports 0.
			`portal_domains_recheck_problems{kind="https_failed"} 0`,
			`portal_domains_recheck_oldest_due_seconds 90`,
			`portal_domains_served_certificates_expiring_soon 3`,
			`portal_domains_served_certificate_earliest_expiry_seconds 864000`,
		} {
			require.Contains(t, out, want)
		}
		require.Equal(t, now.Add(telemetry.ServedExpiryWindow), window, "expiring soon means within 14 days")
	})

	t.Run("RequiresCollectorFuncs", func(t *testing.T) {
		t.Parallel()
		_, err := telemetry.NewMetrics(prometheus.NewRegistry(), telemetry.MetricsConfig{})
		require.ErrorContains(t, err, "DomainsByStatus is required")
	})

	t.Run("DoubleRegistrationIsAnError", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		cfg := telemetry.MetricsConfig{
			DomainsByStatus: func(context.Context) (map[string]telemetry.StatusCount, error) { return nil, nil },
			OpenAlerts:      func(context.Context) (map[string]int, error) { return nil, nil },
		}
		_, err := telemetry.NewMetrics(reg, cfg)
		require.NoError(t, err)
		_, err = telemetry.NewMetrics(reg, cfg)
		require.ErrorContains(t, err, "register")
	})
}
