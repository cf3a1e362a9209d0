package db

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/migrations"
)

// Migration is one numbered SQL file pair.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
	Applied bool
}

var migrationFile = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.(up|down)\.sql$`)

// LoadMigrations reads the embedded SQL files in version order.
func LoadMigrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		m := migrationFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		version, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(migrations.FS, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		mig := byVersion[version]
		if mig == nil {
			mig = &Migration{Version: version, Name: m[2]}
			byVersion[version] = mig
		}
		if m[3] == "up" {
			mig.Up = string(body)
		} else {
			mig.Down = string(body)
		}
	}
	var out []Migration
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("migration %03d_%s lacks its up or down file", m.Version, m.Name)
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}

// migrateLockKey serialises concurrent `migrate` runs (several workers
// starting at once) with an advisory lock.
const migrateLockKey = 7_412_031_550

const createMigrationTable = `CREATE TABLE IF NOT EXISTS portal_domain_migrations (
	version int PRIMARY KEY,
	name text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now())`

// MigrateUp installs River's tables, then every pending portal-domains
// migration (each in its own transaction), then copies the Go status and
// stage tables and the settings into the database. Running it again changes
// nothing.
func MigrateUp(ctx context.Context, pool *pgxpool.Pool, settings Settings) ([]Migration, error) {
	var applied []Migration
	err := withMigrateLock(ctx, pool, func(conn *pgxpool.Conn) error {
		if err := checkInstallOrder(ctx, conn); err != nil {
			return err
		}
		migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
		if err != nil {
			return fmt.Errorf("river migrator: %w", err)
		}
		if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return fmt.Errorf("migrate river tables: %w", err)
		}
		all, err := migrationStatus(ctx, conn)
		if err != nil {
			return err
		}
		for _, m := range all {
			if m.Applied {
				continue
			}
			err := InTx(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.Up); err != nil {
					return fmt.Errorf("migration %03d_%s up: %w", m.Version, m.Name, err)
				}
				_, err := tx.Exec(ctx, `INSERT INTO portal_domain_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
				return err
			})
			if err != nil {
				return err
			}
			m.Applied = true
			applied = append(applied, m)
		}
		// Types may have been dropped and recreated: forget statements
		// prepared against the old ones.
		if err := conn.Conn().DeallocateAll(ctx); err != nil {
			return fmt.Errorf("reset prepared statements: %w", err)
		}
		return InTx(ctx, conn, func(tx pgx.Tx) error {
			if err := applyFunctions(ctx, tx); err != nil {
				return err
			}
			if err := syncRules(ctx, tx, settings); err != nil {
				return err
			}
			if err := secureFunctions(ctx, tx); err != nil {
				return err
			}
			return saveFingerprint(ctx, tx)
		})
	})
	return applied, err
}

// functionFiles are migrations/functions/*.sql, in name order with
// triggers.sql last (a trigger needs its function).
func functionFiles() ([]string, error) {
	names, err := fs.Glob(migrations.FS, "functions/*.sql")
	if err != nil {
		return nil, fmt.Errorf("read functions: %w", err)
	}
	const triggers = "functions/triggers.sql"
	names = slices.DeleteFunc(names, func(n string) bool { return n == triggers })
	return append(names, triggers), nil
}

