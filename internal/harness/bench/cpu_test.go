package bench

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStatCPU(t *testing.T) {
	// A comm with a space and a parenthesis, as the kernel writes it.
	line := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 130 0 0 20 0 8 0 100 0 0"
	name, used, ok := parseStatCPU(line)
	require.True(t, ok)
	require.Equal(t, "my (odd) prog", name)
	require.Equal(t, 3800*time.Millisecond, used) // (250+130) ticks at 100 Hz

	for _, bad := range []string{"", "4242 no parens", "1 (x) S 1 2"} {
		_, _, ok := parseStatCPU(bad)
		require.False(t, ok, bad)
	}
}

func TestSampleCPUSeesThisProcess(t *testing.T) {
	before := sampleCPU(-1)
	deadline := time.Now().Add(300 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = strings.Repeat("x", x%64)
	}
	after := sampleCPU(-1)
	self := os.Getpid()
	require.Equal(t, "bench", after[self].name)
	require.Greater(t, after[self].used, before[self].used, "a busy loop must show as this process's CPU time")
	split := cpuUsed(before, after).String()
	require.Contains(t, split, "bench ")
	require.NotContains(t, cpuUsed(after, after).String(), "bench", "no time passed between equal samples")
}

func TestCPUSplitOrdersAndDropsNoise(t *testing.T) {
	before := cpuSample{1: {"etcd", time.Second}, 7: {"kworker/u8:0-writeback", time.Hour}}
	after := cpuSample{
		1: {"etcd", 4 * time.Second},
		2: {"kube-apiserver", 10 * time.Second},                       // started in between: counts whole
		3: {"sshd", 10 * time.Millisecond},                            // under 2%: left out
		7: {"kworker/u8:0-events_unbound", time.Hour + 2*time.Second}, // renamed, same pid
	}
	require.Equal(t, "kube-apiserver 10.0 s, etcd 3.0 s, kernel workers 2.0 s", cpuUsed(before, after).String())
}

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, ok := parseMachineCPU("cpu  100 5 20 800 50 3 2 10 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if !ok {
		t.Fatal("not parsed")
	}
	if want := (cpuTimes{busy: 100 + 5 + 20 + 3 + 2 + 10, total: 100 + 5 + 20 + 800 + 50 + 3 + 2 + 10}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5"} {
		if _, ok := parseMachineCPU(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestPhaseCPUPerJob(t *testing.T) {
	p := phaseCPU{use: cpuUse{"postgres": 2 * time.Second, "worker": 1500 * time.Millisecond}, busy: 0.874}
	require.Equal(t, "machine 87% busy; per job postgres 1.00 ms, worker 0.75 ms", p.perJob(2000))
	require.Equal(t, "machine busy: unknown; per job no CPU time recorded", phaseCPU{use: cpuUse{}, busy: -1}.perJob(10))
}

func TestCPUMeterSeesABusyPhase(t *testing.T) {
	m := startCPU(-1)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		_ = strings.Repeat("x", 64)
	}
	p := m.stop()
	require.Greater(t, p.use["bench"], 100*time.Millisecond, "a busy loop must show as this process's CPU time")
	// One of the machine's CPUs was busy the whole phase.
	require.Greater(t, p.busy, 0.9/float64(runtime.NumCPU()))
	require.LessOrEqual(t, p.busy, 1.0)
}
