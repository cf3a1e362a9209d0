package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
)

// TestReconcilerAloneCarriesADomainToActive: where the enqueue trigger is
// not wanted or not allowed, a row the SaaS app inserts in plain SQL still
// goes all the way, each stage's job made by the periodic reconcile job.
func TestReconcilerAloneCarriesADomainToActive(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{reconcileInterval: 200 * time.Millisecond})
	_, err := b.schema.Pool.Exec(b.ctx, `ALTER TABLE portal_domains DISABLE TRIGGER portal_domains_after_insert;
		ALTER TABLE portal_domains DISABLE TRIGGER portal_domains_after_update`)
	require.NoError(t, err)

	app := b.schema.AppRole(t)
	var id string
	require.NoError(t, app.QueryRow(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, $2, $3) RETURNING id::text`,
		string(tenant), "portal.acme.test", "abc1234."+suffix).Scan(&id))
	var jobs int
	require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT count(*) FROM river_job WHERE args->>'domain_id' = $1`, id).Scan(&jobs))
	require.Zero(t, jobs, "the insert itself enqueued nothing")

	rec := b.waitFor(t, id, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
	b.waitFor(t, id, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })

	// Every stage ran from a job the reconcile job made: one job per stage.
	rows, err := b.schema.Pool.Query(b.ctx, `SELECT kind FROM river_job WHERE args->>'domain_id' = $1 ORDER BY id`, id)
	require.NoError(t, err)
	var kinds []string
	for rows.Next() {
		var kind string
		require.NoError(t, rows.Scan(&kind))
		kinds = append(kinds, kind)
	}
	require.Equal(t, []string{"verify_dns", "apply", "await_certificate", "probe"}, kinds)
	n, _, err := db.EnqueueMissingStageJobs(b.ctx, b.schema.Pool, domain.ReconcileCursor{}, 10)
	require.NoError(t, err)
	require.Zero(t, n, "an active domain needs no job")
}

// TestReconcileRunCatchesUpAnAdoptedTable: rows AlgaPSA left in a working
// status with no job, more than one window of them, all get their job in
// one run of the reconcile job, each query examining one window; the next
// run finds nothing missing.
func TestReconcileRunCatchesUpAnAdoptedTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := dbtest.Migrated(t)
	n := jobs.ReconcileWindow*2 + 1
	_, err := s.Pool.Exec(ctx, `ALTER TABLE portal_domains DISABLE TRIGGER portal_domains_after_insert`)
	require.NoError(t, err)
	_, err = s.AppRole(t).Exec(ctx, `INSERT INTO portal_domains (tenant, domain)
		SELECT gen_random_uuid(), 'portal' || i || '.adopted.test' FROM generate_series(1, $1::int) AS i`, n)
	require.NoError(t, err)
	_, err = s.Pool.Exec(ctx, `ALTER TABLE portal_domains ENABLE TRIGGER portal_domains_after_insert`)
	require.NoError(t, err)

	countJobs := func() int {
		var jobs int
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(DISTINCT args->>'domain_id') FROM river_job WHERE kind = 'verify_dns'`).Scan(&jobs))
		return jobs
	}
	require.Zero(t, countJobs())
	reconcile := jobs.NewReconcileWorker(&jobs.Deps{Stages: worker.Store{Pool: s.Pool}})
	require.NoError(t, reconcile.Work(ctx, &river.Job[jobs.ReconcileArgs]{}))
	require.Equal(t, n, countJobs(), "one run, three windows")
	require.NoError(t, reconcile.Work(ctx, &river.Job[jobs.ReconcileArgs]{}))
	require.Equal(t, n, countJobs(), "nothing enqueued twice")
}