// applyFunctions installs the current definition of every function and
// trigger. Bodies are checked when they run, not when created, so one file
// may call a function another file defines.
func applyFunctions(ctx context.Context, tx pgx.Tx) error {
	names, err := functionFiles()
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SET LOCAL check_function_bodies = off`); err != nil {
		return fmt.Errorf("apply functions: %w", err)
	}
	for _, name := range names {
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("apply migrations/%s: %w", name, err)
		}
	}
	return nil
}

// Fingerprint identifies what this build installs in the database: its
// numbered migrations, functions and triggers and the rule tables copied
// from domain. A worker
// whose fingerprint differs from the database's would run against rules it
// was not built with.
func Fingerprint() (string, error) {
	h := sha256.New()
	names, err := functionFiles()
	if err != nil {
		return "", err
	}
	for _, name := range names {
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00%s", name, len(body), body)
	}
	// The numbered migrations too: a build whose queries need a table of a
	// newer migration must not start on a database without it.
	migs, err := LoadMigrations()
	if err != nil {
		return "", err
	}
	for _, m := range migs {
		fmt.Fprintf(h, "migration\x00%03d\x00%s\x00", m.Version, m.Name)
	}
	for _, t := range domain.Transitions {
		fmt.Fprintf(h, "transition\x00%s\x00%s\x00%s\x00", t.From, t.To, t.Message)
	}
	for _, st := range domain.Stages {
		fmt.Fprintf(h, "stage\x00%s\x00%s\x00%s\x00%d\x00%s\x00%d\x00", st.Status, st.Kind, st.Queue, st.MaxAttempts, st.FirstRunDelay, st.Priority)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// installedDigestSQL digests what is installed now: every portal-domains
// function and trigger definition and the rule tables. Whether a trigger is
// enabled is not part of it: disabling the enqueue triggers is supported.
const installedDigestSQL = `SELECT md5(coalesce(string_agg(part, E'\n' ORDER BY part), '')) FROM (
	SELECT pg_get_functiondef(p.oid) AS part FROM pg_proc p
	WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'portal\_domains\_%'
	UNION ALL
	SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = 'portal_domains'::regclass AND NOT t.tgisinternal
	UNION ALL
	SELECT format('transition %s %s %s', from_status, to_status, message) FROM portal_domain_transitions
	UNION ALL
	SELECT format('stage %s %s %s %s %s %s', status, kind, queue, max_attempts, first_run_delay, priority) FROM portal_domain_stage_jobs
) installed`

// saveFingerprint records which build migrated the database and a digest of
// what that left installed, for CheckSchema.
func saveFingerprint(ctx context.Context, tx pgx.Tx) error {
	fp, err := Fingerprint()
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO portal_domain_settings (key, value)
		VALUES ('fingerprint', $1), ('installed_digest', (`+installedDigestSQL+`))
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, fp); err != nil {
		return fmt.Errorf("save fingerprint: %w", err)
	}
	return nil
}

// ErrSchemaMismatch: the database's functions and rules are not this build's.
var ErrSchemaMismatch = errors.New("the database's portal-domains schema is not this build's")

// CheckSchema fails with ErrSchemaMismatch, saying what to do, unless this
// build migrated the database and its functions, triggers and rule tables
// are still as that left them.
func CheckSchema(ctx context.Context, q Querier) error {
	want, err := Fingerprint()
	if err != nil {
		return err
	}
	var have, recorded, installed string
	err = q.QueryRow(ctx, `SELECT coalesce((SELECT value FROM portal_domain_settings WHERE key = 'fingerprint'), 'none'),
		coalesce((SELECT value FROM portal_domain_settings WHERE key = 'installed_digest'), ''), (`+installedDigestSQL+`)`).
		Scan(&have, &recorded, &installed)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedTable {
			return fmt.Errorf("%w: it is not installed; run `portal-domains migrate up` first", ErrSchemaMismatch)
		}
		return fmt.Errorf("read the schema fingerprint: %w", err)
	}
	if have != want {
		return fmt.Errorf("%w (installed by build %s, this is build %s): run `portal-domains migrate up` with this build first", ErrSchemaMismatch, have, want)
	}
	if installed != recorded {
		return fmt.Errorf("%w: its functions, triggers or rule tables were changed after `migrate up`; run `portal-domains migrate up` to restore them", ErrSchemaMismatch)
	}
	return nil
}

// secureFunctionsSQL pins every portal-domains function of this schema to
// the schema itself (so a caller's search_path cannot redirect the tables a
// function names) and makes the trigger functions run with their owner's
// rights: the SaaS app's role, granted only portal_domains as AlgaPSA grants
// it, can then write rows whose triggers record history, claim canonical
// hosts and enqueue River jobs in tables it has no grant on. Run by every
// `migrate up`, so a function replaced by a later migration is covered too.
const secureFunctionsSQL = `DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.prorettype = 'trigger'::regtype AS is_trigger
             FROM pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'portal\_domains\_%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f.sig, current_schema());
        IF f.is_trigger THEN
            EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', f.sig);
        END IF;
    END LOOP;
END $$`

func secureFunctions(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, secureFunctionsSQL); err != nil {
		return fmt.Errorf("pin functions to the schema: %w", err)
	}
	return nil
}

// ErrAlgaPSAMigrationsFirst: an AlgaPSA database whose own migrations have
// not created portal_domains yet. Installed first, portal-domains would
// create the table and its types, and AlgaPSA's migration would then stop
// its whole `knex migrate:latest` on "type portal_domain_status already
// exists".
var ErrAlgaPSAMigrationsFirst = errors.New("this is an AlgaPSA database (it has knex_migrations) whose own migrations have not created portal_domains yet: " +
	"run AlgaPSA's migrations first (knex migrate:latest), then `portal-domains migrate up`; see docs/algapsa.md")

// checkInstallOrder refuses, before anything is written, the install order
// that would break AlgaPSA's own migrations.
func checkInstallOrder(ctx context.Context, q Querier) error {
	var knex, table bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('knex_migrations') IS NOT NULL, to_regclass('portal_domains') IS NOT NULL`).
		Scan(&knex, &table); err != nil {
		return fmt.Errorf("check the install order: %w", err)
	}
	if knex && !table {
		return ErrAlgaPSAMigrationsFirst
	}
	return nil
}

