package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portal-domains/portal-domains/domain"
)

// Sentinel errors at the package edge.
var (
	// ErrNotFound: no such domain (or not the given tenant's).
	ErrNotFound = errors.New("portal domain not found")
	// ErrStale: the row no longer has the status and generation the caller
	// expected; another worker or a restart got there first.
	ErrStale = errors.New("portal domain changed underneath")
	// ErrConflict: the domain belongs to another tenant.
	ErrConflict = errors.New("domain already registered")
	// ErrRejected: the database refused the write (trigger or constraint).
	ErrRejected = errors.New("rejected by the database")
	// ErrWrongState: the operation does not apply to the row's status.
	ErrWrongState = errors.New("not possible in the current status")
)

// recordColumns reads every row AlgaPSA's schema allows: its created_at and
// updated_at may be NULL, and then read as the newest time known of the row.
const recordColumns = `id::text, tenant::text, domain, canonical_host, status::text, coalesce(status_message, ''),
	last_checked_at, verification_method::text, verification_details, coalesce(certificate_secret_name, ''),
	coalesce(last_synced_resource_version, ''), pipeline_generation, status_changed_at,
	coalesce(created_at, status_changed_at), coalesce(updated_at, created_at, status_changed_at)`

// queryRecords runs sql, which selects recordColumns, and reads every row;
// what names the query in errors.
func queryRecords(ctx context.Context, q Querier, what, sql string, args ...any) ([]domain.Record, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []domain.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func scanRecord(row pgx.Row) (domain.Record, error) {
	var r domain.Record
	var tenant, status string
	var details []byte
	err := row.Scan(&r.ID, &tenant, &r.Domain, &r.CanonicalHost, &status, &r.StatusMessage,
		&r.LastCheckedAt, &r.VerificationMethod, &details, &r.CertificateSecretName,
		&r.LastSyncedResourceVersion, &r.Generation, &r.StatusChangedAt, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read portal domain: %w", err)
	}
	r.Tenant = domain.TenantID(tenant)
	r.Status = domain.Status(status)
	r.VerificationDetails = json.RawMessage(details)
	return r, nil
}

// GetDomain reads one row by id.
func GetDomain(ctx context.Context, q Querier, id string) (domain.Record, error) {
	if _, err := domain.ParseDomainID(id); err != nil {
		return domain.Record{}, err
	}
	return scanRecord(q.QueryRow(ctx, `SELECT `+recordColumns+` FROM portal_domains WHERE id = $1`, id))
}

// GetDomainByTenant reads a tenant's row (there is at most one).
func GetDomainByTenant(ctx context.Context, q Querier, tenant domain.TenantID) (domain.Record, error) {
	return scanRecord(q.QueryRow(ctx, `SELECT `+recordColumns+` FROM portal_domains WHERE tenant = $1`, string(tenant)))
}

// GetDomainByName reads a row by host name (case-insensitive).
func GetDomainByName(ctx context.Context, q Querier, name string) (domain.Record, error) {
	normalized, err := domain.NormalizeHostname(name)
	if err != nil {
		return domain.Record{}, err
	}
	return scanRecord(q.QueryRow(ctx, `SELECT `+recordColumns+` FROM portal_domains WHERE lower(domain) = $1`, normalized))
}

// ListFilter narrows ListDomains.
type ListFilter struct {
	Tenant domain.TenantID
	Status domain.Status
	Limit  int
}

// ListDomains returns rows ordered by creation.
func ListDomains(ctx context.Context, q Querier, f ListFilter) ([]domain.Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	return queryRecords(ctx, q, "list portal domains", `SELECT `+recordColumns+` FROM portal_domains
		WHERE ($1 = '' OR tenant::text = $1) AND ($2 = '' OR status::text = $2)
		ORDER BY created_at, id LIMIT $3`, string(f.Tenant), string(f.Status), limit)
}

// Event is one portal_domain_events row.
type Event struct {
	ID         int64           `json:"id"`
	DomainID   string          `json:"domain_id"`
	Generation int64           `json:"generation"`
	From       domain.Status   `json:"from_status,omitempty"`
	To         domain.Status   `json:"to_status"`
	Message    string          `json:"message"`
	Details    json.RawMessage `json:"details"`
	CreatedAt  string          `json:"created_at"`
}

// ListEvents returns a domain's history, oldest first.
func ListEvents(ctx context.Context, q Querier, domainID string) ([]Event, error) {
	rows, err := q.Query(ctx, `SELECT id, domain_id::text, generation, coalesce(from_status::text, ''), to_status::text,
		coalesce(message, ''), details, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
		FROM portal_domain_events WHERE domain_id = $1 ORDER BY id`, domainID)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		var from, to string
		err := row.Scan(&e.ID, &e.DomainID, &e.Generation, &from, &to, &e.Message, &e.Details, &e.CreatedAt)
		e.From, e.To = domain.Status(from), domain.Status(to)
		return e, err
	})
}

