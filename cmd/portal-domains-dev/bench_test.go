package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/internal/cli"
	"github.com/portal-domains/portal-domains/internal/harness/bench"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
)

// benchHelperEnv marks the bench test's worker child process.
const benchHelperEnv = "PORTAL_DOMAINS_BENCH_HELPER"

// TestMain makes this test binary play the worker when the bench test starts
// it as the bench's child process (os/exec's helper-process pattern): the
// bench measures `portal-domains worker`, which this runs as main would.
func TestMain(m *testing.M) {
	if os.Getenv(benchHelperEnv) == "worker" {
		cli.Main()
	}
	os.Exit(m.Run())
}

// TestBenchCommand runs the whole bench at a tiny size, so it cannot rot:
// every row must come out with a positive result, baseline and ratio, and
// nothing it started may be left behind. The numbers themselves are not
// checked; benchmarks are not tests.
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	env := &cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string {
			if k == "DATABASE_URL" {
				return dbtest.BaseURL()
			}
			return ""
		}}
	err := runBench(env, []string{"-n", "5", "-workers", "4", "-rounds", "2", "-json"}, func(o *bench.Options) {
		o.WorkerCommand = []string{os.Args[0], "worker"}
		o.WorkerEnv = []string{benchHelperEnv + "=worker"}
		o.LatencySamples = 3
		o.LatencySpacing = 20 * time.Millisecond
		o.ScanRows = 2_000
		o.SettleMax = 2 * time.Second
	})
	require.NoError(t, err, "progress:\n%s", stderr.String())

	var res bench.Result
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	require.Equal(t, 5, res.N)
	require.Equal(t, 4, res.Workers.DNS)
	var ids []string
	for _, r := range res.Rows {
		ids = append(ids, r.ID)
		require.Positive(t, r.Value, "row %s result", r.ID)
		require.Positive(t, r.Baseline, "row %s baseline", r.ID)
		require.Positive(t, r.Ratio, "row %s ratio", r.ID)
		require.NotEmpty(t, r.Measure, "row %s", r.ID)
		require.NotEmpty(t, r.BaselineName, "row %s", r.ID)
		require.NotEmpty(t, r.Target, "row %s", r.ID)
	}
	require.Equal(t, bench.DefaultRowIDs(), ids)
	for _, r := range res.Rows {
		if r.ID == "2" || r.ID == "3" {
			// Medians of two rounds, and where the CPU went, for the stage
			// and for its baseline.
			require.Len(t, r.RoundRatios, 2, "row %s", r.ID)
			require.Regexp(t, `CPU used [^;]*: [^;]*\d s[^;]*; by the baseline: `, r.Note, "row %s", r.ID)
		}
	}

	var table bytes.Buffer
	require.NoError(t, res.WriteTable(&table))
	for _, id := range bench.DefaultRowIDs() {
		require.Regexp(t, regexp.MustCompile(`(?m)^`+id+` .*(PASS|MISS)$`), table.String())
	}

	// Nothing left behind: the schema is dropped, the processes are gone.
	require.Regexp(t, `^bench_[0-9a-f]+$`, res.Schema)
	conn, err := pgx.Connect(ctx, dbtest.BaseURL())
	require.NoError(t, err)
	defer conn.Close(ctx)
	var exists bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, res.Schema).Scan(&exists))
	require.False(t, exists, "schema %s was not dropped", res.Schema)
	for _, p := range res.Processes {
		require.Positive(t, p.PID, "%+v", p)
		require.False(t, localapi.Alive(p.PID), "%s %s (pid %d) is still running", p.Role, p.Name, p.PID)
	}

	// Each measured phase of rows 2 and 3 had its own API server: row 2
	// two per round (baseline and stage), row 3 two per round (baseline
	// and end to end), one for the watch floor and one for the latency
	// samples; workers: row 1's, one per round for rows 2 and 3, and the
	// latency samples'. Every API server is a kube-apiserver and an etcd.
	type started struct{ apiServers, etcds, workers int }
	byStep := map[string]started{}
	for _, p := range res.Processes {
		step := byStep[strings.Join(p.Rows, ",")]
		switch p.Role {
		case bench.RoleAPIServer:
			step.apiServers++
		case bench.RoleEtcd:
			step.etcds++
		case bench.RoleWorker:
			step.workers++
		default:
			t.Fatalf("process %+v has no known role", p)
		}
		byStep[strings.Join(p.Rows, ",")] = step
	}
	require.Equal(t, map[string]started{
		"1":         {workers: 1},
		"2":         {apiServers: 2 * 2, etcds: 2 * 2, workers: 2},
		"3,4a,4b,6": {apiServers: 2*2 + 2, etcds: 2*2 + 2, workers: 2 + 1},
	}, byStep, "progress:\n%s", stderr.String())
}
