package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/gitrecord"
	"github.com/portal-domains/portal-domains/internal/telemetry"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// Worker is one worker process.
type Worker struct {
	cfg    Config
	logger *slog.Logger
	pool   *pgxpool.Pool
	// ownsPool: New opened the pool, so Close closes it; a caller's pool
	// is the caller's to close.
	ownsPool bool
	client   *river.Client[pgx.Tx]
	kube     *k8s.Client
	registry *prometheus.Registry
	metrics  *telemetry.Metrics
}

// Options are the parts a caller may provide instead of the defaults.
type Options struct {
	Logger *slog.Logger
	// Pool, when set, is used instead of opening cfg.DatabaseURL.
	Pool *pgxpool.Pool
	// RestConfig, when set, is used instead of KUBECONFIG/in-cluster.
	RestConfig *rest.Config
	// TracerProvider for River's and the stages' spans; nil: no tracing.
	TracerProvider trace.TracerProvider
	// Observer receives outcomes in addition to the metrics (analytics).
	Observer jobs.Observer
}

// New connects everything and registers the workers; nothing runs until Run.
// When it fails it releases what it opened (the pool, unless the caller
// gave it).
func New(ctx context.Context, cfg Config, opts Options) (_ *Worker, err error) {
	w := &Worker{cfg: cfg, logger: opts.Logger, registry: prometheus.NewRegistry()}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	w.pool = opts.Pool
	if w.pool == nil {
		pool, err := db.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		w.pool, w.ownsPool = pool, true
	}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if err := w.checkSchema(ctx); err != nil {
		return nil, err
	}
	if err := db.SaveSettings(ctx, w.pool, cfg.DBSettings()); err != nil {
		return nil, err
	}
	// Every object this worker applies carries the installation id, and
	// it deletes nothing that does not.
	if cfg.Kube.Installation, err = db.InstallationID(ctx, w.pool); err != nil {
		return nil, err
	}
	w.cfg = cfg

	resolver, err := dns.NewResolver(dns.Config{Servers: cfg.DNSServers, Timeout: cfg.DNSTimeout})
	if err != nil {
		return nil, fmt.Errorf("dns resolver: %w", err)
	}
	restConfig := opts.RestConfig
	if restConfig == nil {
		restConfig, err = loadRestConfig(cfg.Kubeconfig)
		if err != nil {
			return nil, err
		}
	}
	if restConfig != nil {
		if cfg.KubeQPS > 0 || cfg.KubeBurst > 0 {
			restConfig = rest.CopyConfig(restConfig)
			restConfig.QPS = cmp.Or(float32(cfg.KubeQPS), restConfig.QPS)
			restConfig.Burst = cmp.Or(cfg.KubeBurst, restConfig.Burst)
		}
		if w.kube, err = k8s.NewClient(restConfig); err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
	} else {
		w.logger.Warn("no Kubernetes cluster configured (KUBECONFIG unset and not in a cluster): " +
			"the kubernetes queue is not worked, so apply, await_certificate and disable jobs wait until a worker with a cluster runs")
	}

	w.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	statuses := make([]string, len(domain.Statuses))
	for i, s := range domain.Statuses {
		statuses[i] = string(s)
	}
	w.metrics, err = telemetry.NewMetrics(w.registry, telemetry.MetricsConfig{
		Statuses: statuses,
		DomainsByStatus: func(ctx context.Context) (map[string]telemetry.StatusCount, error) {
			counts, err := db.CountByStatus(ctx, w.pool)
			out := make(map[string]telemetry.StatusCount, len(counts))
			for _, c := range counts {
				out[c.Status] = telemetry.StatusCount{Count: c.Count, OldestSince: c.OldestSince}
			}
			return out, err
		},
		OpenAlerts: func(ctx context.Context) (map[string]int, error) { return db.CountOpenAlerts(ctx, w.pool) },
		AlertKinds: jobs.AlertKinds,
		Rechecks: func(ctx context.Context, expiringBefore time.Time) (telemetry.RecheckGauges, error) {
			st, err := db.ReadRecheckStats(ctx, w.pool, expiringBefore)
			return telemetry.RecheckGauges{Problems: st.Problems, OldestDue: st.OldestDue, ExpiringSoon: st.ExpiringSoon,
				EarliestNotAfter: st.EarliestNotAfter}, err
		},
		Logger: w.logger,
	})
	if err != nil {
		return nil, err
	}

	tp := opts.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	tracer := tp.Tracer(telemetry.TracerName)
	deps := &jobs.Deps{
		Store: Store{Pool: w.pool,
			Transitions: db.NewTransitionGroup(w.pool, cfg.TransitionGroup, transitionCommits),
			Reads:       db.NewReadGroup(w.pool, cfg.TransitionGroup, transitionCommits)},
		DNS:      DNS{Resolver: resolver, CAAIdentity: cfg.CAAIdentity, Tracer: tracer},
		Prober:   Prober{Config: cfg.Probe, Tracer: tracer},
		Observer: observers{metricsObserver{w.metrics}, opts.Observer},
		Logger:   w.logger,
		Config: jobs.Config{CanonicalSuffix: cfg.CanonicalSuffix, DNSDeadline: cfg.DNSDeadline,
			CertDeadline: cfg.CertDeadline, IssuerName: cfg.Kube.IssuerName, CAAIdentity: cfg.CAAIdentity, KeepDisabled: cfg.KeepDisabled,
			DNSRecheckMin: cfg.DNSRecheckMin, DNSRecheckMax: cfg.DNSRecheckMax, Sweep: cfg.Sweep, ReviewRecheck: cfg.GitReviewRecheck},
		SweepCounted: w.metrics.SweepObjects,
	}
	// Periodic jobs run on the elected leader only, so several workers
	// never sweep or scan twice at once.
	deps.Stages = Store{Pool: w.pool}
	periodic := []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cmp.Or(cfg.ReconcileInterval, time.Minute)),
		func() (river.JobArgs, *river.InsertOpts) { return jobs.ReconcileArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})}
	queues := map[string]river.QueueConfig{
		domain.QueueDNS:         {MaxWorkers: cfg.DNSWorkers},
		domain.QueueProbe:       {MaxWorkers: cfg.ProbeWorkers},
		domain.QueueMaintenance: {MaxWorkers: 2},
	}
	if w.kube != nil {
		deps.Kube = Kube{Client: w.kube, Config: cfg.Kube, ManifestDir: cfg.ManifestDir, Tracer: tracer, Logger: w.logger, ApplyErrors: w.metrics.ApplyError}
		deps.Sweeper = Sweeper{Client: w.kube, Namespaces: managedNamespaces(cfg.Kube), Installation: cfg.Kube.Installation}
		if cfg.Sweep.DryRun {
			w.logger.Warn("orphan sweep in dry-run mode: it reports what it would delete and deletes nothing")
		}
		deps.Owners = Store{Pool: w.pool}
		deps.Heals = Store{Pool: w.pool}
		deps.Healed = w.metrics.Healed
		periodic = append(periodic, river.NewPeriodicJob(river.PeriodicInterval(cmp.Or(cfg.SweepInterval, 10*time.Minute)),
			func() (river.JobArgs, *river.InsertOpts) { return jobs.OrphanSweepArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}))
		queues[domain.QueueKubernetes] = river.QueueConfig{MaxWorkers: cfg.KubeWorkers}
	}
	if cfg.Git.Enabled() {
		// One worker: the repository's commits are made one at a time.
		recorder := GitRecorder{Recorder: gitrecord.New(cfg.Git, w.logger.With("component", "gitrecord"))}
		deps.Git = recorder
		if cfg.Git.Review {
			deps.Review = recorder
		}
		deps.Manifests = Manifests{Config: cfg.Kube}
		deps.Tenants = Store{Pool: w.pool}
		queues[jobs.QueueGit] = river.QueueConfig{MaxWorkers: 1}
	}
	alerts, err := NewAlertStore(w.pool, w.logger)
	if err != nil {
		return nil, err
	}
	// The live re-check of active domains needs no cluster: DNS, HTTPS and
	// the database. The appliance edition's domains were provisioned by
	// AlgaPSA itself, not here, so they are not checked against our
	// canonical hosts.
	if !cfg.Appliance {
		deps.Rechecks = Rechecks{Pool: w.pool, River: alerts.River}
		deps.Alerts = alerts
		deps.AlertNotify = cfg.Alerts.WebhookURL != ""
		deps.Rechecked = w.metrics.Rechecked
		deps.Config.Recheck = cfg.Recheck
		queues[jobs.QueueRecheck] = river.QueueConfig{MaxWorkers: cmp.Or(cfg.RecheckWorkers, DefaultRecheckWorkers)}
		periodic = append(periodic, jobs.RecheckSchedulePeriodicJob(cfg.Recheck))
	}
	workers := river.NewWorkers()
	jobs.AddWorkers(workers, deps)
	scan, err := w.addAlerts(workers, cfg, alerts)
	if err != nil {
		return nil, err
	}
	periodic = append(periodic, scan)

	var plugins []rivertype.Plugin
	if opts.TracerProvider != nil {
		plugins = append(plugins, telemetry.RiverMiddleware(opts.TracerProvider))
	}
	w.client, err = river.NewClient(riverpgxv5.New(w.pool), &river.Config{
		Queues:        queues,
		Workers:       workers,
		PeriodicJobs:  periodic,
		Logger:        w.logger,
		Plugins:       plugins,
		FetchCooldown: cmp.Or(cfg.FetchCooldown, DefaultFetchCooldown),
		// A stage is a few network calls; anything slower is stuck.
		JobTimeout: cmp.Or(cfg.JobTimeout, 2*time.Minute),
		// Jobs of a worker killed mid-run are rescued after this long.
		RescueStuckJobsAfter: cmp.Or(cfg.RescueAfter, 5*time.Minute),
	})
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return w, nil
}

