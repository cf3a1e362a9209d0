package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/internal/harness/devstack"
	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
	"github.com/portal-domains/portal-domains/k8s"
)

// The generated DNS: tenants' domains live in tenantZone as CNAMEs to
// <tenant7>.<canonicalSuffix>, whose zone has an address for each, and the
// test. zone above both answers the CAA climb's last level.
const (
	tenantZone      = "bench.test"
	canonicalSuffix = "portal.test"
	parentZone      = "test"
	caaIdentity     = "letsencrypt.org"
)

// Namespaces keep each phase's objects apart, so a worker's orphan sweep
// (which looks only at its own namespaces) never touches another phase's
// objects, though each measured phase also gets its own API server
// (freshAPIServer).
const (
	nsBaseline   = "bench-ssa" // bare server-side apply (row 2 baseline)
	nsApply      = "bench-apply"
	nsWatchFloor = "bench-watch"
	// The end-to-end worker uses the defaults, as deployed.
	nsCert, nsGateway = "msp", "istio-system"
	// unissuedIssuer is named by the Certificates of phases the dev issuer
	// must leave alone.
	unissuedIssuer = "bench-no-issuer"
	// issuerName is what the dev issuer answers to in the end-to-end phase.
	issuerName = devstack.DevIssuerName
)

// bench is one run's state: what it started, and how to stop it.
type bench struct {
	opts Options
	out  io.Writer

	work   string // temporary directory: API server, CA, worker logs
	schema string
	url    string        // DATABASE_URL with search_path set to schema
	pool   *pgxpool.Pool // the bench's own queries, never a baseline's

	api       *localapi.Server // replaced by freshAPIServer before each measured phase
	apiStarts int
	kubeBin   string // where kube-apiserver and etcd are
	kube      *k8s.Client
	dyn       dynamic.Interface
	dns       *localdns.Server
	ca        *issuer.CA
	// caFile is the dev CA the probe trusts; gateway serves the domains.
	caFile  string
	gateway *stack.Gateway

	ids     idGen
	domains map[string][]benchDomain // by phase
	queries *firstSeen
	// http01IP is the loopback address whose port 80 answers HTTP-01 in
	// row 7; its domains resolve there.
	http01IP string

	// parts stops what start started, in reverse order.
	parts *stack.Stack
	// failed keeps the work directory (worker and API server logs) for a
	// look at what went wrong.
	failed bool

	processes processes // what it started, for Result.Processes
}

// Phases, which are also the first label's prefix of their domains.
const (
	phaseDNS      = "dns"
	phaseApply    = "apply"
	phaseBaseline = "ssa"
	phaseE2E      = "e2e"
	phaseBare     = "bare"
	phaseLatency  = "lat"
	phaseWatch    = "watch"
	phaseACME     = "acme"
	phaseAlgaPSA  = "alga"
)

// close stops everything in reverse order of starting and reports what it
// could not stop.
func (b *bench) close() error { return b.parts.Close() }

// start brings up Postgres (a fresh schema), DNS, the dev CA and gateway,
// and finds (or builds) kube-apiserver and etcd, cheapest first so a bad
// setting fails fast.
func (b *bench) start(ctx context.Context) error {
	b.parts = &stack.Stack{Root: b.opts.Root, Out: b.out, Say: b.progress}
	work, err := os.MkdirTemp("", "portal-domains-bench-")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	b.work = work
	b.parts.OnClose(func() error {
		if b.failed {
			b.progress("logs kept in %s", work)
			return nil
		}
		return os.RemoveAll(work)
	})

	if err := b.startDatabase(ctx); err != nil {
		return err
	}
	b.ids = newIDGen()
	b.domains = map[string][]benchDomain{}
	if !b.opts.scaleOnly() {
		b.domains = b.phaseDomains()
	}
	b.http01IP = randomLoopback()
	for _, phase := range []string{phaseACME, phaseAlgaPSA} {
		ds := b.ids.domains(phase, b.opts.ACMEDomains)
		for i := range ds {
			ds[i].Addr = b.http01IP
		}
		b.domains[phase] = ds
	}
	if err := b.startDNS(); err != nil {
		return err
	}
	b.caFile = filepath.Join(work, "ca.pem")
	if b.ca, err = b.parts.CA(b.caFile); err != nil {
		return err
	}
	if b.gateway, err = b.parts.Gateway("127.0.0.1:0", b.ca, nil); err != nil {
		return err
	}
	b.parts.OnClose(b.stopAPIServer)
	return b.findKubeBinaries(ctx)
}

// phaseDomains generates the domains of every phase but the scale step's.
func (b *bench) phaseDomains() map[string][]benchDomain {
	return map[string][]benchDomain{
		phaseDNS:      b.ids.domains(phaseDNS, b.opts.N),
		phaseBaseline: b.ids.domains(phaseBaseline, b.opts.N),
		phaseApply:    b.ids.domains(phaseApply, b.opts.N),
		phaseE2E:      b.ids.domains(phaseE2E, b.opts.N),
		phaseBare:     b.ids.domains(phaseBare, b.opts.N),
		phaseLatency:  b.ids.domains(phaseLatency, b.opts.LatencySamples),
		phaseWatch:    b.ids.domains(phaseWatch, b.opts.LatencySamples),
	}
}

