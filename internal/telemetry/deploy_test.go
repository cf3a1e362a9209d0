package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/portal-domains/portal-domains/internal/telemetry"
)

const (
	dashboardPath = "../../deploy/grafana/portal-domains.json"
	alertsPath    = "../../deploy/prometheus/alerts.yaml"
	// promtool unit tests for the rules; their input series must use real
	// names too, or they test rules against metrics that never exist.
	alertsTestPath = "../../deploy/prometheus/alerts_test.yaml"
)

var metricRef = regexp.MustCompile(`\bportal_domains_[a-zA-Z0-9_]+`)

// registeredFamilies observes every metric once and gathers, so that vector
// metrics (which only appear once they have a child) are all present. The
// first open-alerts query fails, so the collect-errors counter exists too.
func registeredFamilies(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	reg := prometheus.NewRegistry()
	var calls atomic.Int32
	m, err := telemetry.NewMetrics(reg, telemetry.MetricsConfig{
		DomainsByStatus: func(context.Context) (map[string]telemetry.StatusCount, error) {
			return map[string]telemetry.StatusCount{"deploying": {Count: 1, OldestSince: time.Unix(1, 0)}}, nil
		},
		OpenAlerts: func(context.Context) (map[string]int, error) {
			if calls.Add(1) == 1 {
				return nil, errors.New("first scrape fails")
			}
			return map[string]int{"dns_drift": 1}, nil
		},
		Rechecks: func(context.Context, time.Time) (telemetry.RecheckGauges, error) {
			return telemetry.RecheckGauges{OldestDue: time.Unix(1, 0), EarliestNotAfter: time.Unix(2, 0)}, nil
		},
		AlertKinds: []string{"certificate_expiring", "certificate_renewal_failed"},
	})
	require.NoError(t, err)
	m.ObserveStage("apply", "advanced", time.Second)
	m.DNSCheck("verified")
	m.ApplyError("conflict")
	m.Failed("dns_failed")
	m.Activated(time.Minute)
	m.Rechecked("ok", time.Second)
	m.Healed("Gateway", "edited")
	_, err = reg.Gather()
	require.NoError(t, err)
	families, err := reg.Gather()
	require.NoError(t, err)

	out := map[string]dto.MetricType{}
	for _, f := range families {
		out[f.GetName()] = f.GetType()
	}
	return out
}

// checkRefs asserts that every portal_domains_* name in expr is a registered
// family, allowing histogram series suffixes only on histograms.
func checkRefs(t *testing.T, where, expr string, families map[string]dto.MetricType) []string {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	require.NotEmpty(t, refs, "%s: expression references no portal_domains metric: %s", where, expr)
	var names []string
	for _, ref := range refs {
		name := ref
		if _, ok := families[name]; !ok {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base, found := strings.CutSuffix(ref, suffix)
				if found && families[base] == dto.MetricType_HISTOGRAM {
					name = base
					break
				}
			}
		}
		_, ok := families[name]
		require.True(t, ok, "%s: %s is not registered by telemetry.Metrics (expr: %s)", where, ref, expr)
		names = append(names, name)
	}
	return names
}

