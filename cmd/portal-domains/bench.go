package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portal-domains/portal-domains/bench"
	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/devstack"
)

// bench measures the pipeline against baselines taken in the same run and
// prints one table (bench.Run). The worker it measures is this executable's
// own `worker` command, run as a child process.
func (e *environment) bench(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this executable to run the worker: %w", err)
	}
	return e.runBench(args, func(o *bench.Options) { o.WorkerCommand = []string{self, "worker"} })
}

// runBench parses the flags and runs the bench; adjust sets what flags do
// not (the worker command, and a test's smaller sizes).
func (e *environment) runBench(args []string, adjust func(*bench.Options)) error {
	fs := e.flags("bench")
	n := fs.Int("n", bench.DefaultN, fmt.Sprintf("domains per throughput row, 1 to %d", bench.MaxN))
	workers := fs.Int("workers", 0, fmt.Sprintf("workers per queue (dns, kubernetes, probe) for the worker and its baselines; 0 keeps the worker's defaults (%d, %d, %d)",
		bench.DefaultDNSWorkers, bench.DefaultKubeWorkers, bench.DefaultProbeWorkers))
	asJSON := fs.Bool("json", false, "print the result as JSON instead of a table")
	rounds := fs.Int("rounds", bench.DefaultRounds, "rows 2 and 3 alternate baseline and stage this many times and report medians")
	rows := fs.String("rows", "", "comma-separated row IDs to measure (e.g. 2,3); empty measures every row")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > bench.MaxN {
		return usagef("bench: -n %d is not from 1 to %d", *n, bench.MaxN)
	}
	if *rounds < 1 || *rounds > 20 {
		return usagef("bench: -rounds %d is not from 1 to 20", *rounds)
	}
	if *workers < 0 || *workers > 10000 {
		return usagef("bench: -workers %d is not from 0 to 10000", *workers)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	var onlyRows []string
	if *rows != "" {
		for id := range strings.SplitSeq(*rows, ",") {
			id = strings.TrimSpace(id)
			if !slices.Contains(bench.RowIDs(), id) {
				return usagef("bench: -rows: %q is not a row; rows are %s", id, strings.Join(bench.RowIDs(), ", "))
			}
			onlyRows = append(onlyRows, id)
		}
	}
	opts := bench.Options{
		Rows:        onlyRows,
		DatabaseURL: or(e.getenv("DATABASE_URL"), db.DefaultURL),
		N:           *n,
		Rounds:      *rounds,
		DNSWorkers:  *workers, KubeWorkers: *workers, ProbeWorkers: *workers,
		Root:     devstack.FindRoot(cwd),
		Getenv:   e.getenv,
		Progress: e.stderr,
	}
	if adjust != nil {
		adjust(&opts)
	}
	// client-go and envtest log through process-wide loggers; the bench's
	// output is its table and progress lines.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	ctrllog.SetLogger(logr.Discard())

	res, err := bench.Run(e.ctx, opts)
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(e.stdout)
	}
	return res.WriteTable(e.stdout)
}
