package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/internal/harness/acme"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
	"github.com/portal-domains/portal-domains/k8s"
)

// Row 7's targets: our own time (queues and stages) under 250 ms at p95,
// and active at least 10 times sooner than AlgaPSA's design.
const (
	oursP95        = 250 * time.Millisecond
	algapsaSpeedup = 10.0
	// acmeIssuerName is the ClusterIssuer for Pebble the worker renders.
	acmeIssuerName = "bench-pebble"
	// algapsaCohorts: the baseline's registrations come in this many bursts
	// at the row's rate, spread over its first poll interval.
	algapsaCohorts = 6
)

// Processes row 7 starts beside the API servers and workers.
const (
	RolePebble      = "pebble"
	RoleCertManager = "cert-manager-controller"
)

// rowsRegistration is row 7: registration to active as a tenant sees it,
// with real cert-manager and Pebble. Domains are inserted by SQL at a
// steady rate into the idle pipeline; each one's time is split into its
// DNS lookups, issuance (Certificate created → Ready, cert-manager's and
// Pebble's part) and our own time (the rest: queue waits and stages).
// Then, on the same API server, cert-manager, Pebble and DNS server,
// AlgaPSA's design (algapsa) provisions as many domains of its own.
func (b *bench) rowsRegistration(ctx context.Context) ([]Row, error) {
	if err := b.freshAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := b.reset(ctx); err != nil {
		return nil, err
	}
	issuance, stopACME, err := b.startACME(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := b.registration(ctx, issuance)
	return rows, errors.Join(err, stopACME())
}

// issuanceTimeout is generous for real issuance: cert-manager and Pebble
// issue about one domain every two seconds on a busy 2-core machine, so a
// burst of registrations is a queue in cert-manager.
func issuanceTimeout(n int) time.Duration {
	return 5*time.Minute + time.Duration(n)*3*time.Second
}

// acmeIssuance is what startACME started: the Pebble root the probe
// trusts, the gateway serving cert-manager's Secrets, and a watch of
// every Certificate's creation and Ready.
type acmeIssuance struct {
	rootFile string
	gateway  *stack.Gateway
	certs    *certTimes
}

// startACME starts, on the current API server, what devstack's startACME
// does for make run: port 80 of the bench's loopback address answering
// HTTP-01 from the solver Pods' specs, the HTTPS gateway serving the Secret
// each Gateway names, Pebble and cert-manager's controllers with a
// ClusterIssuer, and the bench's own Certificate watch.
func (b *bench) startACME(ctx context.Context) (*acmeIssuance, func() error, error) {
	var stops []func() error
	stop := func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*acmeIssuance, func() error, error) { return nil, nil, errors.Join(err, stop()) }

	binDir, err := acme.EnsureBinaries(ctx, b.opts.Root, b.out)
	if err != nil {
		return fail(err)
	}
	kube, err := kubernetes.NewForConfig(b.api.Config)
	if err != nil {
		return fail(err)
	}
	ln, err := stack.ListenHTTP01(b.http01IP + ":80")
	if err != nil {
		return fail(err)
	}
	h01 := stack.ServeHTTP01(ln, stack.HTTP01Options{Kube: kube, IngressClass: acme.SolverIngressClass})
	stops = append(stops, func() error { return closeWithin(h01.Close) })
	gw, err := stack.StartSecretGateway("127.0.0.1:0", stack.IstioSecrets{Dynamic: b.dyn, Kube: kube}, nil)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, func() error { return closeWithin(gw.Close) })

	a, err := acme.Start(ctx, acme.Options{
		BinDir: binDir, WorkDir: filepath.Join(b.work, fmt.Sprintf("acme-%d", b.apiStarts)), API: b.api.Config,
		Kubeconfig: b.api.KubeconfigPath, DNSAddr: b.dns.Addr(), IssuerName: acmeIssuerName,
		CAAIdentities: []string{caaIdentity},
	})
	if err != nil {
		return fail(err)
	}
	stops = append(stops, a.Stop)
	b.processes.started(RolePebble, "", a.PebblePID)
	b.processes.started(RoleCertManager, "", a.ControllerPID)
	rootFile := filepath.Join(b.work, "pebble-root.pem")
	if err := os.WriteFile(rootFile, a.RootPEM, 0o644); err != nil {
		return fail(fmt.Errorf("write Pebble's root: %w", err))
	}

	certs, stopWatch, err := b.watchCertificates(ctx)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, stopWatch)
	b.progress("  cert-manager (pid %d) and Pebble (pid %d) issue over HTTP-01 on %s:80", a.ControllerPID, a.PebblePID, b.http01IP)
	return &acmeIssuance{rootFile: rootFile, gateway: gw, certs: certs}, stop, nil
}