// MigrateDown reverts the newest steps of portal-domains' migrations (all of
// them when steps <= 0, then River's tables too).
func MigrateDown(ctx context.Context, pool *pgxpool.Pool, steps int) ([]Migration, error) {
	var reverted []Migration
	err := withMigrateLock(ctx, pool, func(conn *pgxpool.Conn) error {
		all, err := migrationStatus(ctx, conn)
		if err != nil {
			return err
		}
		slices.Reverse(all)
		for _, m := range all {
			if !m.Applied || (steps > 0 && len(reverted) == steps) {
				continue
			}
			err := InTx(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.Down); err != nil {
					return fmt.Errorf("migration %03d_%s down: %w", m.Version, m.Name, err)
				}
				_, err := tx.Exec(ctx, `DELETE FROM portal_domain_migrations WHERE version = $1`, m.Version)
				return err
			})
			if err != nil {
				return err
			}
			reverted = append(reverted, m)
		}
		if steps > 0 {
			return nil
		}
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS portal_domain_migrations`); err != nil {
			return fmt.Errorf("drop migration table: %w", err)
		}
		migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
		if err != nil {
			return fmt.Errorf("river migrator: %w", err)
		}
		if _, err := migrator.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1}); err != nil {
			return fmt.Errorf("remove river tables: %w", err)
		}
		return nil
	})
	return reverted, err
}

// MigrationStatus lists every migration and whether it is applied.
func MigrationStatus(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	var out []Migration
	err := withMigrateLock(ctx, pool, func(conn *pgxpool.Conn) error {
		var err error
		out, err = migrationStatus(ctx, conn)
		return err
	})
	return out, err
}

func migrationStatus(ctx context.Context, q Querier) ([]Migration, error) {
	all, err := LoadMigrations()
	if err != nil {
		return nil, err
	}
	if _, err := q.Exec(ctx, createMigrationTable); err != nil {
		return nil, fmt.Errorf("create migration table: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT version FROM portal_domain_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	for i := range all {
		all[i].Applied = slices.Contains(applied, all[i].Version)
	}
	return all, nil
}

func withMigrateLock(ctx context.Context, pool *pgxpool.Pool, fn func(conn *pgxpool.Conn) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockKey)
	}()
	return fn(conn)
}

// Settings are configuration values the SQL side needs.
type Settings struct {
	CanonicalSuffix string
	// Appliance accepts AlgaPSA's appliance edition's writes (rows inserted
	// active, deleted to disable) and runs no pipeline.
	Appliance bool
	// GitRecord enqueues a git_record job with every manifest change
	// (portal_domains_enqueue_git_records).
	GitRecord bool
}

// syncRules makes the database's copies of domain.Transitions and
// domain.Stages equal to the Go tables, and stores the settings.
func syncRules(ctx context.Context, tx pgx.Tx, settings Settings) error {
	if _, err := tx.Exec(ctx, `DELETE FROM portal_domain_transitions`); err != nil {
		return fmt.Errorf("sync transitions: %w", err)
	}
	for _, t := range domain.Transitions {
		if _, err := tx.Exec(ctx, `INSERT INTO portal_domain_transitions (from_status, to_status, message) VALUES ($1::text::portal_domain_status, $2::text::portal_domain_status, $3)`,
			string(t.From), string(t.To), t.Message); err != nil {
			return fmt.Errorf("sync transition %s → %s: %w", t.From, t.To, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM portal_domain_stage_jobs`); err != nil {
		return fmt.Errorf("sync stages: %w", err)
	}
	for _, s := range domain.Stages {
		if _, err := tx.Exec(ctx, `INSERT INTO portal_domain_stage_jobs (status, kind, queue, max_attempts, first_run_delay, priority)
			VALUES ($1::text::portal_domain_status, $2, $3, $4, make_interval(secs => $5::float8), $6)`,
			string(s.Status), s.Kind, s.Queue, s.MaxAttempts, s.FirstRunDelay.Seconds(), s.Priority); err != nil {
			return fmt.Errorf("sync stage %s: %w", s.Status, err)
		}
	}
	// The installation's identity is made once, with the schema, and never
	// changed: objects in the cluster carry it.
	if _, err := tx.Exec(ctx, `INSERT INTO portal_domain_settings (key, value)
		VALUES ('installation_id', gen_random_uuid()::text) ON CONFLICT (key) DO NOTHING`); err != nil {
		return fmt.Errorf("create the installation id: %w", err)
	}
	return SaveSettings(ctx, tx, settings)
}

// SaveSettings stores the settings the trigger reads (the worker calls it at
// start, so a changed PORTAL_DOMAIN_CANONICAL_SUFFIX takes effect).
func SaveSettings(ctx context.Context, q Querier, settings Settings) error {
	suffix := settings.CanonicalSuffix
	if suffix == "" {
		suffix = domain.DefaultCanonicalSuffix
	}
	_, err := q.Exec(ctx, `INSERT INTO portal_domain_settings (key, value) VALUES ('canonical_suffix', $1), ('appliance', $2), ('git_record', $3)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, suffix, strconv.FormatBool(settings.Appliance), strconv.FormatBool(settings.GitRecord))
	if err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	return nil
}

// ErrNoInstallationID: the schema has no installation id (migrate up has
// not run with this build).
var ErrNoInstallationID = errors.New("the database has no installation id; run `portal-domains migrate up`")

// InstallationID is this installation's identity, created by `migrate up`
// with the schema. Every object the worker applies carries it, and nothing
// without it is ever deleted.
func InstallationID(ctx context.Context, q Querier) (string, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT value FROM portal_domain_settings WHERE key = 'installation_id'`).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && id == "") {
		return "", ErrNoInstallationID
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedTable {
			return "", ErrNoInstallationID
		}
		return "", fmt.Errorf("read the installation id: %w", err)
	}
	return id, nil
}
