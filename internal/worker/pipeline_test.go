package worker_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/dns/dnstest"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/gitrecord"
	"github.com/portal-domains/portal-domains/internal/probe"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The fixture zones point portal.acme.test (and others) at abc1234.portal.test,
// so tenants here start with abc1234.
const (
	tenant      = domain.TenantID("abc12345-0000-4000-8000-000000000001")
	suffix      = "portal.test"
	waitTimeout = 45 * time.Second
)

type bundle struct {
	ctx         context.Context
	schema      *dbtest.Schema
	dns         *dnstest.Server
	kube        *kubetest.Env
	cfg         worker.Config
	manifestDir string
	// installation is the worker's installation id, on its objects.
	installation string
	// worker is the running worker (its metrics registry).
	worker *worker.Worker
}

type setupOpts struct {
	dnsDeadline  time.Duration
	certDeadline time.Duration
	tracer       trace.TracerProvider
	alerts       worker.AlertConfig
	// reconcileInterval: how often the reconcile job runs (default 1m).
	reconcileInterval time.Duration
	// uiURL is PORTAL_DOMAIN_UI_URL.
	uiURL string
	// asWorkerRole runs the worker as a role holding only the grants of
	// deploy/postgres/worker-grants.sql, not as the schema's owner.
	asWorkerRole bool
	// sweepInterval (default 300ms) and sweep (MinAge default 1h,
	// MaxDeletes default 50) set the orphan sweep.
	sweepInterval time.Duration
	sweep         jobs.SweepConfig
	// shareCluster: use that bundle's API server, namespaces and DNS
	// server, as a second installation in the same cluster.
	shareCluster *bundle
	// restConfig, when set, is the worker's way to the API server (a
	// limited ServiceAccount, an address nothing answers).
	restConfig *rest.Config
	// git turns the manifest record on (PORTAL_DOMAIN_GIT_*).
	git gitrecord.Config
	// recheck sets the live re-check of active domains (default: every 6h).
	recheck jobs.RecheckConfig
}

// setup starts real Postgres (schema), DNS, kube-apiserver and HTTPS
// servers, and a worker process against them.
func setup(t *testing.T, opts setupOpts) *bundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &bundle{ctx: ctx, schema: dbtest.Migrated(t), manifestDir: t.TempDir()}
	if opts.shareCluster != nil {
		b.dns, b.kube = opts.shareCluster.dns, opts.shareCluster.kube
	} else {
		b.dns, b.kube = dnstest.Start(t), kubetest.Start(t)
	}

	// The HTTPS endpoint the probe dials: it serves a certificate for the
	// test domains, trusted through PORTAL_DOMAIN_PROBE_CA_FILE.
	certPEM, keyPEM, err := kubetest.SelfSignedPEM(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour),
		"portal.acme.test", "late.acme.test", "chain.acme.test")
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	https := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("portal"))
	}))
	https.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	https.StartTLS()
	t.Cleanup(https.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, certPEM, 0o600))

	b.cfg = worker.Config{
		CanonicalSuffix: suffix,
		DNSServers:      []string{b.dns.Addr()},
		DNSTimeout:      300 * time.Millisecond,
		CAAIdentity:     "letsencrypt.org",
		DNSDeadline:     max(opts.dnsDeadline, 0),
		DNSRecheckMin:   100 * time.Millisecond,
		DNSRecheckMax:   500 * time.Millisecond,
		Kube:            kubeConfig(t, b.kube, opts.shareCluster),
		ManifestDir:     b.manifestDir,
		CertDeadline:    max(opts.certDeadline, 0),
		Probe:           probe.Config{DialAddress: https.Listener.Addr().String(), CAFile: caFile, Timeout: 2 * time.Second},
		DNSWorkers:      4, KubeWorkers: 4, ProbeWorkers: 4,
		ShutdownTimeout:   5 * time.Second,
		SweepInterval:     cmp.Or(opts.sweepInterval, 300*time.Millisecond),
		Sweep:             jobs.SweepConfig{MinAge: opts.sweep.MinAge, MaxDeletes: cmp.Or(opts.sweep.MaxDeletes, 50), DryRun: opts.sweep.DryRun},
		Alerts:            opts.alerts,
		ReconcileInterval: opts.reconcileInterval,
		UIURL:             opts.uiURL,
		Git:               opts.git,
		Recheck:           opts.recheck,
	}
	if opts.git.Review {
		b.cfg.GitReviewRecheck = 100 * time.Millisecond
	}
	if b.cfg.DNSDeadline == 0 {
		b.cfg.DNSDeadline = 48 * time.Hour
	}
	if b.cfg.CertDeadline == 0 {
		b.cfg.CertDeadline = 6 * time.Hour
	}
	pool := b.schema.Pool
	if opts.asWorkerRole {
		pool = b.schema.WorkerRole(t, filepath.Join("..", "..", "deploy", "postgres", "worker-grants.sql"))
	}
	w, err := worker.New(ctx, b.cfg, worker.Options{Pool: pool, RestConfig: cmp.Or(opts.restConfig, b.kube.Config), Logger: testLogger(t), TracerProvider: opts.tracer})
	require.NoError(t, err)
	b.installation = w.Installation()
	b.worker = w
	b.cfg.Kube.Installation = b.installation
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return b
}