// findKubeBinaries builds kube-apiserver and etcd on first use, before
// anything is timed; the rows that need an API server start their own
// (freshAPIServer).
func (b *bench) findKubeBinaries(ctx context.Context) error {
	if b.opts.Root == "" {
		return errors.New("the bench starts its own kube-apiserver and needs the portal-domains repository for it " +
			"(scripts/build-kube-binaries.sh, .cache/kube-bin): run it from inside the repository")
	}
	var err error
	b.kubeBin, err = b.parts.KubeBinaries(ctx)
	return err
}

// startDatabase creates and migrates bench_<random>, dropped by close.
func (b *bench) startDatabase(ctx context.Context) error {
	d, err := b.parts.Postgres(ctx, b.opts.DatabaseURL, "bench", db.Settings{CanonicalSuffix: canonicalSuffix})
	if err != nil {
		return err
	}
	b.schema, b.url, b.pool = d.Schema, d.URL, d.Pool
	return nil
}

func (b *bench) postgresVersion(ctx context.Context) string {
	var v string
	if err := b.pool.QueryRow(ctx, `SHOW server_version`).Scan(&v); err != nil {
		return "unknown"
	}
	return v
}

// reset empties the pipeline's and River's job tables between phases, so
// each phase starts from nothing and no client sees another's jobs.
func (b *bench) reset(ctx context.Context) error {
	if _, err := b.pool.Exec(ctx, `TRUNCATE river_job, portal_domain_events, portal_domain_alerts, portal_domains`); err != nil {
		return fmt.Errorf("empty the bench tables: %w", err)
	}
	return nil
}

// startDNS serves the generated zones, recording when each tenant domain
// is first asked about.
func (b *bench) startDNS() error {
	var all []benchDomain
	for _, phase := range []string{phaseDNS, phaseE2E, phaseBare, phaseLatency, phaseACME, phaseAlgaPSA} {
		all = append(all, b.domains[phase]...)
	}
	zones, err := generateZones(all)
	if err != nil {
		return err
	}
	if b.dns, err = b.parts.DNS("127.0.0.1:0", zones...); err != nil {
		return err
	}
	b.queries = &firstSeen{at: map[string]time.Time{}}
	b.dns.OnQuery(b.queries.record)
	return nil
}

// generateZones writes the three zones for the given domains: every domain
// is a CNAME to its canonical host, which has an address; CAA at the
// tenants' apex allows the CA.
func generateZones(domains []benchDomain) ([]*localdns.Zone, error) {
	var tenants, canonical strings.Builder
	soa := func(sb *strings.Builder, apex string) {
		fmt.Fprintf(sb, "$ORIGIN %s.\n$TTL 300\n@ SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n", apex, parentZone, apex)
	}
	soa(&tenants, tenantZone)
	fmt.Fprintf(&tenants, "@ CAA 0 issue %q\n", caaIdentity)
	soa(&canonical, canonicalSuffix)
	for _, d := range domains {
		fmt.Fprintf(&tenants, "%s. CNAME %s.\n", d.Name, d.Canonical)
		fmt.Fprintf(&canonical, "%s. A %s\n", d.Canonical, cmp.Or(d.Addr, "127.0.0.1"))
	}
	var parent strings.Builder
	soa(&parent, parentZone)
	var zones []*localdns.Zone
	for _, z := range []struct{ apex, text string }{
		{parentZone, parent.String()}, {canonicalSuffix, canonical.String()}, {tenantZone, tenants.String()},
	} {
		zone, err := localdns.ParseZone(strings.NewReader(z.text), z.apex+".zone")
		if err != nil {
			return nil, err
		}
		zones = append(zones, zone)
	}
	return zones, nil
}

// firstSeen records when the DNS server was first asked about each tenant
// domain.
type firstSeen struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (f *firstSeen) record(q localdns.Query) {
	if !strings.HasSuffix(q.Name, "."+tenantZone) {
		return
	}
	f.mu.Lock()
	if _, seen := f.at[q.Name]; !seen {
		f.at[q.Name] = q.At
	}
	f.mu.Unlock()
}

func (f *firstSeen) get(name string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[name]
	return t, ok
}

// freshAPIServer stops the running kube-apiserver and etcd, if any, and
// starts new ones in a new directory, with the namespaces created. Each
// measured phase, baseline and stage alike, starts on a fresh pair: an API
// server that has served a phase is slower for the next one (its heap and
// watch cache hold the objects and their deletions), which would otherwise
// count against whichever side runs second.
func (b *bench) freshAPIServer(ctx context.Context) error {
	if err := b.stopAPIServer(); err != nil {
		return err
	}
	return b.startAPIServer(ctx)
}

func (b *bench) stopAPIServer() error {
	if b.api == nil {
		return nil
	}
	err := b.api.Stop()
	b.api, b.kube, b.dyn = nil, nil, nil
	return err
}

