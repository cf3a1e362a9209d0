package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/analytics"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/k8s"
)

// isBadInput is true for errors caused by what the user typed.
func isBadInput(err error) bool {
	return errors.Is(err, domain.ErrInvalidInput) || errors.Is(err, domain.ErrInvalidDomain) ||
		errors.Is(err, db.ErrNotFound) || errors.Is(err, db.ErrConflict) || errors.Is(err, db.ErrRejected) ||
		errors.Is(err, db.ErrWrongState)
}

// flags creates a flag set whose errors become usage errors.
func (e *Env) Flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	return fs
}

func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{fmt.Errorf("%s: help shown", fs.Name())}
		}
		return usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		return Usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func (e *Env) config() (worker.Config, error) {
	cfg, err := worker.ConfigFromEnv(e.Getenv)
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func (e *Env) open(cfg worker.Config) (*pgxpool.Pool, error) {
	return db.Open(e.Ctx, cfg.DatabaseURL)
}

// connect reads the configuration and opens the database: what most
// commands start with.
func (e *Env) connect() (worker.Config, *pgxpool.Pool, error) {
	cfg, err := e.config()
	if err != nil {
		return cfg, nil, err
	}
	pool, err := e.open(cfg)
	return cfg, pool, err
}

func (e *Env) migrate(args []string) error {
	if len(args) == 0 {
		return Usagef("migrate: say up, down or status")
	}
	fs := e.Flags("migrate " + args[0])
	steps := fs.Int("steps", 0, "down: how many migrations to revert (0: all, including River's tables)")
	if err := Parse(fs, args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "up", "down", "status":
	default:
		return Usagef("migrate: unknown direction %q (up, down or status)", args[0])
	}
	cfg, pool, err := e.connect()
	if err != nil {
		return err
	}
	defer pool.Close()
	switch args[0] {
	case "up":
		applied, err := db.MigrateUp(e.Ctx, pool, cfg.DBSettings())
		if err != nil {
			return err
		}
		for _, m := range applied {
			fmt.Fprintf(e.Stdout, "applied %03d_%s\n", m.Version, m.Name)
		}
		fmt.Fprintf(e.Stdout, "schema up to date (%d new migrations)\n", len(applied))
	case "down":
		if *steps < 0 {
			return Usagef("migrate down: --steps must be 0 or more")
		}
		reverted, err := db.MigrateDown(e.Ctx, pool, *steps)
		if err != nil {
			return err
		}
		for _, m := range reverted {
			fmt.Fprintf(e.Stdout, "reverted %03d_%s\n", m.Version, m.Name)
		}
	case "status":
		all, err := db.MigrationStatus(e.Ctx, pool)
		if err != nil {
			return err
		}
		for _, m := range all {
			state := "pending"
			if m.Applied {
				state = "applied"
			}
			fmt.Fprintf(e.Stdout, "%03d_%s\t%s\n", m.Version, m.Name, state)
		}
	}
	return nil
}

func (e *Env) register(args []string) error {
	fs := e.Flags("register")
	tenant := fs.String("tenant", "", "tenant UUID (required)")
	name := fs.String("domain", "", "the portal domain, e.g. portal.acme.com (required)")
	asJSON := fs.Bool("json", false, "print the row as JSON")
	if err := Parse(fs, args); err != nil {
		return err
	}
	tenantID, err := domain.ParseTenantID(*tenant)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return Usagef("register: --domain is required")
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	// Validate before connecting, so bad input never needs a database.
	if _, err := domain.ValidatePortalDomain(*name, cfg.CanonicalSuffix); err != nil {
		return err
	}
	res, err := e.writeThenTell(cfg, func(tx pgx.Tx) (db.Result, error) {
		return db.Register(e.Ctx, tx, tenantID, *name, cfg.CanonicalSuffix)
	}, func(events cliEvents, res db.Result) {
		events.RegistrationEnqueued(string(tenantID), res.Record.Domain, "cli", res.WasUpdate)
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.Stdout, res.Record)
	}
	switch {
	case !res.Enqueued:
		fmt.Fprintf(e.Stdout, "%s is already registered for tenant %s (status %s); nothing to do\n", res.Record.Domain, tenantID, res.Record.Status)
	default:
		fmt.Fprintf(e.Stdout, "registered %s (id %s)\n", res.Record.Domain, res.Record.ID)
	}
	fmt.Fprintf(e.Stdout, "Ask the tenant to create:  %s.  CNAME  %s.\n", res.Record.Domain, res.Record.CNAMETarget())
	return nil
}

// domainAction runs refresh, retry or disable.
func (e *Env) domainAction(action string, args []string) error {
	fs := e.Flags(action)
	tenant := fs.String("tenant", "", "tenant UUID (required)")
	domainID := fs.String("domain-id", "", "portal_domains.id (required)")
	if err := Parse(fs, args); err != nil {
		return err
	}
	tenantID, err := domain.ParseTenantID(*tenant)
	if err != nil {
		return err
	}
	id, err := domain.ParseDomainID(*domainID)
	if err != nil {
		return err
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	op := map[string]func(tx pgx.Tx) (db.Result, error){
		"refresh": func(tx pgx.Tx) (db.Result, error) { return db.Refresh(e.Ctx, tx, tenantID, id) },
		"retry":   func(tx pgx.Tx) (db.Result, error) { return db.Retry(e.Ctx, tx, tenantID, id) },
		"disable": func(tx pgx.Tx) (db.Result, error) { return db.Disable(e.Ctx, tx, tenantID, id) },
	}[action]
	res, err := e.writeThenTell(cfg, op, func(events cliEvents, res db.Result) {
		switch action {
		case "refresh":
			events.Refresh(string(tenantID), id, "cli")
		case "retry":
			// db.Retry sends dns_failed to pending_dns and certificate_failed
			// to pending_certificate, so the new status names the old one.
			from := domain.StatusDNSFailed
			if res.Record.Status == domain.StatusPendingCertificate {
				from = domain.StatusCertificateFailed
			}
			events.Retry(string(tenantID), id, string(from))
		case "disable":
			events.Disable(string(tenantID), id, "cli")
		}
	})
	if err != nil {
		return err
	}
	if !res.Enqueued {
		fmt.Fprintf(e.Stdout, "%s is already %s; nothing to do\n", res.Record.Domain, res.Record.Status)
		return nil
	}
	fmt.Fprintf(e.Stdout, "%s: %s is now %s (generation %d); job enqueued\n", action, res.Record.Domain, res.Record.Status, res.Record.Generation)
	return nil
}

func (e *Env) status(args []string) error {
	fs := e.Flags("status")
	tenant := fs.String("tenant", "", "only this tenant")
	domainID := fs.String("domain-id", "", "one domain, with its history")
	status := fs.String("status", "", "only this status")
	limit := fs.Int("limit", 1000, "at most this many rows")
	asJSON := fs.Bool("json", false, "JSON instead of a table")
	if err := Parse(fs, args); err != nil {
		return err
	}
	filter := db.ListFilter{Limit: *limit}
	if *tenant != "" {
		t, err := domain.ParseTenantID(*tenant)
		if err != nil {
			return err
		}
		filter.Tenant = t
	}
	if *status != "" {
		s, err := domain.ParseStatus(*status)
		if err != nil {
			return err
		}
		filter.Status = s
	}
	var id string
	if *domainID != "" {
		var err error
		if id, err = domain.ParseDomainID(*domainID); err != nil {
			return err
		}
	}
	cfg, pool, err := e.connect()
	if err != nil {
		return err
	}
	defer pool.Close()
	if id != "" {
		rec, err := db.GetDomain(e.Ctx, pool, id)
		if err != nil {
			return err
		}
		events, err := db.ListEvents(e.Ctx, pool, id)
		if err != nil {
			return err
		}
		jobsURL := domain.JobsURL(cfg.UIURL, rec.Domain, rec.Tenant)
		if *asJSON {
			out := map[string]any{"domain": rec, "events": events}
			if jobsURL != "" {
				out["jobs_url"] = jobsURL
			}
			return writeJSON(e.Stdout, out)
		}
		writeTable(e.Stdout, []domain.Record{rec})
		if jobsURL != "" {
			fmt.Fprintf(e.Stdout, "\nJobs in River UI: %s\n", jobsURL)
		}
		fmt.Fprintln(e.Stdout, "\nHistory:")
		tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tGEN\tFROM\tTO\tMESSAGE")
		for _, ev := range events {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", ev.CreatedAt, ev.Generation, ev.From, ev.To, ev.Message)
		}
		return tw.Flush()
	}
	recs, err := db.ListDomains(e.Ctx, pool, filter)
	if err != nil {
		return err
	}
	if *asJSON {
		if recs == nil {
			recs = []domain.Record{}
		}
		return writeJSON(e.Stdout, recs)
	}
	writeTable(e.Stdout, recs)
	return nil
}

func writeTable(w io.Writer, recs []domain.Record) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tDOMAIN\tCNAME TARGET\tSTATUS\tSINCE\tMESSAGE")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Tenant, r.Domain, r.CanonicalHost, r.Status,
			r.StatusChangedAt.UTC().Format(time.RFC3339), oneLine(r.StatusMessage, 100))
	}
	_ = tw.Flush()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// render prints a domain's objects exactly as the apply stage would send
