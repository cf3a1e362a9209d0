package db

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portal-domains/portal-domains/domain"
)

// TransitionGroup commits the transitions of jobs running at the same time
// together, in one transaction, instead of one transaction each.
//
// Why: every transition fires the trigger's pg_notify, and Postgres holds
// its single notify lock from before a notifying commit until that commit's
// WAL flush is done, so flushed commits of transitions queue up behind each
// other. With 50 DNS workers the verify_dns stage spent more time waiting
// for that lock than doing work. Grouping pays one flush and one notify
// lock per group, and keeps every commit flushed: a transition the caller
// was told about survives a Postgres crash, and nothing is reported before
// its commit (which is what reverting the asynchronous commit was about).
//
// Each change keeps its own guard (status and generation) and its own
// trigger work (history row, next job) in the shared transaction, so a
// group commits all of its changes or none. When any statement of a group
// fails (a trigger refusal, a deadlock), the group is rolled back and each
// of its changes is retried alone, so one bad change cannot fail another.
// A change whose row moved on is not an error for the group: it matches no
// row, writes nothing and its caller gets ErrStale, as with Transition.
//
// There is no goroutine of its own: a caller that finds a commit slot free
// commits whatever is waiting, its own change included; the others wait for
// their result or for a slot. Rows are written in domain id order, so two
// groups lock rows in the same order.
type TransitionGroup struct {
	pool     *pgxpool.Pool
	maxGroup int
	slots    chan struct{}

	mu      sync.Mutex
	waiting []*pendingTransition
}

type pendingTransition struct {
	change domain.Change
	args   []any
	done   chan transitionResult
	// taken is set (under mu) when a group takes the change: from then on
	// its caller only waits for done.
	taken bool
}

type transitionResult struct {
	rec domain.Record
	err error
}

// groupCommitTimeout bounds one group's statements and commit; a group
// outlives the context of the caller that happens to commit it.
const groupCommitTimeout = 30 * time.Second

// NewTransitionGroup commits at most maxGroup changes per transaction and
// runs at most concurrentCommits transactions at once (each holds a pool
// connection while it runs).
func NewTransitionGroup(pool *pgxpool.Pool, maxGroup, concurrentCommits int) *TransitionGroup {
	return &TransitionGroup{
		pool:     pool,
		maxGroup: max(maxGroup, 1),
		slots:    make(chan struct{}, max(concurrentCommits, 1)),
	}
}

// Transition is Transition's guarded move, committed with whatever other
// changes are waiting. It returns once the change is committed (or has
// failed); ErrStale when the row moved on.
func (g *TransitionGroup) Transition(ctx context.Context, c domain.Change) (domain.Record, error) {
	args, err := transitionArgs(c)
	if err != nil {
		return domain.Record{}, err
	}
	p := &pendingTransition{change: c, args: args, done: make(chan transitionResult, 1)}
	g.mu.Lock()
	g.waiting = append(g.waiting, p)
	g.mu.Unlock()
	for !g.isTaken(p) {
		select {
		case r := <-p.done:
			return r.rec, r.err
		case g.slots <- struct{}{}:
			g.commitWaiting(ctx)
			<-g.slots
		case <-ctx.Done():
			if g.withdraw(p) {
				return domain.Record{}, ctx.Err()
			}
			// Already in a group being committed: its outcome is the
			// change's outcome, and it comes soon.
			r := <-p.done
			return r.rec, r.err
		}
	}
	// Another caller's group has the change; it commits soon. (Competing
	// for a slot now would only find nothing waiting, again and again.)
	r := <-p.done
	return r.rec, r.err
}

func (g *TransitionGroup) isTaken(p *pendingTransition) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return p.taken
}

// withdraw takes p out of the waiting list; false when a group took it.
func (g *TransitionGroup) withdraw(p *pendingTransition) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.waiting, p); i >= 0 {
		g.waiting = slices.Delete(g.waiting, i, i+1)
		return true
	}
	return false
}

// commitWaiting commits up to maxGroup waiting changes.
func (g *TransitionGroup) commitWaiting(ctx context.Context) {
	g.mu.Lock()
	n := min(len(g.waiting), g.maxGroup)
	group := slices.Clone(g.waiting[:n])
	for _, p := range group {
		p.taken = true
	}
	g.waiting = slices.Delete(g.waiting, 0, n)
	g.mu.Unlock()
	if len(group) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupCommitTimeout)
	defer cancel()
	if len(group) == 1 {
		g.commitAlone(ctx, group[0])
		return
	}
	slices.SortFunc(group, func(a, b *pendingTransition) int { return cmp.Compare(a.change.DomainID, b.change.DomainID) })
	results, err := g.commitTogether(ctx, group)
	if err != nil {
		// One statement failed, the connection broke, or the commit did:
		// nothing of the group is known to be written, and every change
		// gets its own transaction and its own outcome. A change that
		// the failed commit did write comes back as ErrStale, which its
		// caller already treats as "done by someone else".
		for _, p := range group {
			g.commitAlone(ctx, p)
		}
		return
	}
	for i, p := range group {
		p.done <- results[i]
	}
}

func (g *TransitionGroup) commitAlone(ctx context.Context, p *pendingTransition) {
	rec, err := scanRecord(g.pool.QueryRow(ctx, transitionSQL, p.args...))
	p.done <- transitionResult{rec: rec, err: transitionError(p.change, err)}
}

// commitTogether runs the group's UPDATEs in one transaction, sent in one
// round trip, and commits. Any error other than a stale guard fails the
// whole group.
func (g *TransitionGroup) commitTogether(ctx context.Context, group []*pendingTransition) ([]transitionResult, error) {
	results := make([]transitionResult, len(group))
	err := InTx(ctx, g.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, p := range group {
			batch.Queue(transitionSQL, p.args...)
		}
		br := tx.SendBatch(ctx, batch)
		for i, p := range group {
			rec, err := scanRecord(br.QueryRow())
			err = transitionError(p.change, err)
			if err != nil && !errors.Is(err, ErrStale) {
				_ = br.Close()
				return fmt.Errorf("group commit of %d transitions: %w", len(group), err)
			}
			results[i] = transitionResult{rec: rec, err: err}
		}
		return br.Close()
	})
	return results, err
}
