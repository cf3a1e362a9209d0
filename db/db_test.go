package db_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/jobs"
)

type testBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool // the schema's owner: the worker's and the CLI's side
	// app is the SaaS app's side: a role holding only AlgaPSA's grants. SQL
	// that the app would send runs through it.
	app *pgxpool.Pool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	s := dbtest.Migrated(t)
	return &testBundle{ctx: context.Background(), pool: s.Pool, app: s.AppRole(t)}
}

type jobRow struct {
	ID          int64
	Kind        string
	Queue       string
	Args        jobs.DomainArgs
	MaxAttempts int
	UniqueKey   []byte
	State       string
}

func listJobs(t *testing.T, b *testBundle) []jobRow {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT id, kind, queue, args, max_attempts, unique_key, state::text FROM river_job ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (jobRow, error) {
		var j jobRow
		var args []byte
		if err := row.Scan(&j.ID, &j.Kind, &j.Queue, &args, &j.MaxAttempts, &j.UniqueKey, &j.State); err != nil {
			return j, err
		}
		return j, json.Unmarshal(args, &j.Args)
	})
	require.NoError(t, err)
	return out
}

func newTenant() domain.TenantID { return domain.TenantID(uuid.NewString()) }

func sqlInsert(t *testing.T, b *testBundle, tenant domain.TenantID, name string) string {
	t.Helper()
	var id string
	err := b.app.QueryRow(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, $2, $3) RETURNING id::text`,
		string(tenant), name, domain.CanonicalHost(tenant, domain.DefaultCanonicalSuffix, 7)).Scan(&id)
	require.NoError(t, err)
	return id
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := dbtest.New(t)

	applied, err := db.MigrateUp(ctx, s.Pool, db.Settings{})
	require.NoError(t, err)
	all, err := db.MigrationStatus(ctx, s.Pool)
	require.NoError(t, err)
	require.NotEmpty(t, all)
	require.Len(t, applied, len(all))
	require.NoError(t, db.CheckSchema(ctx, s.Pool))
	app := s.AppRole(t)

	t.Run("up again applies no migration and changes nothing", func(t *testing.T) {
		again, err := db.MigrateUp(ctx, s.Pool, db.Settings{})
		require.NoError(t, err)
		require.Empty(t, again)
		require.NoError(t, db.CheckSchema(ctx, s.Pool))
		b := &testBundle{ctx: ctx, pool: s.Pool, app: app}
		sqlInsert(t, b, newTenant(), "portal.again.com")
		require.Len(t, listJobs(t, b), 1)
		_, err = s.Pool.Exec(ctx, `DELETE FROM portal_domains; DELETE FROM river_job`)
		require.NoError(t, err)
	})

	t.Run("a function or rule changed by hand is refused until up restores it", func(t *testing.T) {
		for _, change := range []string{
			`CREATE OR REPLACE FUNCTION portal_domains_normalize_hostname(name text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT name $$`,
			`DELETE FROM portal_domain_transitions WHERE from_status = 'deploying' AND to_status = 'active'`,
			`UPDATE portal_domain_stage_jobs SET max_attempts = 1 WHERE status = 'pending_dns'`,
			`DROP TRIGGER portal_domains_after_update ON portal_domains`,
		} {
			_, err := s.Pool.Exec(ctx, change)
			require.NoError(t, err)
			err = db.CheckSchema(ctx, s.Pool)
			require.ErrorIs(t, err, db.ErrSchemaMismatch, change)
			require.ErrorContains(t, err, "changed after `migrate up`")
			_, err = db.MigrateUp(ctx, s.Pool, db.Settings{})
			require.NoError(t, err)
			require.NoError(t, db.CheckSchema(ctx, s.Pool), "up restores what %q changed", change)
		}
		// Disabling the enqueue triggers is supported (the reconcile job
		// takes over), so it is not a change.
		_, err := s.Pool.Exec(ctx, `ALTER TABLE portal_domains DISABLE TRIGGER portal_domains_after_insert`)
		require.NoError(t, err)
		require.NoError(t, db.CheckSchema(ctx, s.Pool))
		_, err = s.Pool.Exec(ctx, `ALTER TABLE portal_domains ENABLE TRIGGER portal_domains_after_insert`)
		require.NoError(t, err)
	})

	t.Run("another build's schema is refused", func(t *testing.T) {
		_, err := s.Pool.Exec(ctx, `UPDATE portal_domain_settings SET value = 'another' WHERE key = 'fingerprint'`)
		require.NoError(t, err)
		err = db.CheckSchema(ctx, s.Pool)
		require.ErrorIs(t, err, db.ErrSchemaMismatch)
		require.ErrorContains(t, err, "installed by build another")
		_, err = db.MigrateUp(ctx, s.Pool, db.Settings{})
		require.NoError(t, err)
		require.NoError(t, db.CheckSchema(ctx, s.Pool))
	})

	t.Run("down all removes every table then up restores them", func(t *testing.T) {
		_, err := db.MigrateDown(ctx, s.Pool, 0)
		require.NoError(t, err)
		var tables, functions int
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, s.Name).Scan(&tables))
		require.Zero(t, tables)
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_proc WHERE pronamespace = $1::regnamespace`, s.Name).Scan(&functions))
		require.Zero(t, functions, "River's functions and ours are gone")
		err = db.CheckSchema(ctx, s.Pool)
		require.ErrorIs(t, err, db.ErrSchemaMismatch)
		require.ErrorContains(t, err, "not installed")

		applied, err := db.MigrateUp(ctx, s.Pool, db.Settings{})
		require.NoError(t, err)
		require.Len(t, applied, len(all))
		tenant := newTenant()
		// The table is new: the app role's grant went with the old one.
		b := &testBundle{ctx: ctx, pool: s.Pool, app: s.Pool}
		sqlInsert(t, b, tenant, "portal.acme.com")
		require.Len(t, listJobs(t, b), 1)
	})
}

