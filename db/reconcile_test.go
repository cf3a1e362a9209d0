package db_test

import (
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/jobs"
)

func TestEnqueueMissingStageJobs(t *testing.T) {
	t.Parallel()

	t.Run("a working row whose job is lost gets the job the trigger made, once", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := sqlInsert(t, b, newTenant(), "portal.lost.test")
		made := listJobs(t, b)
		require.Len(t, made, 1)
		_, err := b.pool.Exec(b.ctx, `DELETE FROM river_job`)
		require.NoError(t, err)

		n, _, err := db.EnqueueMissingStageJobs(b.ctx, b.pool, domain.ReconcileCursor{}, 100)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		again := listJobs(t, b)
		require.Len(t, again, 1)
		require.Equal(t, id, again[0].Args.DomainID)
		made[0].ID, again[0].ID = 0, 0
		require.Equal(t, made[0], again[0], "the same kind, queue, args, attempts and unique key as the trigger's")

		n, _, err = db.EnqueueMissingStageJobs(b.ctx, b.pool, domain.ReconcileCursor{}, 100)
		require.NoError(t, err)
		require.Zero(t, n, "a live job is not enqueued twice")
	})

	t.Run("a discarded or cancelled job is replaced; terminal and disabled rows get nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sqlInsert(t, b, newTenant(), "portal.discarded.test")
		sqlInsert(t, b, newTenant(), "portal.cancelled.test")
		_, err := b.pool.Exec(b.ctx, `UPDATE river_job SET state = 'discarded', finalized_at = now()
			WHERE args->>'domain_id' = (SELECT id::text FROM portal_domains WHERE domain = 'portal.discarded.test')`)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `UPDATE river_job SET state = 'cancelled', finalized_at = now()
			WHERE args->>'domain_id' = (SELECT id::text FROM portal_domains WHERE domain = 'portal.cancelled.test')`)
		require.NoError(t, err)
		// Rows AlgaPSA left in every other status, with no job at all.
		_, err = b.pool.Exec(b.ctx, `
			ALTER TABLE portal_domains DISABLE TRIGGER USER;
			INSERT INTO portal_domains (tenant, domain, canonical_host, status)
			SELECT gen_random_uuid(), 'd' || i || '.terminal.test', 'h' || i || '.portal.test', s::portal_domain_status
			FROM unnest(ARRAY['active', 'disabled', 'dns_failed', 'certificate_failed']) WITH ORDINALITY AS t(s, i);
			ALTER TABLE portal_domains ENABLE TRIGGER USER;`)
		require.NoError(t, err)

		n, _, err := db.EnqueueMissingStageJobs(b.ctx, b.pool, domain.ReconcileCursor{}, 100)
		require.NoError(t, err)
		require.Equal(t, 2, n, "the discarded and the cancelled job are made again, and nothing else")
		var live int
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM river_job WHERE state = 'available'`).Scan(&live))
		require.Equal(t, 2, live)
	})

	t.Run("a pass goes window by window, oldest status first, through rows that tie", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// One statement: all five rows share one status_changed_at, as a
		// bulk import leaves them, so only the id orders them.
		_, err := b.app.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain)
			SELECT gen_random_uuid(), 'portal' || i || '.window.test' FROM generate_series(1, 5) AS i`)
		require.NoError(t, err)
		older := sqlInsert(t, b, newTenant(), "portal.older.test")
		_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET status_changed_at = status_changed_at - interval '1 hour' WHERE id = $1`, older)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `DELETE FROM river_job`)
		require.NoError(t, err)

		var cursor domain.ReconcileCursor
		var windows []int
		for {
			n, next, err := db.EnqueueMissingStageJobs(b.ctx, b.pool, cursor, 2)
			require.NoError(t, err)
			windows = append(windows, n)
			if len(windows) == 1 {
				var ids []string
				for _, j := range listJobs(t, b) {
					ids = append(ids, j.Args.DomainID)
				}
				require.Contains(t, ids, older, "the oldest status comes first")
			}
			if next.IsZero() {
				break
			}
			cursor = next
		}
		require.Equal(t, []int{2, 2, 2, 0}, windows, "six rows in windows of two; the first window short of its size (here empty) ends the pass")
		require.Len(t, listJobs(t, b), 6, "every row once")

		n, next, err := db.EnqueueMissingStageJobs(b.ctx, b.pool, domain.ReconcileCursor{}, 10)
		require.NoError(t, err)
		require.Zero(t, n, "the next pass finds every job live")
		require.True(t, next.IsZero(), "a window short of its size ends the pass")

		_, _, err = db.EnqueueMissingStageJobs(b.ctx, b.pool, domain.ReconcileCursor{}, 0)
		require.ErrorContains(t, err, "window 0")
	})
}

func TestDeleteDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := newTenant()
	id := sqlInsert(t, b, tenant, "portal.gone.test")
	_, err := b.app.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE tenant = $1`, string(tenant))
	require.NoError(t, err)
	rec, err := db.GetDomain(b.ctx, b.pool, id)
	require.NoError(t, err)

	t.Run("a row registered again meanwhile is not deleted", func(t *testing.T) {
		_, err := b.app.Exec(b.ctx, `UPDATE portal_domains SET status = 'pending_dns' WHERE tenant = $1`, string(tenant))
		require.NoError(t, err)
		deleted, err := db.DeleteDisabled(b.ctx, b.pool, id, rec.Generation)
		require.NoError(t, err)
		require.False(t, deleted)
		_, err = db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
	})

	t.Run("a disabled row of the generation is deleted, its history kept, its domain free", func(t *testing.T) {
		_, err := b.app.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE tenant = $1`, string(tenant))
		require.NoError(t, err)
		rec, err := db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
		deleted, err := db.DeleteDisabled(b.ctx, b.pool, id, rec.Generation)
		require.NoError(t, err)
		require.True(t, deleted)
		_, err = db.GetDomain(b.ctx, b.pool, id)
		require.ErrorIs(t, err, db.ErrNotFound)
		events, err := db.ListEvents(b.ctx, b.pool, id)
		require.NoError(t, err)
		last := events[len(events)-1]
		require.Equal(t, "The portal domain was deleted.", last.Message)
		require.Equal(t, domain.StatusDisabled, last.To)

		deleted, err = db.DeleteDisabled(b.ctx, b.pool, id, rec.Generation)
		require.NoError(t, err)
		require.False(t, deleted, "deleting again finds nothing")
		sqlInsert(t, b, newTenant(), "portal.gone.test") // the domain is free for anyone
	})
}

// TestStageJobsCarryDomainAndTenantTags: every stage job, however it was
// enqueued, carries the tags River UI filters by; the tags are not part of
// River's unique key, so River's own insert of the same stage with them is
// still a duplicate of the trigger's job.
func TestStageJobsCarryDomainAndTenantTags(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := newTenant()
	id := sqlInsert(t, b, tenant, "portal.tagged.test")
	var tags []string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT tags FROM river_job WHERE args->>'domain_id' = $1`, id).Scan(&tags))
	require.Equal(t, domain.JobTags("portal.tagged.test", tenant), tags)

	client, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	require.NoError(t, err)
	res, err := client.Insert(b.ctx, jobs.VerifyDNSArgs{DomainArgs: jobs.DomainArgs{DomainID: id, Generation: 1}},
		&river.InsertOpts{Tags: domain.JobTags("portal.tagged.test", tenant)})
	require.NoError(t, err)
	require.True(t, res.UniqueSkippedAsDuplicate, "tags are not in the unique key")
	require.Len(t, listJobs(t, b), 1)

	// A new domain name is a new generation, whose job carries the new name.
	_, err = b.app.Exec(b.ctx, `UPDATE portal_domains SET domain = 'portal.renamed.test' WHERE id = $1`, id)
	require.NoError(t, err)
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT tags FROM river_job WHERE args->>'domain_id' = $1 ORDER BY id DESC LIMIT 1`, id).Scan(&tags))
	require.Equal(t, domain.JobTags("portal.renamed.test", tenant), tags)

	// The reconcile job makes the same job, tags included.
	_, err = b.pool.Exec(b.ctx, `DELETE FROM river_job`)
	require.NoError(t, err)
	n, _, err := db.EnqueueMissingStageJobs(b.ctx, b.pool, domain.ReconcileCursor{}, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT tags FROM river_job WHERE args->>'domain_id' = $1`, id).Scan(&tags))
	require.Equal(t, domain.JobTags("portal.renamed.test", tenant), tags)
}
