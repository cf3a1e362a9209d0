// Package devstack runs the whole of portal-domains on one machine with
// nothing configured, for `portal-domains-dev dev` and `make run`: Postgres
// (migrated), a real kube-apiserver and etcd with the cert-manager and Istio
// CRDs, a DNS server for the demo zones and an HTTPS endpoint standing in
// for the ingress gateway (all started by internal/harness/stack, as the
// bench starts its own), a DEV-ONLY issuer playing cert-manager
// (internal/harness/issuer), the worker and the River UI; then it
// registers the demo domains from fixtures/demo and shows them reach
// active.
//
// Every part the environment names is used instead of the local one:
// DATABASE_URL, KUBECONFIG (then no dev issuer unless
// PORTAL_DOMAIN_DEV_ISSUER=1), PORTAL_DOMAIN_DNS_SERVERS,
// PORTAL_DOMAIN_PROBE_DIAL_ADDRESS.
//
// Each run starts clean: a fresh API server and CA, and the demo tenants'
// rows deleted and registered again; Postgres and other rows are kept.
package devstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portal-domains/portal-domains/db"
	demofixtures "github.com/portal-domains/portal-domains/fixtures/demo"
	"github.com/portal-domains/portal-domains/internal/harness/acme"
	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
	"github.com/portal-domains/portal-domains/internal/server"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
)

// DevIssuerName is the issuerRef the worker renders while the dev issuer
// plays cert-manager (unless PORTAL_DOMAIN_ISSUER_NAME says otherwise), so
// `kubectl get certificates -o yaml` shows where the certificates came from.
const DevIssuerName = "portal-domains-dev-ca"

// ACMEIssuerName is the ClusterIssuer for Pebble that the worker renders when cert-manager's
// real controllers issue (the default with the local API server).
const ACMEIssuerName = "portal-domains-dev-pebble"

// HTTP01Addr is where the local gateway answers HTTP-01 challenges: port 80, where ACME CAs
// and cert-manager's self-check ask, of the address the demo zones give the canonical hosts.
const HTTP01Addr = "127.0.0.1:80"

// Options configure Run. The zero value of each field is a sensible
// default except Getenv, which is required.
type Options struct {
	// Getenv reads the environment (os.Getenv in the command).
	Getenv func(string) string
	// Root is the repository (localapi.FindRoot): scripts/build-kube-binaries.sh,
	// .cache/kube-bin and scripts/ensure-postgres.sh. Needed for the local
	// API server; without it KUBECONFIG must be set.
	Root string
	// StateDir holds the run's files: the CA certificate, the API server's
	// work directory and kubeconfig, the manifest snapshots. Default
	// <Root>/.cache/dev. Two runs cannot share one (it is locked).
	StateDir string
	// Out gets the banner, build progress and the status board.
	Out io.Writer
	// Live redraws a status table in place (a terminal); otherwise one
	// line per change is printed.
	Live bool
	// Width is the terminal width for Live; default 120.
	Width func() int
	// Logger gets the worker's, the issuer's and the servers' logs.
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Observer       jobs.Observer
	// NoDemo skips registering the demo domains.
	NoDemo bool
	// FixDNSAfter overrides demo.json's delay before the wrong CNAME is
	// fixed; zero keeps demo.json's.
	FixDNSAfter time.Duration
	// IssuerDelay is how long a Certificate shows as Issuing before the dev
	// issuer signs it; zero signs at once.
	IssuerDelay time.Duration
	// DNSAddr and GatewayAddr are where the local DNS server and HTTPS
	// endpoint listen; default 127.0.0.1 on a random port.
	DNSAddr, GatewayAddr string
	// OnReady is called once everything has started, before the demo
	// domains are registered.
	OnReady func(Info)
	// OnAllDemoActive is called once every demo domain is active, with the
	// time since Run started.
	OnAllDemoActive func(took time.Duration)
}

