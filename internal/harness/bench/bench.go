// Package bench measures portal-domains against baselines taken in the same
// run on the same machine (`portal-domains-dev bench`, `make bench`): each row
// compares a pipeline stage with the bare tool underneath it (River, a
// server-side apply, a Kubernetes watch, a sequential scan, an idle
// process), so a number from a busy or slow machine still says how much the
// pipeline adds.
//
// Everything it needs it starts and stops itself, with the dev stack's
// builder (internal/harness/stack): a schema bench_<random> in
// DATABASE_URL's database (dropped at the end), a kube-apiserver and etcd
// in a temporary directory, a loopback DNS server serving generated zones,
// the HTTPS gateway, the DEV-ONLY issuer (internal/harness/issuer), River
// clients for the baselines, and the worker itself as a
// child process (so its memory can be read from /proc). It is Linux-only
// for that reason.
//
// Benchmarks are not tests: a row that misses its target is marked MISS and
// Run still succeeds. Run fails only when a measurement could not be taken.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"github.com/portal-domains/portal-domains/internal/harness/localapi"
)

// Defaults of Options.
const (
	DefaultN              = 2_000
	MaxN                  = 20_000
	DefaultLatencySamples = 200
	DefaultScanRows       = 100_000
	// DefaultRounds: rows 2 and 3 alternate baseline and stage this many
	// times and report medians, since one round on a shared machine is
	// noisy.
	DefaultRounds = 3
	// DefaultACMEDomains are registered by row 7 at DefaultACMERate a
	// second: real issuance takes seconds of cert-manager's and Pebble's
	// time per domain, so a small machine holds a hundred at once.
	DefaultACMEDomains = 100
	DefaultACMERate    = 100.0
	// RSSTargetDomains is the load the memory target is stated for.
	RSSTargetDomains = 10_000
	// The worker's own defaults per queue (worker.ConfigFromEnv).
	DefaultDNSWorkers   = 50
	DefaultKubeWorkers  = 20
	DefaultProbeWorkers = 20
)

// Options configure Run. Zero values take the defaults above.
type Options struct {
	// DatabaseURL names the database the bench schema is created in.
	DatabaseURL string
	// N is how many domains each throughput row moves.
	N int
	// DNSWorkers, KubeWorkers and ProbeWorkers are the worker's queue sizes;
	// each baseline runs with the same number as the stage it stands for.
	DNSWorkers, KubeWorkers, ProbeWorkers int
	// Rounds is how many times rows 2 and 3 measure baseline and stage.
	Rounds int
	// LatencySamples domains (and baseline jobs) are inserted one at a time
	// for the latency rows.
	LatencySamples int
	// LatencySpacing is the mean gap between those inserts (uniform from
	// half to one and a half times it), so the pipeline is idle between
	// samples. Default 150ms.
	LatencySpacing time.Duration
	// ACMEDomains are registered by row 7, ACMERate a second.
	ACMEDomains int
	ACMERate    float64
	// AlgaPSAPoll is the poll interval of row 7's baseline: the design's
	// minute unless a test shortens it.
	AlgaPSAPoll time.Duration
	// ScanRows is the table size of the stuck-scan row.
	ScanRows int
	// SettleMax is the longest a timed phase waits for the machine's CPUs
	// to settle before it starts anyway (default 30s). The bench's own test,
	// run beside other tests, sets it short: there the numbers do not count.
	SettleMax time.Duration
	// Root is the repository (localapi.FindRoot): where the stack finds
	// or builds kube-apiserver and etcd.
	Root string
	// WorkerCommand runs `portal-domains worker` (argv); WorkerEnv is added
	// to the environment the bench gives it. The command `bench` passes its
	// own executable; a test passes its helper process.
	WorkerCommand []string
	WorkerEnv     []string
	// Getenv passes GOGC, GOMEMLIMIT, GOMAXPROCS, GODEBUG, PORTAL_DOMAIN_PPROF
	// and PORTAL_DOMAIN_TRANSITION_GROUP to the worker, so it runs as it
	// would be deployed (or as an A/B run asks); nil passes nothing.
	Getenv func(string) string
	// Rows limits the run to the steps producing these row IDs ("2" runs
	// the apply row; "3", "4a", "4b" and "6" share one step; so do "7a"
	// and "7b"); empty runs DefaultRowIDs.
	Rows []string
	// Progress gets one line per step; nil discards them.
	Progress io.Writer
	// Growth, when set, runs the scale step at each of GrowthSizes and
	// writes an SVG of cost per domain against N to this path; the table
	// gets the scale rows of the largest size.
	Growth      string
	GrowthSizes []int
}

// DefaultGrowthSizes are the sizes `bench -growth` measures.
var DefaultGrowthSizes = []int{1_000, 10_000, 100_000}

// scaleOnly reports whether the run measures only the scale step (rows 8,
// or -growth), which sizes its own domains.
func (o Options) scaleOnly() bool {
	return o.Growth != "" || (len(o.Rows) > 0 && !slices.ContainsFunc(o.Rows, func(id string) bool { return id != ScaleRowID }))
}

