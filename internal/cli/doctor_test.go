package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/k8s"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestDoctorWithoutCluster: with the API server unreachable doctor still
// shows the row, its history and jobs, DNS and CAA and the open alerts,
// says the cluster could not be read, and makes that the next thing to fix.
func TestDoctorWithoutCluster(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://`+closedAddr(t)+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	env := map[string]string{"KUBECONFIG": kubeconfig, "PORTAL_DOMAIN_PROBE_DIAL_ADDRESS": closedAddr(t), "PORTAL_DOMAIN_PROBE_TIMEOUT": "2s"}
	for k, v := range b.env {
		env[k] = v
	}

	res := cli(t, env, "register", "--tenant", tenantA, "--domain", "portal.acme.test", "--json")
	require.Equal(t, 0, res.code, res.stderr)
	var rec domain.Record
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &rec))
	// Walk the row to certificate_issuing as the worker would, so its
	// objects should be in the cluster.
	for _, to := range []domain.Status{domain.StatusPendingCertificate, domain.StatusCertificateIssuing} {
		rec, _ = db.Transition(ctx, b.schema.Pool, domain.Change{DomainID: rec.ID, Generation: rec.Generation, From: rec.Status, To: to, Message: "moved by the test to " + string(to)})
		require.Equal(t, to, rec.Status)
	}

	res = cli(t, env, "doctor", "portal.acme.test")
	require.Equal(t, 1, res.code, res.stdout+res.stderr)
	out := res.stdout
	t.Log(out)
	sections := []string{"Domain portal.acme.test (id " + rec.ID, "certificate_issuing", "last events:", "moved by the test to certificate_issuing",
		"Jobs:", "await_certificate", "DNS and CAA:", "✓ cname", "Objects in the cluster:", "✗ cluster not read:",
		"HTTPS https://portal.acme.test/:", "Open alerts:", "Next: Could not read the cluster"}
	at := 0
	for _, s := range sections {
		i := strings.Index(out[at:], s)
		require.GreaterOrEqual(t, i, 0, "%q after position %d", s, at)
		at += i + len(s)
	}
	require.Equal(t, 1, strings.Count(out, "\nNext: "), "one Next line, last")
	require.True(t, strings.HasSuffix(strings.TrimSpace(out), strings.TrimSpace(out[strings.LastIndex(out, "\nNext: "):])))

	// doctor reads with the worker's own database grants.
	asWorker := b.schema.WorkerRole(t, filepath.Join("..", "..", "deploy", "postgres", "worker-grants.sql"))
	env["DATABASE_URL"] = asWorker.Config().ConnString()
	res = cli(t, env, "doctor", "portal.acme.test", "--json")
	require.Equal(t, 1, res.code, res.stderr)
	var report DoctorReport
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &report))
	require.True(t, report.Registered)
	require.Equal(t, rec.ID, report.Row.ID)
	require.NotEmpty(t, report.Events)
	require.Equal(t, domain.StatusCertificateIssuing, report.Events[len(report.Events)-1].To)
	require.NotEmpty(t, report.Jobs)
	require.Equal(t, domain.KindAwaitCertificate, report.Jobs[0].Kind, "newest job first")
	require.Equal(t, dns.OutcomeVerified, report.DNS.Outcome)
	require.NotNil(t, report.Cluster)
	require.Contains(t, report.Cluster.Error, "unreachable")
	require.NotNil(t, report.HTTPS)
	require.False(t, report.HTTPS.OK)
	require.Empty(t, report.Alerts)
	require.NotNil(t, report.Alerts, "alerts is a list, even when empty")
	require.False(t, report.OK)
	require.Contains(t, report.Next, "Could not read the cluster")

	res = cli(t, env, "doctor", "portal.acme.test", "--domain", "portal.acme.test")
	require.Equal(t, 2, res.code)
	require.Contains(t, res.stderr, "give the domain once")
	res = cli(t, env, "doctor", "--domain-id", "not-a-uuid")
	require.Equal(t, 2, res.code)
}

