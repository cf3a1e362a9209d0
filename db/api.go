package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/portal-domains/portal-domains/domain"
)

// Result says what an API call did, for the CLI and analytics.
type Result struct {
	Record domain.Record
	// Enqueued is true when a new pipeline generation started (a job was
	// enqueued by the trigger in the caller's transaction).
	Enqueued bool
	// WasUpdate is true when Register changed an existing row.
	WasUpdate bool
}

// Register records tenant's portal domain in the caller's transaction, with
// AlgaPSA's rules: one domain per tenant; registering a different domain
// keeps the row id and starts over; registering the same domain again is a
// no-op while it is being worked and a restart after it failed or was
// disabled. The domain is validated first (ErrInvalidDomain), and a domain
// held by another tenant gives ErrConflict; nothing is written then.
func Register(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, rawDomain, canonicalSuffix string) (Result, error) {
	if canonicalSuffix == "" {
		canonicalSuffix = domain.DefaultCanonicalSuffix
	}
	name, err := domain.ValidatePortalDomain(rawDomain, canonicalSuffix)
	if err != nil {
		return Result{}, err
	}
	existing, err := GetDomainByTenant(ctx, tx, tenant)
	switch {
	case errors.Is(err, ErrNotFound):
		rec, err := scanRecord(tx.QueryRow(ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host)
			VALUES ($1, $2, $3) RETURNING `+recordColumns,
			string(tenant), name, domain.CanonicalHost(tenant, canonicalSuffix, domain.CanonicalPrefixLength)))
		if err != nil {
			return Result{}, fmt.Errorf("register %s: %w", name, classify(err))
		}
		return Result{Record: rec, Enqueued: true}, nil
	case err != nil:
		return Result{}, err
	}
	// The same domain again: nothing to do while it is being worked or live;
	// after a failure or a disable it starts over.
	if existing.Domain == name && (!existing.Status.Terminal() || existing.Status == domain.StatusActive) {
		return Result{Record: existing}, nil
	}
	rec, err := scanRecord(tx.QueryRow(ctx, `UPDATE portal_domains
		SET domain = $2, status = 'pending_dns', status_message = NULL
		WHERE id = $1 RETURNING `+recordColumns, existing.ID, name))
	if err != nil {
		return Result{}, fmt.Errorf("register %s: %w", name, classify(err))
	}
	return Result{Record: rec, Enqueued: rec.Generation != existing.Generation, WasUpdate: true}, nil
}

// Refresh is the runbook's force-reconcile: for a row that is being worked,
// it starts a new generation of the current stage now (the old job, maybe
// snoozed for minutes, becomes stale). Terminal rows are left alone
// (ErrWrongState): use Retry or Register for those.
func Refresh(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, domainID string) (Result, error) {
	rec, err := lockOwned(ctx, tx, tenant, domainID)
	if err != nil {
		return Result{}, err
	}
	if rec.Status.Terminal() {
		return Result{Record: rec}, fmt.Errorf("%w: %s is %s; refresh only restarts domains that are in progress (use retry for failed ones)",
			ErrWrongState, rec.Domain, rec.Status)
	}
	return updateLocked(ctx, tx, "refresh", domainID, `pipeline_generation = pipeline_generation + 1`, rec.ID)
}

// Retry restarts a failed domain: dns_failed → pending_dns (a fresh DNS
// deadline), certificate_failed → pending_certificate (AlgaPSA's retry).
func Retry(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, domainID string) (Result, error) {
	rec, err := lockOwned(ctx, tx, tenant, domainID)
	if err != nil {
		return Result{}, err
	}
	var to domain.Status
	switch rec.Status {
	case domain.StatusDNSFailed:
		to = domain.StatusPendingDNS
	case domain.StatusCertificateFailed:
		to = domain.StatusPendingCertificate
	default:
		return Result{Record: rec}, fmt.Errorf("%w: %s is %s; retry applies only to dns_failed and certificate_failed",
			ErrWrongState, rec.Domain, rec.Status)
	}
	return updateLocked(ctx, tx, "retry", domainID, `status = $2::portal_domain_status, status_message = NULL`, rec.ID, string(to))
}

// Disable marks the domain disabled; the trigger enqueues the disable job
// that deletes its Kubernetes objects.
func Disable(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, domainID string) (Result, error) {
	rec, err := lockOwned(ctx, tx, tenant, domainID)
	if err != nil {
		return Result{}, err
	}
	if rec.Status == domain.StatusDisabled {
		return Result{Record: rec}, nil
	}
	return updateLocked(ctx, tx, "disable", domainID, `status = 'disabled', status_message = NULL`, rec.ID)
}

// updateLocked sets the columns of set on the row lockOwned locked ($1 is
// its id, args the rest) and returns it; the trigger enqueues the job the
// change calls for.
func updateLocked(ctx context.Context, tx pgx.Tx, what, domainID, set string, args ...any) (Result, error) {
	rec, err := scanRecord(tx.QueryRow(ctx, `UPDATE portal_domains SET `+set+` WHERE id = $1 RETURNING `+recordColumns, args...))
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: %w", what, domainID, classify(err))
	}
	return Result{Record: rec, Enqueued: true}, nil
}

// lockOwned reads and row-locks a domain, checking it belongs to tenant, so
// the decision and the write see the same status.
func lockOwned(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, domainID string) (domain.Record, error) {
	id, err := domain.ParseDomainID(domainID)
	if err != nil {
		return domain.Record{}, err
	}
	rec, err := scanRecord(tx.QueryRow(ctx, `SELECT `+recordColumns+` FROM portal_domains WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return rec, err
	}
	if rec.Tenant != tenant {
		return domain.Record{}, fmt.Errorf("%w: %s does not belong to tenant %s", ErrNotFound, id, tenant)
	}
	return rec, nil
}
