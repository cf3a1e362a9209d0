package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// Re-check schedule while the certificate is not Ready. The Certificate
// watch wakes the job as soon as Ready changes; this only covers a missed
// event.
const (
	certRecheckMin = 30 * time.Second
	certRecheckMax = 2 * time.Minute
)

type certDecision struct {
	To      domain.Status
	Message string
	Snooze  time.Duration
	// Reapply: the Certificate is missing (deleted by hand): apply again.
	Reapply bool
}

// decideCertificate is the pure policy of the await_certificate stage.
// caaIdentity names the CA in messages about its refusals.
func decideCertificate(st CertState, rec domain.Record, now time.Time, deadline time.Duration, caaIdentity string) certDecision {
	waited := now.Sub(rec.StatusChangedAt)
	wait := backoff(waited, certRecheckMin, certRecheckMax)
	if st.Found && st.Drift != "" {
		// Issued or not, a Certificate for other names is not this domain's.
		return certDecision{To: domain.StatusCertificateIssuing, Reapply: true, Snooze: certRecheckMin,
			Message: fmt.Sprintf("The certificate for %s was changed in the cluster (%s) and has been applied again.", rec.Domain, st.Drift)}
	}
	if st.Found && st.Ready == "True" && st.RoutesPresent {
		return certDecision{To: domain.StatusDeploying,
			Message: fmt.Sprintf("Certificate for %s issued; checking HTTPS.", rec.Domain)}
	}
	var msg string
	switch {
	case !st.Found || !st.RoutesPresent:
		return certDecision{To: domain.StatusCertificateIssuing, Reapply: true, Snooze: certRecheckMin,
			Message: fmt.Sprintf("The certificate or gateway for %s was missing and has been created again.", rec.Domain)}
	case st.Ready != "True" && st.IssuingFailure != "" && st.CAFailure != nil:
		msg = fmt.Sprintf("Certificate for %s could not be issued. %s", rec.Domain, CAFailureMessage(rec, caaIdentity, *st.CAFailure))
		if st.FailedIssuanceAttempts > 0 {
			msg += fmt.Sprintf(" (%d failed issuance attempts; tried again after 1h, 2h, 4h…)", st.FailedIssuanceAttempts)
		}
	case st.Ready != "True" && st.IssuingFailure != "":
		msg = fmt.Sprintf("Certificate for %s could not be issued: cert-manager reports: %s", rec.Domain, st.IssuingFailure)
		if st.FailedIssuanceAttempts > 0 {
			msg += fmt.Sprintf(" (%d failed issuance attempts; cert-manager retries after 1h, 2h, 4h…)", st.FailedIssuanceAttempts)
		}
	case st.Ready != "True" && st.FailedIssuanceAttempts > 0 && lastCAFailure(rec) != nil:
		// cert-manager is trying again and has dropped the failed attempt's
		// Challenge: the CA's reason last read stays what the tenant sees.
		msg = fmt.Sprintf("Certificate for %s is being requested again after %d failed issuance attempts; the last one failed: %s",
			rec.Domain, st.FailedIssuanceAttempts, CAFailureMessage(rec, caaIdentity, *lastCAFailure(rec)))
	case st.Ready == "False" && st.Reason != "":
		msg = fmt.Sprintf("Certificate for %s not issued yet: cert-manager reports %s: %s", rec.Domain, st.Reason, st.Message)
		if st.FailedIssuanceAttempts > 0 {
			msg += fmt.Sprintf(" (%d failed issuance attempts; cert-manager retries after 1h, 2h, 4h…)", st.FailedIssuanceAttempts)
		}
	case st.Ready == "True":
		msg = fmt.Sprintf("Certificate for %s issued; waiting for the gateway.", rec.Domain)
	default:
		msg = fmt.Sprintf("Waiting for the certificate for %s to be issued.", rec.Domain)
		if st.Message != "" {
			msg += " cert-manager: " + st.Message
		}
	}
	if waited >= deadline {
		return certDecision{To: domain.StatusCertificateFailed,
			Message: fmt.Sprintf("%s Gave up after %s; fix the cause, then retry.", msg, formatDuration(deadline))}
	}
	return certDecision{To: domain.StatusCertificateIssuing, Message: msg, Snooze: min(wait, max(deadline-waited, time.Second))}
}

// AwaitCertificateWorker waits for the Certificate to become Ready, keeping
// cert-manager's reason visible in status_message meanwhile.
type AwaitCertificateWorker struct {
	river.WorkerDefaults[AwaitCertificateArgs]
	deps *Deps
}

