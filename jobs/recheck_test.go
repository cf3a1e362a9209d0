package jobs

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

var recheckCfg = RecheckConfig{Interval: 6 * time.Hour, Grace: time.Hour}

func activeRec() domain.Record {
	r := rec
	r.Status, r.StatusMessage, r.Generation = domain.StatusActive, liveMessage, 3
	return r
}

var (
	dnsOK       = DNSVerdict{Outcome: DNSVerified, Message: "Detected CNAME abc1234.portal.algapsa.com for portal.acme.com as expected"}
	dnsGone     = DNSVerdict{Outcome: DNSMismatch, Message: "No DNS record found for portal.acme.com (NXDOMAIN). Add a CNAME record for portal.acme.com pointing to abc1234.portal.algapsa.com."}
	dnsElse     = DNSVerdict{Outcome: DNSMismatch, Message: "Detected CNAME shop.other.net for portal.acme.com; expected abc1234.portal.algapsa.com. Update the CNAME record of portal.acme.com to point to abc1234.portal.algapsa.com."}
	dnsResolver = DNSVerdict{Outcome: DNSResolverError, Message: "Our DNS resolvers could not check portal.acme.com (timeout); this is not a problem with your records; we will keep checking."}
	httpsOK     = ProbeResult{OK: true, CertificateNotAfter: t0.Add(60 * 24 * time.Hour)}
	httpsBad    = ProbeResult{Message: "the certificate served for portal.acme.com expired on 2026-11-20T00:00:00Z"}
)

