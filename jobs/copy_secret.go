package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// KindCopySecret brings the gateway's copy of a renewed certificate up to
// date (Kube.ServeCertificate). The Certificate watch enqueues it when a
// Certificate's notAfter changes.
const KindCopySecret = "copy_secret"

// CopySecretArgs name the domain and the renewed certificate's notAfter,
// which makes one job per renewal however often the watch reports it.
type CopySecretArgs struct {
	DomainID string    `json:"domain_id"`
	NotAfter time.Time `json:"not_after"`
}

func (CopySecretArgs) Kind() string { return KindCopySecret }

// InsertOpts: the kubernetes queue, unique per renewal.
func (CopySecretArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: domain.QueueKubernetes, MaxAttempts: 25, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// CopySecretWorker copies a renewed certificate to where the gateway reads
// it, for a domain that is live or about to be; the pipeline's own stages
// copy it before the first HTTPS check.
type CopySecretWorker struct {
	river.WorkerDefaults[CopySecretArgs]
	deps *Deps
}

// NextRetry: the API server was unavailable; try again soon.
func (w *CopySecretWorker) NextRetry(job *river.Job[CopySecretArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

// Work copies the Secret and notes the renewal in the domain's history.
func (w *CopySecretWorker) Work(ctx context.Context, job *river.Job[CopySecretArgs]) error {
	logger := w.deps.Logger.With("job_kind", KindCopySecret, "portal_domain_id", job.Args.DomainID)
	rec, err := w.deps.Store.GetDomain(ctx, job.Args.DomainID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Status != domain.StatusActive && rec.Status != domain.StatusDeploying {
		logger.Info("domain is not live; its certificate is handed over when it is", "status", rec.Status)
		return nil
	}
	stored, err := w.deps.Kube.ServeCertificate(ctx, refOf(rec))
	if errors.Is(err, ErrPermanent) {
		// Someone else's Secret is in the way: retrying cannot help, and
		// the gateway keeps serving the previous certificate meanwhile.
		logger.Warn("could not hand the renewed certificate to the gateway", "error", err)
		return river.JobCancel(fmt.Errorf("hand the renewed certificate of %s to the gateway: %w", rec.Domain, err))
	}
	if err != nil {
		return fmt.Errorf("hand the renewed certificate of %s to the gateway: %w", rec.Domain, err)
	}
	if !stored {
		return fmt.Errorf("the renewed certificate of %s is not stored yet", rec.Domain)
	}
	logger.Info("renewed certificate handed to the gateway", "not_after", job.Args.NotAfter)
	return w.deps.Store.RecordDetail(ctx, rec, map[string]any{"stage": KindCopySecret,
		"certificate_renewed": true, "certificate_not_after": job.Args.NotAfter.UTC().Format(time.RFC3339)})
}