// Transition applies a worker's guarded status move: it writes only while
// the row still has c.From and c.Generation, and returns ErrStale otherwise.
// The trigger records the event and enqueues the next stage's job in the
// same transaction.
//
// Its commit waits for the WAL flush on purpose. Committing without it
// (synchronous_commit off) is faster, because the trigger's pg_notify
// holds Postgres's notify lock through each commit; but
// when Postgres crashed right after such a commit, the write was lost while
// the job, whose completion could not be recorded either, stayed "running"
// until River's rescuer (PORTAL_DOMAIN_RESCUE_AFTER) ran it again: a domain
// stalled for minutes (the reliability test's Postgres crash caught it).
func Transition(ctx context.Context, q Querier, c domain.Change) (domain.Record, error) {
	enc, err := encodeChange(c)
	if err != nil {
		return domain.Record{}, err
	}
	return enc.write(ctx, q)
}

// transitionSQL is the guarded UPDATE of Transition (and of a
// TransitionGroup change committed alone).
const transitionSQL = `UPDATE portal_domains SET
		status = $4::portal_domain_status,
		status_message = $5,
		last_checked_at = now(),
		verification_details = verification_details || $6::jsonb,
		certificate_secret_name = CASE WHEN $8 THEN NULL ELSE coalesce(nullif($7, ''), certificate_secret_name) END,
		last_synced_resource_version = coalesce(nullif($9, ''), last_synced_resource_version)
	WHERE id = $1 AND status = $3::portal_domain_status AND pipeline_generation = $2
	RETURNING ` + recordColumns

// encodedChange is a change checked against domain.Transitions, with its
// parameters encoded for transitionSQL or groupTransitionSQL.
type encodedChange struct {
	id, from, to, message, details, secret, resourceVersion string
	generation                                              int64
	clearSecret                                             bool
}

func encodeChange(c domain.Change) (encodedChange, error) {
	if _, err := domain.CheckTransition(c.From, c.To); err != nil {
		return encodedChange{}, err
	}
	details := c.Details
	if details == nil {
		details = map[string]any{}
	}
	detailsJSON, err := json.Marshal(details)
	if err != nil {
		return encodedChange{}, fmt.Errorf("encode verification details: %w", err)
	}
	// The canonical form, so a group matches the change to the row it
	// returns; an id that is not a UUID is left for Postgres to refuse.
	id := c.DomainID
	if canonical, err := domain.ParseDomainID(id); err == nil {
		id = canonical
	}
	return encodedChange{id: id, generation: c.Generation, from: string(c.From), to: string(c.To),
		message: domain.TruncateMessage(c.Message), details: string(detailsJSON), secret: c.CertificateSecretName,
		clearSecret: c.ClearSecretName, resourceVersion: c.ResourceVersion}, nil
}

// write runs transitionSQL for the change alone.
func (e encodedChange) write(ctx context.Context, q Querier) (domain.Record, error) {
	rec, err := scanRecord(q.QueryRow(ctx, transitionSQL,
		e.id, e.generation, e.from, e.to, e.message, e.details, e.secret, e.clearSecret, e.resourceVersion))
	return rec, e.writeError(err)
}

