package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/worker"
)

func TestWorkerRefusesASchemaThisBuildDidNotInstall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := dbtest.Migrated(t)
	_, err := s.Pool.Exec(ctx, `UPDATE portal_domain_settings SET value = 'another' WHERE key = 'fingerprint'`)
	require.NoError(t, err)
	_, err = worker.New(ctx, worker.Config{DNSServers: []string{"127.0.0.1:1"}}, worker.Options{Pool: s.Pool})
	require.ErrorIs(t, err, db.ErrSchemaMismatch)
	require.ErrorContains(t, err, "run `portal-domains migrate up` with this build first")

	empty := dbtest.New(t)
	_, err = worker.New(ctx, worker.Config{DNSServers: []string{"127.0.0.1:1"}}, worker.Options{Pool: empty.Pool})
	require.ErrorIs(t, err, db.ErrSchemaMismatch)
	require.ErrorContains(t, err, "not installed")
}

// TestWorkerUnderItsShippedGrants runs the pipeline with the worker
// connected as a role holding only deploy/postgres/worker-grants.sql: a
// domain goes active, and disabling it removes its objects and its row.
func TestWorkerUnderItsShippedGrants(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{asWorkerRole: true, reconcileInterval: 200 * time.Millisecond})
	rec := b.register(t, tenant, "portal.acme.test")
	b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
	b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })

	require.NoError(t, db.InTx(b.ctx, b.schema.Pool, func(tx pgx.Tx) error {
		_, err := db.Disable(b.ctx, tx, tenant, rec.ID)
		return err
	}))
	b.waitForDeleted(t, rec.ID)
}
