package stack_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
	"github.com/portal-domains/portal-domains/internal/probe"
)

func TestGateway(t *testing.T) {
	t.Parallel()
	ca, err := issuer.NewCA(time.Now())
	require.NoError(t, err)
	gw, err := stack.StartGateway("127.0.0.1:0", ca, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		// t.Context() is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, gw.Close(ctx))
	})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.CertPEM(), 0o600))

	t.Run("the probe passes for any domain when dialing the gateway and trusting the dev CA", func(t *testing.T) {
		t.Parallel()
		for _, host := range []string{"portal.northwind.test", "clients.globex.test"} {
			res := probe.Probe(t.Context(), probe.Config{DialAddress: gw.Addr(), CAFile: caFile, Timeout: 3 * time.Second}, host)
			require.True(t, res.OK, res.Message)
			require.Equal(t, []string{host}, res.CertificateNames)
		}
	})

	t.Run("without the dev CA the probe says the certificate is untrusted", func(t *testing.T) {
		t.Parallel()
		res := probe.Probe(t.Context(), probe.Config{DialAddress: gw.Addr(), Timeout: 3 * time.Second}, "portal.northwind.test")
		require.False(t, res.OK)
		require.Equal(t, probe.FailureCertificateUntrusted, res.Failure, res.Message)
	})
}