// Info says what runs where. Fields of parts taken from the environment
// instead of started here are empty (PIDs zero).
type Info struct {
	DatabaseURL string // password redacted
	// APIServer is the API server's URL; Kubeconfig a file for it.
	APIServer, Kubeconfig string
	APIServerPID, EtcdPID int
	APIServerLog          string
	// DNSServers are what the worker queries; DNSAddr is set when that is
	// the local server.
	DNSServers []string
	DNSAddr    string
	// GatewayAddr is the local HTTPS endpoint the probe dials.
	GatewayAddr string
	// CAFile is the dev CA's certificate.
	CAFile    string
	DevIssuer bool
	// ACME is set when cert-manager's controllers and Pebble issue the certificates; then
	// HTTP01Addr answers challenges, ACMEDirectory is Pebble's and CAFile holds its root.
	ACME                      bool
	HTTP01Addr, ACMEDirectory string
	PebblePID, CertManagerPID int
	// IssuerNote says why the DEV-ONLY issuer runs when real issuance was wanted.
	IssuerNote  string
	RiverUI     string
	ManifestDir string
	StateDir    string
	// EnvFile holds export lines pointing the CLI and kubectl at this run.
	EnvFile string
}

// dev is one Run: what started, and how to stop it.
type dev struct {
	opts   Options
	getenv func(string) string
	out    io.Writer
	logger *slog.Logger
	start  time.Time
	demo   Demo
	info   Info
	ca     *issuer.CA
	// suffix is the configured canonical suffix.
	suffix string

	dns     *localdns.Server
	gateway *stack.Gateway
	http01  net.Listener
	board   atomic.Pointer[board]
	api     *localapi.Server
	pool    *pgxpool.Pool

	// parts stops, when Run returns, what was started.
	parts *stack.Stack
}

// onExit adds f to what runs, in reverse order, when Run returns.
func (s *dev) onExit(f func()) { s.parts.OnClose(func() error { f(); return nil }) }

// Run starts the stack, registers the demo domains and serves until ctx is
// cancelled, then stops everything it started (kube-apiserver and etcd
// included) and returns nil. A failure to start returns the error after
// stopping what had started.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.Getenv == nil {
		return errors.New("devstack: Options.Getenv is required")
	}
	s := &dev{opts: opts, getenv: opts.Getenv, out: opts.Out, logger: opts.Logger, start: time.Now()}
	if s.out == nil {
		s.out = io.Discard
	}
	s.parts = &stack.Stack{Root: opts.Root, Out: s.out}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	defer func() {
		err = errors.Join(err, s.parts.Close())
		// Ctrl-C while starting is a normal way to stop, not a failure.
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			fmt.Fprintln(s.out, "interrupted while starting; stopped what had started")
			err = nil
		}
	}()

	w, srv, uiLn, err := s.startAll(ctx)
	if err != nil {
		return err
	}
	s.printBanner()
	if opts.OnReady != nil {
		opts.OnReady(s.info)
	}

	b := newBoard(s.out, opts.Live, opts.Width, s.start, nil, opts.OnAllDemoActive)
	s.board.Store(b)
	if s.info.IssuerNote != "" {
		b.Note("%s", s.info.IssuerNote)
	}
	if !opts.NoDemo {
		b.demo = s.demo.Domains()
	}
	fns := []func(context.Context) error{
		w.Run,
		func(ctx context.Context) error { return srv.Serve(ctx, uiLn) },
		func(ctx context.Context) error { return b.Run(ctx, s.pool) },
	}
	if s.info.DevIssuer {
		iss, err := s.issuer(b)
		if err != nil {
			return err
		}
		fns = append(fns, iss.Run)
	}
	if !opts.NoDemo {
		recs, err := ResetDemo(ctx, s.pool, s.demo, s.suffix)
		if err != nil {
			return err
		}
		b.Note("registered %d demo domains (fixtures/demo); their rows from earlier runs were deleted", len(recs))
		for i, r := range recs {
			if want := s.demo.Tenants[i].CanonicalHost(s.suffix); r.CanonicalHost != want {
				b.Note("%s got canonical host %s, not %s as in the demo zones (another tenant shares its prefix): it will stay in verifying_dns",
					r.Domain, r.CanonicalHost, want)
			}
		}
		if s.dns != nil {
			fns = append(fns, func(ctx context.Context) error { return s.runFixes(ctx, b) })
		} else {
			b.Note("PORTAL_DOMAIN_DNS_SERVERS is set: the demo domains verify only if those servers serve fixtures/demo's zones")
		}
	}
	err = worker.RunTogether(ctx, fns...)
	fmt.Fprintln(s.out, "stopping: the worker and the HTTP servers have stopped; stopping the rest…")
	return err
}