func TestDecideRecheck(t *testing.T) {
	t.Parallel()

	t.Run("a healthy domain writes nothing to its row and opens nothing", func(t *testing.T) {
		t.Parallel()
		d := decideRecheck(recheckInput{Rec: activeRec(), DNS: dnsOK, Probe: httpsOK, Now: t0}, recheckCfg)
		require.Equal(t, RecheckOK, d.Outcome)
		require.Empty(t, d.ProblemKind)
		require.Empty(t, d.Message, "no history row per healthy check")
		require.Nil(t, d.Open)
		require.Empty(t, d.Resolve)
		require.True(t, d.CheckBy.IsZero(), "the regular schedule")
	})

	t.Run("a removed CNAME is told at once, with what was seen and what to do, and alerted only after the grace", func(t *testing.T) {
		t.Parallel()
		d := decideRecheck(recheckInput{Rec: activeRec(), DNS: dnsGone, Probe: httpsOK, Now: t0}, recheckCfg)
		require.Equal(t, RecheckDNSMismatch, d.Outcome)
		require.Equal(t, AlertDNSDrift, d.ProblemKind)
		require.Equal(t, t0, d.ProblemSince)
		require.Contains(t, d.Message, "No DNS record found for portal.acme.com (NXDOMAIN)")
		require.Contains(t, d.Message, "Add a CNAME record for portal.acme.com pointing to abc1234.portal.algapsa.com")
		require.Contains(t, d.Message, "Seen since 2026-11-26T12:00:00Z")
		require.Equal(t, AlertDNSDrift, d.Details["problem"])
		require.Nil(t, d.Open, "within the grace period")
		require.Equal(t, t0.Add(15*time.Minute), d.CheckBy, "a problem is looked at every quarter of the grace")

		// The next check, still within the grace: same incident, same
		// message, so the row is not written again.
		r := activeRec()
		r.StatusMessage = d.Message
		state := RecheckState{ProblemKind: AlertDNSDrift, ProblemSince: t0}
		d2 := decideRecheck(recheckInput{Rec: r, State: state, DNS: dnsGone, Probe: httpsOK, Now: t0.Add(30 * time.Minute)}, recheckCfg)
		require.Equal(t, t0, d2.ProblemSince)
		require.Empty(t, d2.Message)
		require.Nil(t, d2.Open)

		// Past the grace: the alert opens, while the row is active since
		// when it was read.
		d3 := decideRecheck(recheckInput{Rec: r, State: state, DNS: dnsGone, Probe: httpsOK, Now: t0.Add(time.Hour)}, recheckCfg)
		require.NotNil(t, d3.Open)
		require.Equal(t, AlertDNSDrift, d3.Open.Kind)
		require.Equal(t, RecheckDNSMismatch, d3.Open.Reason)
		require.Equal(t, t0, d3.Open.NotReadySince)
		require.Equal(t, domain.StatusActive, d3.Open.WhileStatus)
		require.Contains(t, d3.Open.Message, "no longer leads to abc1234.portal.algapsa.com (since 2026-11-26T12:00:00Z)")
		require.Contains(t, d3.Open.Message, "checked every 15m")

		// Once open, it is not opened again.
		state.OpenAlerts = map[string]int64{AlertDNSDrift: 7}
		d4 := decideRecheck(recheckInput{Rec: r, State: state, DNS: dnsGone, Probe: httpsOK, Now: t0.Add(3 * 24 * time.Hour)}, recheckCfg)
		require.Nil(t, d4.Open)
		require.Empty(t, d4.Resolve)
		require.Equal(t, AlertDNSDrift, d4.ProblemKind, "days later the domain is still told, never disabled")

		// Fixed: the live message is back and the alert resolves.
		d5 := decideRecheck(recheckInput{Rec: r, State: state, DNS: dnsOK, Probe: httpsOK, Now: t0.Add(3*24*time.Hour + time.Minute)}, recheckCfg)
		require.Equal(t, RecheckOK, d5.Outcome)
		require.Empty(t, d5.ProblemKind)
		require.Equal(t, liveMessage, d5.Message)
		require.Equal(t, AlertDNSDrift, d5.Details["recovered_from"])
		require.Len(t, d5.Resolve, 1)
		require.Contains(t, d5.Resolve[7], "portal.acme.com points to abc1234.portal.algapsa.com")
		require.True(t, d5.CheckBy.IsZero())
	})

	t.Run("a CNAME changed to another target updates the message but keeps the incident", func(t *testing.T) {
		t.Parallel()
		r := activeRec()
		first := decideRecheck(recheckInput{Rec: r, DNS: dnsGone, Probe: httpsOK, Now: t0}, recheckCfg)
		r.StatusMessage = first.Message
		d := decideRecheck(recheckInput{Rec: r, State: RecheckState{ProblemKind: AlertDNSDrift, ProblemSince: t0}, DNS: dnsElse, Probe: httpsOK,
			Now: t0.Add(10 * time.Minute)}, recheckCfg)
		require.Equal(t, t0, d.ProblemSince)
		require.Contains(t, d.Message, "Detected CNAME shop.other.net")
	})

	t.Run("CAA forbidding the CA is DNS drift", func(t *testing.T) {
		t.Parallel()
		d := decideRecheck(recheckInput{Rec: activeRec(), DNS: DNSVerdict{Outcome: DNSCAAForbidden, Message: "CAA records on acme.com allow only sectigo.com; add ..."},
			Probe: httpsOK, Now: t0}, recheckCfg)
		require.Equal(t, RecheckCAAForbidden, d.Outcome)
		require.Equal(t, AlertDNSDrift, d.ProblemKind)
		require.Contains(t, d.Message, "Until this is fixed, its certificate cannot be renewed.")
		require.NotContains(t, d.Message, "visitors may not reach", "the CNAME still leads here")
	})

	t.Run("HTTPS failing with DNS right is its own incident, not the tenant's to fix", func(t *testing.T) {
		t.Parallel()
		d := decideRecheck(recheckInput{Rec: activeRec(), DNS: dnsOK, Probe: httpsBad, Now: t0}, recheckCfg)
		require.Equal(t, RecheckHTTPSFailed, d.Outcome)
		require.Equal(t, AlertHTTPSFailed, d.ProblemKind)
		require.Contains(t, d.Message, "expired on 2026-11-20")
		require.Contains(t, d.Message, "nothing is needed from you")

		// DNS breaking while HTTPS was failing: the HTTPS alert resolves,
		// and DNS drift is a new incident.
		state := RecheckState{ProblemKind: AlertHTTPSFailed, ProblemSince: t0, OpenAlerts: map[string]int64{AlertHTTPSFailed: 3}}
		d2 := decideRecheck(recheckInput{Rec: activeRec(), State: state, DNS: dnsGone, Probe: httpsBad, Now: t0.Add(2 * time.Hour)}, recheckCfg)
		require.Equal(t, AlertDNSDrift, d2.ProblemKind)
		require.Equal(t, t0.Add(2*time.Hour), d2.ProblemSince)
		require.Contains(t, d2.Resolve[3], "now has another problem (dns_mismatch)")
		require.Nil(t, d2.Open)
	})

	t.Run("resolver trouble changes nothing but looks again soon", func(t *testing.T) {
		t.Parallel()
		state := RecheckState{ProblemKind: AlertDNSDrift, ProblemSince: t0, OpenAlerts: map[string]int64{AlertDNSDrift: 9}}
		d := decideRecheck(recheckInput{Rec: activeRec(), State: state, DNS: dnsResolver, Now: t0.Add(5 * time.Hour)}, recheckCfg)
		require.Equal(t, RecheckResolverError, d.Outcome)
		require.Equal(t, AlertDNSDrift, d.ProblemKind, "the incident neither ends nor restarts")
		require.Equal(t, t0, d.ProblemSince)
		require.Empty(t, d.Message)
		require.Empty(t, d.Resolve)
		require.Nil(t, d.Open)
		require.Equal(t, t0.Add(5*time.Hour+15*time.Minute), d.CheckBy)
	})

	t.Run("a message someone else wrote on a healthy domain is left alone", func(t *testing.T) {
		t.Parallel()
		r := activeRec()
		r.StatusMessage = "Set up by the appliance edition."
		d := decideRecheck(recheckInput{Rec: r, DNS: dnsOK, Probe: httpsOK, Now: t0}, recheckCfg)
		require.Empty(t, d.Message)
	})
}

