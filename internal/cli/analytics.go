package cli

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/analytics"
	"github.com/portal-domains/portal-domains/jobs"
)

// analyticsObserver sends activation and failure events to PostHog (a no-op
// without POSTHOG_API_KEY).
type analyticsObserver struct{ client *analytics.Client }

var _ jobs.Observer = analyticsObserver{}

func newAnalytics(getenv func(string) string, logger *slog.Logger) (analyticsObserver, error) {
	c, err := analytics.NewFromEnv(getenv, logger)
	return analyticsObserver{client: c}, err
}

func (a analyticsObserver) Close()                                      { _ = a.client.Close() }
func (a analyticsObserver) StageFinished(string, string, time.Duration) {}
func (a analyticsObserver) DNSChecked(string)                           {}
func (a analyticsObserver) Activated(rec domain.Record) {
	a.client.Activated(string(rec.Tenant), rec.ID, time.Since(rec.CreatedAt))
}
func (a analyticsObserver) Failed(rec domain.Record) {
	a.client.Failed(string(rec.Tenant), rec.ID, string(rec.Status), rec.StatusMessage)
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