// startAll starts every part in order, cheapest and likeliest to fail
// first, so a bad setting fails before the slow API server starts.
func (s *dev) startAll(ctx context.Context) (*worker.Worker, *server.Server, net.Listener, error) {
	var err error
	if s.demo, err = LoadDemo(demofixtures.FS()); err != nil {
		return nil, nil, nil, err
	}
	localKube := s.getenv("KUBECONFIG") == ""
	localDNS := s.getenv("PORTAL_DOMAIN_DNS_SERVERS") == ""
	localGateway := s.getenv("PORTAL_DOMAIN_PROBE_DIAL_ADDRESS") == ""
	if s.info.DevIssuer, err = devIssuerWanted(s.getenv("PORTAL_DOMAIN_DEV_ISSUER")); err != nil {
		return nil, nil, nil, err
	}
	if localKube && !s.info.DevIssuer {
		// Real issuance needs port 80; without it the DEV-ONLY issuer plays cert-manager, and
		// says why.
		if s.http01, err = stack.ListenHTTP01(HTTP01Addr); err != nil {
			s.info.DevIssuer = true
			s.info.IssuerNote = fmt.Sprintf("%v. The DEV-ONLY issuer signs the certificates instead.", err)
		} else {
			s.info.ACME = true
			s.info.HTTP01Addr = s.http01.Addr().String()
			ln := s.http01
			s.onExit(func() { _ = ln.Close() })
		}
	}
	if localKube && s.opts.Root == "" {
		return nil, nil, nil, errors.New("the local API server needs the portal-domains repository (scripts/build-kube-binaries.sh, .cache/kube-bin): " +
			"run `portal-domains-dev dev` from inside it, or set KUBECONFIG to use a cluster")
	}
	if s.info.StateDir, err = stateDirFor(s.opts); err != nil {
		return nil, nil, nil, err
	}
	unlock, err := lockStateDir(s.info.StateDir)
	if err != nil {
		return nil, nil, nil, err
	}
	s.onExit(unlock)

	s.info.CAFile = filepath.Join(s.info.StateDir, "ca.pem")
	if s.ca, err = s.parts.CA(s.info.CAFile); err != nil {
		return nil, nil, nil, err
	}
	s.info.ManifestDir = filepath.Join(s.info.StateDir, "manifests")
	if err := os.RemoveAll(s.info.ManifestDir); err != nil {
		return nil, nil, nil, fmt.Errorf("clear %s: %w", s.info.ManifestDir, err)
	}

	// Dev defaults, each used only when the environment does not set it.
	overlay := map[string]string{
		"PORTAL_DOMAIN_CANONICAL_SUFFIX": s.demo.CanonicalSuffix,
		// Short re-checks, so a fixed CNAME shows within seconds.
		"PORTAL_DOMAIN_DNS_RECHECK_MIN":  "1s",
		"PORTAL_DOMAIN_DNS_RECHECK_MAX":  "3s",
		"PORTAL_DOMAIN_DNS_TIMEOUT":      "1s",
		"PORTAL_DOMAIN_PROBE_TIMEOUT":    "3s",
		"PORTAL_DOMAIN_SHUTDOWN_TIMEOUT": "5s",
		"PORTAL_DOMAIN_MANIFEST_DIR":     s.info.ManifestDir,
	}
	if s.info.DevIssuer {
		overlay["PORTAL_DOMAIN_ISSUER_NAME"] = DevIssuerName
	}
	if s.info.ACME {
		overlay["PORTAL_DOMAIN_ISSUER_NAME"] = ACMEIssuerName
	}
	if localDNS {
		zones, err := localdns.LoadZones(demofixtures.FS(), "*.zone")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("demo zones: %w", err)
		}
		if s.dns, err = s.parts.DNS(cmp.Or(s.opts.DNSAddr, "127.0.0.1:0"), zones...); err != nil {
			return nil, nil, nil, err
		}
		s.info.DNSAddr = s.dns.Addr()
		overlay["PORTAL_DOMAIN_DNS_SERVERS"] = s.dns.Addr()
	}
	if localGateway {
		gwCA := s.ca
		if s.info.ACME {
			gwCA = nil // it serves the Secrets cert-manager writes, once the API server is up
		}
		if s.gateway, err = s.parts.Gateway(cmp.Or(s.opts.GatewayAddr, "127.0.0.1:0"), gwCA, s.logger); err != nil {
			return nil, nil, nil, err
		}
		s.info.GatewayAddr = s.gateway.Addr()
		overlay["PORTAL_DOMAIN_PROBE_DIAL_ADDRESS"] = s.gateway.Addr()
		overlay["PORTAL_DOMAIN_PROBE_CA_FILE"] = s.info.CAFile
	}
	env := func(k string) string {
		if v := s.getenv(k); v != "" {
			return v
		}
		return overlay[k]
	}
	cfg, err := worker.ConfigFromEnv(env)
	if err != nil {
		return nil, nil, nil, ConfigError{err}
	}
	cfg.Sweep = sweepFor(cfg.Sweep, localKube)
	if !localKube {
		s.logger.Warn("KUBECONFIG names a cluster this dev stack did not start: the orphan sweep only reports what it would delete")
	}
	s.info.DNSServers, s.suffix = cfg.DNSServers, cfg.CanonicalSuffix
	serverCfg, err := server.ConfigFromEnv(env)
	if err != nil {
		return nil, nil, nil, ConfigError{err}
	}
	// Listen now: a busy port should fail before the slow parts start.
	uiLn, err := net.Listen("tcp", serverCfg.Addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("River UI on %s: %w (another `make run` or worker? set %s=127.0.0.1:8081)", serverCfg.Addr, err, server.EnvAddr)
	}
	s.onExit(func() { _ = uiLn.Close() })
	s.info.RiverUI = "http://" + uiLn.Addr().String() + server.RiverUIPrefix + "/"

	if err := s.startDatabase(ctx, cfg); err != nil {
		return nil, nil, nil, err
	}

	var restCfg *rest.Config // nil: the worker reads cfg.Kubeconfig
	if localKube {
		if err := s.startAPIServer(ctx, cfg); err != nil {
			return nil, nil, nil, err
		}
		restCfg = s.api.Config
	}
	if s.info.ACME {
		if err := s.startACME(ctx, cfg); err != nil {
			return nil, nil, nil, err
		}
	}
	w, err := worker.New(ctx, cfg, worker.Options{Logger: s.logger, Pool: s.pool, RestConfig: restCfg,
		TracerProvider: s.opts.TracerProvider, Observer: s.opts.Observer})
	if err != nil {
		return nil, nil, nil, err
	}
	srv, err := server.New(serverCfg, server.Deps{Logger: s.logger, Registry: w.Registry(), Ready: w.Ready, RiverClient: w.Client()})
	if err != nil {
		return nil, nil, nil, ConfigError{err}
	}
	if err := s.writeEnvFile(cfg, env); err != nil {
		return nil, nil, nil, err
	}
	return w, srv, uiLn, nil
}

