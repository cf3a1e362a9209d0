package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/portal-domains/portal-domains/domain"
)

// The live re-check of active domains: a leader-only periodic job
// (active_recheck_schedule) enqueues one active_recheck job per domain whose
// check is due, and that job checks DNS (CNAME and CAA, as verify_dns does)
// and HTTPS (the served certificate covers the domain; its expiry is
// recorded). An active domain stays active whatever is found: what was seen
// and what to do go into its status_message and verification_details, and a
// problem that outlasts the grace period opens an alert.
const (
	KindRecheck         = "active_recheck"
	KindRecheckSchedule = "active_recheck_schedule"
	// QueueRecheck has workers of its own, so re-checks of a large fleet
	// never hold back the DNS checks of new registrations.
	QueueRecheck = "recheck"
)

// Alert kinds the re-check opens (portal_domain_alerts.kind).
const (
	// AlertDNSDrift: an active domain's CNAME no longer leads to its
	// canonical host, or CAA stopped allowing the CA.
	AlertDNSDrift = "dns_drift"
	// AlertHTTPSFailed: DNS is right but HTTPS does not serve a valid
	// certificate covering the domain.
	AlertHTTPSFailed = "https_failed"
)

// Outcomes of one re-check, the label of portal_domains_rechecks_total.
const (
	RecheckOK            = "ok"
	RecheckDNSMismatch   = "dns_mismatch"
	RecheckCAAForbidden  = "caa_forbidden"
	RecheckHTTPSFailed   = "https_failed"
	RecheckResolverError = "resolver_error"
)

// liveMessage is an active domain's status_message while all is well.
const liveMessage = "Your domain is live and protected by HTTPS."

// RecheckJitter spreads each next check uniformly over ±10 % of the
// interval, so checks that once came due together drift apart instead of
// bunching.
const RecheckJitter = 0.1

// RecheckConfig holds the re-check's knobs.
type RecheckConfig struct {
	// Interval (PORTAL_DOMAIN_ACTIVE_RECHECK, 6h): how often each active
	// domain is checked, give or take RecheckJitter.
	Interval time.Duration
	// Grace (PORTAL_DOMAIN_DRIFT_GRACE, 1h): how long a problem may last
	// before its alert opens; it is told to the tenant at once.
	Grace time.Duration
	// Batch caps the checks one scheduler run enqueues (and the new
	// domains it schedules), so a backlog drains in steps.
	Batch int
	// ScheduleEvery is how often the scheduler runs; default a tenth of
	// Interval, at most a minute.
	ScheduleEvery time.Duration
}

// DefaultRecheckConfig returns the documented defaults.
func DefaultRecheckConfig() RecheckConfig {
	return RecheckConfig{Interval: 6 * time.Hour, Grace: time.Hour, Batch: 5000}.withDefaults()
}

func (c RecheckConfig) withDefaults() RecheckConfig {
	c.Interval = cmp.Or(max(c.Interval, 0), 6*time.Hour)
	c.Grace = cmp.Or(max(c.Grace, 0), time.Hour)
	c.Batch = cmp.Or(max(c.Batch, 0), 5000)
	if c.ScheduleEvery <= 0 {
		c.ScheduleEvery = min(max(c.Interval/10, 100*time.Millisecond), time.Minute)
	}
	return c
}

// ProblemRecheck is how soon a domain with a problem (or whose DNS could
// not be read) is checked again: a quarter of the grace period, so its
// alert opens soon after the grace ends and its recovery is seen soon after
// the fix, but never more often than every second nor less often than the
// regular interval.
func (c RecheckConfig) ProblemRecheck() time.Duration {
	return min(max(c.Grace/4, time.Second), c.Interval)
}

// NextRecheck is when a domain checked (or enqueued) at now is checked
// next: the interval, stretched or shrunk by up to RecheckJitter; u is
// uniform in [0, 1).
func NextRecheck(now time.Time, interval time.Duration, u float64) time.Time {
	u = min(max(u, 0), 1)
	f := 1 - RecheckJitter + 2*RecheckJitter*u
	return now.Add(time.Duration(float64(interval) * f))
}

// FirstRecheck is when a domain the re-check sees for the first time is
// checked: anywhere in the coming interval, so a fleet of existing domains
// seen at once is spread evenly over it; u is uniform in [0, 1).
func FirstRecheck(now time.Time, interval time.Duration, u float64) time.Time {
	u = min(max(u, 0), 1)
	return now.Add(time.Duration(float64(interval) * u))
}

