package acme_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/harness/acme"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
	"github.com/portal-domains/portal-domains/internal/worker"
)

// canonicalSuffix is the canonical hosts' zone of the worker-level ACME tests.
const canonicalSuffix = "portal.test"

// issuanceStack is what the worker-level ACME tests run against, in the default layout
// (Certificates in msp, Gateways and the Secrets' copies in istio-system): a schema, an API
// server, the DNS server the worker and cert-manager's self-check ask and a second one Pebble
// asks (a test points the name elsewhere there to make validation fail), HTTP-01 on port 80
// of a loopback address of the test's own, the gateway serving each Gateway's Secret as
// Istio does, and Pebble with cert-manager's controllers.
type issuanceStack struct {
	database       *stack.Database
	api            *localapi.Server
	kube           kubernetes.Interface
	dyn            dynamic.Interface
	dns, pebbleDNS *localdns.Server
	// ip is where the gateway answers; elsewhere is an address where nothing listens.
	ip, elsewhere string
	gw            *stack.Gateway
	acme          *acme.ACME
	// rootFile holds Pebble's root, for the probe.
	rootFile string
}

// issuanceOptions: zone is the tenants' zone, whose portal.<zone> is a CNAME to
// <prefix>.portal.test; pebbleElsewhere starts Pebble's DNS pointing the name where nothing
// listens; issuer sets Pebble's validity and cert-manager's backoff.
type issuanceOptions struct {
	schemaPrefix, zone, prefix string
	pebbleElsewhere            bool
	issuer                     acme.Options
}

func startIssuanceStack(t *testing.T, o issuanceOptions) *issuanceStack {
	t.Helper()
	ctx := t.Context()
	root, kubeBin, acmeBin := binaries(t)
	parts := &stack.Stack{Root: root, Out: testWriter{t}}
	t.Cleanup(func() { require.NoError(t, parts.Close()) })
	dbURL := os.Getenv("TEST_DATABASE_URL")
	if dbURL == "" {
		dbURL = "postgres://postgres@127.0.0.1:5432/portal_domains_test"
	}
	s := &issuanceStack{ip: loopbackIP(), elsewhere: loopbackIP()}
	var err error
	s.database, err = parts.Postgres(ctx, dbURL, o.schemaPrefix, db.Settings{CanonicalSuffix: canonicalSuffix})
	require.NoError(t, err)

	work := t.TempDir()
	s.api = startAPIServer(t, kubeBin, filepath.Join(work, "kube"), "msp", "istio-system")
	zones := func(target string) []*localdns.Zone {
		var out []*localdns.Zone
		for name, text := range map[string]string{
			o.zone + ".zone":   "$ORIGIN " + o.zone + ".\n$TTL 1\n@ SOA ns.test. h." + o.zone + ". 1 3600 600 86400 1\n@ NS ns.test.\nportal CNAME " + o.prefix + ".portal.test.\n",
			"test.zone":        "$ORIGIN test.\n$TTL 1\n@ SOA ns.test. h.test. 1 3600 600 86400 1\n@ NS ns.test.\nns A 127.0.0.1\n",
			"portal.test.zone": "$ORIGIN portal.test.\n$TTL 1\n@ SOA ns.test. h.test. 1 3600 600 86400 1\n@ NS ns.test.\n" + o.prefix + " A " + target + "\n",
		} {
			z, err := localdns.ParseZone(strings.NewReader(text), name)
			require.NoError(t, err)
			out = append(out, z)
		}
		return out
	}
	s.dns, err = parts.DNS("127.0.0.1:0", zones(s.ip)...)
	require.NoError(t, err)
	pebbleTarget := s.ip
	if o.pebbleElsewhere {
		pebbleTarget = s.elsewhere
	}
	s.pebbleDNS, err = parts.DNS("127.0.0.1:0", zones(pebbleTarget)...)
	require.NoError(t, err)

	s.kube, err = kubernetes.NewForConfig(s.api.Config)
	require.NoError(t, err)
	s.dyn, err = dynamic.NewForConfig(s.api.Config)
	require.NoError(t, err)
	ln, err := stack.ListenHTTP01(s.ip + ":80")
	require.NoError(t, err)
	h01 := stack.ServeHTTP01(ln, stack.HTTP01Options{Kube: s.kube, IngressClass: acme.SolverIngressClass})
	t.Cleanup(func() { require.NoError(t, h01.Close(context.Background())) })
	s.gw, err = stack.StartSecretGateway("127.0.0.1:0", stack.IstioSecrets{Dynamic: s.dyn, Kube: s.kube}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.gw.Close(context.Background())) })

	opts := o.issuer
	opts.BinDir, opts.WorkDir, opts.API, opts.Kubeconfig = acmeBin, filepath.Join(work, "acme"), s.api.Config, s.api.KubeconfigPath
	opts.DNSAddr, opts.PebbleDNSAddr, opts.IssuerName = s.dns.Addr(), s.pebbleDNS.Addr(), "pebble"
	s.acme, err = acme.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.acme.Stop()) })
	s.rootFile = filepath.Join(work, "pebble-root.pem")
	require.NoError(t, os.WriteFile(s.rootFile, s.acme.RootPEM, 0o644))
	return s
}

