package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/internal/cli"
	"github.com/portal-domains/portal-domains/internal/harness/bench"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
)

// benchCommand measures the pipeline against baselines taken in the same run
// and prints one table (bench.Run).
func benchCommand(e *cli.Env, args []string) error { return runBench(e, args, nil) }

// productWorker is the worker the bench measures: the product binary,
// portal-domains, built beside this one by make bench and run as a child.
func productWorker() ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable: %w", err)
	}
	bin := filepath.Join(filepath.Dir(self), "portal-domains")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("bench runs the worker binary %s, built beside this one by make bench: %w", bin, err)
	}
	return []string{bin, "worker"}, nil
}

// runBench parses the flags and runs the bench; adjust sets what flags do
// not (a test's worker command and smaller sizes); the worker is the product
// binary unless adjust names another.
func runBench(e *cli.Env, args []string, adjust func(*bench.Options)) error {
	fs := e.Flags("bench")
	n := fs.Int("n", bench.DefaultN, fmt.Sprintf("domains per throughput row, 1 to %d (to %d for the scale row alone, -rows %s)", bench.MaxN, bench.MaxScaleN, bench.ScaleRowID))
	workers := fs.Int("workers", 0, fmt.Sprintf("workers per queue (dns, kubernetes, probe) for the worker and its baselines; 0 keeps the worker's defaults (%d, %d, %d)",
		bench.DefaultDNSWorkers, bench.DefaultKubeWorkers, bench.DefaultProbeWorkers))
	asJSON := fs.Bool("json", false, "print the result as JSON instead of a table")
	rounds := fs.Int("rounds", bench.DefaultRounds, "rows 2 and 3 alternate baseline and stage this many times and report medians")
	rows := fs.String("rows", "", "comma-separated row IDs to measure (e.g. 2,3; 7 is 7a and 7b); empty measures rows 1 to 6; 8 is the scale row, on request")
	issuerFlag := fs.String("issuer", "dev", "dev: rows 1 to 6, with the DEV-ONLY issuer; acme: row 7, registration → active with cert-manager and Pebble against AlgaPSA's design (needs port 80)")
	acmeN := fs.Int("acme-n", bench.DefaultACMEDomains, "domains row 7 registers (and as many for its baseline)")
	rate := fs.Float64("rate", bench.DefaultACMERate, "registrations per second in row 7")
	poll := fs.Duration("algapsa-poll", time.Minute, "poll interval of row 7's AlgaPSA baseline: the design's minute; shorter only to try the row out (the note says which)")
	growth := fs.String("growth", "", fmt.Sprintf("run the scale row at %v domains and write an SVG of cost per domain against N to this file", bench.DefaultGrowthSizes))
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *rounds < 1 || *rounds > 20 {
		return cli.Usagef("bench: -rounds %d is not from 1 to 20", *rounds)
	}
	if *workers < 0 || *workers > 10000 {
		return cli.Usagef("bench: -workers %d is not from 0 to 10000", *workers)
	}
	if *acmeN < 1 || *acmeN > 1000 {
		return cli.Usagef("bench: -acme-n %d is not from 1 to 1000", *acmeN)
	}
	if *poll < time.Second || *poll > 10*time.Minute {
		return cli.Usagef("bench: -algapsa-poll %s is not from 1s to 10m", *poll)
	}
	if !(*rate > 0 && *rate <= 1000) {
		return cli.Usagef("bench: -rate %g is not above 0 and at most 1000", *rate)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	var onlyRows []string
	if *rows != "" {
		for id := range strings.SplitSeq(*rows, ",") {
			id = strings.TrimSpace(id)
			switch {
			case id == "7":
				onlyRows = append(onlyRows, "7a", "7b")
			case slices.Contains(bench.RowIDs(), id), id == bench.ScaleRowID:
				onlyRows = append(onlyRows, id)
			default:
				return cli.Usagef("bench: -rows: %q is not a row; rows are %s (7 for both 7a and 7b), and %s (scale)", id, strings.Join(bench.RowIDs(), ", "), bench.ScaleRowID)
			}
		}
	}
	switch *issuerFlag {
	case "dev":
	case "acme":
		// Real issuance is row 7's; rows 1 to 6 measure the pipeline with
		// the DEV-ONLY issuer, which signs at once.
		if len(onlyRows) == 0 {
			onlyRows = []string{"7a", "7b"}
		} else if !slices.Contains(onlyRows, "7a") && !slices.Contains(onlyRows, "7b") {
			onlyRows = append(onlyRows, "7a", "7b")
		}
	default:
		return cli.Usagef("bench: -issuer %q is not dev or acme", *issuerFlag)
	}
	scaleOnly := *growth != "" || (len(onlyRows) > 0 && !slices.ContainsFunc(onlyRows, func(id string) bool { return id != bench.ScaleRowID }))
	maxN := bench.MaxN
	if scaleOnly {
		maxN = bench.MaxScaleN
	}
	if *n < 1 || *n > maxN {
		return cli.Usagef("bench: -n %d is not from 1 to %d (to %d for the scale row alone, -rows %s)", *n, maxN, bench.MaxScaleN, bench.ScaleRowID)
	}
	opts := bench.Options{
		Rows:        onlyRows,
		DatabaseURL: cmp.Or(e.Getenv("DATABASE_URL"), db.DefaultURL),
		N:           *n,
		Rounds:      *rounds,
		DNSWorkers:  *workers, KubeWorkers: *workers, ProbeWorkers: *workers,
		ACMEDomains: *acmeN, ACMERate: *rate, AlgaPSAPoll: *poll,
		Root:     localapi.FindRoot(cwd),
		Getenv:   e.Getenv,
		Progress: e.Stderr,
		Growth:   *growth,
	}
	if adjust != nil {
		adjust(&opts)
	}
	if opts.WorkerCommand == nil {
		if opts.WorkerCommand, err = productWorker(); err != nil {
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
