package cli

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// kube opens the cluster the worker would use and reads this
// installation's id from the database.
func (e *Env) kube(cfg worker.Config, q db.Querier) (*k8s.Client, string, error) {
	installation, err := db.InstallationID(e.Ctx, q)
	if err != nil {
		return nil, "", err
	}
	restCfg, err := worker.RestConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	if restCfg == nil {
		return nil, "", errors.New("no Kubernetes cluster configured: set KUBECONFIG")
	}
	client, err := k8s.NewClient(restCfg)
	if err != nil {
		return nil, "", err
	}
	return client, installation, nil
}

// clusterRun is what sweep and adopt start from: their flags, the database
// and a client of the cluster with this installation's id.
type clusterRun struct {
	cfg            worker.Config
	pool           *pgxpool.Pool
	client         *k8s.Client
	installation   string
	dryRun, asJSON bool
}

// clusterCommand parses a cluster command's --dry-run (described by
// dryRunHelp) and --json, then connects to the database and the cluster.
// The caller closes run.pool.
func (e *Env) clusterCommand(name, dryRunHelp string, args []string) (*clusterRun, error) {
	fs := e.Flags(name)
	run := &clusterRun{}
	fs.BoolVar(&run.dryRun, "dry-run", false, dryRunHelp)
	fs.BoolVar(&run.asJSON, "json", false, "print the objects as JSON")
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	var err error
	if run.cfg, run.pool, err = e.connect(); err != nil {
		return nil, err
	}
	if run.client, run.installation, err = e.kube(run.cfg, run.pool); err != nil {
		run.pool.Close()
		return nil, err
	}
	return run, nil
}

// sweepLine is one object in the sweep's and adoption's reports.
type sweepLine struct {
	Action    string    `json:"action"`
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	DomainID  string    `json:"domain_id"`
	CreatedAt time.Time `json:"created_at"`
	Error     string    `json:"error,omitempty"`
}

// sweep runs the orphan sweep once, as the worker's periodic job does,
// with the same bounds; --dry-run lists what it would delete.
func (e *Env) sweep(args []string) error {
	run, err := e.clusterCommand("sweep", "list what would be deleted; delete nothing", args)
	if err != nil {
		return err
	}
	defer run.pool.Close()
	cfg, pool, client, installation := run.cfg, run.pool, run.client, run.installation
	sweepCfg := cfg.Sweep
	sweepCfg.DryRun = sweepCfg.DryRun || run.dryRun
	if sweepCfg.MinAge <= 0 {
		sweepCfg.MinAge = jobs.DefaultSweepMinAge
	}
	sweeper := worker.Sweeper{Client: client, Namespaces: worker.ManagedNamespaces(cfg), Installation: installation}
	report, err := jobs.Sweep(e.Ctx, sweeper, worker.Store{Pool: pool}, time.Now(), sweepCfg)
	if err != nil {
		return err
	}
	var lines []sweepLine
	add := func(action string, objs []jobs.ManagedObject) {
		for _, o := range objs {
			lines = append(lines, sweepLine{Action: action, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, DomainID: o.DomainID, CreatedAt: o.CreatedAt})
		}
	}
	if report.DryRun {
		add("would_delete", report.Delete)
	} else {
		add("deleted", report.Deleted)
	}
	add("too_young", report.TooYoung)
	add("deferred", report.Deferred)
	for _, err := range report.Errors {
		lines = append(lines, sweepLine{Action: "failed", Error: err.Error()})
	}
	if run.asJSON {
		if err := writeJSON(e.Stdout, lines); err != nil {
			return err
		}
	} else {
		for _, l := range lines {
			if l.Action == "failed" {
				fmt.Fprintf(e.Stdout, "%-13s %s\n", l.Action, l.Error)
				continue
			}
			fmt.Fprintf(e.Stdout, "%-13s %s %s/%s (domain %s, created %s)\n", l.Action, l.Kind, l.Namespace, l.Name, l.DomainID, l.CreatedAt.Format(time.RFC3339))
		}
		fmt.Fprintf(e.Stdout, "installation %s: %d objects, %d orphaned, %d deleted, %d younger than %s, %d over the cap of %d%s\n",
			installation, report.Listed, len(report.Delete), len(report.Deleted), len(report.TooYoung), sweepCfg.MinAge,
			len(report.Deferred), sweepCfg.MaxDeletes, map[bool]string{true: " (dry run)", false: ""}[report.DryRun])
	}
	if len(report.Errors) > 0 {
		return errSilent
	}
	return nil
}

// adopt claims managed objects without an installation id (AlgaPSA's, or
// made before ids existed) whose domain has a row in this database, listing
// each; --dry-run only lists.
func (e *Env) adopt(args []string) error {
	run, err := e.clusterCommand("adopt", "list what would be adopted; change nothing", args)
	if err != nil {
		return err
	}
	defer run.pool.Close()
	cfg, pool, client, installation := run.cfg, run.pool, run.client, run.installation
	objs, err := client.ListManaged(e.Ctx, k8s.UnownedSelector)
	if err != nil {
		return err
	}
	namespaces := worker.ManagedNamespaces(cfg)
	objs = slices.DeleteFunc(objs, func(o k8s.ManagedObject) bool { return !slices.Contains(namespaces, o.Namespace) })
	ids := make([]string, 0, len(objs))
	for _, o := range objs {
		if o.DomainID != "" {
			ids = append(ids, o.DomainID)
		}
	}
	rows, err := db.DomainsByID(e.Ctx, pool, ids)
	if err != nil {
		return err
	}
	var lines []sweepLine
	failed := false
	for _, o := range objs {
		l := sweepLine{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, DomainID: o.DomainID, CreatedAt: o.CreatedAt}
		switch _, ours := rows[o.DomainID]; {
		case !ours:
			l.Action = "not_adopted"
			l.Error = "no portal_domains row with this id in this database"
		case run.dryRun:
			l.Action = "would_adopt"
		default:
			l.Action = "adopted"
			if err := client.Adopt(e.Ctx, o, installation); err != nil {
				l.Action, l.Error, failed = "failed", err.Error(), true
			}
		}
		lines = append(lines, l)
	}
	if run.asJSON {
		if err := writeJSON(e.Stdout, lines); err != nil {
			return err
		}
	} else {
		for _, l := range lines {
			fmt.Fprintf(e.Stdout, "%-12s %s %s/%s (domain %s)", l.Action, l.Kind, l.Namespace, l.Name, l.DomainID)
			if l.Error != "" {
				fmt.Fprintf(e.Stdout, ": %s", l.Error)
			}
			fmt.Fprintln(e.Stdout)
		}
		fmt.Fprintf(e.Stdout, "installation %s: %d objects without an installation id\n", installation, len(lines))
	}
	if failed {
		return errSilent
	}
	return nil
}