// RestConfig is the cluster the worker would use: KUBECONFIG, or the
// in-cluster config; nil when there is neither.
func RestConfig(cfg Config) (*rest.Config, error) { return loadRestConfig(cfg.Kubeconfig) }

// ManagedNamespaces are the namespaces the worker's objects live in, the
// only ones its sweep looks at.
func ManagedNamespaces(cfg Config) []string { return managedNamespaces(cfg.Kube) }

// loadRestConfig reads KUBECONFIG, or the in-cluster config, or neither.
func loadRestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("KUBECONFIG %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("in-cluster kubernetes config: %w", err)
	}
	return cfg, nil
}

// checkSchema refuses a database this build did not migrate, or whose
// functions or rule tables were changed since: the worker would run against
// rules it was not built with.
func (w *Worker) checkSchema(ctx context.Context) error { return db.CheckSchema(ctx, w.pool) }

// Client is the River client (for the UI and tests).
func (w *Worker) Client() *river.Client[pgx.Tx] { return w.client }

// Pool is the database pool.
func (w *Worker) Pool() *pgxpool.Pool { return w.pool }

// Registry holds the Prometheus metrics served on /metrics.
func (w *Worker) Registry() *prometheus.Registry { return w.registry }

// Ready reports whether the worker can do its work. Its error names the
// component (Component), which /readyz shows without credentials; the
// error itself may hold users and hosts.
func (w *Worker) Ready(ctx context.Context) error {
	if err := w.pool.Ping(ctx); err != nil {
		return unavailable{"database", err}
	}
	return nil
}