func TestProblemRecheck(t *testing.T) {
	t.Parallel()
	require.Equal(t, 15*time.Minute, RecheckConfig{Interval: 6 * time.Hour, Grace: time.Hour}.ProblemRecheck())
	require.Equal(t, 6*time.Hour, RecheckConfig{Interval: 6 * time.Hour, Grace: 72 * time.Hour}.ProblemRecheck(), "never rarer than the interval")
	require.Equal(t, time.Second, RecheckConfig{Interval: time.Hour, Grace: time.Second}.ProblemRecheck(), "never more often than every second")
	require.Equal(t, time.Minute, DefaultRecheckConfig().ScheduleEvery)
	require.Equal(t, 6*time.Second, RecheckConfig{Interval: time.Minute}.withDefaults().ScheduleEvery)
}

// The jitter keeps every next check within ±10 % of the interval, and the
// first sight of a domain within the coming interval, whatever the random
// draw and interval.
func FuzzRecheckJitter(f *testing.F) {
	f.Add(int64(6*time.Hour), 0.0)
	f.Add(int64(6*time.Hour), 0.999999)
	f.Add(int64(time.Minute), 0.5)
	f.Add(int64(time.Second), -3.0)
	f.Add(int64(7*24*time.Hour), 42.0)
	f.Fuzz(func(t *testing.T, interval int64, u float64) {
		// Every input is folded into the settings' range (1ns to 168h) instead of skipped.
		week := int64(7 * 24 * time.Hour)
		iv := time.Duration(1 + (interval%week+week)%week)
		if math.IsNaN(u) {
			u = 0
		}
		next := NextRecheck(t0, iv, u).Sub(t0)
		lo := time.Duration(float64(iv) * (1 - RecheckJitter))
		hi := time.Duration(float64(iv) * (1 + RecheckJitter))
		if next < lo-1 || next > hi+1 {
			t.Fatalf("NextRecheck(%s, u=%v) = +%s, outside [%s, %s]", iv, u, next, lo, hi)
		}
		first := FirstRecheck(t0, iv, u).Sub(t0)
		if first < 0 || first > iv {
			t.Fatalf("FirstRecheck(%s, u=%v) = +%s, outside [0, %s]", iv, u, first, iv)
		}
	})
}

// 100,000 domains seen at once are spread evenly over the interval, and a
// fleet checked at the same instant spreads evenly over ±10 % at the next
// round: each hour, and each tenth of the jitter window, holds its share
// within 5 %.
func TestRecheckSpread(t *testing.T) {
	t.Parallel()
	const n = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	interval := 6 * time.Hour
	perHour := make([]int, 6)
	perWindow := make([]int, 10)
	for range n {
		first := FirstRecheck(t0, interval, rng.Float64()).Sub(t0)
		perHour[int(first/time.Hour)]++
		next := NextRecheck(t0, interval, rng.Float64()).Sub(t0)
		window := (next - time.Duration(float64(interval)*(1-RecheckJitter))) * 10 / time.Duration(float64(interval)*2*RecheckJitter)
		perWindow[min(int(window), 9)]++
	}
	for h, c := range perHour {
		require.InDelta(t, n/6, c, n/6*0.05, "hour %d of the first round: %v", h, perHour)
	}
	for w, c := range perWindow {
		require.InDelta(t, n/10, c, n/10*0.05, "tenth %d of the jitter window: %v", w, perWindow)
	}
}
