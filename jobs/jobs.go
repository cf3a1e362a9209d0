// Package jobs is the provisioning workflow: one River worker per stage,
// each reading the row, doing one step, and recording the outcome with a
// guarded transition (the database trigger enqueues the next stage in the
// same transaction). Waiting is a River snooze, never a sleep. The package
// declares the small interfaces it needs; cmd wires the real db, dns, k8s
// and probe packages in.
package jobs

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// Store is what the workflow needs of the database.
type Store interface {
	GetDomain(ctx context.Context, id string) (domain.Record, error)
	// Transition applies a guarded move (see db.Transition); ErrStale when
	// the row moved on.
	Transition(ctx context.Context, c domain.Change) (domain.Record, error)
	// WakeStageJob runs the domain's waiting stage job now (see
	// db.WakeStageJob).
	WakeStageJob(ctx context.Context, id string) error
	// DeleteDisabled deletes the row while it is still disabled in this
	// generation; false when it moved on (re-registered) or is gone.
	DeleteDisabled(ctx context.Context, id string, generation int64) (bool, error)
	// RecordDetail adds detail for operators (an API server's own error) to
	// the domain's event history, where tenants do not read it.
	RecordDetail(ctx context.Context, rec domain.Record, detail map[string]any) error
}

// Sentinel errors the Store implementation maps its own errors to.
var (
	ErrNotFound = errors.New("domain not found")
	ErrStale    = errors.New("domain moved on")
	// ErrPermanent marks an outside error that retrying cannot fix (a
	// manifest the API server's schema rejects, a forbidden verb).
	ErrPermanent = errors.New("permanent failure")
)

// Config holds the workflow's knobs.
type Config struct {
	CanonicalSuffix string
	// DNSDeadline: how long a mismatch may last before dns_failed.
	DNSDeadline time.Duration
	// CertDeadline: how long certificate issuance and the HTTPS probe may
	// take before certificate_failed.
	CertDeadline time.Duration
	// IssuerName is named in messages ("requested from letsencrypt-prod").
	IssuerName string
	// CAAIdentity is the CA's CAA identity (letsencrypt.org): it names the
	// CA in messages about its refusals.
	CAAIdentity string
	// DNSRecheckMin and DNSRecheckMax bound the re-check schedule while a
	// CNAME is missing or wrong (default 10s growing to 15m).
	DNSRecheckMin, DNSRecheckMax time.Duration
	// KeepDisabled keeps a disabled row once its objects are removed;
	// otherwise it is deleted, as AlgaPSA's workflow does, and the domain is
	// free for anyone.
	KeepDisabled bool
	// Sweep bounds the orphan sweep (see SweepConfig).
	Sweep SweepConfig
	// ReviewRecheck is how soon an apply waiting for its review branch to
	// be merged looks again (default 30s, growing to 5m).
	ReviewRecheck time.Duration
	// Recheck schedules the live re-check of active domains.
	Recheck RecheckConfig
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		CanonicalSuffix: domain.DefaultCanonicalSuffix,
		DNSDeadline:     48 * time.Hour,
		CertDeadline:    6 * time.Hour,
		DNSRecheckMin:   10 * time.Second,
		DNSRecheckMax:   15 * time.Minute,
		Sweep:           SweepConfig{MinAge: DefaultSweepMinAge, MaxDeletes: DefaultSweepMaxDeletes},
		Recheck:         DefaultRecheckConfig(),
	}
}

// Observer hears about outcomes worth counting or telling analytics about.
// Every method must be cheap and must not fail the job.
type Observer interface {
	StageFinished(kind, outcome string, took time.Duration)
	DNSChecked(outcome string)
	Activated(rec domain.Record)
	Failed(rec domain.Record)
}

// Deps are the outside systems the workers use. DNS is needed by
// verify_dns; Kube by apply, await_certificate and disable; Prober by probe.
type Deps struct {
	Store  Store
	DNS    DNSChecker
	Kube   Kube
	Prober Prober
	// Sweeper and Owners enable the orphan sweep.
	Sweeper Sweeper
	Owners  OwnerStore
	// SweepCounted, when set, counts the sweep's objects by action
	// (deleted, would_delete, too_young, deferred, failed).
	SweepCounted func(action string, n int)
	// Stages enables the reconcile job.
	Stages StageJobEnqueuer
	// Git, Manifests and Tenants enable the git_record job.
	Git       GitRecorder
	Manifests ManifestRenderer
	Tenants   TenantDomains
	// Review, with Manifests, makes the apply wait until its change is
	// merged in the manifest repository.
	Review ChangeReviewer
	// Rechecks and Alerts, with DNS and Prober, enable the live re-check of
	// active domains; AlertNotify sends its alerts to the webhook.
	Rechecks    Rechecks
	Alerts      AlertStore
	AlertNotify bool
	// Rechecked, when set, counts each re-check by outcome.
	Rechecked func(outcome string, took time.Duration)
	// Rand is uniform in [0, 1), for the re-check's jitter; tests may pin
	// it.
	Rand func() float64
	// Heals enables the heal job (with Kube); Healed, when set, counts
	// the objects it applied again by kind and change (edited, deleted).
	Heals    HealStore
	Healed   func(kind, change string)
	Observer Observer
	Logger   *slog.Logger
	Config   Config
	// Now is the clock; tests may pin it.
	Now func() time.Time
}

