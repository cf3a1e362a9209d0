package jobs

import (
	"context"
	"sync"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// KindReconcile is the periodic job that gives every domain in a working
// status the stage job it lacks.
const KindReconcile = "reconcile"

// ReconcileArgs has no fields: each run examines the next window of working
// rows, and the windows of successive runs cover every domain.
type ReconcileArgs struct{}

func (ReconcileArgs) Kind() string { return KindReconcile }

// InsertOpts: the maintenance queue, one run at a time.
func (ReconcileArgs) InsertOpts() river.InsertOpts { return maintenanceOnce() }

// StageJobEnqueuer examines up to window domains in a working status after
// the cursor, enqueues the stage job of each whose current generation has
// none, and returns how many it enqueued and the next cursor (zero once the
// window reached the last working domain).
type StageJobEnqueuer interface {
	EnqueueMissingStageJobs(ctx context.Context, after domain.ReconcileCursor, window int) (int, domain.ReconcileCursor, error)
}

// ReconcileWindow bounds what one query examines, so it costs the same at
// 100,000 working domains (a bulk import) as at 5,000. A run whose window
// found missing jobs goes on to the next window (an adopted table is
// caught up in one run); one that found none stops, and the rest of the
// pass is taken by the runs that follow, one interval apart.
const ReconcileWindow = 5_000

// ReconcileWorker is level-triggered where the trigger is edge-triggered:
// whatever the reason a job is missing, a run of the pass makes it.
type ReconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	deps *Deps

	// cursor is this process's place in the pass. Each process that runs
	// the job keeps its own, and a restart begins a new pass: either way
	// every working domain is still examined within a pass.
	mu     sync.Mutex
	cursor domain.ReconcileCursor
}

// NewReconcileWorker is the reconcile job's worker over deps.Stages.
func NewReconcileWorker(deps *Deps) *ReconcileWorker {
	deps.setDefaults()
	return &ReconcileWorker{deps: deps}
}

func (w *ReconcileWorker) Work(ctx context.Context, _ *river.Job[ReconcileArgs]) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	total := 0
	for {
		n, next, err := w.deps.Stages.EnqueueMissingStageJobs(ctx, w.cursor, ReconcileWindow)
		if err != nil {
			return err
		}
		w.cursor, total = next, total+n
		if n == 0 || next.IsZero() {
			break
		}
	}
	if total > 0 {
		w.deps.Logger.Info("enqueued the stage jobs that domains in a working status lacked", "job_kind", KindReconcile, "enqueued", total)
	}
	return nil
}
