package bench

import (
	"fmt"
	"os"
	"os/exec"
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

// burnTick spins until the kernel has charged this process at least one
// more tick of CPU time than it had in before, however long that takes on a
// loaded machine: the test's timeout is the only bound.
func burnTick(t *testing.T, before cpuSample) {
	t.Helper()
	self := os.Getpid()
	stat := fmt.Sprintf("/proc/%d/stat", self)
	for x := 0; ; x++ {
		_ = strings.Repeat("x", x%64)
		if x%10_000 != 0 {
			continue
		}
		raw, err := os.ReadFile(stat)
		require.NoError(t, err)
		_, used, ok := parseStatCPU(string(raw))
		require.True(t, ok, string(raw))
		if used > before[self].used {
			return
		}
	}
}

func TestSampleCPUAttributesTimeToTheRightProcess(t *testing.T) {
	// A child stands in for the worker: its pid is the one named "worker".
	child := exec.Command("sleep", "60")
	require.NoError(t, child.Start())
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	workerPID, self := child.Process.Pid, os.Getpid()

	before := sampleCPU(workerPID)
	burnTick(t, before)
	after := sampleCPU(workerPID)

	require.Equal(t, "bench", after[self].name)
	require.Equal(t, "worker", after[workerPID].name)
	require.Greater(t, after[self].used, before[self].used, "the spin shows as this process's CPU time")
	for pid, p := range after {
		require.GreaterOrEqual(t, p.used, time.Duration(0), "pid %d", pid)
		if b, ok := before[pid]; ok && b.name == p.name {
			require.GreaterOrEqual(t, p.used, b.used, "pid %d (%s): CPU time never goes back", pid, p.name)
		}
	}
	use := cpuUsed(before, after)
	require.Positive(t, use["bench"])
	for name, d := range use {
		require.Positive(t, d, "only programs that used CPU are listed: %s", name)
	}
	require.Empty(t, cpuUsed(after, after), "no CPU is used between a sample and itself")
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
	require.True(t, m.ok, "/proc/stat is readable")
	burnTick(t, m.procs)
	// The machine's counters tick on their own clock: wait for one tick of
	// theirs too, or the share is rightly unknown (-1).
	for {
		now, ok := machineCPU()
		require.True(t, ok)
		if now.total > m.machine.total {
			break
		}
		runtime.Gosched()
	}
	p := m.stop()
	require.Positive(t, p.use["bench"], "the spin shows as this process's CPU time")
	// The machine's share of busy CPU time is a fraction, whatever else runs.
	require.GreaterOrEqual(t, p.busy, 0.0)
	require.LessOrEqual(t, p.busy, 1.0)
}
