package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	tDomain = "portal.acme.com"
	tCanon  = "abc1234.portal.algapsa.com"
	tCA     = "letsencrypt.org"
)

func hops(names ...string) []Hop {
	var out []Hop
	for i := 0; i+1 < len(names); i++ {
		out = append(out, Hop{Name: names[i], Target: names[i+1]})
	}
	return out
}

func timeoutErr(name, qtype string) error {
	return &QueryError{Name: name, Type: qtype, Failures: []Failure{
		{Server: "127.0.0.1:53", Reason: "timeout", Err: fmt.Errorf("%w: i/o timeout", ErrTimeout)},
	}}
}

func noCAA() *CAAResult { return &CAAResult{Name: tDomain} }

func caaOn(level string, recs ...CAARecord) *CAAResult {
	return &CAAResult{Name: tDomain, Level: level, Owner: level, Records: recs}
}

func TestDecide(t *testing.T) {
	t.Parallel()

	base := func(c Chain) Observation {
		if c.Name == "" {
			c.Name = tDomain
		}
		return Observation{Domain: tDomain, CanonicalHost: tCanon, CAAIdentity: tCA, Chain: c, CAA: noCAA()}
	}

	for _, tc := range []struct {
		name    string
		obs     Observation
		outcome Outcome
		message string // exact when set
		cnameOK bool
		caaOK   bool
		seen    string // cname check's Seen, when set
	}{
		{
			name:    "a direct CNAME to the canonical host verifies",
			obs:     base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR", HasA: true}),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
			message: "Detected CNAME abc1234.portal.algapsa.com for portal.acme.com as expected; no CAA records restrict certificate issuance.",
			seen:    "CNAME abc1234.portal.algapsa.com",
		},
		{
			name:    "a chain through the tenant's own names verifies",
			obs:     base(Chain{Hops: hops(tDomain, "x.acme.com", tCanon), Rcode: "NOERROR"}),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
			message: "Detected CNAME chain portal.acme.com → x.acme.com → abc1234.portal.algapsa.com, which reaches abc1234.portal.algapsa.com as expected; no CAA records restrict certificate issuance.",
		},
		{
			name:    "a chain that continues past the canonical host verifies",
			obs:     base(Chain{Hops: hops(tDomain, tCanon, "lb.algapsa.net"), Rcode: "NOERROR"}),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
		},
		{
			name:    "matching ignores case and trailing dots",
			obs:     base(Chain{Hops: hops(tDomain, "ABC1234.Portal.Algapsa.COM."), Rcode: "NOERROR"}),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
		},
		{
			name: "a resolver failure after the canonical host was reached still verifies",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon, "lb.algapsa.net")})
				o.ChainErr = timeoutErr("lb.algapsa.net", "A")
				return o
			}(),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
		},
		{
			name:    "a name below the canonical host is not a match",
			obs:     base(Chain{Hops: hops(tDomain, "evil."+tCanon), Rcode: "NXDOMAIN"}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "Detected CNAME evil.abc1234.portal.algapsa.com for portal.acme.com; expected abc1234.portal.algapsa.com. Update the CNAME record of portal.acme.com to point to abc1234.portal.algapsa.com.",
		},
		{
			name:    "a name that starts with the canonical host is not a match",
			obs:     base(Chain{Hops: hops(tDomain, tCanon+".evil.example"), Rcode: "NOERROR"}),
			outcome: OutcomeMismatch, caaOK: true,
		},
		{
			name:    "a CNAME elsewhere is a mismatch that names both targets",
			obs:     base(Chain{Hops: hops(tDomain, "foo.example.net"), Rcode: "NOERROR", HasA: true, Addresses: []string{"192.0.2.1"}}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "Detected CNAME foo.example.net for portal.acme.com; expected abc1234.portal.algapsa.com. Update the CNAME record of portal.acme.com to point to abc1234.portal.algapsa.com.",
			seen:    "CNAME foo.example.net",
		},
		{
			name:    "a chain elsewhere lists the chain",
			obs:     base(Chain{Hops: hops(tDomain, "a.example.net", "b.example.net"), Rcode: "NOERROR"}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "Detected CNAME chain portal.acme.com → a.example.net → b.example.net, which does not reach abc1234.portal.algapsa.com. Update the CNAME record of portal.acme.com to point to abc1234.portal.algapsa.com.",
		},
		{
			name:    "NXDOMAIN tells the tenant to add the record",
			obs:     base(Chain{Rcode: "NXDOMAIN"}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "No DNS record found for portal.acme.com (NXDOMAIN). Add a CNAME record for portal.acme.com pointing to abc1234.portal.algapsa.com.",
			seen:    "NXDOMAIN",
		},
		{
			name:    "address records instead of a CNAME are named",
			obs:     base(Chain{Rcode: "NOERROR", HasA: true, Addresses: []string{"192.0.2.7"}}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "Detected address records (192.0.2.7) for portal.acme.com but no CNAME; expected a CNAME to abc1234.portal.algapsa.com. Replace the address records of portal.acme.com with a CNAME record pointing to abc1234.portal.algapsa.com.",
		},
		{
			name:    "a name without CNAME or addresses asks for the CNAME",
			obs:     base(Chain{Rcode: "NOERROR"}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "portal.acme.com exists but has no CNAME record (no CNAME or address records). Add a CNAME record for portal.acme.com pointing to abc1234.portal.algapsa.com.",
		},
		{
			name:    "a loop is the tenant's to fix",
			obs:     base(Chain{Hops: hops(tDomain, "a.acme.com", tDomain), Loop: true, Rcode: "NOERROR"}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "The CNAME records for portal.acme.com form a loop (portal.acme.com → a.acme.com → portal.acme.com). Update the CNAME record of portal.acme.com to point to abc1234.portal.algapsa.com.",
		},
		{
			name:    "a chain too long is the tenant's to fix",
			obs:     base(Chain{Hops: hops(tDomain, "a.acme.com", "b.acme.com"), TooLong: true, Rcode: "NOERROR"}),
			outcome: OutcomeMismatch, caaOK: true,
			message: "The CNAME chain of portal.acme.com is longer than 2 hops (portal.acme.com → a.acme.com → b.acme.com → ...) without reaching abc1234.portal.algapsa.com. Point portal.acme.com directly to abc1234.portal.algapsa.com with a CNAME record.",
		},
		{
			name: "an invalid domain is a mismatch, not a resolver error",
			obs: Observation{Domain: "portal..acme.com", CanonicalHost: tCanon,
				ChainErr: fmt.Errorf("%w: bad", ErrInvalidName)},
			outcome: OutcomeMismatch, caaOK: true,
			message: `"portal..acme.com" is not a valid DNS host name. Register the name exactly as it appears in DNS, for example portal.example.com.`,
		},
		{
			name: "a timeout is not the tenant's fault",
			obs: Observation{Domain: tDomain, CanonicalHost: tCanon, CAAIdentity: tCA,
				Chain: Chain{Name: tDomain}, ChainErr: timeoutErr(tDomain, "A")},
			outcome: OutcomeResolverError,
			message: "Our DNS resolvers could not get an answer for portal.acme.com (timeout at 127.0.0.1:53); this is not a problem with your records; we will keep checking.",
			seen:    "no answer: timeout at 127.0.0.1:53",
		},
		{
			name: "a failure on a CNAME target says where the chain got to",
			obs: Observation{Domain: tDomain, CanonicalHost: tCanon, CAAIdentity: tCA,
				Chain: Chain{Name: tDomain, Hops: hops(tDomain, "cdn.example.net")}, ChainErr: &QueryError{Name: "cdn.example.net", Type: "A",
					Failures: []Failure{{Server: "10.0.0.1:53", Reason: "SERVFAIL", Err: ErrServFail}, {Server: "10.0.0.2:53", Reason: "REFUSED", Err: ErrRefused}}}},
			outcome: OutcomeResolverError,
			message: "Our DNS resolvers could not get an answer for cdn.example.net (reached from portal.acme.com through CNAME cdn.example.net) (SERVFAIL at 10.0.0.1:53; REFUSED at 10.0.0.2:53); this is not a problem with your records; we will keep checking.",
		},
		{
			name: "a cancelled check is a resolver error",
			obs: Observation{Domain: tDomain, CanonicalHost: tCanon,
				Chain: Chain{Name: tDomain}, ChainErr: fmt.Errorf("query portal.acme.com A: %w", errors.New("context canceled"))},
			outcome: OutcomeResolverError, caaOK: true,
		},
		{
			name: "CAA naming another CA forbids, with the record to add",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA = caaOn("acme.com", CAARecord{Tag: "issue", Value: "sectigo.com"})
				return o
			}(),
			outcome: OutcomeCAAForbidden, cnameOK: true,
			message: "CAA records on acme.com allow only sectigo.com; add `acme.com. CAA 0 issue \"letsencrypt.org\"` so that a certificate can be issued for portal.acme.com.",
		},
		{
			name: "CAA with an empty issuer forbids everyone",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA = caaOn("acme.com", CAARecord{Tag: "issue", Value: ";"})
				return o
			}(),
			outcome: OutcomeCAAForbidden, cnameOK: true,
			message: "CAA records on acme.com forbid every certificate authority (0 issue \";\"); add `acme.com. CAA 0 issue \"letsencrypt.org\"` so that a certificate can be issued for portal.acme.com.",
		},
		{
			name: "CAA with an unknown critical tag forbids",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA = caaOn("acme.com", CAARecord{Tag: "issue", Value: tCA}, CAARecord{Flag: 128, Tag: "tbs", Value: "x"})
				return o
			}(),
			outcome: OutcomeCAAForbidden, cnameOK: true,
			message: "The CAA record `acme.com. CAA 128 tbs \"x\"` on acme.com marks a tag certificate authorities do not understand as critical, which forbids all certificates for portal.acme.com; remove it or set its flag to 0.",
		},
		{
			name: "CAA reached through an alias names the alias",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA = &CAAResult{Name: tDomain, Level: tDomain, Owner: tCanon, Records: []CAARecord{{Tag: "issue", Value: "sectigo.com"}, {Tag: "issue", Value: "digicert.com"}}}
				return o
			}(),
			outcome: OutcomeCAAForbidden, cnameOK: true,
			message: "CAA records on abc1234.portal.algapsa.com (the CNAME target of portal.acme.com) allow only sectigo.com and digicert.com; add `abc1234.portal.algapsa.com. CAA 0 issue \"letsencrypt.org\"` so that a certificate can be issued for portal.acme.com.",
		},
		{
			name: "CAA allowing the CA verifies",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA = caaOn("acme.com", CAARecord{Tag: "issue", Value: tCA})
				return o
			}(),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
			message: "Detected CNAME abc1234.portal.algapsa.com for portal.acme.com as expected and the CAA records on acme.com allow letsencrypt.org.",
		},
		{
			name: "a CAA lookup failure is a resolver error",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA, o.CAAErr = &CAAResult{Name: tDomain}, timeoutErr("acme.com", "CAA")
				return o
			}(),
			outcome: OutcomeResolverError, cnameOK: true,
			message: "Our DNS resolvers could not get an answer for the CAA records of acme.com (timeout at 127.0.0.1:53); this is not a problem with your records; we will keep checking.",
		},
		{
			name: "CAA that was never looked up does not verify",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAA = nil
				return o
			}(),
			outcome: OutcomeResolverError, cnameOK: true,
		},
		{
			name: "without a CA identity CAA is not checked",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, tCanon), Rcode: "NOERROR"})
				o.CAAIdentity, o.CAA = "", nil
				return o
			}(),
			outcome: OutcomeVerified, cnameOK: true, caaOK: true,
			message: "Detected CNAME abc1234.portal.algapsa.com for portal.acme.com as expected.",
		},
		{
			name: "a wrong CNAME wins over a forbidding CAA",
			obs: func() Observation {
				o := base(Chain{Hops: hops(tDomain, "foo.example.net"), Rcode: "NOERROR"})
				o.CAA = caaOn("acme.com", CAARecord{Tag: "issue", Value: "sectigo.com"})
				return o
			}(),
			outcome: OutcomeMismatch,
		},
		{
			name:    "an invalid canonical host is our problem",
			obs:     Observation{Domain: tDomain, CanonicalHost: "", Chain: Chain{Hops: hops(tDomain, tCanon)}},
			outcome: OutcomeResolverError,
			message: "We could not check the DNS of portal.acme.com because of a configuration problem on our side; this is not a problem with your records; we will keep checking.",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := Decide(tc.obs)
			require.Equal(t, tc.outcome, rep.Outcome, rep.Message)
			if tc.message != "" {
				require.Equal(t, tc.message, rep.Message)
			}
			require.NotEmpty(t, rep.Message)
			require.Len(t, rep.Checks, 2)
			require.Equal(t, "cname", rep.Checks[0].Name)
			require.Equal(t, "caa", rep.Checks[1].Name)
			require.Equal(t, tc.cnameOK, rep.Checks[0].OK, "cname check: %+v", rep.Checks[0])
			require.Equal(t, tc.caaOK, rep.Checks[1].OK, "caa check: %+v", rep.Checks[1])
			if tc.seen != "" {
				require.Equal(t, tc.seen, rep.Checks[0].Seen)
			}
			for _, c := range rep.Checks {
				if !c.OK && c.Name == "cname" && rep.Outcome == OutcomeMismatch {
					require.NotEmpty(t, c.Fix, "a failed check the tenant can fix says how")
				}
			}
			if rep.Outcome == OutcomeResolverError {
				require.NotEmpty(t, rep.Error)
				require.Contains(t, rep.Message, "not a problem with your records")
			} else {
				require.NotContains(t, rep.Message, "not a problem with your records")
			}
		})
	}
}