// kubeConfig gives a test its own namespaces, or those of the bundle whose
// cluster it shares.
func kubeConfig(t *testing.T, kube *kubetest.Env, share *bundle) k8s.Config {
	if share != nil {
		return k8s.Config{CertNamespace: share.cfg.Kube.CertNamespace, GatewayNamespace: share.cfg.Kube.GatewayNamespace}
	}
	return k8s.Config{CertNamespace: kube.Namespace(t, "msp"), GatewayNamespace: kube.Namespace(t, "istio")}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (b *bundle) register(t *testing.T, tenant domain.TenantID, name string) domain.Record {
	t.Helper()
	var res db.Result
	require.NoError(t, db.InTx(b.ctx, b.schema.Pool, func(tx pgx.Tx) error {
		var err error
		res, err = db.Register(b.ctx, tx, tenant, name, suffix)
		return err
	}))
	return res.Record
}

// waitFor polls the row until cond holds, failing with the row's last state.
func (b *bundle) waitFor(t *testing.T, id string, what string, cond func(domain.Record) bool) domain.Record {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var rec domain.Record
	for time.Now().Before(deadline) {
		var err error
		rec, err = db.GetDomain(b.ctx, b.schema.Pool, id)
		require.NoError(t, err)
		if cond(rec) {
			return rec
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("domain never %s; last status %s: %q", what, rec.Status, rec.StatusMessage)
	return rec
}

// waitForDeleted polls until the domain's row is gone.
func (b *bundle) waitForDeleted(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		_, err := db.GetDomain(b.ctx, b.schema.Pool, id)
		if errors.Is(err, db.ErrNotFound) {
			return
		}
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("domain %s was never deleted", id)
}

// playCertManager marks the domain's Certificate Ready (or not) once it
// exists, as cert-manager would after issuing: the TLS Secret is written
// before Ready.
func (b *bundle) playCertManager(t *testing.T, rec domain.Record, ready bool, reason, message string) {
	t.Helper()
	names, err := k8s.NamesFor(k8s.Domain{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain, CanonicalHost: rec.CanonicalHost}, b.cfg.Kube)
	require.NoError(t, err)
	deadline := time.Now().Add(waitTimeout)
	for {
		if ready {
			_, err = b.kube.CreateTLSSecret(b.ctx, names.CertNamespace, names.Certificate)
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		}
		if err == nil {
			err = b.kube.SetCertificateReady(b.ctx, names.CertNamespace, names.Certificate, ready, reason, message)
		}
		if err == nil {
			return
		}
		require.True(t, apierrors.IsNotFound(err) || strings.Contains(err.Error(), "not found"), "set certificate status: %v", err)
		require.True(t, time.Now().Before(deadline), "the Certificate was never created")
		time.Sleep(50 * time.Millisecond)
	}
}

// queries is how many queries the DNS server received for name.
func (b *bundle) queries(name string) int {
	n := 0
	for _, q := range b.dns.Queries() {
		if q.Name == name {
			n++
		}
	}
	return n
}

// waitForQueries waits until the DNS server has received n queries for name.
func (b *bundle) waitForQueries(t *testing.T, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for b.queries(name) < n {
		require.True(t, time.Now().Before(deadline), "%d queries for %s, waiting for %d", b.queries(name), name, n)
		time.Sleep(50 * time.Millisecond)
	}
}

func statuses(t *testing.T, b *bundle, id string) []domain.Status {
	events, err := db.ListEvents(b.ctx, b.schema.Pool, id)
	require.NoError(t, err)
	var out []domain.Status
	for _, e := range events {
		if len(out) == 0 || out[len(out)-1] != e.To {
			out = append(out, e.To)
		}
	}
	return out
}

// generationStatuses is statuses for one pipeline generation.
func generationStatuses(t *testing.T, b *bundle, id string, generation int64) []domain.Status {
	events, err := db.ListEvents(b.ctx, b.schema.Pool, id)
	require.NoError(t, err)
	var out []domain.Status
	for _, e := range events {
		if e.Generation == generation && (len(out) == 0 || out[len(out)-1] != e.To) {
			out = append(out, e.To)
		}
	}
	return out
}

func TestPipeline(t *testing.T) {
	t.Parallel()

	t.Run("the gateway's copy of the certificate is made before the HTTPS check and follows each renewal", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		rec := b.register(t, tenant, "portal.acme.test")
		b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
		b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })

		secrets := func(ns string) *corev1.Secret {
			s, err := b.kube.Clientset.CoreV1().Secrets(ns).Get(b.ctx, "portal-domain-abc1234", metav1.GetOptions{})
			require.NoError(t, err)
			return s
		}
		require.Equal(t, secrets(b.cfg.Kube.CertNamespace).Data["tls.crt"], secrets(b.cfg.Kube.GatewayNamespace).Data["tls.crt"],
			"active only once the gateway's namespace holds the certificate")

		for renewal := 1; renewal <= 2; renewal++ {
			renewed, err := b.kube.RenewCertificate(b.ctx, b.cfg.Kube.CertNamespace, "portal-domain-abc1234", time.Now().Add(time.Duration(renewal)*time.Hour))
			require.NoError(t, err)
			deadline := time.Now().Add(waitTimeout)
			for !bytes.Equal(secrets(b.cfg.Kube.GatewayNamespace).Data["tls.crt"], renewed) {
				require.True(t, time.Now().Before(deadline), "renewal %d never reached the gateway's copy", renewal)
				time.Sleep(50 * time.Millisecond)
			}
		}
		// The job notes each renewal in the history once the copy is made.
		renewals := func() int {
			events, err := db.ListEvents(b.ctx, b.schema.Pool, rec.ID)
			require.NoError(t, err)
			n := 0
			for _, e := range events {
				var details map[string]any
				require.NoError(t, json.Unmarshal(e.Details, &details))
				if details["certificate_renewed"] == true {
					n++
				}
			}
			return n
		}
		deadline := time.Now().Add(waitTimeout)
		for renewals() < 2 {
			require.True(t, time.Now().Before(deadline), "each renewal is in the domain's history: %d of 2", renewals())
			time.Sleep(50 * time.Millisecond)
		}
		require.Equal(t, 2, renewals(), "one history row per renewal")
		now, err := db.GetDomain(b.ctx, b.schema.Pool, rec.ID)
		require.NoError(t, err)
		require.Equal(t, domain.StatusActive, now.Status, "active throughout")
	})

	t.Run("a registered domain goes from pending_dns to active, and disable removes everything", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		rec := b.register(t, tenant, "portal.acme.test")
		require.Equal(t, "abc1234.portal.test", rec.CanonicalHost)

		b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
		active := b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })
		require.Equal(t, "Your domain is live and protected by HTTPS.", active.StatusMessage)
		require.Equal(t, "portal-domain-abc1234", active.CertificateSecretName)
		require.NotEmpty(t, active.LastSyncedResourceVersion)
		require.Equal(t, []domain.Status{domain.StatusPendingDNS, domain.StatusPendingCertificate,
			domain.StatusCertificateIssuing, domain.StatusDeploying, domain.StatusActive}, statuses(t, b, rec.ID),
			"right DNS at the first check: no verifying_dns in between")

		// Objects exist, owned by our field manager; snapshots were written.
		cert, err := b.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.Kube.CertNamespace).Get(b.ctx, "portal-domain-abc1234", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, k8s.FieldManager, cert.GetManagedFields()[0].Manager)
		for _, f := range []string{"certificate.json", "gateway.json", "virtualservice.json"} {
			snap, err := os.ReadFile(filepath.Join(b.manifestDir, "abc1234", f))
			require.NoError(t, err)
			require.Contains(t, string(snap), "portal.acme.test")
		}

		require.NoError(t, db.InTx(b.ctx, b.schema.Pool, func(tx pgx.Tx) error {
			_, err := db.Disable(b.ctx, tx, tenant, rec.ID)
			return err
		}))
		// Once the objects are gone the row is deleted, as AlgaPSA's
		// workflow does; its history stays.
		b.waitForDeleted(t, rec.ID)
		events, err := db.ListEvents(b.ctx, b.schema.Pool, rec.ID)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(events), 2)
		require.Contains(t, events[len(events)-2].Message, "were removed")
		require.Equal(t, "The portal domain was deleted.", events[len(events)-1].Message)
		_, err = b.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.Kube.CertNamespace).Get(b.ctx, "portal-domain-abc1234", metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "certificate deleted: %v", err)
		_, err = os.Stat(filepath.Join(b.manifestDir, "abc1234", "certificate.json"))
		require.True(t, os.IsNotExist(err), "snapshots removed")
	})

	t.Run("the certificate watch starts the await job, not its first-run delay", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		// Hold await_certificate back for an hour: the domain can only go
		// active if something wakes it.
		_, err := b.schema.Pool.Exec(b.ctx, `UPDATE portal_domain_stage_jobs SET first_run_delay = interval '1 hour' WHERE status = 'certificate_issuing'`)
		require.NoError(t, err)
		rec := b.register(t, tenant, "portal.acme.test")
		b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		var state string
		require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT state::text FROM river_job WHERE kind = 'await_certificate'`).Scan(&state))
		require.Equal(t, "scheduled", state, "nothing wakes the job before cert-manager says something")

		b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
		b.waitFor(t, rec.ID, "became active (woken by the watch)", func(r domain.Record) bool { return r.Status == domain.StatusActive })

		// Starting over (the app sets pending_dns) re-applies an issued,
		// unchanged Certificate: no watch event follows, so the apply job
		// itself starts the check.
		_, err = b.schema.Pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'pending_dns' WHERE id = $1`, rec.ID)
		require.NoError(t, err)
		refreshed := b.waitFor(t, rec.ID, "became active again after refresh", func(r domain.Record) bool {
			return r.Status == domain.StatusActive && r.Generation > rec.Generation
		})
		require.Equal(t, []domain.Status{domain.StatusPendingDNS, domain.StatusPendingCertificate,
			domain.StatusCertificateIssuing, domain.StatusDeploying, domain.StatusActive}, generationStatuses(t, b, rec.ID, refreshed.Generation))
	})

	t.Run("a zone that gains the right record while the job snoozes proceeds with no retry", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		rec := b.register(t, tenant, "late.acme.test")
		waiting := b.waitFor(t, rec.ID, "reported the missing record", func(r domain.Record) bool {
			return r.Status == domain.StatusVerifyingDNS && strings.Contains(r.StatusMessage, "NXDOMAIN")
		})
		require.Contains(t, waiting.StatusMessage, "abc1234.portal.test")
		b.dns.Set("late.acme.test. 300 IN CNAME abc1234.portal.test.")
		b.waitFor(t, rec.ID, "moved past DNS", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	})

	t.Run("Ready=False stays visible, then Ready=True goes active", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		rec := b.register(t, tenant, "chain.acme.test")
		b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
		b.playCertManager(t, rec, false, "Failed", "ACME HTTP-01 challenge failed: 404")
		failing := b.waitFor(t, rec.ID, "showed cert-manager's reason", func(r domain.Record) bool {
			return strings.Contains(r.StatusMessage, "ACME HTTP-01 challenge failed")
		})
		require.Equal(t, domain.StatusCertificateIssuing, failing.Status)
		require.Contains(t, failing.StatusMessage, "1 failed issuance attempts")
		b.playCertManager(t, rec, true, "Ready", "issued")
		b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })
	})

	t.Run("a wrong CNAME fails at the deadline, naming what was seen", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{dnsDeadline: 700 * time.Millisecond})
		rec := b.register(t, tenant, "wrong.acme.test")
		failed := b.waitFor(t, rec.ID, "failed", func(r domain.Record) bool { return r.Status == domain.StatusDNSFailed })
		require.Contains(t, failed.StatusMessage, "Detected CNAME www.acme.test")
		require.Contains(t, failed.StatusMessage, "expected abc1234.portal.test")
	})

	t.Run("resolver trouble never fails a domain, even past the deadline", func(t *testing.T) {
		t.Parallel()
		// A deadline of a nanosecond: every check runs past it.
		b := setup(t, setupOpts{dnsDeadline: time.Nanosecond})
		b.dns.ServFail("portal.acme.test")
		rec := b.register(t, tenant, "portal.acme.test")
		b.waitFor(t, rec.ID, "reported the resolver problem", func(r domain.Record) bool {
			return r.Status == domain.StatusVerifyingDNS && strings.Contains(r.StatusMessage, "not a problem with your records")
		})
		// A check that meets SERVFAIL asks once (the chain stops there), and
		// the domain's next check starts only after this one's outcome is
		// written: a third query proves that the first two checks, both past
		// the deadline, left the domain verifying (dns_failed would have
		// ended the checks).
		b.waitForQueries(t, "portal.acme.test", 3)
		still, err := db.GetDomain(b.ctx, b.schema.Pool, rec.ID)
		require.NoError(t, err)
		require.Equal(t, domain.StatusVerifyingDNS, still.Status, still.StatusMessage)
		b.dns.Heal("portal.acme.test")
		b.waitFor(t, rec.ID, "recovered", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	})

	t.Run("an apex domain inserted by plain SQL fails with the reason", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		var id string
		require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `INSERT INTO portal_domains (tenant, domain, canonical_host) VALUES ($1, 'acme.test', 'abc1234.portal.test') RETURNING id::text`,
			string(tenant)).Scan(&id))
		failed := b.waitFor(t, id, "failed", func(r domain.Record) bool { return r.Status == domain.StatusDNSFailed })
		require.Contains(t, failed.StatusMessage, "apex domain")
	})
}