// writeEnvFile writes <state>/env: export lines that point the CLI
// (status, doctor, render, kubectl) at this stack. It holds the database
// URL unredacted, so only the owner may read it.
func (s *dev) writeEnvFile(cfg worker.Config, env func(string) string) error {
	kubeconfig := s.info.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = s.getenv("KUBECONFIG")
	}
	vars := [][2]string{{"DATABASE_URL", cfg.DatabaseURL}, {"KUBECONFIG", kubeconfig},
		{"PORTAL_DOMAIN_UI_URL", strings.TrimSuffix(s.info.RiverUI, "/")}}
	for _, k := range []string{"PORTAL_DOMAIN_CANONICAL_SUFFIX", "PORTAL_DOMAIN_DNS_SERVERS", "PORTAL_DOMAIN_ISSUER_NAME",
		"PORTAL_DOMAIN_PROBE_DIAL_ADDRESS", "PORTAL_DOMAIN_PROBE_CA_FILE", "PORTAL_DOMAIN_MANIFEST_DIR"} {
		vars = append(vars, [2]string{k, env(k)})
	}
	var sb strings.Builder
	sb.WriteString("# Written by `portal-domains-dev dev` for its current run: . this file, then use the CLI or kubectl.\n")
	for _, v := range vars {
		if v[1] != "" {
			fmt.Fprintf(&sb, "export %s='%s'\n", v[0], strings.ReplaceAll(v[1], "'", `'\''`))
		}
	}
	if s.opts.Root != "" {
		// bin/portal-domains first on PATH, so the tour's commands run as typed.
		fmt.Fprintf(&sb, "export PATH='%s':\"$PATH\"\n", strings.ReplaceAll(filepath.Join(s.opts.Root, "bin"), "'", `'\''`))
	}
	s.info.EnvFile = filepath.Join(s.info.StateDir, "env")
	if err := os.WriteFile(s.info.EnvFile, []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", s.info.EnvFile, err)
	}
	return nil
}