func TestSQLInsertEnqueues(t *testing.T) {
	t.Parallel()

	t.Run("plain insert enqueues exactly one verify_dns job", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tenant := newTenant()
		id := sqlInsert(t, b, tenant, "Portal.Acme.COM.")
		js := listJobs(t, b)
		require.Len(t, js, 1)
		require.Equal(t, domain.KindVerifyDNS, js[0].Kind)
		require.Equal(t, domain.QueueDNS, js[0].Queue)
		require.Equal(t, jobs.DomainArgs{DomainID: id, Generation: 1}, js[0].Args)

		rec, err := db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, "portal.acme.com", rec.Domain, "the trigger normalises case and the trailing dot")
		require.Equal(t, domain.StatusPendingDNS, rec.Status)
		require.Contains(t, string(rec.VerificationDetails), "dns_check_started_at")
		events, err := db.ListEvents(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Len(t, events, 1)
		require.Equal(t, domain.StatusPendingDNS, events[0].To)
	})

	t.Run("a second insert of the same domain is refused and enqueues nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sqlInsert(t, b, newTenant(), "portal.acme.com")
		other := newTenant()
		_, err := b.pool.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, $2, $3)`,
			string(other), "PORTAL.acme.com", domain.CanonicalHost(other, domain.DefaultCanonicalSuffix, 7))
		require.ErrorContains(t, err, "already registered by another tenant")
		require.Len(t, listJobs(t, b), 1)
	})

	t.Run("AlgaPSA upsert of the same domain adds no job; a new domain starts over", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tenant := newTenant()
		upsert := `INSERT INTO portal_domains (tenant, domain, canonical_host, status, status_message, verification_details)
			VALUES ($1, $2, $3, 'pending_dns', 'Waiting for DNS verification', '{}')
			ON CONFLICT (tenant) DO UPDATE SET domain = excluded.domain, canonical_host = excluded.canonical_host,
				status = excluded.status, status_message = excluded.status_message,
				verification_details = excluded.verification_details, updated_at = now()
			RETURNING id::text`
		canonical := domain.CanonicalHost(tenant, domain.DefaultCanonicalSuffix, 7)
		var id1, id2, id3 string
		require.NoError(t, b.pool.QueryRow(b.ctx, upsert, string(tenant), "portal.acme.com", canonical).Scan(&id1))
		require.NoError(t, b.pool.QueryRow(b.ctx, upsert, string(tenant), "portal.acme.com", canonical).Scan(&id2))
		require.Equal(t, id1, id2)
		require.Len(t, listJobs(t, b), 1, "the same domain again is deduplicated")

		require.NoError(t, b.pool.QueryRow(b.ctx, upsert, string(tenant), "portal.other.com", canonical).Scan(&id3))
		require.Equal(t, id1, id3, "a domain change keeps the row id")
		js := listJobs(t, b)
		require.Len(t, js, 2)
		require.Equal(t, jobs.DomainArgs{DomainID: id1, Generation: 2}, js[1].Args)
		rec, err := db.GetDomain(b.ctx, b.pool, id1)
		require.NoError(t, err)
		require.Equal(t, int64(2), rec.Generation)
		require.Contains(t, string(rec.VerificationDetails), "dns_check_started_at")

		// AlgaPSA's plain update and tenant deletion work unchanged.
		_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled', updated_at = now() WHERE tenant = $1`, string(tenant))
		require.NoError(t, err)
		js = listJobs(t, b)
		require.Equal(t, domain.KindDisable, js[len(js)-1].Kind)
		_, err = b.pool.Exec(b.ctx, `DELETE FROM portal_domains WHERE tenant = $1`, string(tenant))
		require.NoError(t, err)
	})

	t.Run("status changes by SQL enqueue the stage job", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tenant := newTenant()
		id := sqlInsert(t, b, tenant, "portal.acme.com")
		for _, step := range []struct {
			from, to domain.Status
			kind     string
		}{
			{domain.StatusPendingDNS, domain.StatusVerifyingDNS, ""},
			{domain.StatusVerifyingDNS, domain.StatusPendingCertificate, domain.KindApply},
			{domain.StatusPendingCertificate, domain.StatusCertificateFailed, ""},
			{domain.StatusCertificateFailed, domain.StatusPendingCertificate, domain.KindApply},
		} {
			before := len(listJobs(t, b))
			_, err := b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = $2::portal_domain_status WHERE id = $1`, id, string(step.to))
			require.NoError(t, err, "%s → %s", step.from, step.to)
			js := listJobs(t, b)
			if step.kind == "" {
				require.Len(t, js, before, "%s → %s enqueues nothing", step.from, step.to)
				continue
			}
			require.Len(t, js, before+1)
			require.Equal(t, step.kind, js[len(js)-1].Kind)
		}
		rec, err := db.GetDomain(b.ctx, b.pool, id)
		require.NoError(t, err)
		require.Equal(t, int64(2), rec.Generation, "AlgaPSA's retry after certificate_failed starts a new generation")
	})
}

// TestDNSSuccessAtFirstCheck: verify_dns writes pending_dns →
// pending_certificate in one step when the first check passes; that is DNS
// success, not a certificate retry, so the generation stays and the apply
// job belongs to it.
func TestDNSSuccessAtFirstCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := sqlInsert(t, b, newTenant(), "portal.acme.com")
	rec, err := db.Transition(b.ctx, b.pool, domain.Change{DomainID: id, Generation: 1,
		From: domain.StatusPendingDNS, To: domain.StatusPendingCertificate, Message: "DNS verified"})
	require.NoError(t, err)
	require.Equal(t, int64(1), rec.Generation)
	js := listJobs(t, b)
	require.Len(t, js, 2)
	require.Equal(t, domain.KindApply, js[1].Kind)
	require.Equal(t, jobs.DomainArgs{DomainID: id, Generation: 1}, js[1].Args)

	// A certificate retry (from certificate_failed) still starts over.
	moveBySQL(t, b, id, domain.StatusCertificateFailed, domain.StatusPendingCertificate)
	rec, err = db.GetDomain(b.ctx, b.pool, id)
	require.NoError(t, err)
	require.Equal(t, int64(2), rec.Generation)
}

func TestGoAPIAndSQLProduceTheSameJob(t *testing.T) {
	t.Parallel()
	b := setup(t)

	viaSQL := sqlInsert(t, b, newTenant(), "portal.sql.com")
	var viaGo string
	require.NoError(t, db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error {
		res, err := db.Register(b.ctx, tx, newTenant(), "portal.go.com", "")
		viaGo = res.Record.ID
		require.True(t, res.Enqueued)
		return err
	}))
	js := listJobs(t, b)
	require.Len(t, js, 2)
	require.Equal(t, js[0].Kind, js[1].Kind)
	require.Equal(t, js[0].Queue, js[1].Queue)
	require.Equal(t, js[0].MaxAttempts, js[1].MaxAttempts)
	require.Equal(t, viaSQL, js[0].Args.DomainID)
	require.Equal(t, viaGo, js[1].Args.DomainID)

	// River's own InsertTx of the same args computes the same unique key:
	// it finds the trigger's job and inserts nothing.
	client, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	require.NoError(t, err)
	for _, j := range js {
		res, err := client.Insert(b.ctx, jobs.VerifyDNSArgs{DomainArgs: j.Args}, nil)
		require.NoError(t, err)
		require.True(t, res.UniqueSkippedAsDuplicate, "River computes the trigger's unique key")
		require.Equal(t, j.ID, res.Job.ID)
	}
	require.Len(t, listJobs(t, b), 2)
	// And the other way round: a job River inserted first makes the trigger's insert a no-op.
	res, err := client.Insert(b.ctx, jobs.ApplyArgs{DomainArgs: js[0].Args}, nil)
	require.NoError(t, err)
	require.False(t, res.UniqueSkippedAsDuplicate)
	var enqueued bool
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT portal_domains_enqueue_stage($1, 'pending_certificate', 1)`, viaSQL).Scan(&enqueued))
	require.False(t, enqueued)

	// A stage with a first-run delay (await_certificate) is inserted as
	// River inserts a job scheduled in the future: state scheduled, the
	// same unique key, so River's InsertTx of it is a duplicate too.
	await, ok := domain.StageFor(domain.StatusCertificateIssuing)
	require.True(t, ok)
	require.Positive(t, await.FirstRunDelay)
	moveBySQL(t, b, viaGo, domain.StatusVerifyingDNS, domain.StatusPendingCertificate, domain.StatusCertificateIssuing)
	var state string
	var delay float64
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT state::text, extract(epoch FROM scheduled_at - created_at)
		FROM river_job WHERE kind = 'await_certificate'`).Scan(&state, &delay))
	require.Equal(t, "scheduled", state)
	require.InDelta(t, await.FirstRunDelay.Seconds(), delay, 0.5)
	res, err = client.Insert(b.ctx, jobs.AwaitCertificateArgs{DomainArgs: jobs.DomainArgs{DomainID: viaGo, Generation: 1}}, nil)
	require.NoError(t, err)
	require.True(t, res.UniqueSkippedAsDuplicate, "River computes the delayed job's unique key")
	require.Equal(t, "await_certificate", res.Job.Kind)
}

// moveBySQL walks a domain through statuses with plain UPDATEs, as the
// SaaS app or an operator would.
func moveBySQL(t *testing.T, b *testBundle, id string, statuses ...domain.Status) {
	t.Helper()
	for _, st := range statuses {
		_, err := b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = $2::portal_domain_status WHERE id = $1`, id, string(st))
		require.NoError(t, err, "→ %s", st)
	}
}

func TestEveryIllegalTransitionIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := newTenant()
	id := sqlInsert(t, b, tenant, "portal.acme.com")

	for _, from := range domain.Statuses {
		for _, to := range domain.Statuses {
			if from == to {
				continue
			}
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				tx, err := b.pool.Begin(b.ctx)
				require.NoError(t, err)
				defer tx.Rollback(b.ctx) //nolint:errcheck
				// Force the starting status without the trigger's checks.
				_, err = tx.Exec(b.ctx, `ALTER TABLE portal_domains DISABLE TRIGGER portal_domains_before_write`)
				require.NoError(t, err)
				_, err = tx.Exec(b.ctx, `UPDATE portal_domains SET status = $2::portal_domain_status WHERE id = $1`, id, string(from))
				require.NoError(t, err)
				_, err = tx.Exec(b.ctx, `ALTER TABLE portal_domains ENABLE TRIGGER portal_domains_before_write`)
				require.NoError(t, err)

				_, goErr := domain.CheckTransition(from, to)
				_, sqlErr := tx.Exec(b.ctx, `UPDATE portal_domains SET status = $2::portal_domain_status WHERE id = $1`, id, string(to))
				if goErr != nil {
					require.ErrorContains(t, sqlErr, fmt.Sprintf("status cannot move from %s to %s", from, to))
				} else {
					require.NoError(t, sqlErr)
				}
			})
		}
	}
}