func TestReportJSON(t *testing.T) {
	t.Parallel()

	rep := Decide(Observation{
		Domain: "Portal.Acme.com.", CanonicalHost: tCanon, CAAIdentity: tCA,
		Chain: Chain{Name: tDomain, Hops: hops(tDomain, "foo.example.net"), Final: "foo.example.net", Rcode: "NOERROR",
			Server: "127.0.0.1:53", Queries: 2, HasA: true, Addresses: []string{"192.0.2.1"}, Duration: 3 * time.Millisecond},
		CAA:      caaOn("acme.com", CAARecord{Tag: "issue", Value: "sectigo.com"}),
		Duration: 5 * time.Millisecond,
	})
	b, err := json.Marshal(rep)
	require.NoError(t, err)

	var generic map[string]any
	require.NoError(t, json.Unmarshal(b, &generic))
	require.Equal(t, "mismatch", generic["outcome"])
	require.Equal(t, "portal.acme.com", generic["domain"])
	require.Equal(t, float64(5*time.Millisecond), generic["duration_ns"])
	chain := generic["chain"].(map[string]any)
	require.Equal(t, "foo.example.net", chain["hops"].([]any)[0].(map[string]any)["target"])
	require.Equal(t, "127.0.0.1:53", chain["server"])
	checks := generic["checks"].([]any)
	require.Equal(t, map[string]any{
		"name": "caa", "ok": false, "seen": `CAA on acme.com: 0 issue "sectigo.com"`,
		"expected": "CAA allows letsencrypt.org", "fix": "Add the record `acme.com. CAA 0 issue \"letsencrypt.org\"`",
	}, checks[1])

	var back Report
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, rep, back, "a stored report reads back unchanged")
}
