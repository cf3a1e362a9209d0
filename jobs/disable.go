package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// DisableWorker deletes the Certificate, its Secret, the Gateway and the
// VirtualService (missing is fine) and the snapshots, clears the secret name,
// then deletes the row (unless Config.KeepDisabled), its history kept in
// portal_domain_events. Each step is idempotent and guarded by the
// generation, so a rerun after a crash is harmless and a domain registered
// again meanwhile is left alone.
type DisableWorker struct {
	river.WorkerDefaults[DisableArgs]
	deps *Deps
}

// NextRetry: the API server may be down; try again soon.
func (w *DisableWorker) NextRetry(job *river.Job[DisableArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

// Work removes the domain's objects.
func (w *DisableWorker) Work(ctx context.Context, job *river.Job[DisableArgs]) error {
	begun := w.deps.now()
	rec, logger, current, err := load(ctx, w.deps, job.Args.DomainArgs, domain.KindDisable, domain.StatusDisabled)
	if err != nil || !current {
		return err
	}
	if err := w.deps.Kube.Delete(ctx, refOf(rec)); err != nil {
		if !errors.Is(err, ErrKubeNotOurs) {
			return fmt.Errorf("delete objects of %s: %w", rec.Domain, err)
		}
		// Objects of these names that another installation applied (or
		// that nobody adopted) are not this domain's to delete: they are
		// left as they are, and the operator is told which.
		logger.Warn("objects not carrying this installation's identity were left in place", "error", err)
		if rerr := w.deps.Store.RecordDetail(ctx, rec, map[string]any{"stage": domain.KindDisable, "left_in_place": err.Error()}); rerr != nil {
			logger.Warn("could not record the objects left in place in the domain's history", "error", rerr)
		}
	}
	_, moved, err := move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
		From: domain.StatusDisabled, To: domain.StatusDisabled, ClearSecretName: true,
		Message: fmt.Sprintf("%s is disabled; its certificate, secret, gateway and virtual service were removed.", rec.Domain)})
	if err != nil || !moved {
		return err
	}
	outcome := "disabled"
	if !w.deps.Config.KeepDisabled {
		deleted, err := w.deps.Store.DeleteDisabled(ctx, rec.ID, rec.Generation)
		if err != nil {
			return fmt.Errorf("delete the disabled row of %s: %w", rec.Domain, err)
		}
		if deleted {
			outcome = "deleted"
			logger.Info("disabled domain's row deleted; the domain is free to register again")
		}
	}
	w.deps.Observer.StageFinished(domain.KindDisable, outcome, w.deps.now().Sub(begun))
	return nil
}
