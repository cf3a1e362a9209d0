package devstack

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/jobs"
)

func TestDevNeverSweepsAClusterItDidNotStart(t *testing.T) {
	t.Parallel()
	asked := jobs.SweepConfig{MinAge: 1, MaxDeletes: 50}
	require.True(t, sweepFor(asked, false).DryRun, "KUBECONFIG set: the sweep only reports")
	require.False(t, sweepFor(asked, true).DryRun, "its own API server: the sweep deletes as configured")
}
