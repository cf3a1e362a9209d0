package issuer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The issuer's informer re-checks every Certificate at the configured
// period: by default every 30 s (the dev stack re-issues a Secret deleted
// by hand), never when Resync is negative (the bench).
func TestControllerResyncPeriod(t *testing.T) {
	for _, tc := range []struct {
		resync, want time.Duration
	}{
		{0, DefaultResync},
		{-1, 0},
		{-time.Hour, 0},
		{5 * time.Second, 5 * time.Second},
	} {
		require.Equal(t, tc.want, (&Controller{Resync: tc.resync}).resyncPeriod(), "Resync %s", tc.resync)
	}
	require.Equal(t, 30*time.Second, DefaultResync)
}