// RecheckState is what earlier checks of the domain left.
type RecheckState struct {
	// ProblemKind (AlertDNSDrift, AlertHTTPSFailed or "") and ProblemSince
	// are the current incident.
	ProblemKind  string
	ProblemSince time.Time
	// OpenAlerts maps each open re-check alert's kind to its id.
	OpenAlerts map[string]int64
}

// RecheckRecord is one check's result to store.
type RecheckRecord struct {
	DomainID     string
	Generation   int64
	Outcome      string
	ProblemKind  string
	ProblemSince time.Time
	// ServedNotAfter is the served certificate's expiry; zero keeps the
	// one recorded.
	ServedNotAfter time.Time
	// CheckBy, when set, brings the next check forward.
	CheckBy time.Time
	// Message, when set, replaces the domain's status_message, and
	// Details its verification_details' live_check, while the domain is
	// active in Generation.
	Message string
	Details map[string]any
}

// Rechecks is what the re-check needs of the database.
type Rechecks interface {
	// ScheduleNew gives up to limit active domains not yet seen in their
	// pipeline generation a first check, at first().
	ScheduleNew(ctx context.Context, limit int, first func() time.Time) (int, error)
	// EnqueueDue claims up to limit due checks and, in one transaction,
	// enqueues an active_recheck job for each whose domain is still active
	// in that generation (unique per domain, generation and due time),
	// moves its next check to next(), and drops the others.
	EnqueueDue(ctx context.Context, limit int, next func() time.Time) (enqueued, dropped int, err error)
	// RecheckState reads the domain's state; the zero state when it has none.
	RecheckState(ctx context.Context, domainID string) (RecheckState, error)
	// RecordRecheck stores a result; false, with nothing written, when the
	// domain is no longer active in that generation.
	RecordRecheck(ctx context.Context, r RecheckRecord) (bool, error)
}

// RecheckArgs: check an active domain once. Due, the scheduled time, makes
// the job unique per check, so a scheduler rerun never enqueues one twice.
type RecheckArgs struct {
	DomainArgs
	Due time.Time `json:"due"`
}

func (RecheckArgs) Kind() string { return KindRecheck }

