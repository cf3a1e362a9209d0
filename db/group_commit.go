package db

import (
	"context"
	"fmt"

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
// other. Grouping pays one flush and one notify lock per group, and keeps
// every commit flushed: a transition the caller was told about survives a
// Postgres crash, and nothing is reported before its commit (an
// asynchronous commit would be faster and would lose both).
//
// A group is one UPDATE statement (groupTransitionSQL): each change keeps
// its own guard (status and generation), and the statement-level triggers
// (migration 009) write the group's history rows and next jobs set-based,
// so a group commits all of its changes or none. When the statement fails
// (a trigger or constraint refusal, a deadlock), nothing of the group is
// written and each of its changes is retried alone, so one bad change
// cannot fail another.
// A change whose row moved on is not an error for the group: it matches no
// row, writes nothing and its caller gets ErrStale, as with Transition.
//
// The batching itself is batcher's: a group holds at most one change per
// domain, so every change has its own row.
type TransitionGroup struct {
	pool    *pgxpool.Pool
	batches *batcher[encodedChange, recordResult]
}

// NewTransitionGroup commits at most maxGroup changes per statement and
// runs at most concurrentCommits statements at once (each holds a pool
// connection while it runs).
func NewTransitionGroup(pool *pgxpool.Pool, maxGroup, concurrentCommits int) *TransitionGroup {
	g := &TransitionGroup{pool: pool}
	g.batches = newBatcher(maxGroup, concurrentCommits,
		func(e encodedChange) string { return e.id }, g.commit)
	return g
}

// Transition is Transition's guarded move, committed with whatever other
// changes are waiting. It returns once the change is committed (or has
// failed); ErrStale when the row moved on.
func (g *TransitionGroup) Transition(ctx context.Context, c domain.Change) (domain.Record, error) {
	enc, err := encodeChange(c)
	if err != nil {
		return domain.Record{}, err
	}
	r, err := g.batches.do(ctx, enc)
	if err != nil {
		return domain.Record{}, err
	}
	return r.rec, r.err
}

// commit writes a group: alone when it is one change, else as one
// statement, and each change alone when that statement fails.
func (g *TransitionGroup) commit(ctx context.Context, group []encodedChange) []recordResult {
	if len(group) > 1 {
		results, err := g.commitTogether(ctx, group)
		if err == nil {
			return results
		}
		// The statement failed (a refusal, a deadlock) or the connection
		// broke: nothing of the group is known to be written, and every
		// change gets its own statement and its own outcome. A change the
		// failed attempt did write (a connection lost during the commit)
		// comes back as ErrStale, which its caller already treats as
		// "done by someone else".
	}
	results := make([]recordResult, len(group))
	for i, e := range group {
		rec, err := e.write(ctx, g.pool)
		results[i] = recordResult{rec: rec, err: err}
	}
	return results
}

// groupTransitionSQL is transitionSQL for many changes: one row of the
// unnest per change, matched to its domain's row under the same guard.
const groupTransitionSQL = `UPDATE portal_domains SET
		status = c.change_to::portal_domain_status,
		status_message = c.change_message,
		last_checked_at = now(),
		verification_details = verification_details || c.change_details::jsonb,
		certificate_secret_name = CASE WHEN c.change_clear_secret THEN NULL
			ELSE coalesce(nullif(c.change_secret, ''), certificate_secret_name) END,
		last_synced_resource_version = coalesce(nullif(c.change_resource_version, ''), last_synced_resource_version)
	FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $9::text[])
		AS c(change_id, change_generation, change_from, change_to, change_message, change_details,
		     change_secret, change_clear_secret, change_resource_version)
	WHERE id = c.change_id::uuid AND status = c.change_from::portal_domain_status
	  AND pipeline_generation = c.change_generation
	RETURNING ` + recordColumns

// commitTogether writes the group in one statement (its own transaction).
// A change whose row it did not return moved on: ErrStale. Any error fails
// the whole group.
func (g *TransitionGroup) commitTogether(ctx context.Context, group []encodedChange) ([]recordResult, error) {
	ids := make([]string, len(group))
	generations := make([]int64, len(group))
	from, to, messages, details, secrets, resourceVersions := make([]string, len(group)), make([]string, len(group)),
		make([]string, len(group)), make([]string, len(group)), make([]string, len(group)), make([]string, len(group))
	clearSecrets := make([]bool, len(group))
	for i, a := range group {
		ids[i], generations[i], from[i], to[i], messages[i] = a.id, a.generation, a.from, a.to, a.message
		details[i], secrets[i], clearSecrets[i], resourceVersions[i] = a.details, a.secret, a.clearSecret, a.resourceVersion
	}
	rows, err := g.pool.Query(ctx, groupTransitionSQL, ids, generations, from, to, messages, details, secrets, clearSecrets, resourceVersions)
	if err != nil {
		return nil, fmt.Errorf("group commit of %d transitions: %w", len(group), classify(err))
	}
	written, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.Record, error) { return scanRecord(row) })
	if err != nil {
		return nil, fmt.Errorf("group commit of %d transitions: %w", len(group), classify(err))
	}
	byID := make(map[string]domain.Record, len(written))
	for _, rec := range written {
		byID[rec.ID] = rec
	}
	return matchByID(group, byID, func(e encodedChange) string { return e.id }, func(e encodedChange) error {
		return e.writeError(ErrNotFound)
	}), nil
}