func (b *bench) startAPIServer(ctx context.Context) error {
	b.apiStarts++
	api, err := b.parts.APIServer(ctx, b.kubeBin, filepath.Join(b.work, fmt.Sprintf("kube-%d", b.apiStarts)),
		nsBaseline, nsApply, nsWatchFloor, nsBare, nsCert, nsGateway, nsAlgaPSA)
	if err != nil {
		return err
	}
	b.api = api
	b.processes.startedAPIServer(api)
	// The baseline's client gets the worker's defaults (envtest's config
	// sets a rate limit of its own), so both sides are limited alike.
	baseCfg := rest.CopyConfig(api.Config)
	baseCfg.QPS, baseCfg.Burst = 0, 0
	if b.kube, err = k8s.NewClient(baseCfg); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if b.dyn, err = dynamic.NewForConfig(api.Config); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	return nil
}

// benchDomain is one generated tenant and its domain.
type benchDomain struct {
	ID        string // for objects rendered without a row
	Tenant    string
	Name      string // <phase>-<i>.bench.test
	Canonical string // <tenant7>.portal.test
	// Addr is the canonical host's address (empty: 127.0.0.1).
	Addr string
}

func (d benchDomain) k8s() k8s.Domain {
	return k8s.Domain{ID: d.ID, Tenant: d.Tenant, Host: d.Name, CanonicalHost: d.Canonical}
}

// idGen makes tenant ids whose first 7 hex digits (the canonical host's
// prefix) differ for every domain of the run: random ids would share 7
// digits about once in 20,000, and the database would then give the later
// tenant a longer prefix than the generated zone has.
type idGen struct {
	next uint32
}

func newIDGen() idGen {
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	// Start anywhere, leaving room for the run's domains below 16^7.
	start := (uint32(seed[0])<<16 | uint32(seed[1])<<8 | uint32(seed[2])) % (1<<28 - 200_000)
	return idGen{next: start}
}

func (g *idGen) uuid() (string, string) {
	rest := make([]byte, 13)
	_, _ = rand.Read(rest)
	h := fmt.Sprintf("%07x", g.next) + hex.EncodeToString(rest)[:25]
	g.next++
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], h[:7]
}

func (g *idGen) domains(phase string, n int) []benchDomain {
	out := make([]benchDomain, n)
	for i := range out {
		tenant, prefix := g.uuid()
		id, _ := g.uuid()
		out[i] = benchDomain{ID: id, Tenant: tenant, Name: fmt.Sprintf("%s-%d.%s", phase, i+1, tenantZone),
			Canonical: prefix + "." + canonicalSuffix}
	}
	return out
}

// insertDomains registers ds with one plain SQL statement, as the SaaS app
// would: the trigger validates each row and enqueues its verify_dns job.
func insertDomains(ctx context.Context, q db.Querier, ds []benchDomain) error {
	tenants, names, canonical := make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds))
	for i, d := range ds {
		tenants[i], names[i], canonical[i] = d.Tenant, d.Name, d.Canonical
	}
	_, err := q.Exec(ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host)
		SELECT t::uuid, d, c FROM unnest($1::text[], $2::text[], $3::text[]) AS x(t, d, c)`, tenants, names, canonical)
	if err != nil {
		return fmt.Errorf("insert %d domains: %w", len(ds), err)
	}
	return nil
}

// waitDone polls query, which returns a count and the latest timestamp of
// what it counts, until the count reaches want; it returns that timestamp.
// Timestamps come from Postgres, which shares this machine's clock.
func (b *bench) waitDone(ctx context.Context, what string, want int, query string, args ...any) (time.Time, error) {
	return b.waitDoneWithin(ctx, phaseTimeout(want), what, want, query, args...)
}

// waitDoneWithin is waitDone with its own timeout.
func (b *bench) waitDoneWithin(ctx context.Context, timeout time.Duration, what string, want int, query string, args ...any) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	nextReport := time.Now().Add(10 * time.Second)
	for {
		var n int
		var last *time.Time
		if err := b.pool.QueryRow(ctx, query, args...).Scan(&n, &last); err != nil {
			return time.Time{}, fmt.Errorf("count %s: %w", what, err)
		}
		if n >= want && last != nil {
			return *last, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("only %d of %d %s after %s", n, want, what, timeout)
		}
		if time.Now().After(nextReport) {
			b.progress("  %d of %d %s", n, want, what)
			nextReport = time.Now().Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(waitPoll):
		}
	}
}

// waitPoll is how often waitDone counts. The result is the database's own
// timestamp of the last change, not when the poll noticed it, so polling
// faster only takes CPU from what is measured.
const waitPoll = time.Second

// phaseTimeout is generous: the machine may be shared, and a slow phase is
// a result, only a stuck one an error.
func phaseTimeout(n int) time.Duration {
	return 3*time.Minute + time.Duration(n)*50*time.Millisecond
}

// machine reads the CPU count, memory and load.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadAverage()}
	if f, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(f))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(fields[1], 64)
				m.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
			}
		}
	}
	return m
}

func loadAverage() float64 {
	f, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(f))
	if len(fields) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(fields[0], 64)
	return v
}
