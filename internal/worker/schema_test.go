package worker_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
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
