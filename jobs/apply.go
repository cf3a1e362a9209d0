package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// ApplyWorker renders the Certificate, Gateway and VirtualService and
// server-side applies them. Errors retry with River's backoff (NextRetry);
// the last attempt, or an error retrying cannot fix, fails the domain with
// the API server's message.
type ApplyWorker struct {
	river.WorkerDefaults[ApplyArgs]
	deps *Deps
}

// NextRetry backs off 2^attempt seconds, at most 5 minutes, so a short API
// server outage is ridden out within the attempt budget.
func (w *ApplyWorker) NextRetry(job *river.Job[ApplyArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

func retryDelay(attempt int) time.Duration {
	return min(time.Duration(1<<min(attempt, 12))*time.Second, 5*time.Minute)
}

// Work applies the domain's objects.
func (w *ApplyWorker) Work(ctx context.Context, job *river.Job[ApplyArgs]) error {
	begun := w.deps.now()
	rec, logger, current, err := load(ctx, w.deps, job.Args.DomainArgs, domain.KindApply, domain.StatusPendingCertificate)
	if err != nil || !current {
		return err
	}
	if w.deps.Review != nil && w.deps.Manifests != nil {
		if ok, err := w.awaitReview(ctx, rec, logger); !ok {
			return err
		}
	}
	applied, applyErr := w.deps.Kube.Apply(ctx, refOf(rec))
	if applyErr != nil {
		lastAttempt := job.Attempt >= job.MaxAttempts || errors.Is(applyErr, ErrPermanent)
		logger.Warn("apply failed", "error", applyErr, "attempt", job.Attempt, "max_attempts", job.MaxAttempts, "giving_up", lastAttempt)
		reason := tenantKubeReason(applyErr)
		change := domain.Change{DomainID: rec.ID, Generation: rec.Generation, From: domain.StatusPendingCertificate}
		if lastAttempt {
			change.To = domain.StatusCertificateFailed
			change.Message = fmt.Sprintf("Could not create the certificate and gateway for %s. %s", rec.Domain, reason)
		} else {
			change.To = domain.StatusPendingCertificate
			change.Message = fmt.Sprintf("Creating the certificate and gateway failed (attempt %d of %d), retrying. %s", job.Attempt, job.MaxAttempts, reason)
		}
		if err := w.deps.Store.RecordDetail(ctx, rec, map[string]any{"stage": domain.KindApply, "attempt": job.Attempt, "error": applyErr.Error()}); err != nil {
			logger.Warn("could not record the apply error in the domain's history", "error", err)
		}
		if lastAttempt {
			_, _, err := move(ctx, w.deps, logger, change)
			w.deps.Observer.StageFinished(domain.KindApply, "failed", w.deps.now().Sub(begun))
			return err
		}
		if _, _, err := move(ctx, w.deps, logger, change); err != nil {
			return errors.Join(applyErr, err)
		}
		return applyErr
	}
	issuer := w.deps.Config.IssuerName
	if issuer == "" {
		issuer = "the certificate issuer"
	}
	_, moved, err := move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
		From: domain.StatusPendingCertificate, To: domain.StatusCertificateIssuing,
		Message:               fmt.Sprintf("Certificate for %s requested from %s; waiting for it to be issued.", rec.Domain, issuer),
		CertificateSecretName: applied.SecretName, ResourceVersion: applied.ResourceVersion})
	w.deps.Observer.StageFinished(domain.KindApply, "applied", w.deps.now().Sub(begun))
	if err == nil && moved && (applied.CertificateReady || w.deps.Kube.CertificateReadyWatched(refOf(rec))) {
		// The await job waits for the watch (domain.CertificateFirstCheck).
		// An issued, unchanged Certificate sends no watch event, and one
		// that turned Ready while this job ran was reported while there was
		// no await job to wake: start it now. Should this fail or the
		// process die first, the job still runs when its delay is up.
		if werr := w.deps.Store.WakeStageJob(ctx, rec.ID); werr != nil {
			logger.Warn("could not start the certificate check early", "error", werr)
		}
	}
	return err
}

func refOf(rec domain.Record) DomainRef {
	return DomainRef{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain, CanonicalHost: rec.CanonicalHost,
		CNAMETarget: rec.CNAMETarget()}
}
