package localdns_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
)

var zones = fstest.MapFS{
	"test.zone": {Data: []byte(`$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300
`)},
	"portal.test.zone": {Data: []byte(`$TTL 300
@       SOA ns.test. hostmaster.test. 1 3600 600 86400 300
abc1234 A   127.0.0.1
`)},
	"acme.test.zone": {Data: []byte(`$ORIGIN acme.test.
$TTL 300
@      SOA   ns.test. hostmaster.acme.test. 1 3600 600 86400 300
@      CAA   0 issue "letsencrypt.org"
www    A     192.0.2.80
portal CNAME edge
edge   CNAME abc1234.portal.test.
wrong  CNAME www
txt    TXT   "hello"
`)},
}

type bundle struct {
	srv      *localdns.Server
	resolver *dns.Resolver
}

func setup(t *testing.T) *bundle {
	t.Helper()
	loaded, err := localdns.LoadZones(zones, "*.zone")
	require.NoError(t, err)
	srv, err := localdns.Start("127.0.0.1:0", loaded...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close(context.Background())) })
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{srv.Addr()}, Timeout: time.Second})
	require.NoError(t, err)
	return &bundle{srv: srv, resolver: resolver}
}

func query(t *testing.T, addr, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(q, addr)
	require.NoError(t, err)
	return resp
}

func TestServer(t *testing.T) {
	t.Parallel()

	t.Run("serves the zones on one loopback port over UDP and TCP", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.True(t, strings.HasPrefix(b.srv.Addr(), "127.0.0.1:"))
		require.Equal(t, []string{"portal.test", "acme.test", "test"}, b.srv.Zones())
		for _, network := range []string{"udp", "tcp"} {
			resp := query(t, b.srv.Addr(), network, "www.acme.test", mdns.TypeA)
			require.Equal(t, mdns.RcodeSuccess, resp.Rcode)
			require.Len(t, resp.Answer, 1)
			require.Equal(t, "192.0.2.80", resp.Answer[0].(*mdns.A).A.String())
		}
	})

	t.Run("answers NXDOMAIN and NODATA with the SOA, and REFUSED outside the zones", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		nx := query(t, b.srv.Addr(), "udp", "missing.acme.test", mdns.TypeA)
		require.Equal(t, mdns.RcodeNameError, nx.Rcode)
		require.Len(t, nx.Ns, 1)
		nodata := query(t, b.srv.Addr(), "udp", "txt.acme.test", mdns.TypeA)
		require.Equal(t, mdns.RcodeSuccess, nodata.Rcode)
		require.Empty(t, nodata.Answer)
		require.Len(t, nodata.Ns, 1)
		require.Equal(t, mdns.RcodeRefused, query(t, b.srv.Addr(), "udp", "example.com", mdns.TypeA).Rcode)
	})

	t.Run("the resolver verifies a CNAME chain and reports a wrong CNAME by name", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ok := b.resolver.Check(t.Context(), "portal.acme.test", "abc1234.portal.test", "letsencrypt.org")
		require.Equal(t, dns.OutcomeVerified, ok.Outcome, ok.Message)
		wrong := b.resolver.Check(t.Context(), "wrong.acme.test", "abc1234.portal.test", "letsencrypt.org")
		require.Equal(t, dns.OutcomeMismatch, wrong.Outcome)
		require.Contains(t, wrong.Message, "Detected CNAME www.acme.test")
	})

	t.Run("Set replaces a record while serving, as a tenant fixing DNS", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.srv.Set("wrong.acme.test. 300 IN CNAME abc1234.portal.test."))
		fixed := b.resolver.Check(t.Context(), "wrong.acme.test", "abc1234.portal.test", "letsencrypt.org")
		require.Equal(t, dns.OutcomeVerified, fixed.Outcome, fixed.Message)
	})

	t.Run("Set refuses records outside the zones or malformed, changing nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.ErrorContains(t, b.srv.Set("wrong.acme.test. 300 IN CNAME abc1234.portal.test.", "x.example.com. 300 IN A 192.0.2.1"),
			"outside every served zone")
		require.ErrorContains(t, b.srv.Set("wrong.acme.test. 300 IN NOPE x"), "record")
		still := b.resolver.Check(t.Context(), "wrong.acme.test", "abc1234.portal.test", "letsencrypt.org")
		require.Equal(t, dns.OutcomeMismatch, still.Outcome)
	})

	t.Run("a fixed port is used as given, and a busy one is an error", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		loaded, err := localdns.LoadZones(zones, "*.zone")
		require.NoError(t, err)
		_, err = localdns.Start(b.srv.Addr(), loaded...)
		require.ErrorContains(t, err, "listen on "+b.srv.Addr())
	})
}

func TestParseZone(t *testing.T) {
	t.Parallel()

	t.Run("a zone needs an SOA and records inside it", func(t *testing.T) {
		t.Parallel()
		_, err := localdns.ParseZone(strings.NewReader("www 300 IN A 192.0.2.1\n"), "x.test.zone")
		require.ErrorContains(t, err, "no SOA")
		_, err = localdns.ParseZone(strings.NewReader("@ 300 IN SOA ns.test. h.test. 1 1 1 1 1\nwww.other.test. 300 IN A 192.0.2.1\n"), "x.test.zone")
		require.ErrorContains(t, err, "outside zone")
	})

	t.Run("the origin comes from the file name", func(t *testing.T) {
		t.Parallel()
		z, err := localdns.ParseZone(strings.NewReader("@ 300 IN SOA ns.test. h.test. 1 1 1 1 1\n"), "dir/x.test.zone")
		require.NoError(t, err)
		require.Equal(t, "x.test", z.Apex())
	})
}
