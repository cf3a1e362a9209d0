package reliability_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/dns/dnstest"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; without a logger it prints
	// a stack trace to say so.
	ctrllog.SetLogger(logr.Discard())
	kubetest.Main(m)
}

// suffix is the canonical-host suffix the fixture zones serve (portal.test).
const suffix = "portal.test"

// size is how hard a run pushes: `make test` keeps every test within a
// minute or two on two cores; `make soak` (PORTAL_DOMAIN_SOAK=1) uses more
// domains, more kills and longer outages. PORTAL_DOMAIN_SOAK_DOMAINS
// overrides the domain count of the kill test.
type size struct {
	Soak bool
	// KillDomains: domains worked while workers are killed with SIGKILL.
	KillDomains int
	// Domains: domains in each of the other load tests.
	Domains int
	// KillRounds: workers killed one after another; past the second, a
	// replacement is started after each kill so work never stops.
	KillRounds int
	// PGOutage and APIOutage: how long Postgres and kube-apiserver stay down.
	PGOutage  time.Duration
	APIOutage time.Duration
	// Converge bounds every wait for convergence: generous on purpose,
	// these tests are about what happens, not how fast.
	Converge time.Duration
}

func sizeFromEnv(t *testing.T) size {
	t.Helper()
	s := size{KillDomains: 150, Domains: 40, KillRounds: 2, PGOutage: 5 * time.Second, APIOutage: 25 * time.Second,
		Converge: 4 * time.Minute}
	if os.Getenv("PORTAL_DOMAIN_SOAK") == "1" {
		s = size{Soak: true, KillDomains: 600, Domains: 200, KillRounds: 6, PGOutage: 30 * time.Second,
			APIOutage: 60 * time.Second, Converge: 15 * time.Minute}
	}
	if v := os.Getenv("PORTAL_DOMAIN_SOAK_DOMAINS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "PORTAL_DOMAIN_SOAK_DOMAINS")
		require.Positive(t, n, "PORTAL_DOMAIN_SOAK_DOMAINS")
		s.KillDomains = n
	}
	return s
}

// buildWorker compiles cmd/portal-domains once into dir, so every test
// drives the same binary an operator runs.
func buildWorker(t *testing.T, dir string) string {
	t.Helper()
	root, err := kubetest.ModuleRoot()
	require.NoError(t, err)
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command must be on PATH to build the worker binary")
	bin := filepath.Join(dir, "portal-domains")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/portal-domains")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/portal-domains: %s", out)
	return bin
}

// worldOpts choose the outside systems of one test.
type worldOpts struct {
	// DatabaseURL of a dedicated, migrated-by-the-test Postgres database;
	// empty takes a fresh schema in TEST_DATABASE_URL.
	DatabaseURL string
	// Kube is a dedicated API server; nil takes the shared one.
	Kube *kubetest.Env
	// Env is added to every worker's environment.
	Env map[string]string
}

// world is one test's outside world: Postgres, DNS, kube-apiserver and the
// HTTPS endpoint the probe dials, and the worker processes run against them.
type world struct {
	t          *testing.T
	bin        string
	pool       *pgxpool.Pool
	dbURL      string
	dns        *dnstest.Server
	kube       *kubetest.Env
	kubeconfig string
	certNS     string
	gwNS       string
	env        map[string]string

	// probeDelay holds each HTTPS answer this long (nanoseconds), so probe
	// jobs are in flight when a worker is killed or stopped.
	probeDelay atomic.Int64
	// held: Certificates (by domain host) cert-manager leaves unissued.
	held sync.Map

	mu      sync.Mutex
	workers []*proc
}