// InsertOpts: the recheck queue; a failed check is retried a few times, and
// the next scheduled one comes anyway.
func (RecheckArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueRecheck, MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RecheckScheduleArgs has no fields: one run covers every domain.
type RecheckScheduleArgs struct{}

func (RecheckScheduleArgs) Kind() string { return KindRecheckSchedule }

// InsertOpts: the maintenance queue, at most one run waiting or running.
func (RecheckScheduleArgs) InsertOpts() river.InsertOpts { return maintenanceOnce() }

// RecheckSchedulePeriodicJob runs the scheduler every cfg.ScheduleEvery on
// the elected leader, and once when a worker becomes leader.
func RecheckSchedulePeriodicJob(cfg RecheckConfig) *river.PeriodicJob {
	cfg = cfg.withDefaults()
	return river.NewPeriodicJob(river.PeriodicInterval(cfg.ScheduleEvery),
		func() (river.JobArgs, *river.InsertOpts) { return RecheckScheduleArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}

// recheckInput is everything one check gathered.
type recheckInput struct {
	Rec   domain.Record
	State RecheckState
	DNS   DNSVerdict
	// Probe is the HTTPS check; ignored when DNS could not be read.
	Probe ProbeResult
	Now   time.Time
}

// recheckDecision is what to store and which alerts to open or resolve.
type recheckDecision struct {
	Outcome      string
	ProblemKind  string
	ProblemSince time.Time
	// Message, when set, replaces status_message (with Details); empty
	// leaves the row alone, so a healthy check writes nothing to it.
	Message string
	Details map[string]any
	CheckBy time.Time
	// Resolve maps open alert ids to their resolution; Open is an alert
	// to open.
	Resolve map[int64]string
	Open    *AlertOpening
}

// decideRecheck is the pure policy of the re-check. The domain stays
// active; a problem is told in its message from the first check that sees
// it, its alert opens once it has lasted the grace period, and both are
// undone by the first check that finds everything right again. A check
// whose DNS lookups failed says nothing about the tenant's records: it
// changes nothing but brings the next check forward.
func decideRecheck(in recheckInput, cfg RecheckConfig) recheckDecision {
	cfg = cfg.withDefaults()
	rec, now := in.Rec, in.Now
	if in.DNS.Outcome == DNSResolverError {
		return recheckDecision{Outcome: RecheckResolverError, ProblemKind: in.State.ProblemKind,
			ProblemSince: in.State.ProblemSince, CheckBy: now.Add(cfg.ProblemRecheck())}
	}
	d := recheckDecision{Outcome: RecheckOK}
	switch {
	case in.DNS.Outcome == DNSMismatch:
		d.Outcome, d.ProblemKind = RecheckDNSMismatch, AlertDNSDrift
	case in.DNS.Outcome == DNSCAAForbidden:
		d.Outcome, d.ProblemKind = RecheckCAAForbidden, AlertDNSDrift
	case !in.Probe.OK:
		d.Outcome, d.ProblemKind = RecheckHTTPSFailed, AlertHTTPSFailed
	}
	resolution := fmt.Sprintf("%s points to %s and HTTPS serves a certificate covering it again.", rec.Domain, rec.CNAMETarget())
	if d.ProblemKind != "" {
		resolution = fmt.Sprintf("%s now has another problem (%s).", rec.Domain, d.Outcome)
	}
	for _, kind := range slices.Sorted(maps.Keys(in.State.OpenAlerts)) {
		if kind != d.ProblemKind {
			if d.Resolve == nil {
				d.Resolve = map[int64]string{}
			}
			d.Resolve[in.State.OpenAlerts[kind]] = resolution
		}
	}

	if d.ProblemKind == "" {
		if in.State.ProblemKind != "" && rec.StatusMessage != liveMessage {
			d.Message = liveMessage
			d.Details = map[string]any{"outcome": RecheckOK, "checked_at": now.UTC(),
				"recovered_from": in.State.ProblemKind, "problem_since": in.State.ProblemSince.UTC()}
		}
		return d
	}

	d.ProblemSince = now
	if in.State.ProblemKind == d.ProblemKind && !in.State.ProblemSince.IsZero() {
		d.ProblemSince = in.State.ProblemSince
	}
	d.CheckBy = now.Add(cfg.ProblemRecheck())
	since := d.ProblemSince.UTC().Format(time.RFC3339)
	details := map[string]any{"outcome": d.Outcome, "problem": d.ProblemKind, "problem_since": d.ProblemSince.UTC(),
		"checked_at": now.UTC(), "expected_cname": rec.CNAMETarget()}
	var message, alertMessage string
	if d.ProblemKind == AlertDNSDrift {
		consequence := "visitors may not reach your portal and its certificate cannot be renewed"
		if d.Outcome == RecheckCAAForbidden {
			consequence = "its certificate cannot be renewed"
		}
		message = fmt.Sprintf("Your domain's DNS changed after it went live: %s Until this is fixed, %s. Seen since %s.",
			in.DNS.Message, consequence, since)
		alertMessage = fmt.Sprintf("The DNS of active domain %s no longer leads to %s (since %s): %s",
			rec.Domain, rec.CNAMETarget(), since, in.DNS.Message)
		if len(in.DNS.Observation) > 0 {
			details["observation"] = in.DNS.Observation
		}
	} else {
		message = fmt.Sprintf("HTTPS check of %s failed: %s. We are looking into it; nothing is needed from you. Seen since %s.",
			rec.Domain, strings.TrimSuffix(in.Probe.Message, "."), since)
		alertMessage = fmt.Sprintf("Active domain %s does not serve a valid certificate covering it (since %s): %s",
			rec.Domain, since, in.Probe.Message)
		details["https"] = in.Probe.Message
	}
	// Compared as stored, so a long message is not rewritten at every check.
	if message = domain.TruncateMessage(message); message != rec.StatusMessage {
		d.Message, d.Details = message, details
	}
	if _, open := in.State.OpenAlerts[d.ProblemKind]; !open && now.Sub(d.ProblemSince) >= cfg.Grace {
		d.Open = &AlertOpening{DomainID: rec.ID, Kind: d.ProblemKind, Reason: d.Outcome,
			Message:       alertMessage + fmt.Sprintf(" The domain stays active and is checked every %s until it is fixed or disabled.", shortDuration(cfg.ProblemRecheck())),
			NotReadySince: d.ProblemSince, WhileStatus: domain.StatusActive, WhileSince: rec.StatusChangedAt,
			Details: map[string]any{"outcome": d.Outcome, "expected_cname": rec.CNAMETarget(), "generation": rec.Generation,
				"grace": cfg.Grace.String()}}
	}
	return d
}

// RecheckWorker checks one active domain.
type RecheckWorker struct {
	river.WorkerDefaults[RecheckArgs]
	deps *Deps
}

// NewRecheckWorker returns the re-check worker; the bench of its cost calls
// its Work directly.
func NewRecheckWorker(deps *Deps) *RecheckWorker {
	deps.setDefaults()
	return &RecheckWorker{deps: deps}
}

// Middleware puts argsGuard in front, as for the stage workers.
func (w *RecheckWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}

// Work checks DNS and HTTPS, records what it saw, and opens or resolves
// the domain's alerts.
func (w *RecheckWorker) Work(ctx context.Context, job *river.Job[RecheckArgs]) error {
	begun := w.deps.now()
	rec, logger, current, err := load(ctx, w.deps, job.Args.DomainArgs, KindRecheck, domain.StatusActive)
	if err != nil || !current {
		return err
	}
	state, err := w.deps.Rechecks.RecheckState(ctx, rec.ID)
	if err != nil {
		return err
	}
	if w.deps.Kube != nil {
		// A renewal the Certificate watch missed (no worker ran) reaches the
		// gateway's copy here, before the probe looks at what it serves.
		if _, err := w.deps.Kube.ServeCertificate(ctx, refOf(rec)); err != nil {
			logger.Warn("could not bring the gateway's copy of the certificate up to date", "error", err)
		}
	}
	in := recheckInput{Rec: rec, State: state, DNS: w.deps.DNS.CheckDNS(ctx, refOf(rec))}
	if in.DNS.Outcome != DNSResolverError {
		in.Probe = w.deps.Prober.Probe(ctx, refOf(rec))
	}
	in.Now = w.deps.now()
	d := decideRecheck(in, w.deps.Config.Recheck)
	recorded, err := w.deps.Rechecks.RecordRecheck(ctx, RecheckRecord{DomainID: rec.ID, Generation: rec.Generation,
		Outcome: d.Outcome, ProblemKind: d.ProblemKind, ProblemSince: d.ProblemSince,
		ServedNotAfter: in.Probe.CertificateNotAfter, CheckBy: d.CheckBy, Message: d.Message, Details: d.Details})
	if err != nil {
		return err
	}
	if !recorded {
		logger.Info("domain moved on while it was re-checked; leaving it")
		return nil
	}
	if w.deps.Rechecked != nil {
		w.deps.Rechecked(d.Outcome, w.deps.now().Sub(begun))
	}
	attrs := []any{"outcome", d.Outcome, "problem", d.ProblemKind}
	if !in.Probe.CertificateNotAfter.IsZero() {
		attrs = append(attrs, "served_not_after", in.Probe.CertificateNotAfter.UTC())
	}
	switch {
	case d.Message != "" && d.ProblemKind != "":
		logger.Warn("live check found a problem; told the tenant", append(attrs, "status_message", d.Message)...)
	case d.Message != "":
		logger.Info("live check passes again; told the tenant", attrs...)
	case d.ProblemKind != "" || d.Outcome == RecheckResolverError:
		logger.Info("live check", attrs...)
	default:
		logger.Debug("live check", attrs...)
	}
	return w.actOnAlerts(ctx, d)
}

// actOnAlerts resolves, then opens. A crash in between is made good by the
// next check: opening is idempotent and resolving goes by id.
func (w *RecheckWorker) actOnAlerts(ctx context.Context, d recheckDecision) error {
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(d.Resolve)) {
		a, resolved, err := w.deps.Alerts.ResolveAlert(ctx, id, d.Resolve[id], w.deps.AlertNotify)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve alert %d: %w", id, err))
			continue
		}
		if resolved {
			w.deps.Logger.Info("alert resolved", "alert_id", a.ID, "alert_kind", a.Kind, "tenant_id", a.Tenant,
				"portal_domain_id", a.DomainID, "domain", a.Domain, "resolution", a.Resolution,
				"open_for", a.ResolvedAt.Sub(a.OpenedAt).Round(time.Second))
		}
	}
	if d.Open != nil {
		a, opened, err := w.deps.Alerts.OpenAlert(ctx, *d.Open, w.deps.AlertNotify)
		if err != nil {
			errs = append(errs, fmt.Errorf("open %s alert for %s: %w", d.Open.Kind, d.Open.DomainID, err))
		} else if opened {
			w.deps.Logger.Error("alert opened", "alert_id", a.ID, "alert_kind", a.Kind, "tenant_id", a.Tenant,
				"portal_domain_id", a.DomainID, "domain", a.Domain, "reason", a.Reason, "message", a.Message,
				"problem_since", a.NotReadySince)
		}
	}
	return errors.Join(errs...)
}

// RecheckScheduleWorker enqueues the due checks, gives newly active domains
// their first one, and resolves re-check alerts of domains that are no
// longer active.
type RecheckScheduleWorker struct {
	river.WorkerDefaults[RecheckScheduleArgs]
	deps *Deps
	// lastDiscovery is when this worker last looked for active domains
	// without a schedule (unix nanoseconds).
	lastDiscovery atomic.Int64
}

// discoverEvery is how often the scheduler looks for newly active domains:
// that reads every active row (tens of milliseconds at 100,000), while
// claiming due checks is an index range. A new domain's first check is
// anywhere in the coming interval anyway, so finding it ten runs late
// changes nothing.
func (c RecheckConfig) discoverEvery() time.Duration { return 10 * c.ScheduleEvery }

// Work runs one round. Each part runs even if another fails; the job fails
// (and is retried) if any did.
func (w *RecheckScheduleWorker) Work(ctx context.Context, job *river.Job[RecheckScheduleArgs]) error {
	cfg := w.deps.Config.Recheck.withDefaults()
	now := w.deps.now()
	var errs []error
	added := 0
	if last := w.lastDiscovery.Load(); last == 0 || now.Sub(time.Unix(0, last)) >= cfg.discoverEvery() {
		var err error
		added, err = w.deps.Rechecks.ScheduleNew(ctx, cfg.Batch, func() time.Time {
			return FirstRecheck(now, cfg.Interval, w.deps.rand())
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule newly active domains: %w", err))
		} else if added < cfg.Batch {
			// A full batch means more are waiting: look again next run.
			w.lastDiscovery.Store(now.UnixNano())
		}
	}
	enqueued, dropped, err := w.deps.Rechecks.EnqueueDue(ctx, cfg.Batch, func() time.Time {
		return NextRecheck(now, cfg.Interval, w.deps.rand())
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("enqueue due re-checks: %w", err))
	}
	resolved, err := w.resolveInactive(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	if added+enqueued+dropped+resolved > 0 || len(errs) > 0 {
		w.deps.Logger.Info("re-checks scheduled", "job_kind", KindRecheckSchedule, "new_domains", added,
			"enqueued", enqueued, "dropped", dropped, "alerts_resolved", resolved, "errors", len(errs))
	}
	if enqueued >= cfg.Batch {
		w.deps.Logger.Warn("more re-checks due than one run enqueues; the rest follow in the next runs", "batch", cfg.Batch)
	}
	return errors.Join(errs...)
}

// resolveInactive resolves the re-check alerts of domains that are gone or
// no longer active: their checks have stopped, so nothing else would.
func (w *RecheckScheduleWorker) resolveInactive(ctx context.Context) (int, error) {
	open, err := w.deps.Alerts.OpenAlerts(ctx)
	if err != nil {
		return 0, fmt.Errorf("read open alerts: %w", err)
	}
	byDomain := map[string][]Alert{}
	for _, a := range open {
		if a.Kind == AlertDNSDrift || a.Kind == AlertHTTPSFailed {
			byDomain[a.DomainID] = append(byDomain[a.DomainID], a)
		}
	}
	if len(byDomain) == 0 {
		return 0, nil
	}
	rows, err := w.deps.Alerts.Domains(ctx, slices.Sorted(maps.Keys(byDomain)))
	if err != nil {
		return 0, fmt.Errorf("read domains with open re-check alerts: %w", err)
	}
	var errs []error
	n := 0
	for _, id := range slices.Sorted(maps.Keys(byDomain)) {
		row, ok := rows[id]
		var resolution string
		switch {
		case !ok:
			resolution = "The portal domain row was deleted."
		case row.Status != domain.StatusActive:
			resolution = fmt.Sprintf("%s is no longer active (%s).", row.Domain, row.Status)
		default:
			continue
		}
		for _, a := range byDomain[id] {
			if _, resolved, err := w.deps.Alerts.ResolveAlert(ctx, a.ID, resolution, w.deps.AlertNotify); err != nil {
				errs = append(errs, fmt.Errorf("resolve alert %d: %w", a.ID, err))
			} else if resolved {
				n++
			}
		}
	}
	return n, errors.Join(errs...)
}

// shortDuration prints d to the minute, or exactly below a minute.
func shortDuration(d time.Duration) string {
	if d < time.Minute {
		return d.String()
	}
	return roughDuration(d)
}
