package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/portal-domains/portal-domains/domain"
)

// Git record job: kind, queue and the two changes it records.
const (
	KindGitRecord = "git_record"
	QueueGit      = "git"
	ChangeApply   = "apply"
	ChangeRemove  = "remove"
)

// GitRecordArgs name one manifest change. The trigger
// (portal_domains_enqueue_git_records) writes them, keys sorted, when a
// domain's objects were applied or removed; they carry what a removal needs,
// since the row is deleted right after.
type GitRecordArgs struct {
	Change     string `json:"change"`
	Domain     string `json:"domain"`
	DomainID   string `json:"domain_id"`
	Generation int64  `json:"generation"`
	Slug       string `json:"slug"`
	Tenant     string `json:"tenant"`
}

func (GitRecordArgs) Kind() string { return KindGitRecord }

// InsertOpts match the trigger's.
func (GitRecordArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueGit, MaxAttempts: 100, Priority: 1, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// GitChange is what GitRecorder commits: the domain's manifests (JSON
// documents) or, with none, their removal.
type GitChange struct {
	Key        string
	Tenant     string
	DomainID   string
	Domain     string
	Slug       string
	Status     domain.Status
	Generation int64
	Documents  [][]byte
}

// GitRecorder commits and pushes one change, once: a change already on the
// branch (by its key) is not committed again. The outcome is "committed",
// "recorded" or "unchanged".
type GitRecorder interface {
	Record(ctx context.Context, c GitChange) (outcome string, err error)
}

// ChangeReviewer proposes a change on a branch of its own (once) and says
// whether it was merged into the configured branch.
type ChangeReviewer interface {
	Propose(ctx context.Context, c GitChange) (branch string, merged bool, err error)
}

// ManifestRenderer renders a domain's objects as the JSON documents the
// snapshots hold (no API request).
type ManifestRenderer interface {
	Manifests(d DomainRef) ([][]byte, error)
}

// TenantDomains finds the domain row of a tenant (one per tenant);
// ErrNotFound when there is none.
type TenantDomains interface {
	GetDomainByTenant(ctx context.Context, tenant string) (domain.Record, error)
}

// gitDecision is what a git_record job does.
type gitDecision struct {
	write  *domain.Record // render and write this row's manifests
	remove bool           // remove the file
	skip   string         // why nothing is recorded
}

// decideGitRecord: record the change unless a later one superseded it. Jobs
// of one domain can run out of order (one waits out a failed push while the
// next is due), so each records only what is still true: an apply whose row
// is gone or in a later generation is left to the later change; a removal
// is left out when the tenant's row has objects applied again since.
func decideGitRecord(args GitRecordArgs, byID *domain.Record, byTenant *domain.Record) gitDecision {
	switch args.Change {
	case ChangeApply:
		if byID == nil {
			return gitDecision{skip: "the domain row is gone; its removal is recorded by its own job"}
		}
		if byID.Generation != args.Generation || byID.Status == domain.StatusDisabled {
			return gitDecision{skip: fmt.Sprintf("superseded: the domain is at generation %d, %s", byID.Generation, byID.Status)}
		}
		return gitDecision{write: byID}
	case ChangeRemove:
		if byTenant != nil && byTenant.Status != domain.StatusDisabled && byTenant.CertificateSecretName != "" &&
			domain.CanonicalPrefix(byTenant.CanonicalHost) == args.Slug {
			return gitDecision{skip: "superseded: the tenant's domain " + byTenant.Domain + " has its objects applied again"}
		}
		return gitDecision{remove: true}
	}
	return gitDecision{skip: "unknown change " + args.Change}
}

// GitRecordWorker commits a domain's manifest change to the configured
// repository. It runs on the git queue, one job at a time, so commits to the
// repository are made in turn; an unreachable remote is retried with
// back-off for hours while the pipeline goes on without it.
type GitRecordWorker struct {
	river.WorkerDefaults[GitRecordArgs]
	deps *Deps
}

// Middleware cancels jobs whose args are not what the trigger writes.
func (w *GitRecordWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}

// NextRetry backs off 2^attempt seconds, at most 5 minutes.
func (w *GitRecordWorker) NextRetry(job *river.Job[GitRecordArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

// Work records the change.
func (w *GitRecordWorker) Work(ctx context.Context, job *river.Job[GitRecordArgs]) error {
	begun := w.deps.now()
	a := job.Args
	logger := w.deps.Logger.With("job_kind", KindGitRecord, "portal_domain_id", a.DomainID, "tenant_id", a.Tenant,
		"domain", a.Domain, "generation", a.Generation, "change", a.Change)
	var byID, byTenant *domain.Record
	if rec, err := w.deps.Store.GetDomain(ctx, a.DomainID); err == nil {
		byID = &rec
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if a.Change == ChangeRemove {
		if rec, err := w.deps.Tenants.GetDomainByTenant(ctx, a.Tenant); err == nil {
			byTenant = &rec
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	d := decideGitRecord(a, byID, byTenant)
	if d.skip != "" {
		logger.Info("manifest change not recorded", "reason", d.skip)
		w.deps.Observer.StageFinished(KindGitRecord, "superseded", w.deps.now().Sub(begun))
		return nil
	}
	c := GitChange{Key: fmt.Sprintf("%s/%d/%s", a.DomainID, a.Generation, a.Change), Tenant: a.Tenant,
		DomainID: a.DomainID, Domain: a.Domain, Slug: a.Slug, Generation: a.Generation, Status: domain.StatusDisabled}
	if d.write != nil {
		docs, err := w.deps.Manifests.Manifests(refOf(*d.write))
		if err != nil {
			return river.JobCancel(fmt.Errorf("render the manifests of %s: %w", a.Domain, err))
		}
		c.Documents, c.Status = docs, domain.StatusCertificateIssuing
	}
	outcome, err := w.deps.Git.Record(ctx, c)
	if err != nil {
		logger.Warn("recording the manifest change failed; retrying", "error", err, "attempt", job.Attempt)
		return fmt.Errorf("record %s of %s: %w", a.Change, a.Domain, err)
	}
	logger.Info("manifest change recorded", "outcome", outcome)
	w.deps.Observer.StageFinished(KindGitRecord, outcome, w.deps.now().Sub(begun))
	return nil
}

// awaitReview proposes the apply of rec for review and reports whether the
// apply may go ahead. While the branch is not merged the tenant is told so
// and the job snoozes; a repository it cannot reach is waited out the same
// way, since no retry budget should run out on a review.
func (w *ApplyWorker) awaitReview(ctx context.Context, rec domain.Record, logger *slog.Logger) (bool, error) {
	docs, err := w.deps.Manifests.Manifests(refOf(rec))
	if err != nil {
		return false, fmt.Errorf("%w: render the manifests of %s: %w", ErrPermanent, rec.Domain, err)
	}
	c := GitChange{Key: fmt.Sprintf("%s/%d/%s", rec.ID, rec.Generation, ChangeApply), Tenant: string(rec.Tenant),
		DomainID: rec.ID, Domain: rec.Domain, Slug: domain.CanonicalPrefix(rec.CanonicalHost),
		Status: domain.StatusPendingCertificate, Generation: rec.Generation, Documents: docs}
	branch, merged, err := w.deps.Review.Propose(ctx, c)
	wait := backoff(w.deps.now().Sub(rec.StatusChangedAt), w.deps.Config.ReviewRecheck, 5*time.Minute)
	var msg string
	switch {
	case err != nil:
		logger.Warn("could not propose the change for review; trying again", "error", err, "retry_in", wait)
		msg = fmt.Sprintf("Waiting to propose the certificate and gateway for %s for review: the manifest repository could not be reached; trying again.", rec.Domain)
	case !merged:
		logger.Info("waiting for the review branch to be merged", "branch", branch, "recheck_in", wait)
		msg = fmt.Sprintf("Waiting for review: merge branch %s of the manifest repository; the certificate for %s is requested once it is merged.", branch, rec.Domain)
	default:
		return true, nil
	}
	if rec.StatusMessage != msg {
		if _, _, err := move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
			From: domain.StatusPendingCertificate, To: domain.StatusPendingCertificate, Message: msg}); err != nil {
			return false, err
		}
	}
	return false, river.JobSnooze(wait)
}