func TestConcurrentTransitions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := sqlInsert(t, b, newTenant(), "portal.acme.com")
	_, err := db.Transition(b.ctx, b.pool, domain.Change{DomainID: id, Generation: 1, From: domain.StatusPendingDNS, To: domain.StatusVerifyingDNS, Message: "checking"})
	require.NoError(t, err)

	// Two workers race the same job outcome through two connections: one
	// wins, the other is told the row moved, and history has one move.
	const racers = 8
	var wg sync.WaitGroup
	results := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := domain.StatusPendingCertificate
			if i%2 == 1 {
				to = domain.StatusDNSFailed
			}
			results[i] = db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error {
				_, err := db.Transition(b.ctx, tx, domain.Change{DomainID: id, Generation: 1, From: domain.StatusVerifyingDNS, To: to, Message: fmt.Sprintf("racer %d", i)})
				return err
			})
		}()
	}
	wg.Wait()
	var won int
	for _, err := range results {
		if err == nil {
			won++
		} else {
			require.ErrorIs(t, err, db.ErrStale)
		}
	}
	require.Equal(t, 1, won)
	events, err := db.ListEvents(b.ctx, b.pool, id)
	require.NoError(t, err)
	require.Len(t, events, 3)
	require.Equal(t, domain.StatusVerifyingDNS, events[2].From)
	rec, err := db.GetDomain(b.ctx, b.pool, id)
	require.NoError(t, err)
	require.Equal(t, events[2].To, rec.Status)
	require.Equal(t, events[2].Message, rec.StatusMessage)
}

func TestBadSQLRowsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := newTenant()
	canonical := domain.CanonicalHost(tenant, domain.DefaultCanonicalSuffix, 7)
	for _, tc := range []struct {
		name, domain, canonical, want string
	}{
		{"empty", "", canonical, "must not be empty"},
		{"single label", "localhost", canonical, "single label"},
		{"bad character", "portal_x.acme.com", canonical, "only letters, digits and hyphens"},
		{"unicode", "pörtal.acme.com", canonical, "punycode"},
		{"wildcard", "*.acme.com", canonical, "wildcard"},
		{"ip address", "10.0.0.1", canonical, "IP address"},
		{"hyphen", "-portal.acme.com", canonical, "hyphen"},
		{"canonical of another tenant", "portal.acme.com", "ffffffff.portal.algapsa.com", "must start with at least the first 7 hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.pool.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, $2, $3)`,
				string(tenant), tc.domain, tc.canonical)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("a row cannot start active", func(t *testing.T) {
		_, err := b.pool.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host, status) VALUES ($1, 'portal.acme.com', $2, 'active')`,
			string(tenant), canonical)
		require.ErrorContains(t, err, "starts in pending_dns")
	})
	var rows, jobsCount int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT (SELECT count(*) FROM portal_domains), (SELECT count(*) FROM river_job)`).Scan(&rows, &jobsCount))
	require.Zero(t, rows)
	require.Zero(t, jobsCount)
}

