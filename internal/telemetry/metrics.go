package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. Dashboards and alert rules in deploy/ use these exact names,
// and a test keeps them from drifting.
const (
	MetricDomainsByStatus             = "portal_domains_by_status"
	MetricOldestInStatusSeconds       = "portal_domains_oldest_in_status_seconds"
	MetricOpenAlerts                  = "portal_domains_open_alerts"
	MetricStageDurationSeconds        = "portal_domains_stage_duration_seconds"
	MetricDNSChecksTotal              = "portal_domains_dns_checks_total"
	MetricApplyErrorsTotal            = "portal_domains_apply_errors_total"
	MetricFailuresTotal               = "portal_domains_failures_total"
	MetricRegistrationToActiveSeconds = "portal_domains_registration_to_active_seconds"
	MetricCollectErrorsTotal          = "portal_domains_collect_errors_total"
	MetricSweepObjectsTotal           = "portal_domains_sweep_objects_total"
	MetricHealsTotal                  = "portal_domains_heals_total"
	MetricOpenAlertsByKind            = "portal_domains_open_alerts_by_kind"
)

// StatusCount is one status's row count at scrape time. OldestSince is when
// the longest-waiting domain entered that status (zero when unknown); it is
// what makes "stuck" alertable, since a count alone cannot tell a steady flow
// from one domain that never moves.
type StatusCount struct {
	Count       int
	OldestSince time.Time
}

// MetricsConfig holds the scrape-time queries. They are functions rather than
// a database handle so telemetry stays free of SQL: cmd wires in db queries.
type MetricsConfig struct {
	// DomainsByStatus counts portal_domains rows per status. Required.
	DomainsByStatus func(ctx context.Context) (map[string]StatusCount, error)
	// Statuses lists every status, so one with no rows reports 0 instead of
	// vanishing (a vanished series breaks rate panels and "== 0" alerts).
	Statuses []string
	// OpenAlerts counts open stuck-certificate alerts. Required.
	OpenAlerts func(ctx context.Context) (int, error)
	// OpenAlertsByKind counts open alerts per kind; AlertKinds lists every
	// kind, so one with none open reports 0. Optional.
	OpenAlertsByKind func(ctx context.Context) (map[string]int, error)
	AlertKinds       []string
	// CollectTimeout bounds each scrape-time query. Default 5s.
	CollectTimeout time.Duration
	// Now is the clock for ages; tests pin it. Default time.Now.
	Now func() time.Time
	// Logger receives scrape-time query errors. Default: discarded.
	Logger *slog.Logger
}

// Metrics is the project's Prometheus instrumentation. Counters and
// histograms are observed by the workers through its methods (which fix the
// label set); the gauges are read from the database at scrape time, so every
// replica reports the same truth and nothing drifts after a restart.
type Metrics struct {
	stageDuration  *prometheus.HistogramVec
	dnsChecks      *prometheus.CounterVec
	applyErrors    *prometheus.CounterVec
	sweepObjects   *prometheus.CounterVec
	heals          *prometheus.CounterVec
	failures       *prometheus.CounterVec
	regToActive    prometheus.Histogram
	collectErrors  *prometheus.CounterVec
	stateCollector *stateCollector
}

// NewMetrics creates the metrics and registers them on reg. Pass a fresh
// prometheus.NewRegistry() (plus whatever process collectors you want), never
// the global default registry, so tests and several servers in one process
// do not collide.
func NewMetrics(reg prometheus.Registerer, cfg MetricsConfig) (*Metrics, error) {
	if cfg.DomainsByStatus == nil {
		return nil, errors.New("new metrics: DomainsByStatus is required")
	}
	if cfg.OpenAlerts == nil {
		return nil, errors.New("new metrics: OpenAlerts is required")
	}
	if cfg.CollectTimeout <= 0 {
		cfg.CollectTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	m := &Metrics{
		stageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricStageDurationSeconds,
			Help: "Time one pipeline stage job took, by stage (job kind) and outcome.",
			// Stages are network calls (DNS, the API server, an HTTPS probe):
			// milliseconds normally, tens of seconds when something times out.
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"stage", "outcome"}),
		dnsChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDNSChecksTotal,
			Help: "DNS verification checks by outcome (e.g. verified, mismatch, caa_forbidden, error).",
		}, []string{"outcome"}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricApplyErrorsTotal,
			Help: "Kubernetes server-side apply errors by kind of error (e.g. conflict, invalid, unavailable).",
		}, []string{"kind"}),
		sweepObjects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSweepObjectsTotal,
			Help: "Orphaned objects of this installation seen by the sweep, by action (deleted, would_delete in a dry run, too_young, deferred past the per-run cap, failed).",
		}, []string{"action"}),
		heals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHealsTotal,
			Help: "Objects of active domains applied again after a hand change, by kind (Certificate, Gateway, VirtualService) and change (edited, deleted).",
		}, []string{"kind", "change"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFailuresTotal,
			Help: "Domains that reached a failed terminal status (dns_failed, certificate_failed).",
		}, []string{"status"}),
		regToActive: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricRegistrationToActiveSeconds,
			Help: "Seconds from registration to active, observed once per activation; its _count is the activation counter.",
			// Dominated by the tenant's DNS change and certificate issuance:
			// minutes when DNS is ready, hours or days when it is not.
			Buckets: []float64{30, 60, 120, 300, 600, 1800, 3600, 2 * 3600, 6 * 3600, 24 * 3600, 3 * 24 * 3600, 7 * 24 * 3600},
		}),
		collectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCollectErrorsTotal,
			Help: "Scrape-time database queries that failed, by collector; the gauges they feed are missing from that scrape.",
		}, []string{"collector"}),
	}
	m.stateCollector = &stateCollector{
		cfg:           cfg,
		collectErrors: m.collectErrors,
		domains: prometheus.NewDesc(MetricDomainsByStatus,
			"Portal domains by status, counted in the database at scrape time.", []string{"status"}, nil),
		oldest: prometheus.NewDesc(MetricOldestInStatusSeconds,
			"Seconds the longest-waiting domain has been in its status, by status.", []string{"status"}, nil),
		openAlerts: prometheus.NewDesc(MetricOpenAlerts,
			"Open alerts for certificates not Ready for over an hour, counted at scrape time.", nil, nil),
		alertsByKind: prometheus.NewDesc(MetricOpenAlertsByKind,
			"Open alerts by kind (certificate_expiring, certificate_renewal_failed, certificate_not_ready, domain_stuck), counted at scrape time.", []string{"kind"}, nil),
	}

	for _, c := range []prometheus.Collector{m.stageDuration, m.dnsChecks, m.applyErrors, m.sweepObjects, m.heals, m.failures, m.regToActive, m.collectErrors, m.stateCollector} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("new metrics: register: %w", err)
		}
	}
	return m, nil
}

