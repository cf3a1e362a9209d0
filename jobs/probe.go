package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

const (
	probeRecheckMin = 3 * time.Second
	probeRecheckMax = 2 * time.Minute
)

// decideProbe is the pure policy of the probe stage.
func decideProbe(res ProbeResult, rec domain.Record, now time.Time, deadline time.Duration) certDecision {
	if res.OK {
		return certDecision{To: domain.StatusActive, Message: liveMessage}
	}
	waited := now.Sub(rec.StatusChangedAt)
	msg := fmt.Sprintf("HTTPS check of %s failed: %s", rec.Domain, res.Message)
	if waited >= deadline {
		return certDecision{To: domain.StatusCertificateFailed, Message: fmt.Sprintf("%s Gave up after %s.", msg, formatDuration(deadline))}
	}
	return certDecision{To: domain.StatusDeploying, Message: msg + " Checking again shortly.",
		Snooze: min(backoff(waited, probeRecheckMin, probeRecheckMax), max(deadline-waited, time.Second))}
}

// ProbeWorker makes the HTTPS request that proves the domain is live before
// it is marked active.
type ProbeWorker struct {
	river.WorkerDefaults[ProbeArgs]
	deps *Deps
}

// Work probes once and decides.
func (w *ProbeWorker) Work(ctx context.Context, job *river.Job[ProbeArgs]) error {
	rec, logger, current, err := load(ctx, w.deps, job.Args.DomainArgs, domain.KindProbe, domain.StatusDeploying)
	if err != nil || !current {
		return err
	}
	res := w.deps.Prober.Probe(ctx, refOf(rec))
	decision := decideProbe(res, rec, w.deps.now(), w.deps.Config.CertDeadline)
	_, moved, err := move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
		From: domain.StatusDeploying, To: decision.To, Message: decision.Message})
	if err != nil || !moved {
		return err
	}
	if decision.Snooze > 0 {
		return river.JobSnooze(decision.Snooze)
	}
	w.deps.Observer.StageFinished(domain.KindProbe, string(decision.To), w.deps.now().Sub(rec.StatusChangedAt))
	return nil
}
