package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// KindHeal is the job that applies an active domain's objects again after
// they were edited or deleted by hand.
const KindHeal = "heal"

// How an object was changed by hand (HealArgs.Change, ObjectDrift.Change).
const (
	ChangeEdited  = "edited"
	ChangeDeleted = "deleted"
)

// HealArgs names one hand change the watch saw. Revision (the object's UID
// and generation after an edit, its UID for a deletion) is part of River's
// unique key, so a burst of events about the same change makes one job,
// while the next edit of the same object makes another.
type HealArgs struct {
	DomainID string `json:"domain_id"`
	Object   string `json:"object"` // Certificate, Gateway or VirtualService
	Change   string `json:"change"` // edited or deleted
	Revision string `json:"revision"`
}

func (HealArgs) Kind() string { return KindHeal }

// InsertOpts: the kubernetes queue, one job per change (River's default
// unique states include completed, so a change healed once is not healed
// again when the watch re-lists).
func (HealArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: domain.QueueKubernetes, MaxAttempts: 12, Priority: 1,
		UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// ObjectDrift is how one of a domain's objects differs from what the worker
// renders: deleted, or edited in the fields listed.
type ObjectDrift struct {
	Kind, Namespace, Name string
	Change                string
	Fields                []string
	// Managers are the field managers that edited it (kubectl-edit, ...).
	Managers []string
}

// HistoryEvent is a row for the domain's event history.
type HistoryEvent struct {
	Message string
	Details map[string]any
}

// HealStore is what the heal job needs of the database beyond Store.
type HealStore interface {
	// HoldActive runs fn while the domain's row is held in status active
	// at generation (no status change, such as a disable, commits
	// meanwhile), and writes the event fn returns, if any, to the history
	// in the same transaction. held is false, and fn is not run, when the
	// row is not active at that generation.
	HoldActive(ctx context.Context, id string, generation int64, fn func(ctx context.Context) (*HistoryEvent, error)) (held bool, err error)
}

// healDecision is what the heal job does about the drift it read.
type healDecision struct {
	Heal    bool
	Event   HistoryEvent
	Healed  []ObjectDrift
	Message string
}

// decideHeal is the pure policy of the heal job: any drift of an active
// domain's objects is applied back, and the history says what was changed
// back and how. The message names the kinds only; object names,
// namespaces and field managers go to the details, for operators.
func decideHeal(rec domain.Record, drift []ObjectDrift, job HealArgs) healDecision {
	if len(drift) == 0 {
		return healDecision{}
	}
	var parts []string
	var objects []any
	for _, d := range drift {
		parts = append(parts, fmt.Sprintf("the %s was %s", kindWord(d.Kind), d.Change))
		obj := map[string]any{"kind": d.Kind, "namespace": d.Namespace, "name": d.Name, "change": d.Change}
		if len(d.Fields) > 0 {
			obj["fields"] = d.Fields
		}
		if len(d.Managers) > 0 {
			obj["changed_by"] = d.Managers
		}
		objects = append(objects, obj)
	}
	msg := fmt.Sprintf("Outside the platform, %s for %s; it has been restored.", joinWords(parts), rec.Domain)
	return healDecision{Heal: true, Healed: drift, Message: msg, Event: HistoryEvent{Message: msg, Details: map[string]any{
		"event": "healed", "objects": objects,
		"seen": map[string]any{"object": job.Object, "change": job.Change, "revision": job.Revision},
	}}}
}

func kindWord(kind string) string {
	switch kind {
	case "Certificate":
		return "certificate"
	case "Gateway":
		return "gateway"
	case "VirtualService":
		return "routing (VirtualService)"
	}
	return kind
}

func joinWords(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// HealWorker applies an active domain's objects again when one was edited
// or deleted by hand.
type HealWorker struct {
	river.WorkerDefaults[HealArgs]
	deps *Deps
}

// NextRetry: the API server or the database was unavailable; soon again.
func (w *HealWorker) NextRetry(job *river.Job[HealArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

// Work reads the domain's objects while the row is held active, applies
// them again if any differs from what the worker renders, and records what
// was changed back. A change the watch saw that is no longer there (an
// edit undone, one this worker's own apply made) changes nothing.
func (w *HealWorker) Work(ctx context.Context, job *river.Job[HealArgs]) error {
	args := job.Args
	if _, err := domain.ParseDomainID(args.DomainID); err != nil {
		return river.JobCancel(fmt.Errorf("%w: domain_id %q is not a UUID", ErrBadArgs, args.DomainID))
	}
	logger := w.deps.Logger.With("job_kind", KindHeal, "portal_domain_id", args.DomainID, "object", args.Object, "change", args.Change)
	rec, err := w.deps.Store.GetDomain(ctx, args.DomainID)
	if errors.Is(err, ErrNotFound) {
		logger.Info("domain row is gone; nothing to heal")
		return nil
	}
	if err != nil {
		return err
	}
	logger = logger.With("tenant_id", string(rec.Tenant), "domain", rec.Domain, "generation", rec.Generation)
	if rec.Status != domain.StatusActive {
		// The pipeline owns the objects until the domain is active again
		// (await_certificate re-applies what it finds changed).
		logger.Info("domain is not active; the pipeline owns its objects", "status", rec.Status)
		return nil
	}
	var decision healDecision
	held, err := w.deps.Heals.HoldActive(ctx, rec.ID, rec.Generation, func(ctx context.Context) (*HistoryEvent, error) {
		drift, err := w.deps.Kube.Drift(ctx, refOf(rec))
		if err != nil {
			return nil, fmt.Errorf("read objects of %s: %w", rec.Domain, err)
		}
		decision = decideHeal(rec, drift, args)
		if !decision.Heal {
			return nil, nil
		}
		if _, err := w.deps.Kube.Reclaim(ctx, refOf(rec)); err != nil {
			return nil, fmt.Errorf("re-apply objects of %s: %w", rec.Domain, err)
		}
		return &decision.Event, nil
	})
	switch {
	case errors.Is(err, ErrPermanent) && !errors.Is(err, ErrKubeNotOurs):
		// The domain cannot be rendered or the cluster refuses the
		// objects: no retry helps, and the log says why.
		logger.Error("cannot heal this domain's objects", "error", err)
		return river.JobCancel(err)
	case errors.Is(err, ErrKubeNotOurs):
		// Someone replaced the object with one that is not this
		// installation's: it is left alone, and the operator told.
		logger.Warn("an object of this domain no longer carries this installation's label; left untouched", "error", err)
		return nil
	case err != nil:
		return err
	case !held:
		logger.Info("domain moved on from active before the heal; the pipeline owns its objects")
		return nil
	case !decision.Heal:
		logger.Debug("objects match what the worker applies; nothing to heal")
		return nil
	}
	for _, d := range decision.Healed {
		logger.Warn("object changed by hand has been applied again", "kind", d.Kind, "namespace", d.Namespace, "name", d.Name,
			"how", d.Change, "fields", d.Fields, "changed_by", d.Managers)
		if w.deps.Healed != nil {
			w.deps.Healed(d.Kind, d.Change)
		}
	}
	return nil
}