func (o Options) withDefaults() Options {
	o.N = cmp.Or(max(o.N, 0), DefaultN)
	o.DNSWorkers = cmp.Or(max(o.DNSWorkers, 0), DefaultDNSWorkers)
	o.KubeWorkers = cmp.Or(max(o.KubeWorkers, 0), DefaultKubeWorkers)
	o.ProbeWorkers = cmp.Or(max(o.ProbeWorkers, 0), DefaultProbeWorkers)
	o.Rounds = cmp.Or(max(o.Rounds, 0), DefaultRounds)
	o.LatencySamples = cmp.Or(max(o.LatencySamples, 0), DefaultLatencySamples)
	o.LatencySpacing = cmp.Or(max(o.LatencySpacing, 0), 150*time.Millisecond)
	o.ScanRows = cmp.Or(max(o.ScanRows, 0), DefaultScanRows)
	o.ACMEDomains = cmp.Or(max(o.ACMEDomains, 0), DefaultACMEDomains)
	o.ACMERate = cmp.Or(max(o.ACMERate, 0), DefaultACMERate)
	o.AlgaPSAPoll = cmp.Or(max(o.AlgaPSAPoll, 0), algapsaPoll)
	o.SettleMax = cmp.Or(max(o.SettleMax, 0), defaultSettleMax)
	if o.Growth != "" && len(o.GrowthSizes) == 0 {
		o.GrowthSizes = DefaultGrowthSizes
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.DatabaseURL == "":
		return errors.New("bench: no database URL")
	case o.N > MaxN && !o.scaleOnly():
		return fmt.Errorf("bench: -n %d is more than %d (only the scale row, -rows %s, goes to %d)", o.N, MaxN, ScaleRowID, MaxScaleN)
	case o.N > MaxScaleN:
		return fmt.Errorf("bench: -n %d is more than %d", o.N, MaxScaleN)
	case slices.ContainsFunc(o.GrowthSizes, func(n int) bool { return n < 1 || n > MaxScaleN }):
		return fmt.Errorf("bench: growth sizes %v: each must be from 1 to %d", o.GrowthSizes, MaxScaleN)
	case o.ACMEDomains > MaxN:
		return fmt.Errorf("bench: %d registrations for row 7 is more than %d", o.ACMEDomains, MaxN)
	case len(o.WorkerCommand) == 0:
		return errors.New("bench: no worker command")
	case slices.ContainsFunc(o.Rows, func(id string) bool { return !slices.Contains(RowIDs(), id) && id != ScaleRowID }):
		return fmt.Errorf("bench: rows %v: each must be one of %v, or %s (scale, on request)", o.Rows, RowIDs(), ScaleRowID)
	case runtime.GOOS != "linux":
		return errors.New("bench: reads the worker's memory from /proc, so it runs on Linux only")
	}
	return nil
}

