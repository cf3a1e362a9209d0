package k8s_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/k8s"
)

// connectionRefused is a Challenge's status.reason as cert-manager writes it
// when the CA could not connect.
const connectionRefused = "Error accepting authorization: acme: authorization error for %s: 400 " +
	"urn:ietf:params:acme:error:connection: 127.0.0.9: Fetching http://%s/.well-known/acme-challenge/tok3n-for-tests: Connection refused"

func TestIssuance(t *testing.T) {
	t.Parallel()

	t.Run("NothingBeforeCertManagerActs", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		chain, err := b.client.Issuance(t.Context(), b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err, "a missing Certificate is no error")
		require.Zero(t, chain)
		b.apply(t)
		chain, err = b.client.Issuance(t.Context(), b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.Zero(t, chain, "no CertificateRequest yet")
		_, failed := chain.CAProblem()
		require.False(t, failed)
	})

	t.Run("FollowsTheFailedChainToTheCAsReason", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.apply(t)
		ctx := t.Context()
		token, err := b.env.CreateFailedIssuance(ctx, b.cfg.CertNamespace, b.names.Certificate, fmt.Sprintf(connectionRefused, b.d.Host, b.d.Host))
		require.NoError(t, err)

		chain, err := b.client.Issuance(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.NotNil(t, chain.Request)
		require.Equal(t, "Failed", chain.Request.State)
		require.Contains(t, chain.Request.Reason, `order is in "invalid" state`)
		require.NotNil(t, chain.Order)
		require.Equal(t, "invalid", chain.Order.State)
		require.Len(t, chain.Challenges, 1)
		ch := chain.Challenges[0]
		require.Equal(t, "invalid", ch.State)
		require.Equal(t, "http://"+b.d.Host+"/.well-known/acme-challenge/"+token, ch.URL)

		p, failed := chain.CAProblem()
		require.True(t, failed)
		require.Equal(t, "connection", p.Type)
		require.Equal(t, "127.0.0.9: Fetching http://"+b.d.Host+"/.well-known/acme-challenge/"+token+": Connection refused", p.Detail)
		require.Equal(t, ch.URL, p.URL)

		// Another Certificate's chain in the same namespace is not this one's.
		other := setupOn(t, b.env, nil)
		other.cfg = b.cfg
		other.names, err = k8s.NamesFor(other.d, other.cfg)
		require.NoError(t, err)
		other.apply(t)
		chain, err = other.client.Issuance(ctx, other.cfg.CertNamespace, other.names.Certificate)
		require.NoError(t, err)
		require.Zero(t, chain)
	})

	t.Run("DescribeDomainShowsObjectsConditionsAndChain", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		state, err := b.client.DescribeDomain(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Len(t, state.Objects, 5, "the Secret's copy in the gateway namespace too")
		for _, o := range state.Objects {
			require.False(t, o.Exists, "%s not applied yet", o.Kind)
		}
		require.Nil(t, state.Certificate)

		b.apply(t)
		require.NoError(t, b.env.SetCertificateReady(ctx, b.cfg.CertNamespace, b.names.Certificate, false, "Failed", "the CA said no"))
		_, err = b.env.CreateFailedIssuance(ctx, b.cfg.CertNamespace, b.names.Certificate, fmt.Sprintf(connectionRefused, b.d.Host, b.d.Host))
		require.NoError(t, err)
		state, err = b.client.DescribeDomain(ctx, b.d, b.cfg)
		require.NoError(t, err)
		kinds := map[string]k8s.ObjectState{}
		for _, o := range state.Objects {
			kinds[o.Kind] = o
		}
		for _, kind := range []string{"Certificate", "Gateway", "VirtualService"} {
			require.True(t, kinds[kind].Exists, kind)
			require.Equal(t, b.cfg.Installation, kinds[kind].Installation, kind)
		}
		require.False(t, kinds["Secret"].Exists, "cert-manager wrote no Secret")
		_, err = b.env.CreateTLSSecret(ctx, b.cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		state, err = b.client.DescribeDomain(ctx, b.d, b.cfg)
		require.NoError(t, err)
		secrets := map[string]bool{}
		for _, o := range state.Objects {
			if o.Kind == "Secret" {
				secrets[o.Namespace] = o.Exists
			}
		}
		require.Equal(t, map[string]bool{b.cfg.CertNamespace: true, b.cfg.GatewayNamespace: false}, secrets,
			"the Secret is there, its copy for the gateway not yet")
		require.NotNil(t, state.Certificate)
		require.Equal(t, []string{b.d.Host}, state.Certificate.DNSNames)
		var ready k8s.Condition
		for _, c := range state.Certificate.Conditions {
			if c.Type == "Ready" {
				ready = c
			}
		}
		require.Equal(t, "False", ready.Status)
		require.Equal(t, "Failed", ready.Reason)
		require.Equal(t, "the CA said no", ready.Message)
		require.False(t, ready.Since.IsZero())
		require.Equal(t, 1, state.Certificate.FailedIssuanceAttempts)
		require.Empty(t, state.IssuanceError)
		require.Len(t, state.Issuance.Challenges, 1)
	})
}
