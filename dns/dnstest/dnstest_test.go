package dnstest_test

import (
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/dns/dnstest"
)

func query(t *testing.T, s *dnstest.Server, network, name string, qtype uint16, edns bool) *mdns.Msg {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	if edns {
		q.SetEdns0(1232, false)
	}
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(q, s.Addr())
	require.NoError(t, err)
	return resp
}

func TestServer(t *testing.T) {
	t.Parallel()

	t.Run("answers authoritatively over UDP and TCP on one port", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		for _, network := range []string{"udp", "tcp"} {
			resp := query(t, s, network, "www.acme.test", mdns.TypeA, false)
			require.Equal(t, mdns.RcodeSuccess, resp.Rcode)
			require.True(t, resp.Authoritative)
			require.Len(t, resp.Answer, 1)
			require.Equal(t, "192.0.2.80", resp.Answer[0].(*mdns.A).A.String())
		}
		qs := s.Queries()
		require.Len(t, qs, 2)
		require.True(t, strings.HasPrefix(qs[0].From, "127.0.0.1:"), "From is the client's address: %q", qs[0].From)
		qs[0].From = ""
		require.Equal(t, dnstest.Query{Name: "www.acme.test", Type: "A", Net: "udp"}, qs[0])
		require.Equal(t, "tcp", qs[1].Net)
	})

	t.Run("returns the whole CNAME chain across zones like a recursive resolver", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		resp := query(t, s, "udp", "chain.acme.test", mdns.TypeA, true)
		require.Equal(t, mdns.RcodeSuccess, resp.Rcode)
		require.Len(t, resp.Answer, 4)
		require.Equal(t, "step1.acme.test.", resp.Answer[0].(*mdns.CNAME).Target)
		require.Equal(t, "step2.globex.test.", resp.Answer[1].(*mdns.CNAME).Target)
		require.Equal(t, "abc1234.portal.test.", resp.Answer[2].(*mdns.CNAME).Target)
		require.Equal(t, "192.0.2.10", resp.Answer[3].(*mdns.A).A.String())
	})

	t.Run("stops a CNAME loop instead of chasing forever", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		resp := query(t, s, "udp", "loop1.acme.test", mdns.TypeA, true)
		require.Equal(t, mdns.RcodeSuccess, resp.Rcode)
		require.Len(t, resp.Answer, 2)
	})

	t.Run("NoChase stops the answer at the first CNAME", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		s.NoChase("chain.acme.test")
		resp := query(t, s, "udp", "chain.acme.test", mdns.TypeA, true)
		require.Len(t, resp.Answer, 1)
	})

	t.Run("answers NXDOMAIN with the SOA inside a zone and NODATA for empty non-terminals", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		resp := query(t, s, "udp", "missing.acme.test", mdns.TypeA, false)
		require.Equal(t, mdns.RcodeNameError, resp.Rcode)
		require.Len(t, resp.Ns, 1)
		require.IsType(t, &mdns.SOA{}, resp.Ns[0])

		resp = query(t, s, "udp", "strict.acme.test", mdns.TypeA, false)
		require.Equal(t, mdns.RcodeSuccess, resp.Rcode, "strict.acme.test owns CAA records")
		require.Empty(t, resp.Answer)

		s.Remove("strict.acme.test", "")
		resp = query(t, s, "udp", "strict.acme.test", mdns.TypeA, false)
		require.Equal(t, mdns.RcodeSuccess, resp.Rcode, "still an empty non-terminal above portal.strict.acme.test")
	})

	t.Run("refuses names outside the served zones", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t, "acme.test.zone")
		resp := query(t, s, "udp", "portal.globex.test", mdns.TypeA, false)
		require.Equal(t, mdns.RcodeRefused, resp.Rcode)
		resp = query(t, s, "udp", "example.org", mdns.TypeA, false)
		require.Equal(t, mdns.RcodeRefused, resp.Rcode)
	})

	t.Run("matches names case-insensitively", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		resp := query(t, s, "udp", "upper.acme.test", mdns.TypeA, true)
		require.Equal(t, mdns.RcodeSuccess, resp.Rcode)
		require.Len(t, resp.Answer, 2)
		require.Equal(t, "ABC1234.PORTAL.TEST.", resp.Answer[0].(*mdns.CNAME).Target)
	})

	t.Run("Set and Remove change records while running", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		require.Equal(t, mdns.RcodeNameError, query(t, s, "udp", "late.acme.test", mdns.TypeA, false).Rcode)

		s.Set("late.acme.test. 60 IN A 192.0.2.1", "late.acme.test. 60 IN A 192.0.2.2")
		require.Len(t, query(t, s, "udp", "late.acme.test", mdns.TypeA, false).Answer, 2)

		s.Set("late.acme.test. 60 IN A 192.0.2.3")
		resp := query(t, s, "udp", "late.acme.test", mdns.TypeA, false)
		require.Len(t, resp.Answer, 1, "Set replaces the RRset")
		require.Equal(t, "192.0.2.3", resp.Answer[0].(*mdns.A).A.String())

		s.Remove("LATE.acme.test.", "a")
		require.Equal(t, mdns.RcodeNameError, query(t, s, "udp", "late.acme.test", mdns.TypeA, false).Rcode)
	})

	t.Run("ServFail fails the name and chains through it", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		s.ServFail("abc1234.portal.test")
		require.Equal(t, mdns.RcodeServerFailure, query(t, s, "udp", "abc1234.portal.test", mdns.TypeA, false).Rcode)
		require.Equal(t, mdns.RcodeServerFailure, query(t, s, "udp", "portal.acme.test", mdns.TypeA, false).Rcode)
		s.Heal("abc1234.portal.test")
		require.Equal(t, mdns.RcodeSuccess, query(t, s, "udp", "portal.acme.test", mdns.TypeA, false).Rcode)
	})

	t.Run("Drop never answers", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		s.Drop("blackhole.acme.test")
		q := new(mdns.Msg)
		q.SetQuestion("blackhole.acme.test.", mdns.TypeA)
		c := &mdns.Client{Timeout: 150 * time.Millisecond}
		_, _, err := c.Exchange(q, s.Addr())
		require.Error(t, err)
		require.True(t, s.Queries()[0].Dropped)
	})

	t.Run("DropEvery drops a deterministic fraction", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		s.DropEvery(3)
		c := &mdns.Client{Timeout: 150 * time.Millisecond}
		var failed int
		for range 6 {
			q := new(mdns.Msg)
			q.SetQuestion("www.acme.test.", mdns.TypeA)
			if _, _, err := c.Exchange(q, s.Addr()); err != nil {
				failed++
			}
		}
		require.Equal(t, 2, failed)
	})

	t.Run("truncates UDP answers larger than the client buffer", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		resp := query(t, s, "udp", "c0ffee1.portal.test", mdns.TypeA, true)
		require.True(t, resp.Truncated)
		require.Less(t, len(resp.Answer), 120)
		resp = query(t, s, "tcp", "c0ffee1.portal.test", mdns.TypeA, true)
		require.False(t, resp.Truncated)
		require.Len(t, resp.Answer, 120)

		resp = query(t, s, "udp", "www.acme.test", mdns.TypeA, false)
		require.False(t, resp.Truncated, "a small answer fits in 512 bytes")
	})

	t.Run("Truncate forces TC on UDP only", func(t *testing.T) {
		t.Parallel()
		s := dnstest.Start(t)
		s.Truncate("forcetc.acme.test")
		resp := query(t, s, "udp", "forcetc.acme.test", mdns.TypeA, true)
		require.True(t, resp.Truncated)
		require.Empty(t, resp.Answer)
		resp = query(t, s, "tcp", "forcetc.acme.test", mdns.TypeA, true)
		require.False(t, resp.Truncated)
		require.Len(t, resp.Answer, 2)
	})
}
