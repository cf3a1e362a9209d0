package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// cpuSample is the CPU time used so far by each process on the machine, by
// pid, with its name: "worker" for the worker child, "bench" for this
// process, otherwise the command name (kube-apiserver, etcd, postgres...).
// Keyed by pid because kernel workers rename themselves as they go.
type cpuSample map[int]procCPU

type procCPU struct {
	name string
	used time.Duration
}

// sampleCPU reads /proc/<pid>/stat of every process. Processes that exit
// between two samples drop out; Postgres backends and the API servers live
// for the whole run, so the split stays meaningful.
func sampleCPU(workerPID int) cpuSample {
	s := cpuSample{}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		name, used, ok := parseStatCPU(string(raw))
		if !ok {
			continue
		}
		switch pid {
		case workerPID:
			name = "worker"
		case self:
			name = "bench"
		}
		s[pid] = procCPU{name, used}
	}
	return s
}

// parseStatCPU reads the command name and utime+stime from a
// /proc/<pid>/stat line: "pid (comm) state ppid ... utime stime ...", where
// comm may itself hold spaces and parentheses.
func parseStatCPU(stat string) (name string, used time.Duration, ok bool) {
	open, closing := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	fields := strings.Fields(stat[closing+1:])
	// fields[0] is state (field 3), so utime (field 14) is fields[11].
	if len(fields) < 13 {
		return "", 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return stat[open+1 : closing], time.Duration(utime+stime) * time.Second / clockTicks, true
}

// cpuUse is CPU time by program name.
type cpuUse map[string]time.Duration

// cpuUsed is the CPU time each program used between two samples.
func cpuUsed(before, after cpuSample) cpuUse {
	byName := cpuUse{}
	for pid, p := range after {
		// A process new since the first sample counts whole.
		if delta := p.used - before[pid].used; delta > 0 {
			name := p.name
			if strings.HasPrefix(name, "kworker/") {
				name = "kernel workers" // I/O flushes and the like, renamed as they go
			}
			byName[name] += delta
		}
	}
	return byName
}

// add adds v's times to u's.
func (u cpuUse) add(v cpuUse) {
	for name, d := range v {
		u[name] += d
	}
}

// per divides every time by n (the mean of n rounds).
func (u cpuUse) per(n int) cpuUse {
	out := cpuUse{}
	for name, d := range u {
		out[name] = d / time.Duration(max(n, 1))
	}
	return out
}

// String says which programs used the CPU, busiest first, e.g.
// "kube-apiserver 41.2 s, etcd 9.8 s, postgres 7.1 s, worker 6.0 s";
// programs under 2% of the total are left out.
func (u cpuUse) String() string {
	return u.format(func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) })
}

// perJob is String for one job's share of n: "postgres 1.02 ms, worker
// 0.84 ms" per job.
func (u cpuUse) perJob(n int) string {
	return u.format(func(d time.Duration) string {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)/float64(max(n, 1)))
	})
}

func (u cpuUse) format(amount func(time.Duration) string) string {
	type use struct {
		name string
		d    time.Duration
	}
	var uses []use
	var total time.Duration
	for name, d := range u {
		uses = append(uses, use{name, d})
		total += d
	}
	slices.SortFunc(uses, func(a, b use) int {
		if a.d != b.d {
			return int(b.d - a.d)
		}
		return strings.Compare(a.name, b.name)
	})
	parts := make([]string, 0, len(uses))
	for _, u := range uses {
		if u.d*50 < total {
			break
		}
		parts = append(parts, u.name+" "+amount(u.d))
	}
	if len(parts) == 0 {
		return "no CPU time recorded"
	}
	return strings.Join(parts, ", ")
}

// total is the CPU time of every program together.
func (u cpuUse) total() time.Duration {
	var t time.Duration
	for _, d := range u {
		t += d
	}
	return t
}

// cpuMeter measures one timed phase: which programs used the CPU, and how
// busy the machine's CPUs were, which says whether the phase was bound by
// the CPU or by waiting.
type cpuMeter struct {
	workerPID int
	procs     cpuSample
	machine   cpuTimes
	ok        bool
}

// phaseCPU is what a cpuMeter measured.
type phaseCPU struct {
	use cpuUse
	// busy is the share of all the machine's CPU time that was busy, 0..1;
	// negative when /proc/stat could not be read.
	busy float64
}

func startCPU(workerPID int) cpuMeter {
	m := cpuMeter{workerPID: workerPID, procs: sampleCPU(workerPID)}
	m.machine, m.ok = machineCPU()
	return m
}

func (m cpuMeter) stop() phaseCPU {
	p := phaseCPU{use: cpuUsed(m.procs, sampleCPU(m.workerPID)), busy: -1}
	if now, ok := machineCPU(); ok && m.ok && now.total > m.machine.total {
		p.busy = float64(now.busy-m.machine.busy) / float64(now.total-m.machine.total)
	}
	return p
}

// perJob says what n jobs cost each program and how busy the machine was:
// "machine 87% busy; per job postgres 1.02 ms, worker 0.84 ms".
func (p phaseCPU) perJob(n int) string {
	busy := "machine busy: unknown"
	if p.busy >= 0 {
		busy = fmt.Sprintf("machine %.0f%% busy", 100*p.busy)
	}
	return busy + "; per job " + p.use.perJob(n)
}

// Settling: a phase is timed only once the machine is quiet, so start-up
// work (a fresh API server compiles its CRDs' schemas, builds its OpenAPI
// and bootstraps RBAC for several seconds) is not charged to whichever
// side happens to run first.
const (
	settleWindow     = 500 * time.Millisecond
	settleBusy       = 0.15 // of all CPUs, over one window
	defaultSettleMax = 30 * time.Second
)

// settle waits until the machine's CPUs were less than settleBusy busy over
// a window, for at most settleMax, and says how long it waited and whether
// it settled.
func settle(settleMax time.Duration, wait func(time.Duration) bool) (waited time.Duration, quiet bool) {
	start := time.Now()
	prev, ok := machineCPU()
	for ok && time.Since(start) < settleMax {
		if !wait(settleWindow) {
			break
		}
		cur, ok2 := machineCPU()
		if !ok2 {
			break
		}
		if total := cur.total - prev.total; total > 0 && float64(cur.busy-prev.busy)/float64(total) < settleBusy {
			return time.Since(start), true
		}
		prev = cur
	}
	return time.Since(start), false
}

type cpuTimes struct{ busy, total uint64 }

// machineCPU reads the first line of /proc/stat: the machine's CPU time in
// ticks, busy (everything but idle and iowait) and in all.
func machineCPU() (cpuTimes, bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	return parseMachineCPU(string(raw))
}

func parseMachineCPU(stat string) (cpuTimes, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTimes{}, false
		}
		t.total += v
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// idle and iowait are not busy; guest time is counted in user.
		if i != 3 && i != 4 && i < 8 {
			t.busy += v
		}
		if i >= 8 {
			t.total -= v
		}
	}
	return t, true
}

// quiet waits for the machine to settle before a timed phase (settle), and
// says so when that took a while or never happened.
func (b *bench) quiet(ctx context.Context, phase string) {
	waited, quiet := settle(b.opts.SettleMax, func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	})
	switch {
	case !quiet && ctx.Err() == nil:
		b.progress("  %s: the machine stayed busy for %s; timing anyway", phase, waited.Round(100*time.Millisecond))
	case waited > 2*settleWindow:
		b.progress("  %s: waited %s for the machine to settle", phase, waited.Round(100*time.Millisecond))
	}
}
