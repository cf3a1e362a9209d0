package devstack_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/internal/harness/devstack"
	"github.com/portal-domains/portal-domains/internal/probe"
)

func TestCA(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, err := devstack.NewCA(now)
	require.NoError(t, err)

	t.Run("an issued certificate verifies against the dev CA for every requested dnsName", func(t *testing.T) {
		t.Parallel()
		names := []string{"portal.northwind.test", "www.portal.northwind.test"}
		certPEM, keyPEM, err := ca.Issue(names, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.Contains(t, string(keyPEM), "EC PRIVATE KEY")
		require.NoError(t, devstack.VerifyPEM(certPEM, ca, names, now))
	})

	t.Run("it does not verify for a name that was not requested", func(t *testing.T) {
		t.Parallel()
		certPEM, _, err := ca.Issue([]string{"portal.northwind.test"}, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, devstack.VerifyPEM(certPEM, ca, []string{"portal.globex.test"}, now), "portal.globex.test")
		require.ErrorContains(t, devstack.VerifyPEM(certPEM, ca, []string{"other.northwind.test"}, now), "other.northwind.test")
	})

	t.Run("another run's CA does not vouch for it", func(t *testing.T) {
		t.Parallel()
		other, err := devstack.NewCA(now)
		require.NoError(t, err)
		certPEM, _, err := other.Issue([]string{"portal.northwind.test"}, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, devstack.VerifyPEM(certPEM, ca, []string{"portal.northwind.test"}, now), "unknown authority")
	})

	t.Run("an expired certificate does not verify", func(t *testing.T) {
		t.Parallel()
		certPEM, _, err := ca.Issue([]string{"portal.northwind.test"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, devstack.VerifyPEM(certPEM, ca, []string{"portal.northwind.test"}, now), "expired")
	})

	t.Run("a certificate covering more than was requested is refused", func(t *testing.T) {
		t.Parallel()
		certPEM, _, err := ca.Issue([]string{"portal.northwind.test", "evil.test"}, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, devstack.VerifyPEM(certPEM, ca, []string{"portal.northwind.test"}, now), "evil.test")
	})

	t.Run("SecretServes reads a TLS Secret's tls.crt", func(t *testing.T) {
		t.Parallel()
		names := []string{"app.hooli.test"}
		certPEM, _, err := ca.Issue(names, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		secret := &unstructured.Unstructured{Object: map[string]any{
			"data": map[string]any{"tls.crt": base64.StdEncoding.EncodeToString(certPEM)},
		}}
		require.True(t, devstack.SecretServes(secret, ca, names))
		require.False(t, devstack.SecretServes(secret, ca, []string{"portal.initech.test"}))
		require.False(t, devstack.SecretServes(nil, ca, names))
	})
}

func TestGateway(t *testing.T) {
	t.Parallel()
	ca, err := devstack.NewCA(time.Now())
	require.NoError(t, err)
	gw, err := devstack.StartGateway("127.0.0.1:0", ca, nil)
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