func TestDeployFilesUseRegisteredMetrics(t *testing.T) {
	t.Parallel()
	families := registeredFamilies(t)

	// Every family is present, so a missing reference below means drift.
	for _, name := range []string{
		telemetry.MetricDomainsByStatus, telemetry.MetricOldestInStatusSeconds, telemetry.MetricOpenAlerts,
		telemetry.MetricStageDurationSeconds, telemetry.MetricDNSChecksTotal, telemetry.MetricApplyErrorsTotal,
		telemetry.MetricFailuresTotal, telemetry.MetricRegistrationToActiveSeconds, telemetry.MetricCollectErrorsTotal,
		telemetry.MetricRechecksTotal, telemetry.MetricRecheckDurationSeconds, telemetry.MetricRecheckProblems,
		telemetry.MetricRecheckOldestDueSeconds, telemetry.MetricServedCertificatesExpiringSoon,
		telemetry.MetricServedCertificateEarliestExpiry,
		telemetry.MetricHealsTotal,
	} {
		require.Contains(t, families, name)
	}

	t.Run("GrafanaDashboard", func(t *testing.T) {
		t.Parallel()
		raw, err := os.ReadFile(dashboardPath)
		require.NoError(t, err)
		var dash struct {
			Title  string `json:"title"`
			Panels []struct {
				Type    string `json:"type"`
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(raw, &dash))
		require.Equal(t, "Portal Domains Provisioning", dash.Title)

		used := map[string]bool{}
		for _, p := range dash.Panels {
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			for _, target := range p.Targets {
				for _, name := range checkRefs(t, "panel "+p.Title, target.Expr, families) {
					used[name] = true
				}
			}
		}
		// The dashboard covers what it is for.
		for _, name := range []string{
			telemetry.MetricRegistrationToActiveSeconds, telemetry.MetricFailuresTotal, telemetry.MetricDomainsByStatus,
			telemetry.MetricStageDurationSeconds, telemetry.MetricDNSChecksTotal, telemetry.MetricOpenAlerts,
			telemetry.MetricRechecksTotal, telemetry.MetricRecheckProblems, telemetry.MetricServedCertificatesExpiringSoon,
			telemetry.MetricServedCertificateEarliestExpiry, telemetry.MetricRecheckOldestDueSeconds,
			telemetry.MetricHealsTotal,
		} {
			require.True(t, used[name], "dashboard does not show %s", name)
		}

		// Any other string in the file that looks like one of our metrics
		// (e.g. in a description) must exist too.
		for _, ref := range metricRef.FindAllString(string(raw), -1) {
			checkRefs(t, "dashboard text", ref, families)
		}
	})

	t.Run("PrometheusAlerts", func(t *testing.T) {
		t.Parallel()
		raw, err := os.ReadFile(alertsPath)
		require.NoError(t, err)
		var file struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert       string            `yaml:"alert"`
					Expr        string            `yaml:"expr"`
					For         string            `yaml:"for"`
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		require.NoError(t, dec.Decode(&file))
		require.NotEmpty(t, file.Groups)

		var alerts []string
		usedBy := map[string][]string{}
		for _, g := range file.Groups {
			for _, r := range g.Rules {
				require.NotEmpty(t, r.Alert, "group %s has a rule without a name", g.Name)
				require.NotEmpty(t, r.Labels["severity"], "%s has no severity", r.Alert)
				require.NotEmpty(t, r.Annotations["summary"], "%s has no summary", r.Alert)
				_, err := time.ParseDuration(r.For)
				require.NoError(t, err, "%s: for", r.Alert)
				alerts = append(alerts, r.Alert)
				for _, name := range checkRefs(t, "alert "+r.Alert, r.Expr, families) {
					usedBy[name] = append(usedBy[name], r.Alert)
				}
			}
		}
		require.Contains(t, alerts, "PortalDomainCertificateNotReady")
		require.Contains(t, alerts, "PortalDomainStuck")
		require.True(t, slices.Contains(usedBy[telemetry.MetricOpenAlerts], "PortalDomainCertificateNotReady"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricOldestInStatusSeconds], "PortalDomainStuck"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricOpenAlerts], "PortalDomainLiveCheckFailing"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricServedCertificateEarliestExpiry], "PortalDomainServedCertificateExpiring"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricRecheckOldestDueSeconds], "PortalDomainRechecksBehind"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricOpenAlerts], "PortalDomainCertificateExpiring"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricOpenAlerts], "PortalDomainCertificateRenewalFailing"))
		require.True(t, slices.Contains(usedBy[telemetry.MetricHealsTotal], "PortalDomainObjectsHealedRepeatedly"))
	})

	t.Run("PromtoolRuleTests", func(t *testing.T) {
		t.Parallel()
		raw, err := os.ReadFile(alertsTestPath)
		require.NoError(t, err)
		var file map[string]any
		require.NoError(t, yaml.Unmarshal(raw, &file))
		require.Equal(t, []any{"alerts.yaml"}, file["rule_files"])
		refs := metricRef.FindAllString(string(raw), -1)
		require.NotEmpty(t, refs)
		for _, ref := range refs {
			checkRefs(t, "alerts_test.yaml", ref, families)
		}
	})
}