// them, without touching the cluster.
func (e *Env) render(args []string) error {
	fs := e.Flags("render")
	domainID := fs.String("domain-id", "", "portal_domains.id (required)")
	if err := Parse(fs, args); err != nil {
		return err
	}
	id, err := domain.ParseDomainID(*domainID)
	if err != nil {
		return err
	}
	cfg, pool, err := e.connect()
	if err != nil {
		return err
	}
	defer pool.Close()
	rec, err := db.GetDomain(e.Ctx, pool, id)
	if err != nil {
		return err
	}
	// The apply stage labels every object with the installation id.
	if cfg.Kube.Installation, err = db.InstallationID(e.Ctx, pool); err != nil {
		return err
	}
	objs, err := k8s.Render(k8s.Domain{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain, CanonicalHost: rec.CanonicalHost}, cfg.Kube)
	if err != nil {
		return err
	}
	for _, obj := range objs.All() {
		b, err := k8s.SnapshotJSON(obj)
		if err != nil {
			return err
		}
		if _, err := e.Stdout.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// cliEvents sends the CLI's PostHog events (a no-op without
// POSTHOG_API_KEY).
type cliEvents struct {
	*analytics.Client
	logger *slog.Logger
}

// events builds the analytics client before anything is written, so a
// broken PostHog setting fails the command while it has done nothing.
// writeThenTell opens the analytics client and the database, runs write
// in one transaction and, only after the commit and only when it enqueued a
// job, tells the analytics client with tell: a rolled-back write enqueued
// nothing.
func (e *Env) writeThenTell(cfg worker.Config, write func(tx pgx.Tx) (db.Result, error), tell func(cliEvents, db.Result)) (db.Result, error) {
	events, err := e.events()
	if err != nil {
		return db.Result{}, err
	}
	defer events.close()
	pool, err := e.open(cfg)
	if err != nil {
		return db.Result{}, err
	}
	defer pool.Close()
	var res db.Result
	if err := db.InTx(e.Ctx, pool, func(tx pgx.Tx) error {
		var err error
		res, err = write(tx)
		return err
	}); err != nil {
		return res, err
	}
	if res.Enqueued {
		tell(events, res)
	}
	return res, nil
}

func (e *Env) events() (cliEvents, error) {
	logger, err := e.Logger()
	if err != nil {
		return cliEvents{}, err
	}
	client, err := analytics.NewFromEnv(e.Getenv, logger)
	if err != nil {
		return cliEvents{}, usageError{err}
	}
	return cliEvents{Client: client, logger: logger}, nil
}

// analyticsFlushTimeout bounds how long a command waits at exit for
// PostHog: events are worth a moment, never a hung terminal.
const analyticsFlushTimeout = 5 * time.Second

// close flushes the buffered events, giving up after
// analyticsFlushTimeout.
func (c cliEvents) close() {
	if !c.Enabled() {
		return
	}
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			c.logger.Warn("analytics: flush events", "error", err)
		}
	case <-time.After(analyticsFlushTimeout):
		c.logger.Warn("analytics: PostHog did not answer in time; events dropped", "timeout", analyticsFlushTimeout)
	}
}
