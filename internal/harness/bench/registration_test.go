package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSplitRegistrations(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := registrationTimes{Domain: "a.bench.test", Inserted: at(0), Verified: at(40), DNSCheck: 5 * time.Millisecond,
		Applied: at(90), CertCreated: at(70), CertReady: at(10_070), Active: at(10_200)}

	t.Run("total is DNS plus issuance plus ours, and ours is given by segment", func(t *testing.T) {
		t.Parallel()
		s, err := splitRegistrations([]registrationTimes{ok})
		require.NoError(t, err)
		ms := time.Millisecond
		require.Equal(t, []time.Duration{10_200 * ms}, s.Total)
		require.Equal(t, []time.Duration{5 * ms}, s.DNS)
		require.Equal(t, []time.Duration{10_000 * ms}, s.Issuance)
		require.Equal(t, []time.Duration{195 * ms}, s.Ours)
		require.Equal(t, []time.Duration{40 * ms}, s.ToVerified)
		require.Equal(t, []time.Duration{30 * ms}, s.VerifiedToApply)
		require.Equal(t, []time.Duration{130 * ms}, s.ReadyToActive)
		// Ours is the segments outside DNS and issuance.
		require.Equal(t, s.Ours[0], s.ToVerified[0]-s.DNS[0]+s.VerifiedToApply[0]+s.ReadyToActive[0])
	})

	t.Run("a domain missing a time or out of order is an error, the rest still split", func(t *testing.T) {
		t.Parallel()
		noReady := ok
		noReady.Domain, noReady.CertReady = "b.bench.test", time.Time{}
		early := ok
		early.Domain, early.Active = "c.bench.test", at(10_000)
		slowDNS := ok
		slowDNS.Domain, slowDNS.DNSCheck = "d.bench.test", time.Second
		s, err := splitRegistrations([]registrationTimes{ok, noReady, early, slowDNS})
		require.ErrorContains(t, err, "b.bench.test: no Certificate Ready time")
		require.ErrorContains(t, err, "c.bench.test: active before its Certificate was Ready")
		require.ErrorContains(t, err, "d.bench.test: DNS check of 1s does not fit")
		require.Len(t, s.Total, 1)
	})
}

func TestCohorts(t *testing.T) {
	t.Parallel()
	ids := newIDGen()
	ds := ids.domains(phaseAlgaPSA, 10)
	cs := cohorts(ds, 6)
	require.Len(t, cs, 6)
	var n int
	for _, c := range cs {
		require.True(t, len(c) == 1 || len(c) == 2, "cohort of %d", len(c))
		n += len(c)
	}
	require.Equal(t, 10, n)
	require.Len(t, cohorts(ds[:3], 6), 3, "no empty cohorts")
}

func TestRegistrationRows(t *testing.T) {
	t.Parallel()
	s := registrationSplit{}
	for i := 1; i <= 20; i++ {
		d := time.Duration(i) * time.Millisecond
		s.Total = append(s.Total, 10*time.Second+100*d)
		s.DNS = append(s.DNS, d)
		s.Issuance = append(s.Issuance, 10*time.Second)
		s.Ours = append(s.Ours, 99*d)
		s.ToVerified = append(s.ToVerified, 30*d)
		s.VerifiedToApply = append(s.VerifiedToApply, 20*d)
		s.ReadyToActive = append(s.ReadyToActive, 50*d)
	}
	var alga []time.Duration
	for i := 1; i <= 20; i++ {
		alga = append(alga, 60*time.Second+time.Duration(i)*3*time.Second)
	}
	rows := registrationRows(s, algapsaResult{total: alga, issuance: s.Issuance, ticks: 3, applies: 40, poll: time.Minute, took: 3 * time.Minute},
		20, 99.5, 12*time.Second, 100)
	require.Len(t, rows, 2)
	a, b := rows[0], rows[1]
	require.Equal(t, "7a", a.ID)
	require.InDelta(t, 11_900, a.Percentiles.P95, 0.1)
	require.InDelta(t, 117_000, a.BaselinePercentiles.P95, 0.1)
	require.False(t, a.Pass, "p95 11.9 s is less than 10× sooner than 117 s")
	require.Equal(t, "7b", b.ID)
	require.InDelta(t, 1881, b.Percentiles.P95, 0.1, "ours p95")
	require.False(t, b.Pass, "ours p95 1.9 s misses 250 ms")
	require.Equal(t, "ours: total − DNS lookups − issuance", b.Parts[0].Name)

	res := &Result{Rows: rows, Machine: Machine{CPUs: 2}}
	var out bytes.Buffer
	require.NoError(t, res.WriteTable(&out))
	require.Regexp(t, `(?m)^7a +registration → active, real ACME +\d+ / 11900 / 12000 ms +\d+ / 117000 / 120000 ms  AlgaPSA's design +0\.10 +≥ 10× sooner +MISS$`, out.String())
	require.Regexp(t, `(?m)^7b +our own time in 7a .* p95 < 250 ms +MISS$`, out.String())
}
