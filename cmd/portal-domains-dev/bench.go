package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/internal/cli"
	"github.com/portal-domains/portal-domains/internal/harness/bench"
	"github.com/portal-domains/portal-domains/internal/harness/devstack"
)

// benchCommand measures the pipeline against baselines taken in the same run
// and prints one table (bench.Run). The worker it measures is the product
// binary, portal-domains, found beside this one (make bench builds both) and
// run as a child process.
func benchCommand(e *cli.Env, args []string) error {
	return runBench(e, args, func(o *bench.Options) error {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this executable: %w", err)
		}
		workerBin := filepath.Join(filepath.Dir(self), "portal-domains")
		if _, err := os.Stat(workerBin); err != nil {
			return fmt.Errorf("bench runs the worker binary %s, built beside this one by make bench: %w", workerBin, err)
		}
		o.WorkerCommand = []string{workerBin, "worker"}
		return nil
	})
}

// runBench parses the flags and runs the bench; adjust, called once the
// flags are good, sets what flags do not (the worker command, and a test's
// smaller sizes).
func runBench(e *cli.Env, args []string, adjust func(*bench.Options) error) error {
	fs := e.Flags("bench")
	n := fs.Int("n", bench.DefaultN, fmt.Sprintf("domains per throughput row, 1 to %d", bench.MaxN))
	workers := fs.Int("workers", 0, fmt.Sprintf("workers per queue (dns, kubernetes, probe) for the worker and its baselines; 0 keeps the worker's defaults (%d, %d, %d)",
		bench.DefaultDNSWorkers, bench.DefaultKubeWorkers, bench.DefaultProbeWorkers))
	asJSON := fs.Bool("json", false, "print the result as JSON instead of a table")
	rounds := fs.Int("rounds", bench.DefaultRounds, "rows 2 and 3 alternate baseline and stage this many times and report medians")
	rows := fs.String("rows", "", "comma-separated row IDs to measure (e.g. 2,3); empty measures every row")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > bench.MaxN {
		return cli.Usagef("bench: -n %d is not from 1 to %d", *n, bench.MaxN)
	}
	if *rounds < 1 || *rounds > 20 {
		return cli.Usagef("bench: -rounds %d is not from 1 to 20", *rounds)
	}
	if *workers < 0 || *workers > 10000 {
		return cli.Usagef("bench: -workers %d is not from 0 to 10000", *workers)
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
				return cli.Usagef("bench: -rows: %q is not a row; rows are %s", id, strings.Join(bench.RowIDs(), ", "))
			}
			onlyRows = append(onlyRows, id)
		}
	}
	opts := bench.Options{
		Rows:        onlyRows,
		DatabaseURL: cmp.Or(e.Getenv("DATABASE_URL"), db.DefaultURL),
		N:           *n,
		Rounds:      *rounds,
		DNSWorkers:  *workers, KubeWorkers: *workers, ProbeWorkers: *workers,
		Root:     devstack.FindRoot(cwd),
		Getenv:   e.Getenv,
		Progress: e.Stderr,
	}
	if adjust != nil {
		if err := adjust(&opts); err != nil {
			return err
		}
	}
	// client-go and envtest log through process-wide loggers; the bench's
	// output is its table and progress lines.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	ctrllog.SetLogger(logr.Discard())

	res, err := bench.Run(e.Ctx, opts)
	if err != nil {
		return err
	}
	if *asJSON {
		return res.WriteJSON(e.Stdout)
	}
	return res.WriteTable(e.Stdout)
}