// unavailable names the component that is not ready.
type unavailable struct {
	component string
	err       error
}

func (u unavailable) Error() string     { return u.component + ": " + u.err.Error() }
func (u unavailable) Unwrap() error     { return u.err }
func (u unavailable) Component() string { return u.component }

// Run works jobs until ctx is cancelled, then stops gracefully: no new jobs
// are fetched, running jobs get ShutdownTimeout to finish, and whatever is
// still running after that is cancelled (and retried later by a worker).
func (w *Worker) Run(ctx context.Context) error {
	// River cancels every running job the moment Start's context ends;
	// shutdown is Stop's job below, so the client must outlive ctx.
	if err := w.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river client: %w", err)
	}
	w.logger.Info("worker started", "queues", w.queueNames())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		w.watchCertificates(ctx)
	}()
	handsDone := make(chan struct{})
	go func() {
		defer close(handsDone)
		w.watchHandChanges(ctx)
	}()

	<-ctx.Done()
	w.logger.Info("stopping: finishing running jobs", "timeout", w.cfg.ShutdownTimeout)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.ShutdownTimeout)
	defer cancel()
	err := w.client.Stop(stopCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		w.logger.Warn("running jobs did not finish in time; cancelling them (they will be retried)")
		hardCtx, hardCancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer hardCancel()
		err = w.client.StopAndCancel(hardCtx)
	}
	<-watchDone
	<-handsDone
	if err != nil {
		return fmt.Errorf("stop river client: %w", err)
	}
	w.logger.Info("worker stopped")
	return nil
}

