package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// ManagedObject is one object carrying the managed label. Handle is the
// Sweeper's own value, passed back to DeleteManaged unchanged.
type ManagedObject struct {
	Kind, Namespace, Name string
	DomainID              string
	Handle                any
}

// Sweeper lists and deletes labelled objects in the cluster.
type Sweeper interface {
	ListManaged(ctx context.Context) ([]ManagedObject, error)
	DeleteManaged(ctx context.Context, obj ManagedObject) error
}

// OwnerStore tells which domains still own their objects.
type OwnerStore interface {
	// DomainsKeepingObjects returns the ids, among ids, whose row exists and
	// is not disabled for longer than disabledFor.
	DomainsKeepingObjects(ctx context.Context, ids []string, disabledFor time.Duration) (map[string]bool, error)
}

// sweepGrace: a domain disabled less than this long ago is left to its own
// disable job, so a quick re-enable never races the sweep.
const sweepGrace = 10 * time.Minute

// orphans is the sweep's pure decision: objects whose domain no longer
// keeps them. Objects without a domain id are never touched.
func orphans(objs []ManagedObject, keep map[string]bool) []ManagedObject {
	var out []ManagedObject
	for _, o := range objs {
		if o.DomainID != "" && !keep[o.DomainID] {
			out = append(out, o)
		}
	}
	return out
}

// OrphanSweepWorker deletes managed objects whose row is gone (AlgaPSA
// deletes rows on tenant deletion) or disabled, which the disable job alone
// cannot catch.
type OrphanSweepWorker struct {
	river.WorkerDefaults[OrphanSweepArgs]
	deps *Deps
}

// Work lists, decides and deletes.
func (w *OrphanSweepWorker) Work(ctx context.Context, job *river.Job[OrphanSweepArgs]) error {
	objs, err := w.deps.Sweeper.ListManaged(ctx)
	if err != nil {
		return fmt.Errorf("list managed objects: %w", err)
	}
	ids := make([]string, 0, len(objs))
	for _, o := range objs {
		if o.DomainID != "" {
			ids = append(ids, o.DomainID)
		}
	}
	keep, err := w.deps.Owners.DomainsKeepingObjects(ctx, ids, sweepGrace)
	if err != nil {
		return err
	}
	var errs []error
	deleted := 0
	for _, o := range orphans(objs, keep) {
		if err := w.deps.Sweeper.DeleteManaged(ctx, o); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted++
		w.deps.Logger.Info("deleted orphaned object", "kind", o.Kind, "namespace", o.Namespace, "name", o.Name, "portal_domain_id", o.DomainID)
	}
	level := slog.LevelDebug
	if deleted > 0 || len(errs) > 0 {
		level = slog.LevelInfo
	}
	w.deps.Logger.Log(ctx, level, "orphan sweep finished", "objects", len(objs), "deleted", deleted, "errors", len(errs))
	return errors.Join(errs...)
}