// startWorker runs the worker against the stack, with the settings every ACME test shares
// and extra on top, until the test ends; it returns those settings.
func (s *issuanceStack) startWorker(t *testing.T, extra map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{
		"DATABASE_URL":                     s.database.URL,
		"PORTAL_DOMAIN_CANONICAL_SUFFIX":   canonicalSuffix,
		"PORTAL_DOMAIN_DNS_SERVERS":        s.dns.Addr(),
		"PORTAL_DOMAIN_DNS_RECHECK_MIN":    "1s",
		"PORTAL_DOMAIN_DNS_RECHECK_MAX":    "2s",
		"PORTAL_DOMAIN_ISSUER_NAME":        "pebble",
		"PORTAL_DOMAIN_PROBE_DIAL_ADDRESS": s.gw.Addr(),
		"PORTAL_DOMAIN_PROBE_CA_FILE":      s.rootFile,
		"PORTAL_DOMAIN_STUCK_CRON":         "@every 1s",
		"PORTAL_DOMAIN_UI_ADDR":            "127.0.0.1:0",
		"PORTAL_DOMAIN_SHUTDOWN_TIMEOUT":   "2s",
	}
	maps.Copy(env, extra)
	cfg, err := worker.ConfigFromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	w, err := worker.New(t.Context(), cfg, worker.Options{Pool: s.database.Pool, RestConfig: s.api.Config})
	require.NoError(t, err)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	return env
}

// register inserts the tenant's domain as the SaaS app would.
func (s *issuanceStack) register(t *testing.T, tenantID, host string) domain.Record {
	t.Helper()
	var rec domain.Record
	require.NoError(t, db.InTx(t.Context(), s.database.Pool, func(tx pgx.Tx) error {
		res, err := db.Register(t.Context(), tx, domain.TenantID(tenantID), host, canonicalSuffix)
		rec = res.Record
		return err
	}))
	return rec
}

// eventually polls what the system shows until cond holds; a timeout ends the test with
// the last state seen and the end of cert-manager's log.
// record reads the domain's row.
func (s *issuanceStack) record(t *testing.T, id string) domain.Record {
	t.Helper()
	r, err := db.GetDomain(t.Context(), s.database.Pool, id)
	require.NoError(t, err)
	return r
}

func (s *issuanceStack) eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	logs, _ := os.ReadFile(s.acme.ControllerLog())
	t.Fatalf("%s: not within %s; last seen: %s\ncert-manager's log ends:\n%s", what, timeout, last, tailOf(logs, 4000))
}