// TestNextStep: the one line doctor ends with, for each kind of trouble.
func TestNextStep(t *testing.T) {
	t.Parallel()
	cfg := worker.Config{CAAIdentity: "letsencrypt.org", Kube: k8s.Config{CertNamespace: "msp"}}
	verified := dns.Report{Outcome: dns.OutcomeVerified}
	mismatch := dns.Report{Outcome: dns.OutcomeMismatch, Message: "Detected CNAME www.acme.com",
		Checks: []dns.Check{{Name: "cname", Fix: "Create portal.acme.com. CNAME abc1234.portal.algapsa.com."}}}
	row := func(s domain.Status) *domain.Record {
		return &domain.Record{ID: "d1", Tenant: tenantA, Domain: "portal.acme.com", CanonicalHost: "abc1234.portal.algapsa.com", Status: s,
			StatusMessage: "the message"}
	}
	present := []k8s.ObjectState{{Kind: "Certificate", Exists: true}, {Kind: "Gateway", Exists: true}, {Kind: "VirtualService", Exists: true}, {Kind: "Secret"}}
	failedCert := &k8s.CertificateDetail{Conditions: []k8s.Condition{{Type: "Ready", Status: "False", Reason: "DoesNotExist"},
		{Type: "Issuing", Status: "False", Reason: "Failed", Message: `order is in "invalid" state`}}}
	readyCert := &k8s.CertificateDetail{Conditions: []k8s.Condition{{Type: "Ready", Status: "True"}}}
	caProblem := &DoctorCAProblem{Type: "connection", Detail: "connection refused", URL: "http://portal.acme.com/.well-known/acme-challenge/tok"}
	notAfter := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		report DoctorReport
		want   []string
		ok     bool
	}{
		{"unregistered with wrong DNS: the DNS fix", DoctorReport{Domain: "portal.acme.com", DNS: mismatch},
			[]string{"Create portal.acme.com. CNAME"}, false},
		{"unregistered with right DNS: register it", DoctorReport{Domain: "portal.acme.com", DNS: verified},
			[]string{"not registered", "portal-domains register"}, true},
		{"dns_failed, still wrong: the fix, then retry", DoctorReport{Registered: true, Row: row(domain.StatusDNSFailed), DNS: mismatch},
			[]string{"Create portal.acme.com. CNAME", "Then: portal-domains retry --tenant " + tenantA + " --domain-id d1"}, false},
		{"dns_failed, right now: retry", DoctorReport{Registered: true, Row: row(domain.StatusDNSFailed), DNS: verified},
			[]string{"DNS is right now: portal-domains retry"}, false},
		{"objects missing: refresh", DoctorReport{Registered: true, Row: row(domain.StatusCertificateIssuing), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: []k8s.ObjectState{{Kind: "Certificate", Namespace: "msp", Name: "portal-domain-abc1234"}, {Kind: "Gateway", Exists: true}}}}},
			[]string{"Certificate msp/portal-domain-abc1234 missing", "portal-domains refresh"}, false},
		{"the CA refused: its reason in tenant words", DoctorReport{Registered: true, Row: row(domain.StatusCertificateIssuing), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: failedCert}, CAProblem: caProblem}},
			[]string{"Let's Encrypt could not reach http://portal.acme.com/.well-known/acme-challenge/tok: connection refused", "cmctl renew"}, false},
		{"the CA refused and the domain failed: then retry", DoctorReport{Registered: true, Row: row(domain.StatusCertificateFailed), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: failedCert}, CAProblem: caProblem}},
			[]string{"could not reach", "Then: portal-domains retry"}, false},
		{"cert-manager's self-check failing for minutes: its reason", DoctorReport{Registered: true, Row: row(domain.StatusCertificateIssuing), DNS: verified,
			CheckedAt: notAfter, Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: &k8s.CertificateDetail{},
				Issuance: k8s.Issuance{Challenges: []k8s.IssuanceStep{{Kind: "Challenge", State: "pending", CreatedAt: notAfter.Add(-5 * time.Minute),
					URL:    "http://portal.acme.com/.well-known/acme-challenge/tok",
					Reason: "Waiting for HTTP-01 challenge propagation: wrong status code '404', expected '200'"}}}}}},
			[]string{"cert-manager's own check of http://portal.acme.com/.well-known/acme-challenge/tok has not passed for 5m0s: Waiting for HTTP-01 challenge propagation: wrong status code '404'",
				"CNAME points to abc1234.portal.algapsa.com"}, false},
		{"a self-check failing for seconds is still patience", DoctorReport{Registered: true, Row: row(domain.StatusCertificateIssuing), DNS: verified,
			CheckedAt: notAfter, Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: &k8s.CertificateDetail{},
				Issuance: k8s.Issuance{Challenges: []k8s.IssuanceStep{{Kind: "Challenge", State: "pending", CreatedAt: notAfter.Add(-5 * time.Second),
					URL: "http://portal.acme.com/.well-known/acme-challenge/tok", Reason: "Waiting for HTTP-01 challenge propagation"}}}}}},
			[]string{"Nothing to do yet"}, true},
		{"issuance failed without a readable chain: cert-manager's words", DoctorReport{Registered: true, Row: row(domain.StatusCertificateIssuing), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: failedCert}}},
			[]string{`cert-manager could not issue the certificate: order is in "invalid" state`, "kubectl describe challenges -n msp"}, false},
		{"active but HTTPS wrong", DoctorReport{Registered: true, Row: row(domain.StatusActive), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: readyCert}},
			HTTPS:   &DoctorHTTPS{Message: "certificate covers only other.example"}},
			[]string{"HTTPS does not serve the certificate yet: certificate covers only other.example"}, false},
		{"an open alert", DoctorReport{Registered: true, Row: row(domain.StatusDeploying), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present}}, Alerts: []db.Alert{{Message: "stuck for 3h"}}},
			[]string{"An alert is open: stuck for 3h"}, false},
		{"active and served: nothing to do", DoctorReport{Registered: true, Row: row(domain.StatusActive), DNS: verified,
			Cluster: &DoctorCluster{DomainState: k8s.DomainState{Objects: present, Certificate: readyCert}},
			HTTPS:   &DoctorHTTPS{OK: true, Issuer: "Pebble Intermediate", Names: []string{"portal.acme.com"}, NotAfter: &notAfter}},
			[]string{"Nothing to do: portal.acme.com is active and serves a certificate from Pebble Intermediate for portal.acme.com until 2027-03-01T00:00:00Z."}, true},
		{"in progress: nothing to do yet", DoctorReport{Registered: true, Row: row(domain.StatusVerifyingDNS), DNS: verified,
			Jobs: []db.DomainJob{{Kind: "verify_dns", State: "scheduled", ScheduledAt: notAfter}}},
			[]string{"Nothing to do yet: portal.acme.com is verifying_dns; its verify_dns job is scheduled, next run 2027-03-01T00:00:00Z."}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, ok := nextStep(tc.report, cfg)
			for _, w := range tc.want {
				require.Contains(t, next, w)
			}
			require.Equal(t, tc.ok, ok, next)
		})
	}
}