// NextRetry: reading the Certificate failed (API server down); try again soon.
func (w *AwaitCertificateWorker) NextRetry(job *river.Job[AwaitCertificateArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

// Work reads the Certificate once and decides.
func (w *AwaitCertificateWorker) Work(ctx context.Context, job *river.Job[AwaitCertificateArgs]) error {
	rec, logger, current, err := load(ctx, w.deps, job.Args.DomainArgs, domain.KindAwaitCertificate, domain.StatusCertificateIssuing)
	if err != nil || !current {
		return err
	}
	st, err := w.deps.Kube.CertificateState(ctx, refOf(rec))
	if err != nil {
		return fmt.Errorf("read certificate of %s: %w", rec.Domain, err)
	}
	decision := decideCertificate(st, rec, w.deps.now(), w.deps.Config.CertDeadline, w.deps.Config.CAAIdentity)
	if decision.Reapply {
		logger.Warn("certificate or routes missing or edited by hand; applying again", "drift", st.Drift)
		// These objects were applied by this stage's generation: whatever
		// changed them since is taken back.
		if _, err := w.deps.Kube.Reclaim(ctx, refOf(rec)); err != nil {
			return fmt.Errorf("re-apply %s: %w", rec.Domain, err)
		}
	}
	if decision.To == domain.StatusDeploying {
		if decision, err = w.serveCertificate(ctx, rec, logger, decision); err != nil {
			return err
		}
	}
	_, moved, err := move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
		From: domain.StatusCertificateIssuing, To: decision.To, Message: decision.Message,
		Details: certDetails(st)})
	if err != nil || !moved {
		return err
	}
	if decision.Snooze > 0 {
		return river.JobSnooze(decision.Snooze)
	}
	w.deps.Observer.StageFinished(domain.KindAwaitCertificate, string(decision.To), w.deps.now().Sub(rec.StatusChangedAt))
	return nil
}

// certDetails is what the event history keeps of a check for operators:
// the Ready condition and, after a failed issuance, cert-manager's and the
// CA's own words.
func certDetails(st CertState) map[string]any {
	details := map[string]any{"certificate_ready": st.Ready, "certificate_reason": st.Reason}
	if st.IssuingFailure != "" {
		details["issuing_failure"] = st.IssuingFailure
	}
	if f := st.CAFailure; f != nil {
		details[caFailureKey] = f
	}
	if st.Ready == "True" {
		details[caFailureKey] = nil
	}
	return details
}

// caFailureKey is where verification_details keeps the CA's reason for the
// last failed issuance, so it is still shown while cert-manager tries again.
const caFailureKey = "last_ca_failure"

// lastCAFailure is the CA's reason kept in rec's verification_details; nil
// when none is kept.
func lastCAFailure(rec domain.Record) *CAFailure {
	var details struct {
		Last *CAFailure `json:"last_ca_failure"`
	}
	if json.Unmarshal(rec.VerificationDetails, &details) != nil || details.Last == nil || details.Last.Detail == "" {
		return nil
	}
	return details.Last
}

// serveCertificate hands the issued certificate to the gateway before the
// domain moves on to its HTTPS check. A Secret cert-manager has not stored
// yet is waited for; an error retrying cannot fix fails the domain.
func (w *AwaitCertificateWorker) serveCertificate(ctx context.Context, rec domain.Record, logger *slog.Logger, decision certDecision) (certDecision, error) {
	stored, err := w.deps.Kube.ServeCertificate(ctx, refOf(rec))
	switch {
	case errors.Is(err, ErrPermanent):
		logger.Warn("could not hand the certificate to the gateway", "error", err)
		if rerr := w.deps.Store.RecordDetail(ctx, rec, map[string]any{"stage": domain.KindAwaitCertificate, "error": err.Error()}); rerr != nil {
			logger.Warn("could not record the error in the domain's history", "error", rerr)
		}
		return certDecision{To: domain.StatusCertificateFailed,
			Message: fmt.Sprintf("The certificate for %s was issued, but could not be handed to the gateway. %s", rec.Domain, tenantKubeReason(err))}, nil
	case err != nil:
		return decision, fmt.Errorf("hand the certificate of %s to the gateway: %w", rec.Domain, err)
	case !stored:
		return certDecision{To: domain.StatusCertificateIssuing, Snooze: certRecheckMin,
			Message: fmt.Sprintf("Certificate for %s issued; waiting for cert-manager to store it.", rec.Domain)}, nil
	}
	return decision, nil
}