func newWorld(t *testing.T, bin string, opts worldOpts) *world {
	t.Helper()
	w := &world{t: t, bin: bin, dns: dnstest.Start(t)}
	ctx := t.Context()
	if opts.DatabaseURL == "" {
		schema := dbtest.Migrated(t)
		w.pool, w.dbURL = schema.Pool, schema.URL
	} else {
		pool, err := pgxpool.New(ctx, opts.DatabaseURL)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		_, err = db.MigrateUp(ctx, pool, db.Settings{CanonicalSuffix: suffix})
		require.NoError(t, err, "migrate the dedicated database")
		w.pool, w.dbURL = pool, opts.DatabaseURL
	}
	// Rows inserted by plain SQL before a worker saved its settings must
	// get the same canonical host as the Go API gives.
	require.NoError(t, db.SaveSettings(ctx, w.pool, db.Settings{CanonicalSuffix: suffix}))

	w.kube = opts.Kube
	if w.kube == nil {
		w.kube = kubetest.Start(t)
	}
	w.certNS, w.gwNS = w.kube.Namespace(t, "msp"), w.kube.Namespace(t, "istio")
	w.kubeconfig = writeKubeconfig(t, w.kube.Config)

	// The portal behind every test domain: a wildcard certificate, trusted
	// through PORTAL_DOMAIN_PROBE_CA_FILE.
	certPEM, keyPEM, err := kubetest.SelfSignedPEM(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), "*.acme.test")
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	https := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Duration(w.probeDelay.Load())):
		case <-r.Context().Done():
			return
		}
		_, _ = rw.Write([]byte("portal"))
	}))
	https.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	https.StartTLS()
	t.Cleanup(https.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, certPEM, 0o600))

	w.env = map[string]string{
		"DATABASE_URL":                     w.dbURL,
		"KUBECONFIG":                       w.kubeconfig,
		"PORTAL_DOMAIN_CANONICAL_SUFFIX":   suffix,
		"PORTAL_DOMAIN_DNS_SERVERS":        w.dns.Addr(),
		"PORTAL_DOMAIN_DNS_TIMEOUT":        "500ms",
		"PORTAL_DOMAIN_DNS_RECHECK_MIN":    "200ms",
		"PORTAL_DOMAIN_DNS_RECHECK_MAX":    "1s",
		"PORTAL_DOMAIN_CERT_NAMESPACE":     w.certNS,
		"PORTAL_DOMAIN_GATEWAY_NAMESPACE":  w.gwNS,
		"PORTAL_DOMAIN_PROBE_DIAL_ADDRESS": https.Listener.Addr().String(),
		"PORTAL_DOMAIN_PROBE_CA_FILE":      caFile,
		"PORTAL_DOMAIN_PROBE_TIMEOUT":      "5s",
		// A job normally takes milliseconds; a killed worker's jobs are
		// rescued after this (River checks every 30 s on the leader).
		"PORTAL_DOMAIN_JOB_TIMEOUT":      "8s",
		"PORTAL_DOMAIN_RESCUE_AFTER":     "8s",
		"PORTAL_DOMAIN_SHUTDOWN_TIMEOUT": "5s",
		// Every test shares one API server per binary: no sweep may see
		// another test's objects as orphans while the tests run.
		"PORTAL_DOMAIN_SWEEP_INTERVAL": "24h",
		"PORTAL_DOMAIN_DNS_WORKERS":    "10",
		"PORTAL_DOMAIN_KUBE_WORKERS":   "10",
		"PORTAL_DOMAIN_PROBE_WORKERS":  "10",
		"LOG_LEVEL":                    "info",
	}
	for k, v := range opts.Env {
		w.env[k] = v
	}
	t.Cleanup(w.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			w.dumpLogs()
		}
	})
	return w
}

// writeKubeconfig turns the API server's rest.Config into the file a worker
// process reads through KUBECONFIG.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData,
		CertificateAuthority: cfg.CAFile}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData,
		ClientCertificate: cfg.CertFile, ClientKey: cfg.KeyFile, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// proc is one `portal-domains worker` process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	uiAddr  string
	done    chan struct{}
	waitErr error
	exited  time.Time
}