// watchCertificates wakes a domain's await_certificate job whenever its
// Certificate's Ready condition changes, so Ready is acted on in
// milliseconds; the job's own checks cover a missed event.
func (w *Worker) watchCertificates(ctx context.Context) {
	if w.kube == nil {
		return
	}
	for ctx.Err() == nil {
		err := w.kube.WatchCertificates(ctx, func(domainID string, st k8s.CertStatus) {
			if st.Exists && st.Ready == k8s.ReadyMissing {
				// Just created: cert-manager has not said anything yet,
				// and waking now would only undo the stage's first-run
				// delay.
				return
			}
			if st.Renewed && st.IsReady() {
				w.copyRenewedSecret(ctx, domainID, st.NotAfter)
			}
			w.wakeStageJob(ctx, domainID, st.IsReady(), 0)
		})
		w.pauseBeforeRestart(ctx, "certificate watch", err)
	}
}

// pauseBeforeRestart logs that a watch ended and waits 2 s before the
// caller's loop starts it again, or until ctx is done (then quietly).
func (w *Worker) pauseBeforeRestart(ctx context.Context, watch string, err error) {
	if ctx.Err() != nil {
		return
	}
	w.logger.Warn(watch+" ended; restarting", "error", err)
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
}

// watchHandChanges enqueues a heal job for every hand edit or deletion of
// this installation's objects; the job itself decides whether the domain
// is active and the object really differs from what the worker applies.
func (w *Worker) watchHandChanges(ctx context.Context) {
	if w.kube == nil {
		return
	}
	for ctx.Err() == nil {
		err := w.kube.WatchHandChanges(ctx, w.cfg.Kube.Installation, func(c k8s.HandChange) {
			if c.DomainID == "" {
				return
			}
			args := jobs.HealArgs{DomainID: c.DomainID, Object: c.Kind, Change: c.Change, Revision: c.Revision}
			res, err := w.client.Insert(ctx, args, &river.InsertOpts{Tags: domain.JobTags(c.Host, domain.TenantID(c.Tenant))})
			if err != nil {
				if ctx.Err() == nil {
					w.logger.Warn("could not enqueue the heal of an object changed by hand", "portal_domain_id", c.DomainID,
						"kind", c.Kind, "namespace", c.Namespace, "name", c.Name, "change", c.Change, "error", err)
				}
				return
			}
			if !res.UniqueSkippedAsDuplicate {
				w.logger.Info("object changed by hand; heal enqueued", "portal_domain_id", c.DomainID, "kind", c.Kind,
					"namespace", c.Namespace, "name", c.Name, "change", c.Change, "changed_by", c.Managers)
			}
		})
		w.pauseBeforeRestart(ctx, "watch of hand changes", err)
	}
}

// copyRenewedSecret enqueues the job that hands a renewed certificate to
// the gateway (the copy in the gateway namespace). A renewal missed while no
// worker watched is caught by the domain's next live re-check.
func (w *Worker) copyRenewedSecret(ctx context.Context, domainID string, notAfter time.Time) {
	if _, err := w.client.Insert(ctx, jobs.CopySecretArgs{DomainID: domainID, NotAfter: notAfter.UTC()}, nil); err != nil && ctx.Err() == nil {
		w.logger.Warn("could not enqueue the copy of a renewed certificate", "portal_domain_id", domainID, "error", err)
	}
}

