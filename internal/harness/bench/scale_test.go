package bench

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func growthPoints() []GrowthPoint {
	return []GrowthPoint{
		{N: 1_000, Insert: 300 * time.Millisecond, PlainInsert: 30 * time.Millisecond, JobsEnqueued: 1_000,
			Reconcile: 2 * time.Millisecond, StuckScan: time.Millisecond, CountScan: time.Millisecond,
			VerifyRate: 900, VerifySmallRate: 950, SmallN: 1_000, IdleMB: 50, WatchMB: 60},
		{N: 100_000, Insert: 30 * time.Second, PlainInsert: 2 * time.Second, JobsEnqueued: 99_999,
			Reconcile: 150 * time.Millisecond, StuckScan: 40 * time.Millisecond, CountScan: 10 * time.Millisecond,
			VerifyRate: 600, VerifySmallRate: 900, SmallN: 2_000, IdleMB: 50, WatchMB: 350},
	}
}

func TestScaleRowsJudgeEachTarget(t *testing.T) {
	t.Parallel()
	good, bad := scaleRows(growthPoints()[0]), scaleRows(growthPoints()[1])
	ids := func(rows []Row) (out []string) {
		for _, r := range rows {
			out = append(out, r.ID)
		}
		return out
	}
	require.Equal(t, []string{"8a", "8b", "8c", "8d", "8e"}, ids(good))
	for _, r := range good {
		require.True(t, r.Pass, "%s: %+v", r.ID, r)
		require.NotZero(t, r.Ratio, r.ID)
	}
	// One job missing, a query over 100 ms, verify_dns at 0.67 of the small
	// run and 350 MB: each misses.
	passed := map[string]bool{}
	for _, r := range bad {
		passed[r.ID] = r.Pass
	}
	require.Equal(t, map[string]bool{"8a": false, "8b": false, "8c": true, "8d": false, "8e": false}, passed)
	require.Contains(t, bad[3].BaselineName, "2,000")
}

func TestGrowthSVGIsWellFormedAndDrawsEverySeries(t *testing.T) {
	t.Parallel()
	svg := GrowthSVG(growthPoints())
	dec := xml.NewDecoder(strings.NewReader(svg))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	require.Equal(t, 8, polylines, "2 + 2 + 1 + 3 series")
	for _, label := range []string{"1,000", "100,000", "reconcile", "stuck scan", "same INSERT, no triggers"} {
		require.Contains(t, svg, label)
	}
}