// A row older than the domain check (an AlgaPSA database's: 001 adds the
// constraint NOT VALID) can still be failed with the reason and disabled,
// but not sent through the pipeline again or renamed to another bad name.
func TestLegacyBadRowCanBeFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	legacy := uuid.NewString()
	var constraint string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conname = 'portal_domains_domain_is_hostname' AND conrelid = 'portal_domains'::regclass`).Scan(&constraint))
	require.Contains(t, constraint, "NOT VALID")
	_, err := b.pool.Exec(b.ctx, fmt.Sprintf(`
		BEGIN;
		ALTER TABLE portal_domains DISABLE TRIGGER USER;
		ALTER TABLE portal_domains DROP CONSTRAINT portal_domains_domain_is_hostname;
		INSERT INTO portal_domains (id, tenant, domain, canonical_host, pipeline_generation)
			VALUES ('%[1]s', '%[1]s', 'not a host', 'x.portal.example', 1);
		ALTER TABLE portal_domains ADD CONSTRAINT portal_domains_domain_is_hostname %[2]s;
		ALTER TABLE portal_domains ENABLE TRIGGER USER;
		COMMIT;`, legacy, constraint))
	require.NoError(t, err)

	rec, err := db.Transition(b.ctx, b.pool, domain.Change{DomainID: legacy, Generation: 1, From: domain.StatusPendingDNS,
		To: domain.StatusDNSFailed, Message: `"not a host" is not a domain name`})
	require.NoError(t, err)
	require.Equal(t, domain.StatusDNSFailed, rec.Status)

	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'pending_dns' WHERE id = $1`, legacy)
	require.ErrorContains(t, err, "portal_domains_domain_is_hostname", "a retry needs a valid name first")
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET domain = 'still not a host' WHERE id = $1`, legacy)
	require.ErrorContains(t, err, "spaces or non-ASCII")
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE id = $1`, legacy)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET domain = 'portal.acme.com', status = 'pending_dns' WHERE id = $1`, legacy)
	require.NoError(t, err, "fixing the name puts the row back in the pipeline")
}

// The after-write triggers run once per statement (migration 009): a
// statement writing many rows, and an upsert that inserts some and updates
// others, give each row its own event and its own job, as row triggers did.
func TestMultiRowWritesGetOneEventAndJobPerRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 30
	tenants := make([]string, n)
	for i := range n {
		tenants[i] = string(newTenant())
		sqlInsert(t, b, domain.TenantID(tenants[i]), fmt.Sprintf("p%d.bulk.com", i))
	}
	countOf := func(sql string, args ...any) int {
		t.Helper()
		var c int
		require.NoError(t, b.pool.QueryRow(b.ctx, sql, args...).Scan(&c))
		return c
	}
	require.Equal(t, n, countOf(`SELECT count(*) FROM river_job WHERE kind = $1`, domain.KindVerifyDNS))

	// An operator disables every domain in one statement.
	_, err := b.pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE domain LIKE '%.bulk.com'`)
	require.NoError(t, err)
	require.Equal(t, n, countOf(`SELECT count(DISTINCT args->>'domain_id') FROM river_job WHERE kind = $1`, domain.KindDisable))
	require.Equal(t, n, countOf(`SELECT count(*) FROM portal_domain_events WHERE to_status = 'disabled' AND from_status = 'pending_dns'`))

	// A statement that changes nothing the pipeline cares about adds nothing.
	_, err = b.pool.Exec(b.ctx, `UPDATE portal_domains SET updated_at = now() WHERE domain LIKE '%.bulk.com'`)
	require.NoError(t, err)
	require.Equal(t, 2*n, countOf(`SELECT count(*) FROM portal_domain_events`))
	require.Equal(t, 2*n, countOf(`SELECT count(*) FROM river_job`))

	// The app's upsert: one new tenant, one existing tenant asking again.
	newcomer := string(newTenant())
	_, err = b.pool.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain) VALUES ($1, 'new.upsert.com'), ($2, 'p0.bulk.com')
		ON CONFLICT (tenant) DO UPDATE SET status = 'pending_dns', domain = excluded.domain`, newcomer, tenants[0])
	require.NoError(t, err)
	require.Equal(t, 2, countOf(`SELECT count(*) FROM river_job j JOIN portal_domains d
		ON j.args->>'domain_id' = d.id::text AND (j.args->>'generation')::bigint = d.pipeline_generation
		WHERE j.kind = $1 AND d.tenant = ANY($2::uuid[])`, domain.KindVerifyDNS, []string{newcomer, tenants[0]}),
		"a DNS check of the current generation for each")
	require.Equal(t, 1, countOf(`SELECT count(*) FROM portal_domain_events e JOIN portal_domains d ON d.id = e.domain_id
		WHERE d.tenant = $1`, newcomer), "the inserted row's first event")
	require.Equal(t, 1, countOf(`SELECT count(*) FROM portal_domain_events e JOIN portal_domains d ON d.id = e.domain_id
		WHERE d.tenant = $1 AND e.from_status = 'disabled' AND e.to_status = 'pending_dns'`, tenants[0]), "the updated row's retry")
}

func TestCanonicalHostCollision(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := domain.TenantID("abcdef12-0000-4000-8000-000000000001")
	second := domain.TenantID("abcdef12-3000-4000-8000-000000000002")
	third := domain.TenantID("abcdef19-0000-4000-8000-000000000003")
	var hosts []string
	for i, tenant := range []domain.TenantID{first, second, third} {
		require.NoError(t, db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error {
			res, err := db.Register(b.ctx, tx, tenant, fmt.Sprintf("portal.t%d.com", i), "")
			hosts = append(hosts, res.Record.CanonicalHost)
			return err
		}))
	}
	require.Equal(t, []string{"abcdef1.portal.algapsa.com", "abcdef12.portal.algapsa.com", "abcdef19.portal.algapsa.com"}, hosts)

	t.Run("the app's upsert keeps a tenant's longer prefix", func(t *testing.T) {
		_, err := b.pool.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, 'portal.t1.com', 'abcdef1.portal.algapsa.com')
			ON CONFLICT (tenant) DO UPDATE SET canonical_host = excluded.canonical_host`, string(second))
		require.NoError(t, err)
		rec, err := db.GetDomainByTenant(b.ctx, b.pool, second)
		require.NoError(t, err)
		require.Equal(t, "abcdef12.portal.algapsa.com", rec.CanonicalHost)
	})

	t.Run("AlgaPSA's upsert with the 7-character host gets the host chosen, in expected_cname and its message", func(t *testing.T) {
		upsert := func(tenant domain.TenantID) domain.Record {
			t.Helper()
			host := string(tenant)[:7] + ".portal.algapsa.com"
			_, err := b.app.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host, status, status_message, verification_details)
				VALUES ($1, $2, $3, 'pending_dns', $4, $5)
				ON CONFLICT (tenant) DO UPDATE SET domain = $2, canonical_host = $3, status = 'pending_dns', status_message = $4, verification_details = $5`,
				string(tenant), "portal."+string(tenant)[:8]+".com", host, "Waiting for DNS verification. Point a CNAME to "+host+".",
				map[string]string{"expected_cname": host, "requested_domain": "portal." + string(tenant)[:8] + ".com"})
			require.NoError(t, err)
			rec, err := db.GetDomainByTenant(b.ctx, b.pool, tenant)
			require.NoError(t, err)
			return rec
		}
		upsert("c0ffee11-0000-4000-8000-000000000001")
		for range 2 { // AlgaPSA repeats its upsert on every save
			rec := upsert("c0ffee12-0000-4000-8000-000000000002")
			require.Equal(t, "c0ffee12.portal.algapsa.com", rec.CanonicalHost)
			require.Equal(t, "c0ffee12.portal.algapsa.com", rec.CNAMETarget())
			require.Equal(t, "Waiting for DNS verification. Point a CNAME to c0ffee12.portal.algapsa.com.", rec.StatusMessage)
		}
		// A writer that replaces verification_details keeps the target.
		_, err := b.app.Exec(b.ctx, `UPDATE portal_domains SET verification_details = '{"requested_domain": "x"}' WHERE tenant = $1`,
			"c0ffee12-0000-4000-8000-000000000002")
		require.NoError(t, err)
		rec, err := db.GetDomainByTenant(b.ctx, b.pool, "c0ffee12-0000-4000-8000-000000000002")
		require.NoError(t, err)
		require.Equal(t, "c0ffee12.portal.algapsa.com", rec.CNAMETarget())
	})

	t.Run("a tenant inserted while another with the same prefix is uncommitted waits and takes a longer one", func(t *testing.T) {
		waiting := domain.TenantID("fedcba98-0000-4000-8000-000000000001")
		racer := domain.TenantID("fedcba98-7000-4000-8000-000000000002")
		tx, err := b.pool.Begin(b.ctx)
		require.NoError(t, err)
		defer tx.Rollback(b.ctx) //nolint:errcheck // committed below
		_, err = tx.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, 'portal.first.com', '')`, string(waiting))
		require.NoError(t, err)
		var holder int
		require.NoError(t, tx.QueryRow(b.ctx, `SELECT pg_backend_pid()`).Scan(&holder))
		racerHost := make(chan string, 1)
		go func() {
			var host string
			err := b.pool.QueryRow(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, 'portal.second.com', '')
				RETURNING canonical_host`, string(racer)).Scan(&host)
			if err != nil {
				host = "error: " + err.Error()
			}
			racerHost <- host
		}()
		// The racer waits: Postgres shows its insert blocked by the
		// uncommitted transaction.
		for blocked := 0; blocked == 0; {
			select {
			case host := <-racerHost:
				t.Fatalf("the racer did not wait for the uncommitted claim of its prefix: %s", host)
			case <-time.After(20 * time.Millisecond):
			}
			require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`, holder).Scan(&blocked))
		}
		require.NoError(t, tx.Commit(b.ctx))
		require.Equal(t, "fedcba98.portal.algapsa.com", <-racerHost)
	})

	t.Run("a deleted tenant's host is not handed to another tenant", func(t *testing.T) {
		gone := domain.TenantID("0badc0de-0000-4000-8000-000000000001")
		next := domain.TenantID("0badc0de-1000-4000-8000-000000000002")
		sqlInsert(t, b, gone, "portal.gone.com")
		_, err := b.pool.Exec(b.ctx, `DELETE FROM portal_domains WHERE tenant = $1`, string(gone))
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, 'portal.next.com', '')`, string(next))
		require.NoError(t, err)
		rec, err := db.GetDomainByTenant(b.ctx, b.pool, next)
		require.NoError(t, err)
		require.Equal(t, "0badc0de.portal.algapsa.com", rec.CanonicalHost,
			"DNS records may still point at the deleted tenant's host")
	})
}

// A bulk import of more new tenants than Postgres's shared lock table holds
// (max_locks_per_transaction × max_connections, 6,400 by default, with some
// slack) commits: the canonical-host claim takes no lock per tenant. The
// table was analyzed while empty, as on a new installation, and the row
// trigger's lookups still use their indexes: a plan made for an empty table
// would scan the table once per row added (quadratic in the import's size).
func TestBulkInsertOfManyTenants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 20000 // the bench's largest run
	tenants, names := make([]string, n), make([]string, n)
	for i := range n {
		tenants[i], names[i] = string(newTenant()), fmt.Sprintf("portal-%05d.bulk.example.com", i)
	}
	_, err := b.pool.Exec(b.ctx, `ANALYZE portal_domains`)
	require.NoError(t, err)
	tx, err := b.app.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	tag, err := tx.Exec(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host)
		SELECT t::uuid, d, '' FROM unnest($1::text[], $2::text[]) AS x(t, d)`, tenants, names)
	require.NoError(t, err)
	require.EqualValues(t, n, tag.RowsAffected())
	var seqScans int
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT pg_stat_get_xact_numscans('portal_domains'::regclass)`).Scan(&seqScans))
	require.Less(t, seqScans, 10, "sequential scans of portal_domains during the INSERT: none per row")
	require.NoError(t, tx.Commit(b.ctx))
	var jobs int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM river_job WHERE kind = 'verify_dns'`).Scan(&jobs))
	require.Equal(t, n, jobs)
}

