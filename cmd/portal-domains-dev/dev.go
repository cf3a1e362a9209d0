package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/term"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portal-domains/portal-domains/internal/cli"
	"github.com/portal-domains/portal-domains/internal/harness/devstack"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/internal/telemetry"
)

// devCommand runs the whole pipeline on this machine (devstack.Run) until a
// signal: what `make run` does.
func devCommand(e *cli.Env, args []string) error {
	fs := e.Flags("dev")
	noDemo := fs.Bool("no-demo", false, "do not register the demo domains from fixtures/demo")
	fixAfter := fs.Duration("fix-dns-after", 0, "when the demo tenant with the wrong CNAME fixes it (default: demo.json's, 8s)")
	issuerDelay := fs.Duration("issuer-delay", 1500*time.Millisecond, "how long the DEV-ONLY issuer shows a Certificate as Issuing before signing it")
	dnsAddr := fs.String("dns-addr", "127.0.0.1:0", "where the local DNS server listens (udp and tcp)")
	httpsAddr := fs.String("https-addr", "127.0.0.1:0", "where the local HTTPS endpoint the probe dials listens")
	stateDir := fs.String("state-dir", "", "the run's files: CA, kubeconfig, API server logs, manifests (default <repository>/.cache/dev)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	root := localapi.FindRoot(cwd)
	if *stateDir == "" {
		if *stateDir, err = devstack.StateDir(root); err != nil {
			return err
		}
	}

	// On a terminal the status table owns the screen, so the logs go to a
	// file; piped, they go to stderr as the worker's do.
	out, isTTY := e.Stdout.(*os.File)
	live := isTTY && term.IsTerminal(int(out.Fd()))
	var logger *slog.Logger
	if live {
		logPath := filepath.Join(*stateDir, "dev.log")
		if err := os.MkdirAll(*stateDir, 0o755); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
		f, err := os.Create(logPath)
		if err != nil {
			return fmt.Errorf("create log file: %w", err)
		}
		defer f.Close()
		var level slog.Level
		if err := level.UnmarshalText([]byte(strings.ToUpper(cmp.Or(e.Getenv("LOG_LEVEL"), "info")))); err != nil {
			return cli.Usagef("LOG_LEVEL: %q is not debug, info, warn or error", e.Getenv("LOG_LEVEL"))
		}
		logger = telemetry.NewLogger(f, false, level)
		fmt.Fprintf(e.Stdout, "logs: %s (tail -f it; LOG_LEVEL=debug for more)\n", logPath)
	} else if logger, err = e.Logger(); err != nil {
		return err
	}
	// client-go and controller-runtime log through process-wide loggers;
	// route them to ours so nothing writes over the status table.
	klog.SetSlogLogger(logger)
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))

	tp, shutdownTracing, err := telemetry.SetupTracing(e.Ctx, e.Getenv)
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(e.Ctx)) }()

	err = devstack.Run(e.Ctx, devstack.Options{
		Getenv:         e.Getenv,
		Root:           root,
		StateDir:       *stateDir,
		Out:            e.Stdout,
		Live:           live,
		Width:          func() int { return terminalWidth(out) },
		Logger:         logger,
		TracerProvider: tp,
		NoDemo:         *noDemo,
		FixDNSAfter:    *fixAfter,
		IssuerDelay:    *issuerDelay,
		DNSAddr:        *dnsAddr,
		GatewayAddr:    *httpsAddr,
	})
	var ce devstack.ConfigError
	if errors.As(err, &ce) {
		return cli.AsUsage(err)
	}
	if err == nil {
		fmt.Fprintln(e.Stdout, "portal-domains-dev dev: stopped; nothing left running")
	}
	return err
}

func terminalWidth(f *os.File) int {
	if f != nil {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			return w
		}
	}
	return 120
}