// Wake retries cover a Certificate turning Ready while the domain's stage
// job is busy (the apply job that created it has not committed yet, or the
// await job read the Certificate just before): the job cannot be woken, so
// the wake is tried again, backing off from wakeRetryFirst to wakeRetryMax,
// for about wakeRetryFor, instead of leaving the domain to its next
// scheduled check.
const (
	wakeRetryFirst = 25 * time.Millisecond
	wakeRetryMax   = 2 * time.Second
	wakeRetryFor   = 15 * time.Second
)

// wakeStageJob makes the domain's waiting stage job run now; for a Ready
// certificate it tries again while the stage job is busy.
func (w *Worker) wakeStageJob(ctx context.Context, domainID string, ready bool, waited time.Duration) {
	found, err := db.WakeStageJob(ctx, w.pool, domainID)
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("could not wake the stage job after a certificate change", "portal_domain_id", domainID, "error", err)
		}
		return
	}
	w.logger.Debug("certificate changed", "portal_domain_id", domainID, "ready", ready, "wake", found, "waited", waited)
	if found != db.WakeBusy || !ready || waited >= wakeRetryFor {
		return
	}
	// Waiting as long again as waited so far doubles the interval.
	delay := min(max(waited, wakeRetryFirst), wakeRetryMax)
	time.AfterFunc(delay, func() {
		if ctx.Err() == nil {
			w.wakeStageJob(ctx, domainID, ready, waited+delay)
		}
	})
}

func (w *Worker) queueNames() []string {
	names := []string{domain.QueueDNS, domain.QueueProbe, domain.QueueMaintenance}
	if !w.cfg.Appliance {
		names = append(names, jobs.QueueRecheck)
	}
	if w.kube != nil {
		names = append(names, domain.QueueKubernetes)
	}
	if w.cfg.Git.Enabled() {
		names = append(names, jobs.QueueGit)
	}
	return names
}

// Close releases what New opened: the pool when New opened it, never a pool
// the caller gave in Options.
func (w *Worker) Close() {
	if w.ownsPool {
		w.pool.Close()
	}
}

// Installation is this installation's id (db.InstallationID), on every
// object the worker applies.
func (w *Worker) Installation() string { return w.cfg.Kube.Installation }

// metricsObserver feeds the Prometheus metrics.
type metricsObserver struct{ m *telemetry.Metrics }

func (o metricsObserver) StageFinished(kind, outcome string, took time.Duration) {
	o.m.ObserveStage(kind, outcome, took)
}
func (o metricsObserver) DNSChecked(outcome string) { o.m.DNSCheck(outcome) }
func (o metricsObserver) Activated(rec domain.Record) {
	o.m.Activated(time.Since(rec.CreatedAt))
}
func (o metricsObserver) Failed(rec domain.Record) { o.m.Failed(string(rec.Status)) }

// observers fans out to several observers, skipping nil ones.
type observers []jobs.Observer

func (os observers) StageFinished(kind, outcome string, took time.Duration) {
	for _, o := range os {
		if o != nil {
			o.StageFinished(kind, outcome, took)
		}
	}
}
func (os observers) DNSChecked(outcome string) {
	for _, o := range os {
		if o != nil {
			o.DNSChecked(outcome)
		}
	}
}
func (os observers) Activated(rec domain.Record) {
	for _, o := range os {
		if o != nil {
			o.Activated(rec)
		}
	}
}
func (os observers) Failed(rec domain.Record) {
	for _, o := range os {
		if o != nil {
			o.Failed(rec)
		}
	}
}

// managedNamespaces are the namespaces this worker's objects live in.
func managedNamespaces(cfg k8s.Config) []string {
	defaults := k8s.DefaultConfig()
	return []string{cmp.Or(cfg.CertNamespace, defaults.CertNamespace), cmp.Or(cfg.GatewayNamespace, defaults.GatewayNamespace)}
}
