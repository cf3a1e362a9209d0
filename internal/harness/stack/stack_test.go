package stack_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
)

func TestPostgresFreshSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var said []string
	s := &stack.Stack{Say: func(format string, args ...any) { said = append(said, format) }}
	d, err := s.Postgres(ctx, dbtest.BaseURL(), "stacktest", db.Settings{CanonicalSuffix: "portal.test"})
	require.NoError(t, err)
	require.Regexp(t, `^stacktest_[0-9a-f]{10}$`, d.Schema)
	require.Contains(t, said, "schema %s in %s")

	t.Run("the pool works in the migrated schema", func(t *testing.T) {
		var schema string
		require.NoError(t, d.Pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema))
		require.Equal(t, d.Schema, schema)
		var n int
		require.NoError(t, d.Pool.QueryRow(ctx, `SELECT count(*) FROM portal_domains`).Scan(&n))
	})

	t.Run("Close drops the schema", func(t *testing.T) {
		require.NoError(t, s.Close())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbtest.BaseURL())
		require.NoError(t, err)
		defer conn.Close(ctx)
		var exists bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, d.Schema).Scan(&exists))
		require.False(t, exists)
	})
}

func TestCloseRunsInReverse(t *testing.T) {
	t.Parallel()
	var order []int
	s := &stack.Stack{}
	for i := range 3 {
		s.OnClose(func() error { order = append(order, i); return nil })
	}
	require.NoError(t, s.Close())
	require.Equal(t, []int{2, 1, 0}, order)
	require.NoError(t, s.Close(), "a second Close has nothing left to stop")
}