// startDatabase opens and migrates the database (stack.Postgres) and takes
// the dev lock.
func (s *dev) startDatabase(ctx context.Context, cfg worker.Config) error {
	s.info.DatabaseURL = db.RedactURL(cfg.DatabaseURL)
	d, err := s.parts.Postgres(ctx, cfg.DatabaseURL, "", db.Settings{CanonicalSuffix: cfg.CanonicalSuffix})
	if err != nil {
		return err
	}
	s.pool = d.Pool
	unlock, err := lockDatabase(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	s.onExit(unlock)
	return nil
}

// startAPIServer builds the binaries on first use, starts kube-apiserver
// and etcd and creates the namespaces the objects go to.
func (s *dev) startAPIServer(ctx context.Context, cfg worker.Config) error {
	binDir, err := s.parts.KubeBinaries(ctx)
	if err != nil {
		return err
	}
	api, err := s.parts.APIServer(ctx, binDir, filepath.Join(s.info.StateDir, "kube"), cfg.Kube.CertNamespace, cfg.Kube.GatewayNamespace)
	if err != nil {
		return err
	}
	s.api = api
	s.parts.OnClose(s.stopAPIServer)
	s.info.APIServer, s.info.Kubeconfig, s.info.APIServerLog = api.Host(), api.KubeconfigPath, api.LogPath()
	s.info.APIServerPID, s.info.EtcdPID = api.APIServerPID, api.EtcdPID
	return nil
}

// startACME starts real issuance (internal/harness/acme): the gateway's port 80 answering
// HTTP-01 from the solver Pods' specs, Pebble, cert-manager's controllers and the
// ClusterIssuer; then the probe trusts Pebble's root and the gateway serves what Istio would.
func (s *dev) startACME(ctx context.Context, cfg worker.Config) error {
	binDir, err := acme.EnsureBinaries(ctx, s.opts.Root, s.out)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(s.api.Config)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(s.api.Config)
	if err != nil {
		return err
	}
	var validated sync.Map // pod → true: Pebble asks from several perspectives; one note each
	h := stack.ServeHTTP01(s.http01, stack.HTTP01Options{Kube: kube, IngressClass: acme.SolverIngressClass, Logger: s.logger,
		OnAnswer: func(host, pod, userAgent string) {
			if strings.Contains(userAgent, "cert-manager") {
				return
			}
			if _, seen := validated.LoadOrStore(pod, true); seen {
				return
			}
			if b := s.board.Load(); b != nil {
				b.Note("Pebble validated %s over HTTP-01: the gateway answered from solver Pod %s's spec (no kubelet runs it)", host, pod)
			}
		}})
	s.parts.OnClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return h.Close(ctx)
	})
	a, err := acme.Start(ctx, acme.Options{
		BinDir: binDir, WorkDir: filepath.Join(s.info.StateDir, "acme"), API: s.api.Config, Kubeconfig: s.api.KubeconfigPath,
		DNSAddr: cfg.DNSServers[0], IssuerName: ACMEIssuerName, CAAIdentities: []string{cfg.CAAIdentity}, Logger: s.logger,
	})
	if err != nil {
		return err
	}
	s.parts.OnClose(a.Stop)
	s.info.ACMEDirectory, s.info.PebblePID, s.info.CertManagerPID = a.DirectoryURL, a.PebblePID, a.ControllerPID
	if err := os.WriteFile(s.info.CAFile, a.RootPEM, 0o644); err != nil {
		return fmt.Errorf("write Pebble's root: %w", err)
	}
	if s.gateway != nil {
		s.gateway.ServeSecrets(stack.IstioSecrets{Dynamic: dyn, Kube: kube, Logger: s.logger})
	}
	return nil
}