// startWorker starts a worker process and waits until it answers /readyz.
func (w *world) startWorker(name string, extra map[string]string) *proc {
	t := w.t
	t.Helper()
	p := &proc{name: name, uiAddr: freeAddr(t), done: make(chan struct{}),
		logPath: filepath.Join(t.TempDir(), name+".log")}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PORTAL_DOMAIN_UI_ADDR=" + p.uiAddr}
	for k, v := range w.env {
		if _, overridden := extra[k]; !overridden {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	logFile, err := os.Create(p.logPath)
	require.NoError(t, err)
	p.cmd = exec.Command(w.bin, "worker")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	require.NoError(t, p.cmd.Start(), "start worker %s", name)
	go func() {
		p.waitErr = p.cmd.Wait()
		p.exited = time.Now()
		_ = logFile.Close()
		close(p.done)
	}()
	w.mu.Lock()
	w.workers = append(w.workers, p)
	w.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("worker %s exited while starting (%v):\n%s", name, p.waitErr, p.tail(40))
		default:
		}
		resp, err := client.Get("http://" + p.uiAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s not ready at %s after 90s (last error %v):\n%s", name, p.uiAddr, err, p.tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr finds a loopback port nobody listens on. Another process could
// take it before the worker binds; the worker then exits and startWorker
// fails saying so.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL: the process dies mid-job with no chance to clean up,
// as on an OOM kill or a lost node.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	require.True(t, p.running(), "worker %s already exited", p.name)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
}

// terminate sends SIGTERM and returns when the process has exited, with how
// long it took, or fails after limit.
func (p *proc) terminate(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	require.True(t, p.running(), "worker %s already exited", p.name)
	sent := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		return p.exited.Sub(sent)
	case <-time.After(limit):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		t.Fatalf("worker %s still running %s after SIGTERM:\n%s", p.name, limit, p.tail(40))
		return 0
	}
}

func (p *proc) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

// logEntries parses the worker's JSON log lines (others are skipped).
func (p *proc) logEntries() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.log(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func (p *proc) tail(lines int) string {
	all := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// stopAll ends every worker still running: SIGTERM, then SIGKILL.
func (w *world) stopAll() {
	w.mu.Lock()
	procs := slices.Clone(w.workers)
	w.mu.Unlock()
	for _, p := range procs {
		if p.running() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
}

func (w *world) dumpLogs() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.workers {
		w.t.Logf("---- worker %s log tail ----\n%s", p.name, p.tail(60))
	}
}

// fixture is one registered test domain.
type fixture struct {
	ID, Tenant, Host, Canonical string
}

// tenantFor gives domain number i a tenant whose first 7 hex digits are
// unique, so its canonical host is predictable and its CNAME can be served
// before it registers.
func tenantFor(i int) (tenant, tenant7 string) {
	tenant7 = fmt.Sprintf("%07x", 0xd000000+i)
	return fmt.Sprintf("%s0-0000-4000-8000-%012x", tenant7, i), tenant7
}

// serveDNS publishes the CNAME of domains from..from+n-1 to their canonical
// hosts, and the canonical hosts' addresses.
func (w *world) serveDNS(from, n int) {
	rrs := make([]string, 0, 2*n)
	for i := from; i < from+n; i++ {
		_, t7 := tenantFor(i)
		rrs = append(rrs, fmt.Sprintf("p%d.acme.test. 300 IN CNAME %s.%s.", i, t7, suffix),
			fmt.Sprintf("%s.%s. 300 IN A 192.0.2.10", t7, suffix))
	}
	w.dns.Set(rrs...)
}

// register registers domains from..from+n-1 (p<i>.acme.test), alternating
// the two doors the SaaS app uses: the Go API and a plain SQL insert. Both
// enqueue through the trigger.
func (w *world) register(from, n int) []fixture {
	w.t.Helper()
	w.serveDNS(from, n)
	return w.enroll(from, n)
}

// enroll registers domains from..from+n-1 without touching DNS.
func (w *world) enroll(from, n int) []fixture {
	t := w.t
	t.Helper()
	ctx := t.Context()
	out := make([]fixture, 0, n)
	for i := from; i < from+n; i++ {
		tenant, t7 := tenantFor(i)
		f := fixture{Tenant: tenant, Host: fmt.Sprintf("p%d.acme.test", i), Canonical: t7 + "." + suffix}
		var canonical string
		if i%2 == 0 {
			require.NoError(t, db.InTx(ctx, w.pool, func(tx pgx.Tx) error {
				res, err := db.Register(ctx, tx, domain.TenantID(tenant), f.Host, suffix)
				f.ID, canonical = res.Record.ID, res.Record.CanonicalHost
				return err
			}))
		} else {
			require.NoError(t, w.pool.QueryRow(ctx, `INSERT INTO portal_domains (tenant, domain) VALUES ($1, $2)
				RETURNING id::text, canonical_host`, tenant, f.Host).Scan(&f.ID, &canonical))
		}
		require.Equal(t, f.Canonical, canonical)
		out = append(out, f)
	}
	return out
}

func ids(fx []fixture) []string {
	out := make([]string, len(fx))
	for i, f := range fx {
		out[i] = f.ID
	}
	return out
}

// playCertManager issues every Certificate in the test's namespace that is
// not Ready for its current generation (status Ready=True plus the TLS
// Secret), as cert-manager would, until the test ends. API errors (the
// server may be down on purpose) are retried on the next round.
func (w *world) playCertManager() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w.issueAll(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

func (w *world) issueAll(ctx context.Context) {
	list, err := w.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(w.certNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range list.Items {
		cert := &list.Items[i]
		names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		if issuer.ReadyForGeneration(cert) || (len(names) > 0 && w.isHeld(names[0])) {
			continue
		}
		if err := w.kube.SetCertificateReady(ctx, w.certNS, cert.GetName(), true, "Ready",
			"Certificate is up to date and has not expired"); err != nil {
			continue
		}
		if _, err := w.kube.CreateTLSSecret(ctx, w.certNS, cert.GetName()); err != nil && !apierrors.IsAlreadyExists(err) {
			continue
		}
	}
}

func (w *world) hold(host string)        { w.held.Store(host, true) }
func (w *world) release(host string)     { w.held.Delete(host) }
func (w *world) isHeld(host string) bool { _, ok := w.held.Load(host); return ok }

// statusCounts counts the rows of ids by status.
func (w *world) statusCounts(ctx context.Context, ids []string) (map[domain.Status]int, error) {
	rows, err := w.pool.Query(ctx, `SELECT status::text, count(*) FROM portal_domains WHERE id = ANY($1::uuid[]) GROUP BY 1`, ids)
	if err != nil {
		return nil, err
	}
	out := map[domain.Status]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[domain.Status(s)] = n
	}
	return out, rows.Err()
}

// waitUntil polls cond (which may fail while a server is down on purpose)
// until it holds, failing after timeout with what it last saw.
func (w *world) waitUntil(what string, timeout time.Duration, cond func(ctx context.Context) (bool, string, error)) {
	t := w.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	var lastErr error
	for {
		ok, seen, err := cond(t.Context())
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		} else {
			last = seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; last seen: %s (last error: %v)", what, timeout, last, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitStatus waits until every domain of ids has one of the statuses.
func (w *world) waitStatus(ids []string, timeout time.Duration, want ...domain.Status) {
	w.t.Helper()
	w.waitUntil(fmt.Sprintf("%d domains reach %v", len(ids), want), timeout, func(ctx context.Context) (bool, string, error) {
		counts, err := w.statusCounts(ctx, ids)
		if err != nil {
			return false, "", err
		}
		n := 0
		for _, s := range want {
			n += counts[s]
		}
		return n == len(ids), fmt.Sprint(counts), nil
	})
}

// stageKinds are the job kinds of the pipeline stages.
var stageKinds = []string{domain.KindVerifyDNS, domain.KindApply, domain.KindAwaitCertificate, domain.KindProbe, domain.KindDisable}

// waitJobsSettled waits until no stage job is still to run: River records
// a job's completion a moment after the job wrote its row.
func (w *world) waitJobsSettled(timeout time.Duration) {
	w.t.Helper()
	w.waitUntil("every stage job finalized", timeout, func(ctx context.Context) (bool, string, error) {
		var open int
		err := w.pool.QueryRow(ctx, `SELECT count(*) FROM river_job
			WHERE kind = ANY($1) AND state NOT IN ('completed', 'cancelled', 'discarded')`, stageKinds).Scan(&open)
		return open == 0, fmt.Sprintf("%d stage jobs not finalized", open), err
	})
}

// clientID is the worker's River client id, from River's "River client
// started" log line; River records it in river_job.attempted_by.
func (w *world) clientID(p *proc) string {
	w.t.Helper()
	var id string
	w.waitUntil("worker "+p.name+" logs its River client id", time.Minute, func(context.Context) (bool, string, error) {
		for _, e := range p.logEntries() {
			if e["msg"] == "River client started" {
				id, _ = e["client_id"].(string)
			}
		}
		return id != "", "no \"River client started\" line", nil
	})
	return id
}

// waitHolding waits until worker p is running at least n jobs of kind that
// started less than a second ago, so that killing or stopping it now
// interrupts work in flight (the probe endpoint holds each request for
// longer than that).
func (w *world) waitHolding(p *proc, kind string, n int, timeout time.Duration) {
	w.t.Helper()
	id := w.clientID(p)
	w.waitUntil(fmt.Sprintf("worker %s running %d fresh %s jobs", p.name, n, kind), timeout, func(ctx context.Context) (bool, string, error) {
		var held int
		err := w.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'running'
			AND attempted_by[array_upper(attempted_by, 1)] = $2 AND attempted_at > now() - interval '1 second'`, kind, id).Scan(&held)
		return held >= n, fmt.Sprintf("%d running", held), err
	})
}

// checks says which outcomes a test expects.
type checks struct {
	// Status every domain ends in.
	Status map[string]domain.Status
	// CancelledJobs: stage jobs this test expects to be cancelled (bad args).
	CancelledJobs int
}

// noFalseDrift: no Certificate was taken for hand-edited when nobody
// touched it (the drift check compares against what the worker renders).
func (w *world) noFalseDrift(ids []string) {
	w.t.Helper()
	var n int
	require.NoError(w.t, w.pool.QueryRow(w.t.Context(), `SELECT count(*) FROM portal_domain_events WHERE domain_id = ANY($1::uuid[])
		AND message LIKE '%was changed in the cluster%'`, ids).Scan(&n))
	require.Zero(w.t, n, "certificates reported as edited by hand")
}

// checkGuarantees asserts what README's "Guarantees" promise, on the state a
// test converged to.
func (w *world) checkGuarantees(fx []fixture, c checks) {
	t := w.t
	t.Helper()
	ctx := t.Context()

	// Every domain in the expected status, its history never moving back.
	for _, f := range fx {
		rec, err := db.GetDomain(ctx, w.pool, f.ID)
		require.NoError(t, err)
		want := c.Status[f.ID]
		if want == "" {
			want = domain.StatusActive
		}
		require.Equal(t, want, rec.Status, "%s: %s", f.Host, rec.StatusMessage)
		events, err := db.ListEvents(ctx, w.pool, f.ID)
		require.NoError(t, err)
		require.NoError(t, checkHistory(events), "history of %s", f.Host)
	}

	// No stage job enqueued twice for the same generation, none lost.
	rows, err := w.pool.Query(ctx, `SELECT kind || ' ' || args::text FROM river_job WHERE kind = ANY($1)
		GROUP BY kind, args HAVING count(*) > 1`, stageKinds)
	require.NoError(t, err)
	dupes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, dupes, "stage jobs enqueued twice")

	// Periodic jobs (sweep, stuck scan) are enqueued by the leader only:
	// two runs of one periodic kind never overlap, whoever was leader.
	// Re-checks of active domains are one job per domain, not periodic:
	// those of different domains run side by side.
	rows, err = w.pool.Query(ctx, `SELECT a.kind || ' ' || a.id || ' overlaps ' || b.id FROM river_job a JOIN river_job b
		ON a.kind = b.kind AND a.id < b.id
		WHERE NOT (a.kind = ANY($1)) AND a.attempted_at IS NOT NULL AND b.attempted_at IS NOT NULL
		  AND tstzrange(a.attempted_at, coalesce(a.finalized_at, 'infinity')) && tstzrange(b.attempted_at, coalesce(b.finalized_at, 'infinity'))`,
		append(slices.Clone(stageKinds), jobs.KindRecheck))
	require.NoError(t, err)
	overlaps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, overlaps, "periodic jobs ran twice at once")
	var discarded, cancelled int
	require.NoError(t, w.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'discarded'), count(*) FILTER (WHERE state = 'cancelled')
		FROM river_job WHERE kind = ANY($1)`, stageKinds).Scan(&discarded, &cancelled))
	require.Zero(t, discarded, "stage jobs discarded (their domains would be stuck)")
	require.Equal(t, c.CancelledJobs, cancelled, "cancelled stage jobs")

	// No alert raised twice for one incident.
	rows, err = w.pool.Query(ctx, `SELECT domain_id::text || ' ' || kind FROM portal_domain_alerts GROUP BY domain_id, kind HAVING count(*) > 1`)
	require.NoError(t, err)
	twice, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, twice, "alerts raised twice")

	w.checkObjects(fx, c)
	w.noFalseDrift(ids(fx))

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.workers {
		require.NotContains(t, strings.ToLower(p.log()), "panic", "worker %s logged a panic", p.name)
	}
}

// checkObjects: each active domain has exactly one Certificate, Gateway and
// VirtualService, applied by the portal-domains field manager only, with
// the domain's own names.
func (w *world) checkObjects(fx []fixture, c checks) {
	t := w.t
	t.Helper()
	ctx := t.Context()
	byID := map[string]fixture{}
	for _, f := range fx {
		if s := c.Status[f.ID]; s == "" || s == domain.StatusActive {
			byID[f.ID] = f
		}
	}
	for _, kind := range []struct {
		gvr schema.GroupVersionResource
		ns  string
	}{{k8s.CertificateGVR, w.certNS}, {k8s.GatewayGVR, w.gwNS}, {k8s.VirtualServiceGVR, w.certNS}} {
		list, err := w.kube.Dynamic.Resource(kind.gvr).Namespace(kind.ns).List(ctx, metav1.ListOptions{LabelSelector: k8s.ManagedSelector})
		require.NoError(t, err)
		seen := map[string]int{}
		for i := range list.Items {
			obj := &list.Items[i]
			id := obj.GetLabels()[k8s.LabelDomainID]
			seen[id]++
			var appliers []string
			for _, mf := range obj.GetManagedFields() {
				if mf.Manager == k8s.FieldManager {
					appliers = append(appliers, string(mf.Operation)+"/"+mf.Subresource)
				}
			}
			require.Equal(t, []string{"Apply/"}, appliers, "%s %s: managed by %s once, by server-side apply", kind.gvr.Resource, obj.GetName(), k8s.FieldManager)
			f, ok := byID[id]
			if !ok {
				continue
			}
			if kind.gvr == k8s.CertificateGVR {
				names, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "dnsNames")
				require.Equal(t, []string{f.Host}, names, "Certificate %s dnsNames", obj.GetName())
				secret, _, _ := unstructured.NestedString(obj.Object, "spec", "secretName")
				rec, err := db.GetDomain(ctx, w.pool, id)
				require.NoError(t, err)
				require.Equal(t, rec.CertificateSecretName, secret, "certificate_secret_name of %s", f.Host)
			}
		}
		for id, f := range byID {
			require.Equal(t, 1, seen[id], "%s of %s", kind.gvr.Resource, f.Host)
		}
	}
}

// rank orders the happy path; failures end a generation.
var rank = map[domain.Status]int{
	domain.StatusPendingDNS: 0, domain.StatusVerifyingDNS: 1, domain.StatusPendingCertificate: 2,
	domain.StatusCertificateIssuing: 3, domain.StatusDeploying: 4, domain.StatusActive: 5,
	domain.StatusDNSFailed: 6, domain.StatusCertificateFailed: 6, domain.StatusDisabled: 7,
}

// checkHistory is the "nothing moved backwards, nothing done twice" rule
// over a domain's portal_domain_events, oldest first:
//   - every event starts where the previous one ended (no lost update),
//   - generations never decrease,
//   - within a generation the status never goes back along the happy path,
//   - within a generation each status is entered at most once.
func checkHistory(events []db.Event) error {
	if len(events) == 0 {
		return errors.New("no events")
	}
	var prev *db.Event
	entered := map[string]bool{}
	for i := range events {
		e := &events[i]
		if _, known := rank[e.To]; !known {
			return fmt.Errorf("event %d: unknown status %q", e.ID, e.To)
		}
		if prev == nil {
			if e.From != "" {
				return fmt.Errorf("event %d: the first event comes from %s", e.ID, e.From)
			}
			prev = e
			entered[fmt.Sprint(e.Generation, e.To)] = true
			continue
		}
		if e.From != prev.To {
			return fmt.Errorf("event %d: moves from %s but the previous event left %s", e.ID, e.From, prev.To)
		}
		if e.Generation < prev.Generation {
			return fmt.Errorf("event %d: generation %d after %d", e.ID, e.Generation, prev.Generation)
		}
		restart := e.Generation > prev.Generation
		if !restart && rank[e.To] < rank[prev.To] {
			return fmt.Errorf("event %d: %s → %s goes backwards within generation %d", e.ID, prev.To, e.To, e.Generation)
		}
		if e.From != e.To || restart {
			key := fmt.Sprint(e.Generation, e.To)
			if entered[key] {
				return fmt.Errorf("event %d: %s entered twice in generation %d", e.ID, e.To, e.Generation)
			}
			entered[key] = true
		}
		prev = e
	}
	return nil
}

func TestCheckHistory(t *testing.T) {
	t.Parallel()
	ev := func(gen int64, from, to domain.Status) db.Event { return db.Event{Generation: gen, From: from, To: to} }
	happy := []db.Event{ev(1, "", domain.StatusPendingDNS), ev(1, domain.StatusPendingDNS, domain.StatusVerifyingDNS),
		ev(1, domain.StatusVerifyingDNS, domain.StatusVerifyingDNS), ev(1, domain.StatusVerifyingDNS, domain.StatusPendingCertificate),
		ev(1, domain.StatusPendingCertificate, domain.StatusCertificateIssuing), ev(1, domain.StatusCertificateIssuing, domain.StatusDeploying),
		ev(1, domain.StatusDeploying, domain.StatusActive)}
	require.NoError(t, checkHistory(happy))
	retried := append(slices.Clone(happy[:5]), ev(1, domain.StatusCertificateIssuing, domain.StatusCertificateFailed),
		ev(2, domain.StatusCertificateFailed, domain.StatusPendingCertificate), ev(2, domain.StatusPendingCertificate, domain.StatusCertificateIssuing))
	require.NoError(t, checkHistory(retried))

	require.ErrorContains(t, checkHistory(append(slices.Clone(happy[:5]), ev(1, domain.StatusCertificateIssuing, domain.StatusPendingCertificate))), "backwards")
	require.ErrorContains(t, checkHistory(append(slices.Clone(happy[:4]), ev(1, domain.StatusVerifyingDNS, domain.StatusPendingCertificate))), "previous event left")
	require.ErrorContains(t, checkHistory([]db.Event{ev(2, "", domain.StatusPendingDNS), ev(1, domain.StatusPendingDNS, domain.StatusVerifyingDNS)}), "generation 1 after 2")
	require.ErrorContains(t, checkHistory(nil), "no events")
}