func (d *Deps) rand() float64 {
	if d.Rand != nil {
		return d.Rand()
	}
	return rand.Float64()
}

func (d *Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// AddWorkers registers every stage worker whose outside system is present.
func AddWorkers(workers *river.Workers, deps *Deps) {
	deps.setDefaults()
	if deps.DNS != nil {
		river.AddWorker(workers, &VerifyDNSWorker{deps: deps})
	}
	if deps.Kube != nil {
		river.AddWorker(workers, &ApplyWorker{deps: deps})
		river.AddWorker(workers, &AwaitCertificateWorker{deps: deps})
		river.AddWorker(workers, &DisableWorker{deps: deps})
		river.AddWorker(workers, &CopySecretWorker{deps: deps})
		if deps.Heals != nil {
			river.AddWorker(workers, &HealWorker{deps: deps})
		}
	}
	if deps.Prober != nil {
		river.AddWorker(workers, &ProbeWorker{deps: deps})
	}
	if deps.Sweeper != nil && deps.Owners != nil {
		river.AddWorker(workers, &OrphanSweepWorker{deps: deps})
	}
	if deps.Stages != nil {
		river.AddWorker(workers, NewReconcileWorker(deps))
	}
	if deps.Rechecks != nil && deps.Alerts != nil && deps.DNS != nil && deps.Prober != nil {
		river.AddWorker(workers, NewRecheckWorker(deps))
		river.AddWorker(workers, &RecheckScheduleWorker{deps: deps})
	}
	if deps.Git != nil && deps.Manifests != nil && deps.Tenants != nil {
		river.AddWorker(workers, &GitRecordWorker{deps: deps})
	}
}

// setDefaults fills in what the caller left unset.
func (deps *Deps) setDefaults() {
	if deps.Observer == nil {
		deps.Observer = nopObserver{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	defaults := DefaultConfig()
	if deps.Config.DNSRecheckMin <= 0 {
		deps.Config.DNSRecheckMin = defaults.DNSRecheckMin
	}
	if deps.Config.DNSRecheckMax <= 0 {
		deps.Config.DNSRecheckMax = defaults.DNSRecheckMax
	}
	if deps.Config.DNSDeadline <= 0 {
		deps.Config.DNSDeadline = defaults.DNSDeadline
	}
	if deps.Config.CertDeadline <= 0 {
		deps.Config.CertDeadline = defaults.CertDeadline
	}
	if deps.Config.Sweep.MinAge <= 0 {
		deps.Config.Sweep.MinAge = defaults.Sweep.MinAge
	}
	if deps.Config.ReviewRecheck <= 0 {
		deps.Config.ReviewRecheck = 30 * time.Second
	}
	if deps.Config.CanonicalSuffix == "" {
		deps.Config.CanonicalSuffix = defaults.CanonicalSuffix
	}
	deps.Config.Recheck = deps.Config.Recheck.withDefaults()
}

type nopObserver struct{}

func (nopObserver) StageFinished(string, string, time.Duration) {}
func (nopObserver) DNSChecked(string)                           {}
func (nopObserver) Activated(domain.Record)                     {}
func (nopObserver) Failed(domain.Record)                        {}

// load reads the job's domain and reports whether the job is still current:
// the row exists, has the job's generation, and is in one of the statuses
// the stage works. A job that is not current did its work already (a rerun
// after a crash) or was superseded by a restart, and completes doing nothing.
func load(ctx context.Context, deps *Deps, args DomainArgs, kind string, statuses ...domain.Status) (domain.Record, *slog.Logger, bool, error) {
	logger := deps.Logger.With("job_kind", kind, "portal_domain_id", args.DomainID, "generation", args.Generation)
	rec, err := deps.Store.GetDomain(ctx, args.DomainID)
	if errors.Is(err, ErrNotFound) {
		logger.Info("domain row is gone; nothing to do")
		return rec, logger, false, nil
	}
	if err != nil {
		return rec, logger, false, err
	}
	logger = logger.With("tenant_id", string(rec.Tenant), "domain", rec.Domain)
	if rec.Generation != args.Generation {
		logger.Info("job is from an older generation of this domain; nothing to do", "current_generation", rec.Generation)
		return rec, logger, false, nil
	}
	for _, s := range statuses {
		if rec.Status == s {
			return rec, logger, true, nil
		}
	}
	logger.Info("domain already moved past this stage; nothing to do", "status", rec.Status)
	return rec, logger, false, nil
}

// move applies a transition, treating ErrStale as "someone else finished".
func move(ctx context.Context, deps *Deps, logger *slog.Logger, c domain.Change) (domain.Record, bool, error) {
	rec, err := deps.Store.Transition(ctx, c)
	if errors.Is(err, ErrStale) {
		logger.Info("domain moved on while this job ran; leaving it", "wanted", c.To)
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	if c.From != c.To {
		logger.Info("status changed", "from", c.From, "to", c.To, "status_message", c.Message)
	}
	switch c.To {
	case domain.StatusActive:
		deps.Observer.Activated(rec)
	case domain.StatusDNSFailed, domain.StatusCertificateFailed:
		deps.Observer.Failed(rec)
	}
	return rec, true, nil
}

// backoff grows with the time already spent waiting: a quarter of it,
// clamped to [lo, hi]. Stateless, so it survives restarts and crashes.
func backoff(elapsed, lo, hi time.Duration) time.Duration {
	return min(max(elapsed/4, lo), hi)
}
