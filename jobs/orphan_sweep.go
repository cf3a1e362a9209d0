package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/riverqueue/river"
)

// KindOrphanSweep is the periodic job deleting objects nobody owns.
const KindOrphanSweep = "orphan_sweep"

// OrphanSweepArgs has no fields: one sweep covers the whole cluster.
type OrphanSweepArgs struct{}

func (OrphanSweepArgs) Kind() string { return KindOrphanSweep }

// InsertOpts: the maintenance queue, one sweep at a time.
func (OrphanSweepArgs) InsertOpts() river.InsertOpts {
	return maintenanceOnce()
}

// ManagedObject is one object of this installation (it carries the
// installation's identity; the Sweeper lists no other). Handle is the
// Sweeper's own value, passed back to DeleteManaged unchanged.
type ManagedObject struct {
	Kind, Namespace, Name string
	DomainID              string
	// CreatedAt is the object's creationTimestamp.
	CreatedAt time.Time
	Handle    any
}

// Sweeper lists and deletes this installation's objects in the cluster.
type Sweeper interface {
	// ListManaged lists only objects carrying this installation's identity.
	ListManaged(ctx context.Context) ([]ManagedObject, error)
	// DeleteManaged deletes one listed object, on the condition that it is
	// still the object listed.
	DeleteManaged(ctx context.Context, obj ManagedObject) error
}

// OwnerStore tells which domains still own their objects.
type OwnerStore interface {
	// DomainsKeepingObjects returns the ids, among ids, whose row exists and
	// is not disabled for longer than disabledFor.
	DomainsKeepingObjects(ctx context.Context, ids []string, disabledFor time.Duration) (map[string]bool, error)
}

// SweepConfig bounds what one sweep may delete.
type SweepConfig struct {
	// MinAge: an object younger than this is never deleted, whatever the
	// database says (a row being restored, a database caught mid-copy).
	// Zero takes DefaultSweepMinAge.
	MinAge time.Duration
	// MaxDeletes: at most this many objects are deleted per run; the rest
	// wait for the next run, so a wrong answer from the database costs a
	// bounded number of objects per interval, not the cluster. Zero deletes
	// nothing.
	MaxDeletes int
	// DryRun: report what would be deleted (log, metric, `portal-domains
	// sweep --dry-run`) and delete nothing.
	DryRun bool
}

// Defaults of SweepConfig: a sweep every 10 minutes deletes at most 300
// objects an hour, none younger than an hour.
const (
	DefaultSweepMinAge     = time.Hour
	DefaultSweepMaxDeletes = 50
)

// sweepGrace: a domain disabled less than this long ago is left to its own
// disable job, so a quick re-enable never races the sweep.
const sweepGrace = 10 * time.Minute

// SweepPlan is the sweep's decision over what it listed.
type SweepPlan struct {
	Listed int
	// Delete are the orphans to delete now, oldest first, at most
	// MaxDeletes.
	Delete []ManagedObject
	// TooYoung are orphans younger than MinAge; Deferred orphans beyond
	// MaxDeletes, left for the next run.
	TooYoung, Deferred []ManagedObject
}

// planSweep is the sweep's pure decision: objects whose domain no longer
// keeps them, old enough, at most cfg.MaxDeletes. Objects without a domain
// id are never touched.
func planSweep(objs []ManagedObject, keep map[string]bool, now time.Time, cfg SweepConfig) SweepPlan {
	plan := SweepPlan{Listed: len(objs)}
	var orphans []ManagedObject
	for _, o := range objs {
		if o.DomainID == "" || keep[o.DomainID] {
			continue
		}
		if o.CreatedAt.IsZero() || now.Sub(o.CreatedAt) < cfg.MinAge {
			plan.TooYoung = append(plan.TooYoung, o)
			continue
		}
		orphans = append(orphans, o)
	}
	// Oldest first: the longest-orphaned go before newer ones.
	slices.SortStableFunc(orphans, func(a, b ManagedObject) int { return a.CreatedAt.Compare(b.CreatedAt) })
	limit := max(cfg.MaxDeletes, 0)
	if len(orphans) > limit {
		plan.Delete, plan.Deferred = orphans[:limit], orphans[limit:]
	} else {
		plan.Delete = orphans
	}
	return plan
}

// SweepReport is what one sweep did (or, dry, would have done).
type SweepReport struct {
	SweepPlan
	DryRun  bool
	Deleted []ManagedObject
	Errors  []error
}

// Sweep lists this installation's objects, decides which are orphans and,
// unless cfg.DryRun, deletes them. The periodic job and `portal-domains
// sweep` both run it.
func Sweep(ctx context.Context, sweeper Sweeper, owners OwnerStore, now time.Time, cfg SweepConfig) (SweepReport, error) {
	objs, err := sweeper.ListManaged(ctx)
	if err != nil {
		return SweepReport{}, fmt.Errorf("list managed objects: %w", err)
	}
	ids := make([]string, 0, len(objs))
	for _, o := range objs {
		if o.DomainID != "" {
			ids = append(ids, o.DomainID)
		}
	}
	keep, err := owners.DomainsKeepingObjects(ctx, ids, sweepGrace)
	if err != nil {
		return SweepReport{}, err
	}
	report := SweepReport{SweepPlan: planSweep(objs, keep, now, cfg), DryRun: cfg.DryRun}
	if cfg.DryRun {
		return report, nil
	}
	for _, o := range report.Delete {
		if err := sweeper.DeleteManaged(ctx, o); err != nil {
			report.Errors = append(report.Errors, err)
			continue
		}
		report.Deleted = append(report.Deleted, o)
	}
	return report, nil
}

// OrphanSweepWorker deletes this installation's objects whose row is gone
// (AlgaPSA deletes rows on tenant deletion) or disabled, which the disable
// job alone cannot catch.
type OrphanSweepWorker struct {
	river.WorkerDefaults[OrphanSweepArgs]
	deps *Deps
}

// Work sweeps once and reports it.
func (w *OrphanSweepWorker) Work(ctx context.Context, job *river.Job[OrphanSweepArgs]) error {
	report, err := Sweep(ctx, w.deps.Sweeper, w.deps.Owners, w.deps.now(), w.deps.Config.Sweep)
	if err != nil {
		return err
	}
	for _, o := range report.Delete {
		msg := "deleted orphaned object"
		if report.DryRun {
			msg = "would delete orphaned object (dry run)"
		}
		w.deps.Logger.Info(msg, "kind", o.Kind, "namespace", o.Namespace, "name", o.Name, "portal_domain_id", o.DomainID, "created_at", o.CreatedAt)
	}
	if w.deps.SweepCounted != nil {
		action := "deleted"
		n := len(report.Deleted)
		if report.DryRun {
			action, n = "would_delete", len(report.Delete)
		}
		w.deps.SweepCounted(action, n)
		w.deps.SweepCounted("too_young", len(report.TooYoung))
		w.deps.SweepCounted("deferred", len(report.Deferred))
		w.deps.SweepCounted("failed", len(report.Errors))
	}
	level := slog.LevelDebug
	if len(report.Delete) > 0 || len(report.Errors) > 0 || len(report.Deferred) > 0 {
		level = slog.LevelInfo
	}
	w.deps.Logger.Log(ctx, level, "orphan sweep finished", "objects", report.Listed, "dry_run", report.DryRun,
		"orphans", len(report.Delete), "deleted", len(report.Deleted), "too_young", len(report.TooYoung),
		"deferred", len(report.Deferred), "errors", len(report.Errors))
	return errors.Join(report.Errors...)
}