// ObserveStage records how long one stage job took. stage is the job kind
// (verify_dns, apply, await_certificate, probe, disable); outcome is what the
// job did (e.g. advanced, snoozed, retry, failed, stale).
func (m *Metrics) ObserveStage(stage, outcome string, d time.Duration) {
	m.stageDuration.WithLabelValues(stage, outcome).Observe(d.Seconds())
}

// DNSCheck counts one DNS verification by outcome.
func (m *Metrics) DNSCheck(outcome string) {
	m.dnsChecks.WithLabelValues(outcome).Inc()
}

// ApplyError counts one failed server-side apply by kind of error.
func (m *Metrics) ApplyError(kind string) {
	m.applyErrors.WithLabelValues(kind).Inc()
}

// SweepObjects counts n objects the orphan sweep handled with action.
func (m *Metrics) SweepObjects(action string, n int) {
	m.sweepObjects.WithLabelValues(action).Add(float64(n))
}

// Healed counts one object of an active domain applied again after a hand
// change.
func (m *Metrics) Healed(kind, change string) {
	m.heals.WithLabelValues(kind, change).Inc()
}

// Failed counts a domain reaching a failed terminal status.
func (m *Metrics) Failed(status string) {
	m.failures.WithLabelValues(status).Inc()
}

// Activated records a domain becoming active, d after it was registered.
func (m *Metrics) Activated(d time.Duration) {
	m.regToActive.Observe(d.Seconds())
}

// stateCollector reads the gauges from the database when Prometheus scrapes,
// instead of keeping in-memory gauges that each replica would get wrong.
type stateCollector struct {
	cfg           MetricsConfig
	collectErrors *prometheus.CounterVec
	domains       *prometheus.Desc
	oldest        *prometheus.Desc
	openAlerts    *prometheus.Desc
	alertsByKind  *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.domains
	ch <- c.oldest
	ch <- c.openAlerts
	if c.cfg.OpenAlertsByKind != nil {
		ch <- c.alertsByKind
	}
}

// Collect has no context parameter (a prometheus.Collector limit), so each
// query gets its own bounded one. A failed query is counted in
// portal_domains_collect_errors_total (visible from the next scrape on, as the
// registry gathers collectors concurrently) and logged, and its gauges are
// left out of the scrape, rather than failing the whole scrape or reporting a
// false zero.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CollectTimeout)
	defer cancel()

	if counts, err := c.cfg.DomainsByStatus(ctx); err != nil {
		c.collectErrors.WithLabelValues("domains_by_status").Inc()
		c.cfg.Logger.ErrorContext(ctx, "metrics: count domains by status", "error", err)
	} else {
		now := c.cfg.Now()
		seen := map[string]bool{}
		for status, sc := range counts {
			seen[status] = true
			ch <- prometheus.MustNewConstMetric(c.domains, prometheus.GaugeValue, float64(sc.Count), status)
			if sc.Count > 0 && !sc.OldestSince.IsZero() {
				ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, max(0, now.Sub(sc.OldestSince).Seconds()), status)
			}
		}
		for _, status := range c.cfg.Statuses {
			if !seen[status] {
				seen[status] = true
				ch <- prometheus.MustNewConstMetric(c.domains, prometheus.GaugeValue, 0, status)
			}
		}
	}

	if n, err := c.cfg.OpenAlerts(ctx); err != nil {
		c.collectErrors.WithLabelValues("open_alerts").Inc()
		c.cfg.Logger.ErrorContext(ctx, "metrics: count open alerts", "error", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.openAlerts, prometheus.GaugeValue, float64(n))
	}

	if c.cfg.OpenAlertsByKind == nil {
		return
	}
	if byKind, err := c.cfg.OpenAlertsByKind(ctx); err != nil {
		c.collectErrors.WithLabelValues("open_alerts_by_kind").Inc()
		c.cfg.Logger.ErrorContext(ctx, "metrics: count open alerts by kind", "error", err)
	} else {
		for _, kind := range c.cfg.AlertKinds {
			if _, ok := byKind[kind]; !ok {
				byKind[kind] = 0
			}
		}
		for kind, n := range byKind {
			ch <- prometheus.MustNewConstMetric(c.alertsByKind, prometheus.GaugeValue, float64(n), kind)
		}
	}
}