func TestGoAPI(t *testing.T) {
	t.Parallel()

	register := func(t *testing.T, b *testBundle, tenant domain.TenantID, name string) (db.Result, error) {
		var res db.Result
		err := db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			res, err = db.Register(b.ctx, tx, tenant, name, "")
			return err
		})
		return res, err
	}
	inTx := func(b *testBundle, fn func(tx pgx.Tx) (db.Result, error)) (db.Result, error) {
		var res db.Result
		err := db.InTx(b.ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			res, err = fn(tx)
			return err
		})
		return res, err
	}

	t.Run("invalid input writes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, bad := range []string{"acme.com", "co.uk", "x.portal.algapsa.com", "*.acme.com", ""} {
			_, err := register(t, b, newTenant(), bad)
			require.ErrorIs(t, err, domain.ErrInvalidDomain, bad)
		}
		require.Empty(t, listJobs(t, b))
	})

	t.Run("duplicate registration by another tenant is a conflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := register(t, b, newTenant(), "portal.acme.com")
		require.NoError(t, err)
		_, err = register(t, b, newTenant(), "Portal.ACME.com")
		require.ErrorIs(t, err, db.ErrConflict)
		require.Len(t, listJobs(t, b), 1)
	})

	t.Run("registering again while in progress is a no-op", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tenant := newTenant()
		first, err := register(t, b, tenant, "portal.acme.com")
		require.NoError(t, err)
		again, err := register(t, b, tenant, "portal.acme.com")
		require.NoError(t, err)
		require.False(t, again.Enqueued)
		require.Equal(t, first.Record.ID, again.Record.ID)
		require.Len(t, listJobs(t, b), 1)
	})

	t.Run("refresh, retry and disable follow AlgaPSA's rules", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tenant := newTenant()
		reg, err := register(t, b, tenant, "portal.acme.com")
		require.NoError(t, err)
		id := reg.Record.ID

		_, err = inTx(b, func(tx pgx.Tx) (db.Result, error) { return db.Retry(b.ctx, tx, tenant, id) })
		require.ErrorIs(t, err, db.ErrWrongState, "retry only from failed")

		refreshed, err := inTx(b, func(tx pgx.Tx) (db.Result, error) { return db.Refresh(b.ctx, tx, tenant, id) })
		require.NoError(t, err)
		require.Equal(t, int64(2), refreshed.Record.Generation)
		js := listJobs(t, b)
		require.Len(t, js, 2)
		require.Equal(t, jobs.DomainArgs{DomainID: id, Generation: 2}, js[1].Args)

		_, err = inTx(b, func(tx pgx.Tx) (db.Result, error) { return db.Refresh(b.ctx, tx, newTenant(), id) })
		require.ErrorIs(t, err, db.ErrNotFound, "another tenant's domain is not found")

		_, err = db.Transition(b.ctx, b.pool, domain.Change{DomainID: id, Generation: 2, From: domain.StatusPendingDNS, To: domain.StatusDNSFailed, Message: "no CNAME"})
		require.NoError(t, err)
		_, err = inTx(b, func(tx pgx.Tx) (db.Result, error) { return db.Refresh(b.ctx, tx, tenant, id) })
		require.ErrorIs(t, err, db.ErrWrongState, "refresh leaves terminal rows alone")

		retried, err := inTx(b, func(tx pgx.Tx) (db.Result, error) { return db.Retry(b.ctx, tx, tenant, id) })
		require.NoError(t, err)
		require.Equal(t, domain.StatusPendingDNS, retried.Record.Status)
		require.Equal(t, int64(3), retried.Record.Generation)

		disabled, err := inTx(b, func(tx pgx.Tx) (db.Result, error) { return db.Disable(b.ctx, tx, tenant, id) })
		require.NoError(t, err)
		require.Equal(t, domain.StatusDisabled, disabled.Record.Status)
		js = listJobs(t, b)
		require.Equal(t, domain.KindDisable, js[len(js)-1].Kind)
		require.Equal(t, int64(4), js[len(js)-1].Args.Generation)

		_, err = db.Transition(b.ctx, b.pool, domain.Change{DomainID: id, Generation: 3, From: domain.StatusPendingDNS, To: domain.StatusVerifyingDNS})
		require.ErrorIs(t, err, db.ErrStale, "a job of an older generation cannot move the row")
	})

	t.Run("unknown tenant is refused when a tenants table exists", func(t *testing.T) {
		t.Parallel()
		s := dbtest.New(t)
		ctx := context.Background()
		_, err := s.Pool.Exec(ctx, `CREATE TABLE tenants (tenant uuid PRIMARY KEY, name text)`)
		require.NoError(t, err)
		_, err = db.MigrateUp(ctx, s.Pool, db.Settings{})
		require.NoError(t, err)
		known := newTenant()
		_, err = s.Pool.Exec(ctx, `INSERT INTO tenants (tenant, name) VALUES ($1, 'known')`, string(known))
		require.NoError(t, err)
		b := &testBundle{ctx: ctx, pool: s.Pool}
		_, err = register(t, b, newTenant(), "portal.acme.com")
		require.ErrorIs(t, err, db.ErrRejected)
		require.ErrorContains(t, err, "foreign key")
		_, err = register(t, b, known, "portal.acme.com")
		require.NoError(t, err)
		_, err = s.Pool.Exec(ctx, `DELETE FROM tenants WHERE tenant = $1`, string(known))
		require.NoError(t, err)
		_, err = db.GetDomainByTenant(ctx, s.Pool, known)
		require.True(t, errors.Is(err, db.ErrNotFound), "tenant deletion cascades")
	})
}

func TestWakeStageJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := sqlInsert(t, b, newTenant(), "portal.acme.com")
	wake := func() db.Wake {
		t.Helper()
		found, err := db.WakeStageJob(b.ctx, b.pool, id)
		require.NoError(t, err)
		return found
	}
	// River keeps a short snooze as available with a future scheduled_at,
	// a long one as scheduled: both must wake.
	for _, state := range []string{"available", "scheduled"} {
		t.Run("a snoozed job in state "+state+" runs now", func(t *testing.T) {
			_, err := b.pool.Exec(b.ctx, `UPDATE river_job SET state = $1::river_job_state, scheduled_at = now() + interval '1 hour'`, state)
			require.NoError(t, err)
			require.Equal(t, db.Woken, wake())
			var due bool
			require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT state = 'available' AND scheduled_at <= now() FROM river_job`).Scan(&due))
			require.True(t, due)
		})
	}
	t.Run("a job that is due and not started will see the change", func(t *testing.T) {
		require.Equal(t, db.Woken, wake())
	})
	t.Run("a running or retrying job is busy: the caller tries again", func(t *testing.T) {
		for _, state := range []string{"running", "retryable"} {
			_, err := b.pool.Exec(b.ctx, `UPDATE river_job SET state = $1::river_job_state, attempted_at = now(), attempt = 1`, state)
			require.NoError(t, err)
			require.Equal(t, db.WakeBusy, wake(), state)
			var unchanged bool
			require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT state::text = $1 FROM river_job`, state).Scan(&unchanged))
			require.True(t, unchanged, "a %s job is left alone", state)
		}
	})
	t.Run("a finished stage job or a status without one: nothing to wake", func(t *testing.T) {
		_, err := b.pool.Exec(b.ctx, `UPDATE river_job SET state = 'completed', finalized_at = now()`)
		require.NoError(t, err)
		require.Equal(t, db.WakeNone, wake())
		moveBySQL(t, b, id, domain.StatusVerifyingDNS, domain.StatusPendingCertificate, domain.StatusCertificateIssuing,
			domain.StatusDeploying, domain.StatusActive)
		require.Equal(t, db.WakeNone, wake(), "active has no stage")
		found, err := db.WakeStageJob(b.ctx, b.pool, uuid.NewString())
		require.NoError(t, err)
		require.Equal(t, db.WakeNone, found, "unknown domain")
	})
	t.Run("the await job held back after apply is woken", func(t *testing.T) {
		other := sqlInsert(t, b, newTenant(), "portal.other.com")
		moveBySQL(t, b, other, domain.StatusVerifyingDNS, domain.StatusPendingCertificate, domain.StatusCertificateIssuing)
		found, err := db.WakeStageJob(b.ctx, b.pool, other)
		require.NoError(t, err)
		require.Equal(t, db.Woken, found)
		var due bool
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT state = 'available' AND scheduled_at <= now() FROM river_job
			WHERE kind = 'await_certificate' AND args->>'domain_id' = $1`, other).Scan(&due))
		require.True(t, due)
	})
}

// TestOpenCreating: `make run` and `make bench` on a fresh Postgres create
// their database instead of failing with "database does not exist".
func TestOpenCreating(t *testing.T) {
	ctx := context.Background()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "portal_domains_create_" + hex.EncodeToString(suffix)
	u, err := url.Parse(dbtest.BaseURL())
	require.NoError(t, err)
	u.Path = "/" + name
	adminURL := *u
	adminURL.Path = "/postgres"
	t.Cleanup(func() {
		admin, err := db.Open(ctx, adminURL.String())
		require.NoError(t, err)
		defer admin.Close()
		_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		require.NoError(t, err)
	})

	_, err = db.Open(ctx, u.String())
	require.True(t, db.IsMissingDatabase(err), "opening a missing database: %v", err)

	pool, created, err := db.OpenCreating(ctx, u.String())
	require.NoError(t, err)
	require.True(t, created)
	var got string
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_database()`).Scan(&got))
	require.Equal(t, name, got)
	pool.Close()

	pool, created, err = db.OpenCreating(ctx, u.String())
	require.NoError(t, err)
	require.False(t, created, "the database exists now")
	pool.Close()
	require.NoError(t, db.CreateDatabase(ctx, u.String()), "creating an existing database is not an error")

	_, _, err = db.OpenCreating(ctx, "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	require.ErrorIs(t, err, db.ErrUnreachable)
	require.False(t, db.IsMissingDatabase(err))
}

