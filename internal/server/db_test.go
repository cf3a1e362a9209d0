package server_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// One throwaway database per test binary, created on first use and dropped
// by TestMain, so parallel test binaries never see each other's jobs.
var testDB struct {
	once    sync.Once
	adminDB string // URL of the server's maintenance database
	name    string
	pool    *pgxpool.Pool
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testDB.pool != nil {
		testDB.pool.Close()
		if err := dropDatabase(context.Background(), testDB.adminDB, testDB.name); err != nil {
			fmt.Fprintf(os.Stderr, "drop test database %s: %v\n", testDB.name, err)
			code = cmp.Or(code, 1)
		}
	}
	os.Exit(code)
}

// testPool returns a pool on the binary's database with River's tables. It
// fails the test (never skips) when Postgres cannot be reached.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	testDB.once.Do(func() {
		testDB.pool, testDB.err = createTestDatabase(context.Background())
	})
	if testDB.err != nil {
		t.Fatalf("test database (set TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres): %v", testDB.err)
	}
	return testDB.pool
}

func createTestDatabase(ctx context.Context) (*pgxpool.Pool, error) {
	testDB.adminDB = cmp.Or(os.Getenv("TEST_DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres")
	admin, err := pgx.Connect(ctx, testDB.adminDB)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", testDB.adminDB, err)
	}
	defer admin.Close(ctx)

	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "portal_domains_server_test_" + hex.EncodeToString(suffix)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	testDB.name = name

	u, err := url.Parse(testDB.adminDB)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", testDB.adminDB, err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("open pool on %s: %w", name, err)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("create River migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate River tables: %w", err)
	}
	return pool, nil
}

func dropDatabase(ctx context.Context, adminURL, name string) error {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	return nil
}
