package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/domain"
)

// algapsaSchema is AlgaPSA's side of the database as its knex migrations
// leave it: a tenants table, and the DDL knex 3 sends for AlgaPSA's
// create_portal_domains migration (knex's own names for the key, the unique
// constraint and the foreign key; nullable timestamps).
const algapsaSchema = `
CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz);
INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('20250919120000_create_portal_domains.cjs', 1, now());
CREATE TABLE tenants (tenant uuid PRIMARY KEY DEFAULT gen_random_uuid(), company_name text NOT NULL);
CREATE TYPE portal_domain_status AS ENUM ('pending_dns', 'verifying_dns', 'dns_failed', 'pending_certificate',
    'certificate_issuing', 'certificate_failed', 'deploying', 'active', 'disabled');
CREATE TYPE portal_domain_verification_method AS ENUM ('cname');
create table "portal_domains" ("id" uuid default gen_random_uuid(), "tenant" uuid not null, "domain" text not null,
    "canonical_host" text not null, "status" portal_domain_status not null default 'pending_dns', "status_message" text,
    "last_checked_at" timestamptz default CURRENT_TIMESTAMP,
    "verification_method" portal_domain_verification_method not null default 'cname',
    "verification_details" jsonb not null default '{}'::jsonb, "certificate_secret_name" text,
    "last_synced_resource_version" text, "created_at" timestamptz default CURRENT_TIMESTAMP,
    "updated_at" timestamptz default CURRENT_TIMESTAMP, constraint "portal_domains_pkey" primary key ("id"));
alter table "portal_domains" add constraint "portal_domains_tenant_foreign" foreign key ("tenant") references "tenants" ("tenant") on delete CASCADE;
alter table "portal_domains" add constraint "portal_domains_tenant_unique" unique ("tenant");
CREATE UNIQUE INDEX portal_domains_domain_unique_idx ON portal_domains (lower(domain));
CREATE UNIQUE INDEX portal_domains_canonical_unique_idx ON portal_domains (lower(canonical_host));
`