// Every stage's job carries the stage's River priority, whoever enqueues it
// (the trigger, the one-row SQL function or River's own insert), so in a
// bulk import an await_certificate job is fetched before the backlog of
// apply jobs on the same kubernetes queue.
func TestStageJobsCarryTheStagePriority(t *testing.T) {
	t.Parallel()
	b := setup(t)
	priorities := func() map[string]int {
		rows, err := b.pool.Query(b.ctx, `SELECT kind, priority FROM river_job`)
		require.NoError(t, err)
		out := map[string]int{}
		for rows.Next() {
			var kind string
			var p int
			require.NoError(t, rows.Scan(&kind, &p))
			require.NotContains(t, out, kind, "one job per kind here")
			out[kind] = p
		}
		require.NoError(t, rows.Err())
		return out
	}
	apply, _ := domain.StageByKind(domain.KindApply)
	await, _ := domain.StageByKind(domain.KindAwaitCertificate)
	require.Greater(t, apply.Priority, await.Priority, "applies run after the jobs that bring a domain live")

	id := sqlInsert(t, b, newTenant(), "portal.prio.com")
	moveBySQL(t, b, id, domain.StatusVerifyingDNS, domain.StatusPendingCertificate, domain.StatusCertificateIssuing)
	require.Equal(t, map[string]int{domain.KindVerifyDNS: 1, domain.KindApply: apply.Priority, domain.KindAwaitCertificate: await.Priority},
		priorities())

	// River's insert of the same stage gets the same priority.
	_, err := b.pool.Exec(b.ctx, `DELETE FROM river_job`)
	require.NoError(t, err)
	client, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	require.NoError(t, err)
	res, err := client.Insert(b.ctx, jobs.ApplyArgs{DomainArgs: jobs.DomainArgs{DomainID: id, Generation: 1}}, nil)
	require.NoError(t, err)
	require.Equal(t, apply.Priority, res.Job.Priority)

	// And the one-row SQL function, for another generation.
	var enqueued bool
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT portal_domains_enqueue_stage($1, 'certificate_issuing', 7)`, id).Scan(&enqueued))
	require.True(t, enqueued)
	require.Equal(t, map[string]int{domain.KindApply: apply.Priority, domain.KindAwaitCertificate: await.Priority}, priorities())
}
