package devstack_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/dns"
	demofixtures "github.com/portal-domains/portal-domains/fixtures/demo"
	"github.com/portal-domains/portal-domains/internal/harness/devstack"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
)

// The demo only works if demo.json and the zone files agree: every demo
// domain must verify once its fix (if any) is applied, and the one with a
// fix must fail with a real message before.
func TestDemoFixtures(t *testing.T) {
	t.Parallel()
	demo, err := devstack.LoadDemo(demofixtures.FS())
	require.NoError(t, err)
	require.Len(t, demo.Tenants, 4)
	zones, err := localdns.LoadZones(demofixtures.FS(), "*.zone")
	require.NoError(t, err)
	srv, err := localdns.Start("127.0.0.1:0", zones...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close(context.Background())) })
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{srv.Addr()}, Timeout: time.Second})
	require.NoError(t, err)

	fixes := 0
	for _, tenant := range demo.Tenants {
		canonical := tenant.CanonicalHost(demo.CanonicalSuffix)
		report := resolver.Check(t.Context(), tenant.Domain, canonical, "letsencrypt.org")
		if tenant.Fix == nil {
			require.Equal(t, dns.OutcomeVerified, report.Outcome, "%s: %s", tenant.Domain, report.Message)
			continue
		}
		fixes++
		require.Equal(t, dns.OutcomeMismatch, report.Outcome, "%s before its fix", tenant.Domain)
		require.Contains(t, report.Message, "expected "+canonical)
		require.Positive(t, tenant.Fix.After)
		require.NoError(t, srv.Set(tenant.Fix.Record))
		fixed := resolver.Check(t.Context(), tenant.Domain, canonical, "letsencrypt.org")
		require.Equal(t, dns.OutcomeVerified, fixed.Outcome, "%s after its fix: %s", tenant.Domain, fixed.Message)
	}
	require.Equal(t, 1, fixes, "one demo domain shows a wrong CNAME being fixed")
}