func TestStagesAreTraced(t *testing.T) {
	t.Parallel()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	b := setup(t, setupOpts{tracer: tp})
	rec := b.register(t, tenant, "portal.acme.test")
	b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })

	tagged := map[string]bool{}
	var workSpans int
	for _, s := range recorder.Ended() {
		if strings.HasPrefix(s.Name(), "river.work/") {
			workSpans++
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		if attrs["tenantId"] == string(tenant) && attrs["portalDomainId"] == rec.ID {
			tagged[s.Name()] = true
		}
	}
	require.True(t, tagged["dns.check"], "the DNS check span carries tenantId and portalDomainId")
	require.True(t, tagged["kubernetes.apply"], "the apply span carries tenantId and portalDomainId")
	require.GreaterOrEqual(t, workSpans, 2, "River's middleware traces each job")
}

func TestOrphanSweepDeletesObjectsOfDeletedRows(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sweep: jobs.SweepConfig{MinAge: time.Nanosecond}})
	gone := b.register(t, tenant, "portal.acme.test")
	kept := b.register(t, domain.TenantID("def56789-0000-4000-8000-000000000002"), "chain.acme.test")
	// Once the first domain's objects exist, delete its row as AlgaPSA's
	// tenant deletion does; the other tenant's row must stay as it is.
	b.waitFor(t, gone.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	_, err := b.schema.Pool.Exec(b.ctx, `DELETE FROM portal_domains WHERE tenant = $1`, string(tenant))
	require.NoError(t, err)

	certs := b.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.Kube.CertNamespace)
	gateways := b.kube.Dynamic.Resource(k8s.GatewayGVR).Namespace(b.cfg.Kube.GatewayNamespace)
	require.Eventually(t, func() bool {
		_, certErr := certs.Get(b.ctx, "portal-domain-abc1234", metav1.GetOptions{})
		_, gwErr := gateways.Get(b.ctx, "portal-domain-gw-abc1234", metav1.GetOptions{})
		return apierrors.IsNotFound(certErr) && apierrors.IsNotFound(gwErr)
	}, waitTimeout, 100*time.Millisecond, "the sweep deletes the objects of a deleted row")

	still, err := db.GetDomain(b.ctx, b.schema.Pool, kept.ID)
	require.NoError(t, err, "the other tenant's row is untouched")
	require.NotEqual(t, domain.StatusDisabled, still.Status)
}
