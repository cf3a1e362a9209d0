package bench

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
)

func TestGeneratedZonesVerify(t *testing.T) {
	t.Parallel()
	ids := newIDGen()
	ds := ids.domains(phaseDNS, 3)
	zones, err := generateZones(ds)
	require.NoError(t, err)
	srv, err := localdns.Start("127.0.0.1:0", zones...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close(context.Background())) })
	seen := &firstSeen{at: map[string]time.Time{}}
	srv.OnQuery(seen.record)
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{srv.Addr()}, Timeout: time.Second})
	require.NoError(t, err)

	for _, d := range ds {
		rep := resolver.Check(t.Context(), d.Name, d.Canonical, caaIdentity)
		require.Equal(t, dns.OutcomeVerified, rep.Outcome, rep.Message)
		_, asked := seen.get(d.Name)
		require.True(t, asked, "the first query for %s is recorded", d.Name)
	}
	_, asked := seen.get(canonicalSuffix)
	require.False(t, asked, "only tenant domains are recorded")
}

func TestIDsGiveEveryDomainItsOwnCanonicalPrefix(t *testing.T) {
	t.Parallel()
	ids := newIDGen()
	prefixes := map[string]bool{}
	for _, d := range append(ids.domains(phaseE2E, 5000), ids.domains(phaseLatency, 5000)...) {
		prefix, _, _ := strings.Cut(d.Canonical, ".")
		require.Len(t, prefix, 7)
		require.True(t, strings.HasPrefix(strings.ReplaceAll(d.Tenant, "-", ""), prefix))
		require.False(t, prefixes[prefix], "prefix %s given twice", prefix)
		prefixes[prefix] = true
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, Percentiles{P50: 50, P95: 95, P99: 99}, percentiles(ds))
	require.Equal(t, Percentiles{P50: 7, P95: 7, P99: 7}, percentiles([]time.Duration{7 * time.Millisecond}))
	require.Equal(t, Percentiles{}, percentiles(nil))
}

func TestParseStatusMemory(t *testing.T) {
	t.Parallel()
	rss, peak, err := parseStatusMemory([]byte("Name:\tportal-domains\nVmPeak:\t 1300000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   51200 kB\n"))
	require.NoError(t, err)
	require.Equal(t, 50.0, rss)
	require.Equal(t, 80.0, peak)
	_, _, err = parseStatusMemory([]byte("Name:\tx\n"))
	require.Error(t, err)
}

func TestWriteTable(t *testing.T) {
	t.Parallel()
	res := &Result{N: 2000, Machine: Machine{CPUs: 2, MemoryGiB: 24, LoadBefore: 3, Go: "go1.26.8", Postgres: "15"}, Took: time.Minute}
	p := Percentiles{P50: 4, P95: 9.5, P99: 120}
	res.Rows = []Row{
		latencyRow("4a", "insert → first DNS query", p, Percentiles{P50: 2, P95: 5, P99: 8}, "River insert → job start", insertToJobP95, 200, "note 4a"),
		throughputRow("1", "verify_dns jobs/s", "jobs/s", 300, 500, "River no-op jobs", "note 1"),
	}
	sortRows(res.Rows)
	require.Equal(t, "1", res.Rows[0].ID)
	require.False(t, res.Rows[0].Pass, "0.6 of the baseline misses 0.8")
	require.True(t, res.Rows[1].Pass, "p95 9.5 ms is under 100 ms")

	var out bytes.Buffer
	require.NoError(t, res.WriteTable(&out))
	table := out.String()
	require.Contains(t, table, "2,000 domains")
	require.Contains(t, table, "the machine was shared")
	require.Regexp(t, `(?m)^1 +verify_dns jobs/s +300 jobs/s +500 jobs/s  River no-op jobs +0\.60 +≥ 0\.8× baseline +MISS$`, table)
	require.Regexp(t, `(?m)^4a +insert → first DNS query +4\.00 / 9\.50 / 120 ms +2\.00 / 5\.00 / 8\.00 ms  River insert → job start +1\.90 +p95 < 100 ms +PASS$`, table)
	require.Contains(t, table, "4a  note 4a")
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{5: "5", 999: "999", 2000: "2,000", 100000: "100,000", 1234567: "1,234,567"} {
		require.Equal(t, want, thousands(n))
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}, {nil, 0}} {
		in := slices.Clone(c.in)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
}

func TestRoundsRowSaysEachRoundsRatio(t *testing.T) {
	row := roundsRow(Row{Note: "details"}, []float64{80, 90}, []float64{100, 100})
	if want := "medians of 2 rounds, each side on a fresh API server (ratio per round: 0.80, 0.90); details"; row.Note != want {
		t.Fatalf("note %q, want %q", row.Note, want)
	}
	require.Equal(t, []float64{0.8, 0.9}, row.RoundRatios)
	if one := roundsRow(Row{Note: "details"}, []float64{80}, []float64{100}); one.Note != "details" {
		t.Fatalf("one round changed the note: %q", one.Note)
	}
}