// stopAPIServer stops kube-apiserver and etcd and says so, with the PIDs,
// so an operator can check with pgrep that nothing is left.
func (s *dev) stopAPIServer() error {
	if err := s.api.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "stopped kube-apiserver (pid %d) and etcd (pid %d)\n", s.api.APIServerPID, s.api.EtcdPID)
	return nil
}

// issuer builds the DEV-ONLY issuer for the local API server, or for the
// KUBECONFIG cluster when PORTAL_DOMAIN_DEV_ISSUER=1.
func (s *dev) issuer(b *board) (*issuer.Controller, error) {
	restCfg := (*rest.Config)(nil)
	if s.api != nil {
		restCfg = s.api.Config
	} else {
		var err error
		if restCfg, err = clientcmd.BuildConfigFromFlags("", s.getenv("KUBECONFIG")); err != nil {
			return nil, fmt.Errorf("KUBECONFIG for the dev issuer: %w", err)
		}
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("dev issuer client: %w", err)
	}
	kind := cmp.Or(s.getenv("PORTAL_DOMAIN_ISSUER_KIND"), "ClusterIssuer")
	name := cmp.Or(s.getenv("PORTAL_DOMAIN_ISSUER_NAME"), DevIssuerName)
	return &issuer.Controller{Dynamic: dyn, CA: s.ca, IssuerKind: kind, IssuerName: name, Delay: s.opts.IssuerDelay, Logger: s.logger,
		OnIssued: func(ns, cert string, dnsNames []string) {
			b.Note("DEV-ONLY issuer signed %s/%s for %s with the dev CA", ns, cert, strings.Join(dnsNames, ", "))
		}}, nil
}

// runFixes applies the demo's DNS fixes when they are due.
func (s *dev) runFixes(ctx context.Context, b *board) error {
	type due struct {
		at time.Time
		t  DemoTenant
	}
	var fixes []due
	now := time.Now()
	for _, t := range s.demo.Tenants {
		if t.Fix == nil {
			continue
		}
		after := t.Fix.After
		if s.opts.FixDNSAfter > 0 {
			after = s.opts.FixDNSAfter
		}
		fixes = append(fixes, due{now.Add(after), t})
	}
	slices.SortFunc(fixes, func(a, b due) int { return a.at.Compare(b.at) })
	for _, f := range fixes {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(f.at)):
		}
		if err := s.dns.Set(f.t.Fix.Record); err != nil {
			return fmt.Errorf("demo DNS fix for %s: %w", f.t.Domain, err)
		}
		b.Note("DEV: %s fixed their DNS, as a tenant would: %s", f.t.Name, oneLine(f.t.Fix.Record))
	}
	<-ctx.Done()
	return nil
}

