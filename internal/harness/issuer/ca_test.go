package issuer_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/internal/harness/issuer"
)

func TestCA(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, err := issuer.NewCA(now)
	require.NoError(t, err)

	t.Run("an issued certificate verifies against the dev CA for every requested dnsName", func(t *testing.T) {
		t.Parallel()
		names := []string{"portal.northwind.test", "www.portal.northwind.test"}
		certPEM, keyPEM, err := ca.Issue(names, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.Contains(t, string(keyPEM), "EC PRIVATE KEY")
		require.NoError(t, issuer.VerifyPEM(certPEM, ca, names, now))
	})

	t.Run("it does not verify for a name that was not requested", func(t *testing.T) {
		t.Parallel()
		certPEM, _, err := ca.Issue([]string{"portal.northwind.test"}, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, issuer.VerifyPEM(certPEM, ca, []string{"portal.globex.test"}, now), "portal.globex.test")
		require.ErrorContains(t, issuer.VerifyPEM(certPEM, ca, []string{"other.northwind.test"}, now), "other.northwind.test")
	})

	t.Run("another run's CA does not vouch for it", func(t *testing.T) {
		t.Parallel()
		other, err := issuer.NewCA(now)
		require.NoError(t, err)
		certPEM, _, err := other.Issue([]string{"portal.northwind.test"}, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, issuer.VerifyPEM(certPEM, ca, []string{"portal.northwind.test"}, now), "unknown authority")
	})

	t.Run("an expired certificate does not verify", func(t *testing.T) {
		t.Parallel()
		certPEM, _, err := ca.Issue([]string{"portal.northwind.test"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, issuer.VerifyPEM(certPEM, ca, []string{"portal.northwind.test"}, now), "expired")
	})

	t.Run("a certificate covering more than was requested is refused", func(t *testing.T) {
		t.Parallel()
		certPEM, _, err := ca.Issue([]string{"portal.northwind.test", "evil.test"}, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		require.ErrorContains(t, issuer.VerifyPEM(certPEM, ca, []string{"portal.northwind.test"}, now), "evil.test")
	})

	t.Run("SecretServes reads a TLS Secret's tls.crt", func(t *testing.T) {
		t.Parallel()
		names := []string{"app.hooli.test"}
		certPEM, _, err := ca.Issue(names, now.Add(-time.Minute), now.Add(time.Hour))
		require.NoError(t, err)
		secret := &unstructured.Unstructured{Object: map[string]any{
			"data": map[string]any{"tls.crt": base64.StdEncoding.EncodeToString(certPEM)},
		}}
		require.True(t, issuer.SecretServes(secret, ca, names))
		require.False(t, issuer.SecretServes(secret, ca, []string{"portal.initech.test"}))
		require.False(t, issuer.SecretServes(nil, ca, names))
	})
}
