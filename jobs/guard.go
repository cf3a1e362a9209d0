package jobs

import (
	"context"
	"log/slog"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// argsGuard validates a stage job's raw args before River decodes them.
// River retries a job whose args do not decode, with growing back-off, for
// as many attempts as the stage allows (days for 25 attempts); args that
// are not what the trigger writes never get better, so the guard cancels
// the job at once and logs why. Nothing is read or written for such a job:
// no row can be half-updated by it.
type argsGuard struct {
	river.MiddlewareDefaults
	logger *slog.Logger
}

var _ rivertype.WorkerMiddleware = (*argsGuard)(nil)

// Work cancels jobs with malformed args and runs the others.
func (g *argsGuard) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if _, err := DecodeDomainArgs(job.EncodedArgs); err != nil {
		raw := string(job.EncodedArgs)
		if len(raw) > 200 {
			raw = raw[:200] + "…"
		}
		logger := g.logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		logger.ErrorContext(ctx, "job args are malformed; cancelling the job (it was not written by the portal_domains trigger or the Go API)",
			"job_id", job.ID, "job_kind", job.Kind, "args", raw, "error", err)
		return river.JobCancel(err)
	}
	return doInner(ctx)
}

func guard(deps *Deps) []rivertype.WorkerMiddleware {
	return []rivertype.WorkerMiddleware{&argsGuard{logger: deps.Logger}}
}

// Middleware puts argsGuard in front of every stage worker.
func (w *VerifyDNSWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}

// Middleware puts argsGuard in front of every stage worker.
func (w *ApplyWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}

// Middleware puts argsGuard in front of every stage worker.
func (w *AwaitCertificateWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}

// Middleware puts argsGuard in front of every stage worker.
func (w *ProbeWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}

// Middleware puts argsGuard in front of every stage worker.
func (w *DisableWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware {
	return guard(w.deps)
}
