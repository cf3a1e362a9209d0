package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/portal-domains/portal-domains/domain"
)

// HoldActive runs fn inside a transaction that holds the domain's row with
// FOR SHARE while it is active at generation: a status change of the row
// (a disable by the app, a refresh) waits until fn is done and the
// transaction ends, so fn may restore the domain's objects without racing
// the disable job that deletes them. held is false, and fn is not run,
// when the row is gone or not active at that generation. The history row
// fn returns, if any, commits with the transaction (with to_status and
// from_status both active, and its details for operators).
func HoldActive(ctx context.Context, db Beginner, id string, generation int64, fn func(ctx context.Context) (message string, details map[string]any, err error)) (held bool, err error) {
	err = InTx(ctx, db, func(tx pgx.Tx) error {
		var tenant string
		err := tx.QueryRow(ctx, `SELECT tenant::text FROM portal_domains
			WHERE id = $1 AND status = 'active' AND pipeline_generation = $2 FOR SHARE`, id, generation).Scan(&tenant)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("hold portal domain %s active: %w", id, classify(err))
		}
		held = true
		message, details, err := fn(ctx)
		if err != nil || (message == "" && details == nil) {
			return err
		}
		if details == nil {
			details = map[string]any{}
		}
		_, err = tx.Exec(ctx, `INSERT INTO portal_domain_events (domain_id, tenant, generation, from_status, to_status, message, details)
			VALUES ($1, $2, $3, $4, $4, $5, $6)`, id, tenant, generation, string(domain.StatusActive), message, details)
		if err != nil {
			return fmt.Errorf("record history of portal domain %s: %w", id, classify(err))
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return held, nil
}