// writeError turns "no row matched the guard" into ErrStale.
func (e encodedChange) writeError(err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s is no longer %s at generation %d", ErrStale, e.id, e.from, e.generation)
	}
	return classify(err)
}

// classify turns the trigger's and constraints' refusals into ErrRejected
// (carrying the database's own message) and unique violations into
// ErrConflict.
func classify(err error) error {
	if err == nil {
		return nil
	}
	code, msg, ok := pgErrorMessage(err)
	if !ok {
		return err
	}
	switch code {
	case "23505": // unique_violation
		return fmt.Errorf("%w: %s", ErrConflict, msg)
	case "23514", "23502", "23503", "22P02": // check, not null, foreign key, bad text
		return fmt.Errorf("%w: %s", ErrRejected, msg)
	}
	return err
}

// Wake is what WakeStageJob found.
type Wake string

const (
	// Woken: the stage job was waiting and runs now, or is due and has
	// not started, so it will see the change.
	Woken Wake = "woken"
	// WakeBusy: the stage job is running or about to retry; it may have
	// read the outside state before the change, so wake again shortly.
	WakeBusy Wake = "busy"
	// WakeNone: the domain's status has no stage job (active, failed), or
	// the row is gone: nothing to do.
	WakeNone Wake = "none"
)

// WakeStageJob makes the domain's current stage job run now if it is
// waiting (snoozed, or held back by its stage's FirstRunDelay), so an
// outside event (the Certificate turning Ready) is acted on in milliseconds
// instead of at the next scheduled check.
func WakeStageJob(ctx context.Context, q Querier, domainID string) (Wake, error) {
	var found string
	if err := q.QueryRow(ctx, `SELECT portal_domains_wake($1)`, domainID).Scan(&found); err != nil {
		return WakeNone, fmt.Errorf("wake stage job of %s: %w", domainID, err)
	}
	return Wake(found), nil
}

// DomainsKeepingObjects returns which of ids still own their Kubernetes
// objects: the row exists and is not disabled for longer than disabledFor.
func DomainsKeepingObjects(ctx context.Context, q Querier, ids []string, disabledFor time.Duration) (map[string]bool, error) {
	keep := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return keep, nil
	}
	rows, err := q.Query(ctx, `SELECT id::text FROM portal_domains
		WHERE id::text = ANY($1) AND NOT (status = 'disabled' AND status_changed_at < now() - $2::interval)`,
		ids, fmt.Sprintf("%d milliseconds", disabledFor.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("find domains keeping objects: %w", err)
	}
	kept, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find domains keeping objects: %w", err)
	}
	for _, id := range kept {
		keep[id] = true
	}
	return keep, nil
}

// DeleteDisabled deletes a row that is still disabled in the given
// generation (the disable job has removed its objects). False when the row
// moved on or is gone. The after-delete trigger records the deletion in
// portal_domain_events.
func DeleteDisabled(ctx context.Context, q Querier, id string, generation int64) (bool, error) {
	tag, err := q.Exec(ctx, `DELETE FROM portal_domains WHERE id = $1 AND status = 'disabled' AND pipeline_generation = $2`, id, generation)
	if err != nil {
		return false, fmt.Errorf("delete disabled portal domain %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RecordDetail adds a history row for operators to portal_domain_events:
// the domain's current status, no message, and detail (an API server's own
// error) in details. The tenant-facing status_message never holds it.
func RecordDetail(ctx context.Context, q Querier, rec domain.Record, detail map[string]any) error {
	_, err := q.Exec(ctx, `INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
		VALUES ($1, $2, $3, $4::text::portal_domain_status, $4::text::portal_domain_status, NULL, $5)`,
		rec.ID, string(rec.Tenant), rec.Generation, string(rec.Status), detail)
	if err != nil {
		return fmt.Errorf("record detail for portal domain %s: %w", rec.ID, err)
	}
	return nil
}
