package worker_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
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
	b := setup(t, setupOpts{asWorkerRole: true, reconcileInterval: 200 * time.Millisecond,
		recheck: jobs.RecheckConfig{Interval: time.Second, Grace: time.Second}})
	rec := b.register(t, tenant, "portal.acme.test")
	b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
	b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })

	// The live re-check: scheduled, checked, drift told and alerted.
	b.waitForRecheck(t, rec.ID, "checked the live domain", func(r db.Recheck) bool { return r.Checks >= 1 })
	b.dns.Remove("portal.acme.test", "CNAME")
	b.waitFor(t, rec.ID, "told the tenant about the missing CNAME", func(r domain.Record) bool {
		return strings.Contains(r.StatusMessage, "No DNS record found for portal.acme.test")
	})
	b.waitForRecheck(t, rec.ID, "alerted", func(r db.Recheck) bool { return len(r.OpenAlerts) == 1 })

	require.NoError(t, db.InTx(b.ctx, b.schema.Pool, func(tx pgx.Tx) error {
		_, err := db.Disable(b.ctx, tx, tenant, rec.ID)
		return err
	}))
	b.waitForDeleted(t, rec.ID)
}

// TestWorkerReleasesOnlyWhatItOpened: Close leaves a pool the caller gave
// open; a New that fails closes the pool it opened itself.
func TestWorkerReleasesOnlyWhatItOpened(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := worker.Config{DNSServers: []string{"127.0.0.1:1"}, DNSWorkers: 1, ProbeWorkers: 1, KubeWorkers: 1}

	t.Run("CallersPoolStaysOpen", func(t *testing.T) {
		s := dbtest.Migrated(t)
		w, err := worker.New(ctx, cfg, worker.Options{Pool: s.Pool})
		require.NoError(t, err)
		require.NotEmpty(t, w.Installation())
		w.Close()
		require.NoError(t, s.Pool.Ping(ctx), "the caller's pool is the caller's to close")
	})

	t.Run("FailedNewClosesItsPool", func(t *testing.T) {
		s := dbtest.New(t) // not migrated: New fails after opening its pool
		app := "portal-domains-failed-new-" + s.Name
		u, err := url.Parse(s.URL)
		require.NoError(t, err)
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		failing := cfg
		failing.DatabaseURL = u.String()
		_, err = worker.New(ctx, failing, worker.Options{})
		require.ErrorIs(t, err, db.ErrSchemaMismatch)
		require.Eventually(t, func() bool {
			var n int
			require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n))
			return n == 0
		}, 10*time.Second, 20*time.Millisecond, "the failed New's connections are closed")
	})
}
