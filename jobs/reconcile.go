package jobs

import (
	"context"

	"github.com/riverqueue/river"
)

// KindReconcile is the periodic job that gives every domain in a working
// status the stage job it lacks.
const KindReconcile = "reconcile"

// ReconcileArgs has no fields: one run covers every domain.
type ReconcileArgs struct{}

func (ReconcileArgs) Kind() string { return KindReconcile }

// InsertOpts: the maintenance queue, one run at a time.
func (ReconcileArgs) InsertOpts() river.InsertOpts { return maintenanceOnce() }

// StageJobEnqueuer finds domains in a working status whose current
// generation has no live stage job and enqueues it, at most limit at once.
type StageJobEnqueuer interface {
	EnqueueMissingStageJobs(ctx context.Context, limit int) (int, error)
}

// reconcileBatch bounds one run's transaction; a larger backlog is taken by
// the runs that follow.
const reconcileBatch = 10_000

// ReconcileWorker is level-triggered where the trigger is edge-triggered:
// whatever the reason a job is missing, the next run makes it.
type ReconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	deps *Deps
}

func (w *ReconcileWorker) Work(ctx context.Context, _ *river.Job[ReconcileArgs]) error {
	n, err := w.deps.Stages.EnqueueMissingStageJobs(ctx, reconcileBatch)
	if err != nil {
		return err
	}
	if n > 0 {
		w.deps.Logger.Info("enqueued the stage jobs that domains in a working status lacked", "job_kind", KindReconcile, "enqueued", n)
	}
	return nil
}