// algapsaApp is AlgaPSA's app role: ALL on portal_domains (its migration
// 20250922113000) and the plain grants its setup script gives on the tables
// that existed then (tenants). Nothing on portal-domains' own tables.
func algapsaApp(t *testing.T, s *dbtest.Schema) *pgxpool.Pool {
	t.Helper()
	app := s.AppRole(t)
	_, err := s.Pool.Exec(context.Background(), fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO %s_app`, s.Name))
	require.NoError(t, err)
	return app
}

// algapsaApp replays the statements AlgaPSA's data-access code sends through
// knex 3 for one tenant: register (the upsert), the status_message update it
// makes when it cannot reach Temporal, retry, disable, and deleting the
// tenant (count, delete by tenant, then the tenants row with its cascade).
func replayAlgaPSA(t *testing.T, ctx context.Context, app *pgxpool.Pool, tenant, name string) {
	t.Helper()
	canonical := tenant[:7] + "." + domain.DefaultCanonicalSuffix
	now := time.Now()
	details, err := json.Marshal(map[string]string{"expected_cname": canonical, "requested_domain": name})
	require.NoError(t, err)
	_, err = app.Exec(ctx, `insert into "tenants" ("company_name", "tenant") values ($1, $2)`, "Tenant "+tenant[:7], tenant)
	require.NoError(t, err)

	upsert := `insert into "portal_domains" ("canonical_host", "certificate_secret_name", "created_at", "domain", "last_checked_at",
		"last_synced_resource_version", "status", "status_message", "tenant", "updated_at", "verification_details", "verification_method")
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		on conflict ("tenant") do update set "domain" = $13, "canonical_host" = $14, "status" = $15, "status_message" = $16,
		"last_checked_at" = $17, "verification_method" = $18, "verification_details" = $19, "certificate_secret_name" = $20,
		"last_synced_resource_version" = $21, "updated_at" = $22 returning *`
	register := func(message string) {
		t.Helper()
		rows, err := app.Query(ctx, upsert, canonical, nil, now, name, now, nil, "pending_dns", message, tenant, now, details, "cname",
			name, canonical, "pending_dns", message, now, "cname", details, nil, nil, now)
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			n++
		}
		require.NoError(t, rows.Err(), "register %s as AlgaPSA's app role", name)
		require.Equal(t, 1, n)
	}
	register("Waiting for DNS verification. Point a CNAME to " + canonical + ".")
	// The same register again (a tenant pressing save twice).
	register("Waiting for DNS verification. Point a CNAME to " + canonical + ".")

	update := func(set string, args ...any) {
		t.Helper()
		rows, err := app.Query(ctx, `update "portal_domains" set "updated_at" = CURRENT_TIMESTAMP, `+set+
			fmt.Sprintf(` where "tenant" = $%d returning *`, len(args)+1), append(args, tenant)...)
		require.NoError(t, err)
		rows.Close()
		require.NoError(t, rows.Err(), "update %s as AlgaPSA's app role", set)
	}
	update(`"status" = $1, "status_message" = $2`, "pending_dns", "Saved domain, but failed to enqueue provisioning. Please try again or contact support.")
	update(`"status" = $1, "status_message" = $2, "last_checked_at" = $3, "certificate_secret_name" = $4, "last_synced_resource_version" = $5`,
		"disabled", "Custom domain disabled by administrator.", now, nil, nil)

	var count int
	require.NoError(t, app.QueryRow(ctx, `select count(*) from "portal_domains" where "tenant" = $1`, tenant).Scan(&count))
	require.Equal(t, 1, count)
	_, err = app.Exec(ctx, `delete from "portal_domains" where "tenant" = $1`, tenant)
	require.NoError(t, err)
	_, err = app.Exec(ctx, `delete from "tenants" where "tenant" = $1`, tenant)
	require.NoError(t, err)
}

// TestAlgaPSASQLAsItsAppRole replays AlgaPSA's own statements as a role that
// holds only AlgaPSA's grants, on a fresh install and on a database where
// AlgaPSA's table came first and holds rows in every status.
func TestAlgaPSASQLAsItsAppRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("fresh install", func(t *testing.T) {
		t.Parallel()
		s := dbtest.New(t)
		_, err := s.Pool.Exec(ctx, `CREATE TABLE tenants (tenant uuid PRIMARY KEY DEFAULT gen_random_uuid(), company_name text NOT NULL)`)
		require.NoError(t, err)
		_, err = db.MigrateUp(ctx, s.Pool, db.Settings{})
		require.NoError(t, err)
		app := algapsaApp(t, s)
		tenant := uuid.NewString()
		replayAlgaPSA(t, ctx, app, tenant, "portal.fresh.test")
		// The register enqueued the pipeline and the history kept every move.
		var jobs, events int
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'verify_dns'`).Scan(&jobs))
		require.Equal(t, 1, jobs)
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM portal_domain_events WHERE tenant = $1 AND to_status = 'disabled'
			AND NOT details ? 'deleted'`, tenant).Scan(&events))
		require.Equal(t, 1, events, "the disable")
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM portal_domain_events WHERE tenant = $1 AND details ? 'deleted'`, tenant).Scan(&events))
		require.Equal(t, 1, events, "the app's delete")
	})

	t.Run("adopted AlgaPSA table", func(t *testing.T) {
		t.Parallel()
		s := dbtest.New(t)
		_, err := s.Pool.Exec(ctx, algapsaSchema)
		require.NoError(t, err)
		// AlgaPSA's rows, one in every status; one with NULL timestamps,
		// which its schema allows.
		for i, status := range domain.Statuses {
			tenant := uuid.NewString()
			_, err := s.Pool.Exec(ctx, `INSERT INTO tenants (tenant, company_name) VALUES ($1, 'old')`, tenant)
			require.NoError(t, err)
			_, err = s.Pool.Exec(ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host, status, created_at, updated_at)
				VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN NULL ELSE now() END, CASE WHEN $5 THEN NULL ELSE now() END)`,
				tenant, fmt.Sprintf("portal%d.old.test", i), tenant[:7]+"."+domain.DefaultCanonicalSuffix, string(status), i == 0)
			require.NoError(t, err)
		}
		before := algapsaRows(t, ctx, s.Pool)

		_, err = db.MigrateUp(ctx, s.Pool, db.Settings{})
		require.NoError(t, err)
		require.Equal(t, before, algapsaRows(t, ctx, s.Pool), "migrate up keeps every row as it was")
		require.Equal(t, []string{"portal_domains_canonical_unique_idx", "portal_domains_domain_unique_idx", "portal_domains_tenant_unique"},
			uniqueIndexes(t, ctx, s.Pool), "AlgaPSA's unique indexes are used, none added beside them")
		require.Equal(t, []string{"portal_domains_tenant_foreign"}, foreignKeys(t, ctx, s.Pool))

		recs, err := db.ListDomains(ctx, s.Pool, db.ListFilter{})
		require.NoError(t, err, "rows with NULL timestamps are read")
		require.Len(t, recs, len(domain.Statuses))

		// The rows AlgaPSA left in a working status get their stage job from
		// the reconciler; terminal and disabled rows get none.
		n, _, err := db.EnqueueMissingStageJobs(ctx, s.Pool, domain.ReconcileCursor{}, 100)
		require.NoError(t, err)
		require.Equal(t, 5, n, "pending_dns, verifying_dns, pending_certificate, certificate_issuing and deploying")
		kinds := names(t, ctx, s.Pool, `SELECT d.status::text || ' ' || j.kind FROM river_job j
			JOIN portal_domains d ON d.id::text = j.args->>'domain_id' ORDER BY d.status`)
		require.Equal(t, []string{"pending_dns verify_dns", "verifying_dns verify_dns", "pending_certificate apply",
			"certificate_issuing await_certificate", "deploying probe"}, kinds)

		app := algapsaApp(t, s)
		replayAlgaPSA(t, ctx, app, uuid.NewString(), "portal.new.test")

		t.Run("a full migrate down leaves AlgaPSA's table, types and rows as they were", func(t *testing.T) {
			_, err := db.MigrateDown(ctx, s.Pool, 0)
			require.NoError(t, err)
			require.Equal(t, before, algapsaRows(t, ctx, s.Pool))
			require.Equal(t, []string{"portal_domains_canonical_unique_idx", "portal_domains_domain_unique_idx", "portal_domains_tenant_unique"},
				uniqueIndexes(t, ctx, s.Pool))
			require.Equal(t, []string{"portal_domains_tenant_foreign"}, foreignKeys(t, ctx, s.Pool))
			columns := names(t, ctx, s.Pool, `SELECT column_name::text FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name = 'portal_domains' ORDER BY ordinal_position`)
			require.Equal(t, []string{"id", "tenant", "domain", "canonical_host", "status", "status_message", "last_checked_at",
				"verification_method", "verification_details", "certificate_secret_name", "last_synced_resource_version",
				"created_at", "updated_at"}, columns, "only AlgaPSA's columns are left")
			tables := names(t, ctx, s.Pool, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`)
			require.Equal(t, []string{"knex_migrations", "portal_domains", "tenants"}, tables, "everything portal-domains added is gone")
			var types int
			require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_type WHERE typnamespace = current_schema()::regnamespace
				AND typname IN ('portal_domain_status', 'portal_domain_verification_method')`).Scan(&types))
			require.Equal(t, 2, types)

			// AlgaPSA's own migrations can still run their down (and up) over it.
			_, err = s.Pool.Exec(ctx, `DROP INDEX IF EXISTS portal_domains_canonical_unique_idx; DROP INDEX IF EXISTS portal_domains_domain_unique_idx;
				DROP TABLE IF EXISTS portal_domains; DROP TYPE IF EXISTS portal_domain_verification_method; DROP TYPE IF EXISTS portal_domain_status`)
			require.NoError(t, err)
		})
	})
}

// algapsaRows is what AlgaPSA's columns hold, row by row.
func algapsaRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	return names(t, ctx, pool, `SELECT concat_ws('|', id, tenant, domain, canonical_host, status, status_message, last_checked_at,
		verification_method, verification_details, certificate_secret_name, last_synced_resource_version, created_at, updated_at)
		FROM portal_domains ORDER BY domain`)
}

func uniqueIndexes(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	return names(t, ctx, pool, `SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'portal_domains'::regclass AND i.indisunique AND NOT i.indisprimary ORDER BY 1`)
}

func foreignKeys(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	return names(t, ctx, pool, `SELECT conname::text FROM pg_constraint WHERE conrelid = 'portal_domains'::regclass AND contype = 'f' ORDER BY 1`)
}

// names runs a query of one text column and returns its rows.
func names(t *testing.T, ctx context.Context, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	rows, err := pool.Query(ctx, query)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		out = append(out, name)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestInstallOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// An AlgaPSA database whose knex migrations have not created
	// portal_domains yet: installing first would break AlgaPSA's own
	// migration, so nothing is written and the error says what to do.
	s := dbtest.New(t)
	_, err := s.Pool.Exec(ctx, `CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz)`)
	require.NoError(t, err)
	_, err = db.MigrateUp(ctx, s.Pool, db.Settings{})
	require.ErrorIs(t, err, db.ErrAlgaPSAMigrationsFirst)
	require.ErrorContains(t, err, "run AlgaPSA's migrations first")
	require.Equal(t, []string{"knex_migrations"}, names(t, ctx, s.Pool,
		`SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`), "nothing was created")
}

// TestApplianceMode: AlgaPSA's appliance edition inserts rows active and
// deletes them to disable, with no pipeline; refused by default, with the
// setting named, and accepted with PORTAL_DOMAIN_APPLIANCE.
func TestApplianceMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	upsertActive := func(app *pgxpool.Pool, tenant, name string) error {
		_, err := app.Exec(ctx, `insert into "portal_domains" ("canonical_host", "domain", "status", "status_message", "tenant", "verification_details")
			values ($1, $2, 'active', $3, $4, $5) on conflict ("tenant") do update set "domain" = $2, "status" = 'active', "status_message" = $3
			returning *`, tenant[:7]+"."+domain.DefaultCanonicalSuffix, name,
			"Active. Ensure "+name+" resolves to this appliance and that your reverse proxy terminates TLS.", tenant,
			map[string]any{"requested_domain": name, "forward_host_header": true})
		return err
	}

	t.Run("refused by default, naming the setting", func(t *testing.T) {
		t.Parallel()
		s := dbtest.Migrated(t)
		err := upsertActive(s.AppRole(t), uuid.NewString(), "portal.appliance.test")
		require.ErrorContains(t, err, "PORTAL_DOMAIN_APPLIANCE=true")
	})

	t.Run("accepted in appliance mode, with no pipeline", func(t *testing.T) {
		t.Parallel()
		s := dbtest.New(t)
		_, err := db.MigrateUp(ctx, s.Pool, db.Settings{Appliance: true})
		require.NoError(t, err)
		app := s.AppRole(t)
		tenant := uuid.NewString()
		require.NoError(t, upsertActive(app, tenant, "portal.appliance.test"))
		require.NoError(t, upsertActive(app, tenant, "portal.renamed.test"), "a changed domain stays active")
		rec, err := db.GetDomainByTenant(ctx, s.Pool, domain.TenantID(tenant))
		require.NoError(t, err)
		require.Equal(t, domain.StatusActive, rec.Status)
		require.Equal(t, "portal.renamed.test", rec.Domain)
		n, _, err := db.EnqueueMissingStageJobs(ctx, s.Pool, domain.ReconcileCursor{}, 100)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Empty(t, names(t, ctx, s.Pool, `SELECT kind FROM river_job`), "no pipeline runs")

		_, err = app.Exec(ctx, `delete from "portal_domains" where "tenant" = $1`, tenant)
		require.NoError(t, err)
		events, err := db.ListEvents(ctx, s.Pool, rec.ID)
		require.NoError(t, err)
		require.Equal(t, "The portal domain was deleted.", events[len(events)-1].Message)
	})
}