// Row is one line of the table: a measurement, its baseline from the same
// run, their ratio, and the target.
type Row struct {
	ID      string `json:"id"`
	Measure string `json:"measure"`
	Unit    string `json:"unit"`
	// Value is the measurement (the p95 for latency rows).
	Value float64 `json:"value"`
	// Baseline is the same quantity for the bare tool, BaselineName says
	// which.
	Baseline     float64 `json:"baseline"`
	BaselineName string  `json:"baseline_name"`
	// Ratio is Value / Baseline.
	Ratio float64 `json:"ratio"`
	// Latency rows carry their percentiles (milliseconds).
	Percentiles         *Percentiles `json:"percentiles,omitempty"`
	BaselinePercentiles *Percentiles `json:"baseline_percentiles,omitempty"`
	// Parts split a latency into what it was spent on (row 7: DNS,
	// issuance, our own time), per domain.
	Parts         []Part `json:"parts,omitempty"`
	BaselineParts []Part `json:"baseline_parts,omitempty"`
	Samples       int    `json:"samples,omitempty"`
	// RoundRatios are each round's ratio when the row took several rounds
	// (Value and Baseline are then medians).
	RoundRatios []float64 `json:"round_ratios,omitempty"`
	Target      string    `json:"target"`
	Pass        bool      `json:"pass"`
	Note        string    `json:"note,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// Part is one share of a latency row's time, with its own percentiles:
// each is taken over the domains separately, so parts do not add up.
type Part struct {
	Name string `json:"name"`
	Percentiles
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPUs      int     `json:"cpus"`
	MemoryGiB float64 `json:"memory_gib"`
	// LoadBefore and LoadAfter are the 1-minute load averages when the run
	// started and ended: a load near or above CPUs before the start means
	// other work shared the machine.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
	Go         string  `json:"go"`
	Postgres   string  `json:"postgres"`
}

// Busy reports whether something else was using the machine when the run
// started.
func (m Machine) Busy() bool { return m.LoadBefore >= 0.5*float64(m.CPUs) }

// Result is the whole run.
type Result struct {
	Machine Machine `json:"machine"`
	N       int     `json:"n"`
	Workers struct {
		DNS        int `json:"dns"`
		Kubernetes int `json:"kubernetes"`
		Probe      int `json:"probe"`
	} `json:"workers"`
	// Registrations and RegistrationRate are row 7's, when it ran.
	Registrations    int           `json:"registrations,omitempty"`
	RegistrationRate float64       `json:"registration_rate,omitempty"`
	Rows             []Row         `json:"rows"`
	Started          time.Time     `json:"started"`
	Took             time.Duration `json:"took_ns"`
	// Schema is the schema the run created in DATABASE_URL's database (and
	// dropped at the end).
	Schema string `json:"schema"`
	// Processes are the processes the run started (and stopped), in order.
	Processes []Process `json:"processes"`
	// Growth holds the scale step at each size of a -growth run.
	Growth []GrowthPoint `json:"growth,omitempty"`
}

// Roles of the processes a run starts.
const (
	RoleWorker    = "worker"
	RoleAPIServer = "kube-apiserver"
	RoleEtcd      = "etcd"
)

// Process is a process a run started: a worker, or the kube-apiserver or
// etcd of an API server.
type Process struct {
	Role string `json:"role"`
	// Name is a worker's name (its log is worker-<name>.log).
	Name string `json:"name,omitempty"`
	PID  int    `json:"pid"`
	// Rows are the row IDs of the step that started it.
	Rows []string `json:"rows"`
}

// processes records what a run starts, for Result.Processes.
type processes struct {
	rows []string // the running step's
	list []Process
}

func (p *processes) started(role, name string, pid int) {
	p.list = append(p.list, Process{Role: role, Name: name, PID: pid, Rows: p.rows})
}

func (p *processes) startedAPIServer(api *localapi.Server) {
	p.started(RoleAPIServer, "", api.APIServerPID)
	p.started(RoleEtcd, "", api.EtcdPID)
}

// Run takes every measurement and returns the table. It stops everything it
// started, and drops its schema, before returning, also on failure or when
// ctx is cancelled.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	res = &Result{N: opts.N, Started: time.Now()}
	res.Workers.DNS, res.Workers.Kubernetes, res.Workers.Probe = opts.DNSWorkers, opts.KubeWorkers, opts.ProbeWorkers
	res.Machine = machine()

	b := &bench{opts: opts, out: opts.Progress}
	defer func() {
		b.failed = err != nil
		err = errors.Join(err, b.close())
	}()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	res.Schema = b.schema
	res.Machine.Postgres = b.postgresVersion(ctx)

	steps := []struct {
		what string
		ids  []string
		fn   func(context.Context) ([]Row, error)
	}{
		{"row 1: River no-op jobs vs verify_dns", []string{"1"}, b.rowVerifyDNS},
		{"row 2: server-side apply vs the apply stage", []string{"2"}, b.rowApply},
		{"rows 3, 4 and 6: end to end, latency and memory", []string{"3", "4a", "4b", "6"}, b.rowsEndToEnd},
		{"row 5: the stuck scan", []string{"5"}, b.rowStuckScan},
		{"row 7: registration → active with cert-manager and Pebble, against AlgaPSA's design", []string{"7a", "7b"}, b.rowsRegistration},
	}
	selected := opts.Rows
	if len(selected) == 0 {
		selected = DefaultRowIDs()
	}
	if opts.scaleOnly() {
		steps = steps[:0]
	}
	switch {
	case opts.Growth != "":
		steps = append(steps, struct {
			what string
			ids  []string
			fn   func(context.Context) ([]Row, error)
		}{fmt.Sprintf("growth: the scale step at %v domains", opts.GrowthSizes), []string{ScaleRowID}, func(ctx context.Context) ([]Row, error) {
			rows, points, err := b.growth(ctx)
			res.Growth = points
			return rows, err
		}})
	case slices.Contains(opts.Rows, ScaleRowID):
		steps = append(steps, struct {
			what string
			ids  []string
			fn   func(context.Context) ([]Row, error)
		}{"row 8: scale", []string{ScaleRowID}, b.rowsScale})
	}
	for _, s := range steps {
		if !slices.ContainsFunc(s.ids, func(id string) bool { return slices.Contains(selected, id) }) && s.ids[0] != ScaleRowID {
			continue
		}
		b.progress("%s", s.what)
		b.processes.rows = s.ids
		rows, err := s.fn(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.what, err)
		}
		res.Rows = append(res.Rows, rows...)
		if slices.Contains(s.ids, "7a") {
			res.Registrations, res.RegistrationRate = opts.ACMEDomains, opts.ACMERate
		}
	}
	sortRows(res.Rows)
	res.Processes = b.processes.list
	res.Machine.LoadAfter = loadAverage()
	res.Took = time.Since(res.Started)
	return res, nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.out, "bench: "+format+"\n", args...)
}
