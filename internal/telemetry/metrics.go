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
	// The live re-check of active domains.
	MetricRechecksTotal                   = "portal_domains_rechecks_total"
	MetricRecheckDurationSeconds          = "portal_domains_recheck_duration_seconds"
	MetricRecheckProblems                 = "portal_domains_recheck_problems"
	MetricRecheckOldestDueSeconds         = "portal_domains_recheck_oldest_due_seconds"
	MetricServedCertificatesExpiringSoon  = "portal_domains_served_certificates_expiring_soon"
	MetricServedCertificateEarliestExpiry = "portal_domains_served_certificate_earliest_expiry_seconds"
	// Hand changes to an active domain's objects taken back.
	MetricHealsTotal = "portal_domains_heals_total"
)

// ServedExpiryWindow is what "expiring soon" means for a served
// certificate: cert-manager renews Let's Encrypt's 90-day certificates 30
// days before they expire, so one served with 14 days left has missed its
// renewal by more than two weeks.
const ServedExpiryWindow = 14 * 24 * time.Hour

// RecheckGauges are the re-check's scrape-time numbers.
type RecheckGauges struct {
	// Problems counts active domains with a current problem, by kind
	// (dns_drift, https_failed).
	Problems map[string]int
	// OldestDue is the earliest scheduled check (zero without any).
	OldestDue time.Time
	// ExpiringSoon counts active domains whose served certificate expires
	// within ServedExpiryWindow.
	ExpiringSoon int
	// EarliestNotAfter is the soonest served expiry (zero when none).
	EarliestNotAfter time.Time
}

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
	// OpenAlerts counts open alerts by kind. Required.
	OpenAlerts func(ctx context.Context) (map[string]int, error)
	// AlertKinds lists every alert kind, so one without open alerts
	// reports 0 instead of vanishing.
	AlertKinds []string
	// Rechecks reads the re-check's gauges (the expiry window ends at
	// expiringBefore); nil leaves them out.
	Rechecks func(ctx context.Context, expiringBefore time.Time) (RecheckGauges, error)
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
	rechecks       *prometheus.CounterVec
	recheckTook    prometheus.Histogram
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
		rechecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRechecksTotal,
			Help: "Live re-checks of active domains by outcome (ok, dns_mismatch, caa_forbidden, https_failed, resolver_error).",
		}, []string{"outcome"}),
		recheckTook: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricRecheckDurationSeconds,
			Help: "Time one live re-check took: DNS lookups, the HTTPS request and the database writes.",
			// A few DNS queries and one HTTPS request: tens of
			// milliseconds, up to the timeouts when something hangs.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
	}
	m.stateCollector = &stateCollector{
		cfg:           cfg,
		collectErrors: m.collectErrors,
		domains: prometheus.NewDesc(MetricDomainsByStatus,
			"Portal domains by status, counted in the database at scrape time.", []string{"status"}, nil),
		oldest: prometheus.NewDesc(MetricOldestInStatusSeconds,
			"Seconds the longest-waiting domain has been in its status, by status.", []string{"status"}, nil),
		openAlerts: prometheus.NewDesc(MetricOpenAlerts,
			"Open alerts by kind (certificate_not_ready, domain_stuck, dns_drift, https_failed, ...), counted at scrape time.", []string{"kind"}, nil),
		problems: prometheus.NewDesc(MetricRecheckProblems,
			"Active domains whose last live re-check found a problem, by kind (dns_drift, https_failed), grace period or not.", []string{"kind"}, nil),
		oldestDue: prometheus.NewDesc(MetricRecheckOldestDueSeconds,
			"Seconds the most overdue live re-check has been due (0 when none is due): growing means the scheduler is not running or the recheck queue cannot keep up.", nil, nil),
		expiring: prometheus.NewDesc(MetricServedCertificatesExpiringSoon,
			"Active domains whose served certificate, as the last live re-check saw it, expires within 14 days.", nil, nil),
		earliest: prometheus.NewDesc(MetricServedCertificateEarliestExpiry,
			"Seconds until the soonest-expiring certificate served by an active domain expires (negative once expired).", nil, nil),
	}

	for _, c := range []prometheus.Collector{m.stageDuration, m.dnsChecks, m.applyErrors, m.sweepObjects, m.failures, m.regToActive, m.collectErrors, m.rechecks, m.recheckTook, m.heals, m.stateCollector} {
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

// Rechecked counts one live re-check by outcome and records how long it
// took.
func (m *Metrics) Rechecked(outcome string, took time.Duration) {
	m.rechecks.WithLabelValues(outcome).Inc()
	m.recheckTook.Observe(took.Seconds())
}

// stateCollector reads the gauges from the database when Prometheus scrapes,
// instead of keeping in-memory gauges that each replica would get wrong.
type stateCollector struct {
	cfg           MetricsConfig
	collectErrors *prometheus.CounterVec
	domains       *prometheus.Desc
	oldest        *prometheus.Desc
	openAlerts    *prometheus.Desc
	problems      *prometheus.Desc
	oldestDue     *prometheus.Desc
	expiring      *prometheus.Desc
	earliest      *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.domains
	ch <- c.oldest
	ch <- c.openAlerts
	if c.cfg.Rechecks != nil {
		ch <- c.problems
		ch <- c.oldestDue
		ch <- c.expiring
		ch <- c.earliest
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

	if counts, err := c.cfg.OpenAlerts(ctx); err != nil {
		c.collectErrors.WithLabelValues("open_alerts").Inc()
		c.cfg.Logger.ErrorContext(ctx, "metrics: count open alerts", "error", err)
	} else {
		for kind, n := range counts {
			ch <- prometheus.MustNewConstMetric(c.openAlerts, prometheus.GaugeValue, float64(n), kind)
		}
		for _, kind := range c.cfg.AlertKinds {
			if _, seen := counts[kind]; !seen {
				ch <- prometheus.MustNewConstMetric(c.openAlerts, prometheus.GaugeValue, 0, kind)
			}
		}
	}
	if c.cfg.Rechecks != nil {
		c.collectRechecks(ctx, ch)
	}
}

// The re-check's problem kinds, reported even at zero so "> 0" rules and
// rate panels see a series.
var recheckProblemKinds = []string{"dns_drift", "https_failed"}

func (c *stateCollector) collectRechecks(ctx context.Context, ch chan<- prometheus.Metric) {
	now := c.cfg.Now()
	g, err := c.cfg.Rechecks(ctx, now.Add(ServedExpiryWindow))
	if err != nil {
		c.collectErrors.WithLabelValues("rechecks").Inc()
		c.cfg.Logger.ErrorContext(ctx, "metrics: read re-check state", "error", err)
		return
	}
	for _, kind := range recheckProblemKinds {
		ch <- prometheus.MustNewConstMetric(c.problems, prometheus.GaugeValue, float64(g.Problems[kind]), kind)
	}
	overdue := 0.0
	if !g.OldestDue.IsZero() {
		overdue = max(0, now.Sub(g.OldestDue).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.oldestDue, prometheus.GaugeValue, overdue)
	ch <- prometheus.MustNewConstMetric(c.expiring, prometheus.GaugeValue, float64(g.ExpiringSoon))
	if !g.EarliestNotAfter.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.earliest, prometheus.GaugeValue, g.EarliestNotAfter.Sub(now).Seconds())
	}

}
