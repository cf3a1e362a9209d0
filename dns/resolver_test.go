package dns

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/dns/dnstest"
)

const canon = "abc1234.portal.test"

type bundle struct {
	srv *dnstest.Server
	res *Resolver
}

// setup starts a server with every fixture zone and a resolver pointed at
// it. The timeout is short because every test that times out does so on
// purpose.
func setup(t *testing.T, cfg Config) bundle {
	t.Helper()
	srv := dnstest.Start(t)
	cfg.Servers = append(cfg.Servers, srv.Addr())
	if cfg.Timeout == 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	res, err := NewResolver(cfg)
	require.NoError(t, err)
	return bundle{srv: srv, res: res}
}

// lossyThenGood is a resolver asking a server that drops every second
// query first, and a reliable one second.
func lossyThenGood(t *testing.T) (lossy, good *dnstest.Server, r *Resolver) {
	lossy = dnstest.Start(t)
	lossy.DropEvery(2)
	good = dnstest.Start(t)
	r, err := NewResolver(Config{Servers: []string{lossy.Addr(), good.Addr()}, Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	return lossy, good, r
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func netQueries(s *dnstest.Server, name, network string) int {
	n := 0
	for _, q := range s.Queries() {
		if q.Name == name && q.Net == network {
			n++
		}
	}
	return n
}

func TestNewResolver(t *testing.T) {
	t.Parallel()

	t.Run("applies defaults and normalises servers", func(t *testing.T) {
		t.Parallel()
		r, err := NewResolver(Config{Servers: []string{"127.0.0.1", "[::1]:5353"}})
		require.NoError(t, err)
		require.Equal(t, []string{"127.0.0.1:53", "[::1]:5353"}, r.servers)
		require.Equal(t, DefaultMaxChain, r.maxChain)
		require.Equal(t, DefaultTimeout, r.udp.Timeout)
		require.Equal(t, DefaultTimeout, r.tcp.Timeout)
	})

	t.Run("rejects a config that cannot work", func(t *testing.T) {
		t.Parallel()
		for _, cfg := range []Config{
			{},
			{Servers: []string{"not a server"}},
			{Servers: []string{"127.0.0.1"}, Timeout: -time.Second},
			{Servers: []string{"127.0.0.1"}, MaxChain: -1},
		} {
			_, err := NewResolver(cfg)
			require.Error(t, err, "%+v", cfg)
		}
	})
}

func TestLookupChain(t *testing.T) {
	t.Parallel()

	t.Run("follows a direct CNAME with one query; its target's IPv6 addresses are not asked", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "portal.acme.test")
		require.NoError(t, err)
		require.Equal(t, []Hop{{Name: "portal.acme.test", Target: canon}}, c.Hops)
		require.Equal(t, canon, c.Final)
		require.Equal(t, "NOERROR", c.Rcode)
		require.Equal(t, b.srv.Addr(), c.Server)
		require.True(t, c.HasA)
		require.False(t, c.HasAAAA)
		require.Equal(t, []string{"192.0.2.10"}, c.Addresses)
		require.Equal(t, 1, c.Queries)
		require.Positive(t, c.Duration)
	})

	t.Run("follows a chain across zones from one answer", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "chain.acme.test")
		require.NoError(t, err)
		require.Equal(t, []string{"chain.acme.test", "step1.acme.test", "step2.globex.test", canon}, c.Names())
		require.Equal(t, 1, netQueries(b.srv, "chain.acme.test", "udp"))
		require.Zero(t, netQueries(b.srv, "step1.acme.test", "udp"), "the answer already held the chain")
	})

	t.Run("re-queries a CNAME target the server did not follow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.NoChase("chain.acme.test")
		b.srv.NoChase("step1.acme.test")
		c, err := b.res.LookupChain(ctx(t), "chain.acme.test")
		require.NoError(t, err)
		require.Equal(t, []string{"chain.acme.test", "step1.acme.test", "step2.globex.test", canon}, c.Names())
		require.True(t, c.HasA)
		require.Equal(t, 1, netQueries(b.srv, "step1.acme.test", "udp"))
		require.Equal(t, 1, netQueries(b.srv, "step2.globex.test", "udp"))
	})

	t.Run("is case- and trailing-dot-insensitive", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "Upper.ACME.test.")
		require.NoError(t, err)
		require.Equal(t, "upper.acme.test", c.Name)
		require.Equal(t, []Hop{{Name: "upper.acme.test", Target: canon}}, c.Hops)
		require.True(t, c.HasA)
	})

	t.Run("reports NXDOMAIN as an observation", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "missing.acme.test")
		require.NoError(t, err)
		require.Empty(t, c.Hops)
		require.Equal(t, "NXDOMAIN", c.Rcode)
		require.False(t, c.HasA)
	})

	t.Run("reports NXDOMAIN at the end of a chain", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "evil.acme.test")
		require.NoError(t, err)
		require.Equal(t, "evil.abc1234.portal.test", c.Final)
		require.Equal(t, "NXDOMAIN", c.Rcode)
	})

	t.Run("detects a loop", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "loop1.acme.test")
		require.NoError(t, err)
		require.True(t, c.Loop)
		require.Equal(t, []string{"loop1.acme.test", "loop2.acme.test", "loop1.acme.test"}, c.Names())
	})

	t.Run("detects a loop the server did not resolve", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.NoChase("loop1.acme.test")
		b.srv.NoChase("loop2.acme.test")
		c, err := b.res.LookupChain(ctx(t), "loop1.acme.test")
		require.NoError(t, err)
		require.True(t, c.Loop)
		require.Len(t, c.Hops, 2)
	})

	t.Run("stops a chain longer than MaxChain", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "long1.acme.test")
		require.NoError(t, err)
		require.True(t, c.TooLong)
		require.Len(t, c.Hops, DefaultMaxChain)
	})

	t.Run("follows the same chain when MaxChain allows it", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{MaxChain: 10})
		c, err := b.res.LookupChain(ctx(t), "long1.acme.test")
		require.NoError(t, err)
		require.False(t, c.TooLong)
		require.Len(t, c.Hops, 10)
		require.Equal(t, canon, c.Final)
	})

	t.Run("retries a truncated answer over TCP", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, err := b.res.LookupChain(ctx(t), "bulky.acme.test")
		require.NoError(t, err)
		require.Equal(t, "c0ffee1.portal.test", c.Final)
		require.Len(t, c.Addresses, 120, "every A record, which UDP could not carry")
		require.Equal(t, 1, netQueries(b.srv, "bulky.acme.test", "udp"))
		require.Equal(t, 1, netQueries(b.srv, "bulky.acme.test", "tcp"))
	})

	t.Run("does not trust a truncated answer even when it looks complete", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.Truncate("forcetc.acme.test")
		c, err := b.res.LookupChain(ctx(t), "forcetc.acme.test")
		require.NoError(t, err)
		require.Equal(t, canon, c.Final)
		require.Equal(t, 1, netQueries(b.srv, "forcetc.acme.test", "tcp"))
	})

	t.Run("SERVFAIL from every server is an error naming the server", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.ServFail("servfail.acme.test")
		_, err := b.res.LookupChain(ctx(t), "servfail.acme.test")
		require.ErrorIs(t, err, ErrServFail)
		var qe *QueryError
		require.ErrorAs(t, err, &qe)
		require.Equal(t, "SERVFAIL at "+b.srv.Addr(), qe.Summary())
	})

	t.Run("a name that never answers times out within the per-query timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.Drop("blackhole.acme.test")
		lookupCtx := ctx(t)
		c, err := b.res.LookupChain(lookupCtx, "blackhole.acme.test")
		require.ErrorIs(t, err, ErrTimeout)
		require.NotErrorIs(t, err, context.DeadlineExceeded)
		require.NoError(t, lookupCtx.Err(), "the per-query timeout ended the lookup, not the context")
		require.Empty(t, c.Rcode)
	})

	t.Run("REFUSED outside the served zones is an error", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		_, err := b.res.LookupChain(ctx(t), "portal.example.org")
		require.ErrorIs(t, err, ErrRefused)
	})

	t.Run("moves on to the next server after SERVFAIL, REFUSED or a timeout", func(t *testing.T) {
		t.Parallel()
		bad := dnstest.Start(t)
		bad.ServFail("portal.acme.test")
		refusing := dnstest.Start(t, "globex.test.zone")
		silent := dnstest.Start(t)
		silent.Drop("portal.acme.test")
		good := dnstest.Start(t)
		r, err := NewResolver(Config{Servers: []string{bad.Addr(), refusing.Addr(), silent.Addr(), good.Addr()}, Timeout: 200 * time.Millisecond})
		require.NoError(t, err)
		c, err := r.LookupChain(ctx(t), "portal.acme.test")
		require.NoError(t, err)
		require.Equal(t, good.Addr(), c.Server)
		require.Equal(t, canon, c.Final)
	})

	t.Run("an unreachable server is a network error", func(t *testing.T) {
		t.Parallel()
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.LocalAddr().String()
		require.NoError(t, l.Close())
		r, err := NewResolver(Config{Servers: []string{addr}, Timeout: 200 * time.Millisecond})
		require.NoError(t, err)
		_, err = r.LookupChain(ctx(t), "portal.acme.test")
		require.True(t, errors.Is(err, ErrNetwork) || errors.Is(err, ErrTimeout), "%v", err)
	})

	t.Run("an invalid name is rejected before any query", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		_, err := b.res.LookupChain(ctx(t), "portal..acme.test")
		require.ErrorIs(t, err, ErrInvalidName)
		require.Empty(t, b.srv.Queries())
	})

	t.Run("a cancelled context stops the lookup", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		c, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := b.res.LookupChain(c, "portal.acme.test")
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestLookupCAA(t *testing.T) {
	t.Parallel()

	t.Run("finds the records on a parent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		res, err := b.res.LookupCAA(ctx(t), "portal.acme.test")
		require.NoError(t, err)
		require.Equal(t, "acme.test", res.Level)
		require.Equal(t, "acme.test", res.Owner)
		require.ElementsMatch(t, []CAARecord{
			{Tag: "issue", Value: "letsencrypt.org"},
			{Tag: "iodef", Value: "mailto:security@acme.test"},
		}, res.Records)
	})

	t.Run("stops at the closest non-empty set", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		res, err := b.res.LookupCAA(ctx(t), "portal.strict.acme.test")
		require.NoError(t, err)
		require.Equal(t, "strict.acme.test", res.Level)
		require.Len(t, res.Records, 2)
	})

	t.Run("follows the name's CNAME at each level", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		res, err := b.res.LookupCAA(ctx(t), "viaalias.acme.test")
		require.NoError(t, err)
		require.Equal(t, "viaalias.acme.test", res.Level)
		require.Equal(t, "caa1234.portal.test", res.Owner)
		require.Equal(t, []CAARecord{{Tag: "issue", Value: "sectigo.com"}}, res.Records)
	})

	t.Run("follows the CNAME itself when the server does not", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.NoChase("aliased.strict.acme.test")
		res, err := b.res.LookupCAA(ctx(t), "aliased.strict.acme.test")
		require.NoError(t, err)
		require.Equal(t, "le00001.portal.test", res.Owner)
		require.Equal(t, []CAARecord{{Tag: "issue", Value: "letsencrypt.org"}}, res.Records)
	})

	t.Run("climbs from the alias's parent, not the target's", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		res, err := b.res.LookupCAA(ctx(t), "portal.globex.test")
		require.NoError(t, err)
		require.Empty(t, res.Records)
		require.Empty(t, res.Level)
		var asked []string
		for _, q := range b.srv.Queries() {
			if q.Type == "CAA" {
				asked = append(asked, q.Name)
			}
		}
		// abc1234.portal.test is asked again because an answer that ends at a
		// CNAME looks the same whether the target has no CAA or the server did
		// not follow; portal.test, the target's parent, is never asked.
		require.Equal(t, []string{"portal.globex.test", "abc1234.portal.test", "globex.test", "test"}, asked)
	})

	t.Run("a failing level is an error, not an empty set", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.ServFail("acme.test")
		_, err := b.res.LookupCAA(ctx(t), "portal.acme.test")
		require.ErrorIs(t, err, ErrServFail)
	})

	t.Run("a loop at one level counts as no records there", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		res, err := b.res.LookupCAA(ctx(t), "loop1.acme.test")
		require.NoError(t, err)
		require.Equal(t, "acme.test", res.Level)
	})
}