// printBanner says what was started and where.
func (s *dev) printBanner() {
	i := s.info
	var sb strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&sb, "  %-13s %s\n", label, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(&sb, "portal-domains dev: the whole pipeline on this machine, up in %s (DEV-ONLY parts are marked)\n",
		time.Since(s.start).Round(100*time.Millisecond))
	line("Postgres", "%s (migrated)", i.DatabaseURL)
	if i.APIServer != "" {
		line("API server", "%s  kube-apiserver pid %d, etcd pid %d (log %s)", i.APIServer, i.APIServerPID, i.EtcdPID, i.APIServerLog)
		line("", "export KUBECONFIG=%s   # kubectl get certificates,gateways,virtualservices -A", i.Kubeconfig)
	} else {
		line("API server", "the cluster in KUBECONFIG=%s (not started here)", s.getenv("KUBECONFIG"))
	}
	if i.DNSAddr != "" {
		line("DNS", "%s udp+tcp, zones %s from fixtures/demo", i.DNSAddr, strings.Join(s.dns.Zones(), " "))
	} else {
		line("DNS", "PORTAL_DOMAIN_DNS_SERVERS=%s (not started here)", strings.Join(i.DNSServers, ","))
	}
	if i.GatewayAddr != "" {
		host, port, _ := net.SplitHostPort(i.GatewayAddr)
		if i.ACME {
			line("HTTPS", "%s  DEV-ONLY gateway the probe dials, serving each Istio Gateway's credentialName Secret from its namespace", i.GatewayAddr)
		} else {
			line("HTTPS", "%s  DEV-ONLY gateway the probe dials, certificates from the dev CA", i.GatewayAddr)
		}
		if len(s.demo.Tenants) > 0 {
			d := s.demo.Tenants[0].Domain
			line("", "curl --cacert %s --resolve %s:%s:%s https://%s:%s/", i.CAFile, d, port, host, d, port)
		}
	} else {
		line("HTTPS", "the probe dials PORTAL_DOMAIN_PROBE_DIAL_ADDRESS=%s", s.getenv("PORTAL_DOMAIN_PROBE_DIAL_ADDRESS"))
	}
	switch {
	case i.ACME:
		line("cert-manager", "its own controllers v1.21.2, pid %d; ClusterIssuer %s (ACME, HTTP-01 through an Ingress of class istio)", i.CertManagerPID, ACMEIssuerName)
		line("ACME CA", "Pebble at %s, pid %d; its root in %s", i.ACMEDirectory, i.PebblePID, i.CAFile)
		line("HTTP-01", "%s  DEV-ONLY gateway port 80: routes challenges as Istio would and answers from the solver Pod's spec (no kubelet)", i.HTTP01Addr)
	case i.DevIssuer:
		line("cert-manager", "DEV-ONLY issuer signs each Certificate with the dev CA (%s)", i.CAFile)
	default:
		line("cert-manager", "the cluster's own (PORTAL_DOMAIN_DEV_ISSUER=1 plays it instead)")
	}
	line("River UI", "%s  (also /healthz, /readyz, /metrics)", i.RiverUI)
	line("Manifests", "%s", i.ManifestDir)
	demoDomain := s.demo.Tenants[0].Domain // LoadDemo guarantees one
	for _, t := range s.demo.Tenants {
		if t.Fix != nil {
			demoDomain = t.Domain // the one with something to diagnose
		}
	}
	line("CLI", ". %s   # then: portal-domains status, portal-domains doctor --domain %s, kubectl …", i.EnvFile, demoDomain)
	fmt.Fprintln(s.out, sb.String())
}

// ConfigError is a bad setting in the environment (the command exits 2).
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

// devIssuerWanted: the dev issuer runs only when PORTAL_DOMAIN_DEV_ISSUER=1; with the local
// API server cert-manager's own controllers and Pebble issue otherwise.
func devIssuerWanted(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, ConfigError{fmt.Errorf("PORTAL_DOMAIN_DEV_ISSUER: %q is not 1 or 0", v)}
	}
	return on, nil
}

// StateDir is where a run keeps its files when Options.StateDir is empty.
func StateDir(root string) (string, error) {
	if root != "" {
		return filepath.Join(root, ".cache", "dev"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no state directory: %w", err)
	}
	return filepath.Join(cache, "portal-domains", "dev"), nil
}

func stateDirFor(opts Options) (string, error) {
	dir := opts.StateDir
	if dir == "" {
		var err error
		if dir, err = StateDir(opts.Root); err != nil {
			return "", err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", opts.StateDir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create state directory: %w", err)
	}
	return dir, nil
}

// lockStateDir keeps two runs from sharing a state directory (and so an
// API server work directory and a port for the River UI).
func lockStateDir(dir string) (func(), error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another `portal-domains-dev dev` (pid %s) is running with %s; stop it first", strings.TrimSpace(string(holder)), dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// lockDatabase keeps two dev stacks from working the same database schema,
// where each would take the other's jobs with the wrong DNS and cluster.
// The advisory lock lives on a connection of its own, outside the pool.
func lockDatabase(ctx context.Context, url string) (func(), error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect for the dev lock: %w", err)
	}
	const key = `hashtext('portal-domains dev ' || current_schema())`
	var got bool
	var schema string
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+key+`), current_schema()`).Scan(&got, &schema); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("take the dev lock: %w", err)
	}
	if !got {
		conn.Close(ctx)
		return nil, fmt.Errorf("another `portal-domains-dev dev` is working %s (schema %s); stop it first, or set DATABASE_URL to another database",
			db.RedactURL(url), schema)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock(`+key+`)`)
		_ = conn.Close(ctx)
	}, nil
}

// sweepFor is the dev stack's sweep: on a cluster it did not start (the
// one KUBECONFIG names) it is a dry run whatever the settings say, so a
// dev stack never deletes what it finds there.
func sweepFor(cfg jobs.SweepConfig, localKube bool) jobs.SweepConfig {
	if !localKube {
		cfg.DryRun = true
	}
	return cfg
}