func closeWithin(closeFn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return closeFn(ctx)
}

// certTimes records when the bench's watch first saw each Certificate
// (by domain id) and first saw it Ready.
type certTimes struct {
	mu             sync.Mutex
	created, ready map[string]time.Time
}

func (c *certTimes) record(id string, st k8s.CertStatus) {
	now := time.Now()
	if !st.Exists {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.created[id]; !seen {
		c.created[id] = now
	}
	if _, seen := c.ready[id]; !seen && st.IsReady() {
		c.ready[id] = now
	}
}

func (c *certTimes) get(id string) (created, ready time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created[id], c.ready[id]
}

// watchCertificates runs the worker's own Certificate watch
// (k8s.WatchCertificates) in the bench, on a client of its own, and
// returns once it has reported a sentinel Certificate: from then on it
// hears each creation as it happens, not from a later list.
func (b *bench) watchCertificates(ctx context.Context) (*certTimes, func() error, error) {
	client, err := k8s.NewClient(b.api.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	sentinel := b.ids.domains("sentinel", 1)[0]
	certs := &certTimes{created: map[string]time.Time{}, ready: map[string]time.Time{}}
	watchCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- client.WatchCertificates(watchCtx, certs.record) }()
	stop := func() error {
		cancel()
		return <-done
	}
	objs, err := k8s.Render(sentinel.k8s(), k8s.Config{CertNamespace: nsWatchFloor, GatewayNamespace: nsWatchFloor, IssuerName: unissuedIssuer})
	if err == nil {
		_, err = b.kube.Apply(ctx, objs)
	}
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("sentinel Certificate: %w", err), stop())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if created, _ := certs.get(sentinel.ID); !created.IsZero() {
			return certs, stop, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, errors.Join(errors.New("the bench's Certificate watch did not report its sentinel in 30s"), stop())
		}
		select {
		case <-ctx.Done():
			return nil, nil, errors.Join(ctx.Err(), stop())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// registration measures the pipeline and then the AlgaPSA baseline on
// the ACME stack and makes rows 7a and 7b.
func (b *bench) registration(ctx context.Context, iss *acmeIssuance) ([]Row, error) {
	ds := b.domains[phaseACME]
	w, err := b.startWorker(ctx, "registration", workerEnv{kube: true, certNS: nsCert, gatewayNS: nsGateway, issuer: acmeIssuerName,
		probeAddr: iss.gateway.Addr(), probeCAFile: iss.rootFile})
	if err != nil {
		return nil, err
	}
	var times []registrationTimes
	var rate float64
	err = func() error {
		b.quiet(ctx, "registration")
		b.progress("  pipeline: %d domains registered at %.0f/s", len(ds), b.opts.ACMERate)
		var err error
		rate, err = steadily(ctx, len(ds), b.opts.ACMERate, func(ctx context.Context, i int) error {
			return insertDomains(ctx, b.pool, ds[i:i+1])
		})
		if err != nil {
			return err
		}
		if _, err := b.waitDoneWithin(ctx, issuanceTimeout(len(ds)), "registered domains active", len(ds),
			`SELECT count(*), max(status_changed_at) FROM portal_domains WHERE status = 'active' AND domain LIKE $1`, phaseACME+"-%"); err != nil {
			return err
		}
		times, err = b.registrationTimes(ctx, phaseACME, iss.certs)
		return err
	}()
	if err = errors.Join(err, w.stop()); err != nil {
		return nil, err
	}
	if len(times) != len(ds) {
		return nil, fmt.Errorf("history for %d of %d registered domains", len(times), len(ds))
	}
	split, err := splitRegistrations(times)
	if err != nil {
		return nil, fmt.Errorf("split insert → active: %w", err)
	}
	// From the first insert to the last domain active.
	first, last := times[0].Inserted, times[0].Active
	for _, t := range times {
		first, last = minTime(first, t.Inserted), maxTime(last, t.Active)
	}
	pipelineTook := last.Sub(first)

	base, err := b.algapsaBaseline(ctx, iss.certs)
	if err != nil {
		return nil, fmt.Errorf("AlgaPSA baseline: %w", err)
	}
	return registrationRows(split, base, len(ds), rate, pipelineTook, b.opts.ACMERate), nil
}

// steadily calls insert n times, the i-th at start + i/rate, each on its
// own goroutine as independent sign-ups arrive (a slow commit does not
// delay the next tenant). It returns the rate of commits kept: n−1 over
// the time from the first start to the last commit.
func steadily(ctx context.Context, n int, rate float64, insert func(ctx context.Context, i int) error) (float64, error) {
	gap := time.Duration(float64(time.Second) / rate)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * gap)); wait > 0 {
			select {
			case <-gctx.Done():
				return 0, errors.Join(gctx.Err(), g.Wait())
			case <-time.After(wait):
			}
		}
		g.Go(func() error { return insert(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if n < 2 {
		return rate, nil
	}
	return perSecond(n-1, time.Since(start)), nil
}

// registrationTimes reads each domain's history and the watch's times.
func (b *bench) registrationTimes(ctx context.Context, phase string, certs *certTimes) ([]registrationTimes, error) {
	rows, err := b.pool.Query(ctx, `SELECT d.id::text, d.domain, d.created_at,
			min(e.created_at) FILTER (WHERE e.to_status = 'pending_certificate'),
			min(e.created_at) FILTER (WHERE e.to_status = 'certificate_issuing'),
			min(e.created_at) FILTER (WHERE e.to_status = 'active'),
			coalesce((d.verification_details -> 'observation' ->> 'duration_ns')::bigint, 0)
		FROM portal_domains d JOIN portal_domain_events e ON e.domain_id = d.id
		WHERE d.domain LIKE $1 GROUP BY d.id, d.domain, d.created_at, d.verification_details`, phase+"-%")
	if err != nil {
		return nil, fmt.Errorf("read registration times: %w", err)
	}
	type history struct {
		ID, Domain                          string
		Inserted, Verified, Applied, Active *time.Time
		DNSNanos                            int64
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[history])
	if err != nil {
		return nil, fmt.Errorf("read registration times: %w", err)
	}
	deref := func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	}
	out := make([]registrationTimes, len(all))
	for i, h := range all {
		created, ready := certs.get(h.ID)
		out[i] = registrationTimes{Domain: h.Domain, Inserted: deref(h.Inserted), Verified: deref(h.Verified),
			Applied: deref(h.Applied), Active: deref(h.Active), DNSCheck: time.Duration(h.DNSNanos),
			CertCreated: created, CertReady: ready}
	}
	return out, nil
}

// algapsaResult is the baseline's insert → active per domain, and what it
// did to get there.
type algapsaResult struct {
	total    []time.Duration
	issuance []time.Duration // Certificate created → Ready, from the same watch
	ticks    int
	applies  int
	poll     time.Duration
	took     time.Duration
}

// algapsaBaseline registers as many domains as the pipeline got into the
// baseline's table, in algapsaCohorts bursts at the row's rate spread over
// the first poll interval (so their waits for the first poll cover it, as
// a steady stream's do), and runs AlgaPSA's loop until all are active.
func (b *bench) algapsaBaseline(ctx context.Context, certs *certTimes) (algapsaResult, error) {
	ds := b.domains[phaseAlgaPSA]
	if _, err := b.pool.Exec(ctx, algapsaSchema); err != nil {
		return algapsaResult{}, fmt.Errorf("create the baseline's table: %w", err)
	}
	resolver, err := dns.NewResolver(dns.Config{Servers: []string{b.dns.Addr()}, Timeout: time.Second})
	if err != nil {
		return algapsaResult{}, err
	}
	kube, err := k8s.NewClient(b.api.Config)
	if err != nil {
		return algapsaResult{}, fmt.Errorf("kubernetes client: %w", err)
	}
	a := &algapsa{pool: b.pool, kube: kube, resolver: resolver, poll: b.opts.AlgaPSAPoll, workers: b.opts.KubeWorkers,
		cfg: k8s.Config{CertNamespace: nsAlgaPSA, GatewayNamespace: nsAlgaPSA, IssuerKind: "ClusterIssuer", IssuerName: acmeIssuerName}}
	b.progress("  baseline: AlgaPSA's design, %d domains, a poll every %s", len(ds), a.poll)

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.run(gctx, ds, 3*a.poll+issuanceTimeout(len(ds))) })
	g.Go(func() error {
		for c, cohort := range cohorts(ds, algapsaCohorts) {
			at := start.Add(time.Duration(2*c+1) * a.poll / time.Duration(2*algapsaCohorts))
			select {
			case <-gctx.Done():
				return gctx.Err()
			case <-time.After(time.Until(at)):
			}
			if _, err := steadily(gctx, len(cohort), b.opts.ACMERate, func(ctx context.Context, i int) error {
				d := cohort[i]
				_, err := b.pool.Exec(ctx, `INSERT INTO algapsa_domains (id, tenant, domain, canonical_host) VALUES ($1, $2, $3, $4)`,
					d.ID, d.Tenant, d.Name, d.Canonical)
				return err
			}); err != nil {
				return fmt.Errorf("register in the baseline's table: %w", err)
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return algapsaResult{}, err
	}
	res := algapsaResult{ticks: a.ticks, applies: a.applies, poll: a.poll, took: time.Since(start)}
	rows, err := b.pool.Query(ctx, `SELECT (extract(epoch FROM active_at - inserted_at) * 1e6)::bigint
		FROM algapsa_domains WHERE status = 'active'`)
	if err != nil {
		return algapsaResult{}, fmt.Errorf("read the baseline's times: %w", err)
	}
	micros, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return algapsaResult{}, fmt.Errorf("read the baseline's times: %w", err)
	}
	for _, us := range micros {
		res.total = append(res.total, time.Duration(us)*time.Microsecond)
	}
	if len(res.total) != len(ds) {
		return algapsaResult{}, fmt.Errorf("%d of %d baseline domains became active", len(res.total), len(ds))
	}
	for _, d := range ds {
		if created, ready := certs.get(d.ID); !created.IsZero() && !ready.IsZero() {
			res.issuance = append(res.issuance, ready.Sub(created))
		}
	}
	return res, nil
}

// cohorts splits ds into k nearly equal parts, in order.
func cohorts(ds []benchDomain, k int) [][]benchDomain {
	k = min(k, len(ds))
	out := make([][]benchDomain, 0, k)
	for c := range k {
		out = append(out, ds[c*len(ds)/k:(c+1)*len(ds)/k])
	}
	return out
}

// registrationRows makes row 7a (insert → active against AlgaPSA's design)
// and 7b (our own time beside cert-manager's and Pebble's).
func registrationRows(s registrationSplit, base algapsaResult, n int, rate float64, took time.Duration, wantRate float64) []Row {
	total, alga := percentiles(s.Total), percentiles(base.total)
	dnsP, issP, oursP := percentiles(s.DNS), percentiles(s.Issuance), percentiles(s.Ours)
	parts := []Part{
		{Name: "insert → active", Percentiles: total},
		{Name: "DNS lookups", Percentiles: dnsP},
		{Name: "issuance: Certificate created → Ready (cert-manager + Pebble)", Percentiles: issP},
		{Name: "ours: total − DNS lookups − issuance", Percentiles: oursP},
		{Name: "ours: insert → DNS verified, less the lookups", Percentiles: percentiles(subtract(s.ToVerified, s.DNS))},
		{Name: "ours: DNS verified → Certificate created", Percentiles: percentiles(s.VerifiedToApply)},
		{Name: "ours: Certificate Ready → active", Percentiles: percentiles(s.ReadyToActive)},
	}
	a := Row{ID: "7a", Measure: "registration → active, real ACME", Unit: "ms", Value: total.P95, Baseline: alga.P95,
		BaselineName: "AlgaPSA's design", Percentiles: &total, BaselinePercentiles: &alga, Samples: n, Parts: parts,
		BaselineParts: []Part{{Name: "insert → active", Percentiles: alga}, {Name: "issuance: Certificate created → Ready (cert-manager + Pebble)", Percentiles: percentiles(base.issuance)}},
		Target:        fmt.Sprintf("≥ %.0f× sooner", algapsaSpeedup)}
	if alga.P95 > 0 {
		a.Ratio = total.P95 / alga.P95
	}
	a.Pass = a.Ratio > 0 && total.P95*algapsaSpeedup <= alga.P95 && total.P50*algapsaSpeedup <= alga.P50
	a.Note = fmt.Sprintf("%d domains inserted one SQL statement at a time at %.0f/s (%.0f/s kept) into the idle pipeline, to active, "+
		"with cert-manager's controllers and Pebble issuing over HTTP-01 (%s for all of them); p50 / p95 s: DNS lookups %s, "+
		"issuance %s, ours %s; active %.0f× (p50) and %.0f× (p95) sooner than the baseline. "+
		"Baseline: AlgaPSA's design as a loop in the bench on the same DNS server, API server, cert-manager and Pebble: "+
		"a poll of its table every %s; DNS tried up to %d × %s; each poll server-side applies every domain's objects; "+
		"Ready read at the next poll, then active; %d domains registered in %d bursts at the same rate spread over the first "+
		"poll interval, as a steady stream meets the polls; %d polls, %d applies, %s; its certificates' issuance p50 / p95 %s s",
		n, wantRate, rate, took.Round(time.Second), seconds(dnsP), seconds(issP), seconds(oursP),
		ratioOf(alga.P50, total.P50), ratioOf(alga.P95, total.P95),
		base.poll, algapsaDNSTries, algapsaDNSRetry, len(base.total), min(algapsaCohorts, len(base.total)),
		base.ticks, base.applies, base.took.Round(time.Second), seconds(percentiles(base.issuance)))

	ours := latencyRow("7b", "our own time in 7a", oursP, issP, "cert-manager + Pebble issuance", oursP95, n,
		fmt.Sprintf("per domain, insert → active less its DNS lookups and its issuance (Certificate created → Ready, seen by a watch "+
			"in the bench): queue waits, stages, commits, the Secret copy and the probe; p50 / p95 ms: insert → DNS verified less "+
			"the lookups %s, DNS verified → Certificate created %s, Certificate Ready → active %s",
			millis(parts[4].Percentiles), millis(parts[5].Percentiles), millis(parts[6].Percentiles)))
	ours.Parts = parts[3:]
	return []Row{a, ours}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func subtract(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

func ratioOf(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func seconds(p Percentiles) string { return fmt.Sprintf("%.2f / %.2f", p.P50/1000, p.P95/1000) }
func millis(p Percentiles) string  { return number(p.P50) + " / " + number(p.P95) }

// randomLoopback is an address of 127/8 for this run alone, so port 80 is
// free on it even while a dev stack holds 127.0.0.1:80.
func randomLoopback() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250))
}