func TestCheck(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name, domain, canonical string
		outcome                 Outcome
		contains                []string
	}{
		{"a direct CNAME verifies with CAA allowing on the parent", "portal.acme.test", canon, OutcomeVerified,
			[]string{"Detected CNAME abc1234.portal.test for portal.acme.test as expected", "CAA records on acme.test allow letsencrypt.org"}},
		{"a chain across zones verifies", "chain.acme.test", canon, OutcomeVerified,
			[]string{"chain.acme.test → step1.acme.test → step2.globex.test → abc1234.portal.test"}},
		{"a chain past the canonical host verifies", "pastcanon.acme.test", "def5678.portal.test", OutcomeVerified, nil},
		{"upper case and trailing dots verify", "UPPER.Acme.Test.", "ABC1234.portal.test.", OutcomeVerified, nil},
		{"no CAA anywhere verifies", "portal.globex.test", canon, OutcomeVerified,
			[]string{"no CAA records restrict certificate issuance"}},
		{"CAA allowing among several issuers verifies", "portal.multi.acme.test", canon, OutcomeVerified, nil},
		{"CAA allowing on the alias target wins over the parent", "aliased.strict.acme.test", "le00001.portal.test", OutcomeVerified,
			[]string{"le00001.portal.test (the CNAME target of aliased.strict.acme.test) allow letsencrypt.org"}},
		{"a CNAME elsewhere is a mismatch", "wrong.acme.test", canon, OutcomeMismatch,
			[]string{"Detected CNAME www.acme.test for wrong.acme.test; expected abc1234.portal.test. Update the CNAME record of wrong.acme.test to point to abc1234.portal.test."}},
		{"a name below the canonical host is a mismatch", "evil.acme.test", canon, OutcomeMismatch,
			[]string{"Detected CNAME evil.abc1234.portal.test"}},
		{"a name extending the canonical host is a mismatch", "prefix.acme.test", canon, OutcomeMismatch,
			[]string{"Detected CNAME abc1234.portal.test.attacker.test"}},
		{"NXDOMAIN is a mismatch", "missing.acme.test", canon, OutcomeMismatch,
			[]string{"No DNS record found for missing.acme.test (NXDOMAIN). Add a CNAME record for missing.acme.test pointing to abc1234.portal.test."}},
		{"an A record is a mismatch", "arecord.acme.test", canon, OutcomeMismatch,
			[]string{"Detected address records (192.0.2.81)"}},
		{"an AAAA record alone is a mismatch naming it", "aaaaonly.acme.test", canon, OutcomeMismatch,
			[]string{"Detected address records (2001:db8::81)"}},
		{"a name with only TXT is a mismatch", "txtonly.acme.test", canon, OutcomeMismatch,
			[]string{"txtonly.acme.test exists but has no CNAME record"}},
		{"a loop is a mismatch", "loop1.acme.test", canon, OutcomeMismatch,
			[]string{"form a loop (loop1.acme.test → loop2.acme.test → loop1.acme.test)"}},
		{"a chain too long is a mismatch", "long1.acme.test", canon, OutcomeMismatch,
			[]string{"longer than 8 hops"}},
		{"CAA allowing only another CA forbids", "portal.strict.acme.test", canon, OutcomeCAAForbidden,
			[]string{"CAA records on strict.acme.test allow only sectigo.com and digicert.com; add `strict.acme.test. CAA 0 issue \"letsencrypt.org\"`"}},
		{"CAA with an empty issuer forbids", "portal.closed.acme.test", canon, OutcomeCAAForbidden,
			[]string{"forbid every certificate authority"}},
		{"CAA with a critical unknown tag forbids", "portal.crit.acme.test", canon, OutcomeCAAForbidden,
			[]string{"`crit.acme.test. CAA 128 tbs \"unknown\"`"}},
		{"CAA on the alias target forbids", "viaalias.acme.test", "caa1234.portal.test", OutcomeCAAForbidden,
			[]string{"CAA records on caa1234.portal.test (the CNAME target of viaalias.acme.test) allow only sectigo.com"}},
		{"a truncated answer verifies over TCP", "bulky.acme.test", "c0ffee1.portal.test", OutcomeVerified, nil},
		{"a name outside every zone is a resolver error", "portal.example.org", canon, OutcomeResolverError,
			[]string{"REFUSED at"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{})
			rep := b.res.Check(ctx(t), tc.domain, tc.canonical, "letsencrypt.org")
			require.Equal(t, tc.outcome, rep.Outcome, rep.Message)
			for _, s := range tc.contains {
				require.Contains(t, rep.Message, s)
			}
			require.Positive(t, rep.Duration)
			require.Equal(t, tc.outcome == OutcomeVerified || tc.outcome == OutcomeCAAForbidden, rep.Checks[0].OK)
		})
	}

	t.Run("the suffix trap fails even though the target is under the canonical host", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.Set("sneaky.acme.test. 300 IN CNAME evil.abc1234.portal.test.", "evil.abc1234.portal.test. 300 IN A 192.0.2.66")
		rep := b.res.Check(ctx(t), "sneaky.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeMismatch, rep.Outcome)
		require.True(t, rep.Chain.HasA)
	})

	t.Run("CAA is reported even when the CNAME is wrong", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.Set("portal.strict.acme.test. 300 IN CNAME www.acme.test.")
		rep := b.res.Check(ctx(t), "portal.strict.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeMismatch, rep.Outcome)
		require.False(t, rep.Checks[1].OK)
		require.Contains(t, rep.Checks[1].Seen, "sectigo.com")
	})

	t.Run("SERVFAIL is a resolver error naming the server", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.ServFail("servfail.acme.test")
		rep := b.res.Check(ctx(t), "servfail.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeResolverError, rep.Outcome)
		require.Equal(t, "Our DNS resolvers could not get an answer for servfail.acme.test (SERVFAIL at "+b.srv.Addr()+
			"); this is not a problem with your records; we will keep checking.", rep.Message)
		require.Nil(t, rep.CAA, "no CAA lookups against a failing resolver")
	})

	t.Run("a name that never answers is a resolver error after the short timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.Drop("blackhole.acme.test")
		checkCtx := ctx(t)
		rep := b.res.Check(checkCtx, "blackhole.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeResolverError, rep.Outcome)
		require.Contains(t, rep.Message, "(timeout at "+b.srv.Addr()+")")
		require.NoError(t, checkCtx.Err(), "the per-query timeout ended the check, not the context")
	})

	t.Run("a CAA lookup failure is a resolver error", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		b.srv.ServFail("strict.acme.test")
		rep := b.res.Check(ctx(t), "portal.strict.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeResolverError, rep.Outcome)
		require.True(t, rep.Checks[0].OK)
		require.Contains(t, rep.Message, "the CAA records of strict.acme.test (SERVFAIL at")
	})

	t.Run("a zone that gains the right record verifies on the next check", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		first := b.res.Check(ctx(t), "late.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeMismatch, first.Outcome)
		require.Contains(t, first.Message, "NXDOMAIN")

		b.srv.Set("late.acme.test. 300 IN CNAME " + canon + ".")
		second := b.res.Check(ctx(t), "late.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeVerified, second.Outcome, second.Message)
	})

	t.Run("a wrong record that is corrected verifies on the next check", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{})
		require.Equal(t, OutcomeMismatch, b.res.Check(ctx(t), "fixme.acme.test", canon, "letsencrypt.org").Outcome)
		b.srv.Set("fixme.acme.test. 300 IN CNAME " + canon + ".")
		require.Equal(t, OutcomeVerified, b.res.Check(ctx(t), "fixme.acme.test", canon, "letsencrypt.org").Outcome)
		b.srv.Remove("fixme.acme.test", "CNAME")
		require.Equal(t, OutcomeMismatch, b.res.Check(ctx(t), "fixme.acme.test", canon, "letsencrypt.org").Outcome)
	})

	t.Run("a lossy first server is covered by the second", func(t *testing.T) {
		t.Parallel()
		lossy, good, r := lossyThenGood(t)
		for range 3 {
			rep := r.Check(ctx(t), "portal.acme.test", canon, "letsencrypt.org")
			require.Equal(t, OutcomeVerified, rep.Outcome, rep.Message)
		}
		var dropped int
		for _, q := range lossy.Queries() {
			if q.Dropped {
				dropped++
			}
		}
		require.Positive(t, dropped, "the lossy server must actually have dropped packets")
		require.NotEmpty(t, good.Queries())
	})

	t.Run("a check asks over one socket per server, and replaces one that lost a query", func(t *testing.T) {
		t.Parallel()
		lossy, good, r := lossyThenGood(t)
		rep := r.Check(ctx(t), "portal.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeVerified, rep.Outcome, rep.Message)

		asked := lossy.Queries()
		require.GreaterOrEqual(t, len(asked), 3, "the check asks the first server several questions")
		for i := 1; i < len(asked); i++ {
			if asked[i-1].Dropped {
				require.NotEqual(t, asked[i-1].From, asked[i].From, "query %d after a lost one must come from a new socket", i)
			} else {
				require.Equal(t, asked[i-1].From, asked[i].From, "query %d after an answered one reuses the socket", i)
			}
		}
		covered := good.Queries()
		require.NotEmpty(t, covered)
		for _, q := range covered {
			require.Equal(t, covered[0].From, q.From, "the second server's queries share one socket")
		}
	})

	t.Run("a lossy only server is a resolver error, not a mismatch", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{Timeout: 100 * time.Millisecond})
		b.srv.DropEvery(1)
		rep := b.res.Check(ctx(t), "portal.acme.test", canon, "letsencrypt.org")
		require.Equal(t, OutcomeResolverError, rep.Outcome)
	})
}
