// Package dbtest gives each test its own freshly migrated schema in a real
// Postgres (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/portal_domains_test).
// It never skips: when Postgres is unreachable the test fails and says how
// `make test` starts one.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portal-domains/portal-domains/db"
)

// DefaultURL is used when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/portal_domains_test"

// Schema is one test's isolated schema.
type Schema struct {
	Name string
	// URL connects with search_path set to the schema, for a CLI run or a
	// worker process under test.
	URL  string
	Pool *pgxpool.Pool
}

var ensureDatabaseOnce sync.Once
var ensureDatabaseErr error

// BaseURL is the test database URL.
func BaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// New creates an empty schema (no migrations) dropped when the test ends.
func New(t testing.TB) *Schema {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := BaseURL()
	ensureDatabaseOnce.Do(func() { ensureDatabaseErr = ensureDatabase(ctx, base) })
	if ensureDatabaseErr != nil {
		t.Fatalf("test Postgres at %s: %v\n(run the tests with `make test`, which starts a throwaway Postgres when none answers)",
			db.RedactURL(base), ensureDatabaseErr)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "t_" + hex.EncodeToString(suffix)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test Postgres: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return &Schema{Name: name, URL: u.String(), Pool: pool}
}

// Migrated is New plus `migrate up` with the default settings.
func Migrated(t testing.TB) *Schema {
	t.Helper()
	s := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := db.MigrateUp(ctx, s.Pool, db.Settings{}); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	return s
}

// ensureDatabase creates the test database when the server answers but the
// database does not exist yet.
func ensureDatabase(ctx context.Context, base string) error {
	pool, _, err := db.OpenCreating(ctx, base)
	if err != nil {
		return err
	}
	pool.Close()
	return nil
}

// AppRole returns a pool connected as a new role that holds only what
// AlgaPSA grants its app role: USAGE on the schema and ALL PRIVILEGES on
// portal_domains. SQL that stands for the SaaS app runs through it, so a
// write that needs any other grant fails the test as it would fail the app.
func (s *Schema) AppRole(t testing.TB) *pgxpool.Pool {
	t.Helper()
	role := s.Name + "_app"
	return s.newRole(t, role,
		"GRANT USAGE ON SCHEMA "+s.Name+" TO "+role,
		"GRANT ALL PRIVILEGES ON TABLE "+s.Name+".portal_domains TO "+role)
}

// newRole creates a login role with the grants given (statements run by the
// test database's owner), returns a pool connected as it with the schema's
// search_path, and drops the role when the test ends.
func (s *Schema) newRole(t testing.TB, role string, grants ...string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	password := hex.EncodeToString(secret)
	admin, err := pgx.Connect(ctx, BaseURL())
	if err != nil {
		t.Fatalf("connect to test Postgres: %v", err)
	}
	defer admin.Close(ctx)
	stmts := append([]string{"CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'"}, grants...)
	for _, stmt := range stmts {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("role %s: %s: %v", role, stmt, err)
		}
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("parse schema URL: %v", err)
	}
	u.User = url.UserPassword(role, password)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatalf("open pool as %s: %v", role, err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, BaseURL())
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	return pool
}

// WorkerRole returns a pool connected as a new role holding only the grants
// deploy/postgres/worker-grants.sql gives a worker, run as psql would run it.
func (s *Schema) WorkerRole(t testing.TB, grantsFile string) *pgxpool.Pool {
	t.Helper()
	body, err := os.ReadFile(grantsFile)
	if err != nil {
		t.Fatalf("read %s: %v", grantsFile, err)
	}
	role := s.Name + "_worker"
	sql := strings.NewReplacer(`:"schema"`, s.Name, `:"worker_role"`, role).Replace(string(body))
	return s.newRole(t, role, sql)
}
