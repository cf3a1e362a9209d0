package cli

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"golang.org/x/term"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/internal/server"
	"github.com/portal-domains/portal-domains/internal/telemetry"
	"github.com/portal-domains/portal-domains/internal/worker"
)

func (e *Env) Logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(cmp.Or(e.Getenv("LOG_LEVEL"), "info")))); err != nil {
		return nil, Usagef("LOG_LEVEL: %q is not debug, info, warn or error", e.Getenv("LOG_LEVEL"))
	}
	isTerminal := false
	if f, ok := e.Stderr.(*os.File); ok {
		isTerminal = term.IsTerminal(int(f.Fd()))
	}
	return telemetry.NewLogger(e.Stderr, isTerminal, level), nil
}

// serving parses a serving command's flags and reads what every serving
// command needs: the configuration, the HTTP endpoint's and a logger.
func (e *Env) serving(name string, args []string) (worker.Config, server.Config, *slog.Logger, error) {
	fs := e.Flags(name)
	if err := Parse(fs, args); err != nil {
		return worker.Config{}, server.Config{}, nil, err
	}
	cfg, err := e.config()
	if err != nil {
		return cfg, server.Config{}, nil, err
	}
	serverCfg, err := server.ConfigFromEnv(e.Getenv)
	if err != nil {
		return cfg, serverCfg, nil, usageError{err}
	}
	logger, err := e.Logger()
	return cfg, serverCfg, logger, err
}

// worker runs the River workers and the HTTP endpoints until a signal.
func (e *Env) worker(args []string) error {
	cfg, serverCfg, logger, err := e.serving("worker", args)
	if err != nil {
		return err
	}
	tp, shutdownTracing, err := telemetry.SetupTracing(e.Ctx, e.Getenv)
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(e.Ctx)) }()
	events, err := newAnalytics(e.Getenv, logger)
	if err != nil {
		return usageError{err}
	}
	defer events.Close()

	w, err := worker.New(e.Ctx, cfg, worker.Options{Logger: logger, TracerProvider: tp, Observer: events})
	if err != nil {
		return err
	}
	defer w.Close()
	srv, err := server.New(serverCfg, server.Deps{Logger: logger, Registry: w.Registry(), Ready: w.Ready, RiverClient: w.Client()})
	if err != nil {
		return usageError{err}
	}
	return worker.RunTogether(e.Ctx, w.Run, srv.Run)
}

// ui serves the River UI alone, with an insert-only client.
func (e *Env) ui(args []string) error {
	cfg, serverCfg, logger, err := e.serving("ui", args)
	if err != nil {
		return err
	}
	pool, err := e.open(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger})
	if err != nil {
		return err
	}
	reg := newRegistry()
	srv, err := server.New(serverCfg, server.Deps{Logger: logger, Registry: reg, RiverClient: client,
		Ready: func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return server.Unavailable{Name: "database", Err: err}
			}
			return nil
		}})
	if err != nil {
		return usageError{err}
	}
	logger.Info("serving the River UI", "url", "http://"+serverCfg.Addr+server.RiverUIPrefix+"/")
	return srv.Run(e.Ctx)
}

// alerts lists stuck-certificate alerts.
func (e *Env) alerts(args []string) error {
	fs := e.Flags("alerts")
	all := fs.Bool("all", false, "include resolved alerts")
	asJSON := fs.Bool("json", false, "JSON instead of a table")
	if err := Parse(fs, args); err != nil {
		return err
	}
	_, pool, err := e.connect()
	if err != nil {
		return err
	}
	defer pool.Close()
	alerts, err := db.ListAlerts(e.Ctx, pool, *all)
	if err != nil {
		return err
	}
	if *asJSON {
		if alerts == nil {
			alerts = []db.Alert{}
		}
		return writeJSON(e.Stdout, alerts)
	}
	if len(alerts) == 0 {
		fmt.Fprintln(e.Stdout, "no open alerts")
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPENED\tKIND\tDOMAIN\tTENANT\tREASON\tFAILED ATTEMPTS\tRESOLVED\tMESSAGE")
	for _, a := range alerts {
		resolved := ""
		if a.ResolvedAt != nil {
			resolved = a.ResolvedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.OpenedAt.UTC().Format(time.RFC3339), a.Kind, a.Domain, a.Tenant,
			a.Reason, a.FailedIssuanceAttempts, resolved, oneLine(a.Message, 80))
	}
	return tw.Flush()
}
