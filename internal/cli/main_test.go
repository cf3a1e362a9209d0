package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/dns/dnstest"
	"github.com/portal-domains/portal-domains/domain"
)

type cliResult struct {
	code           int
	stdout, stderr string
}

// cli runs the command as main would, with env as the whole environment.
func cli(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := Run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	code := ExitCode(err, &stderr)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

type cliBundle struct {
	schema *dbtest.Schema
	env    map[string]string
}

func setup(t *testing.T) *cliBundle {
	t.Helper()
	s := dbtest.Migrated(t)
	dnsServer := dnstest.Start(t)
	return &cliBundle{schema: s, env: map[string]string{
		"DATABASE_URL":                   s.URL,
		"PORTAL_DOMAIN_DNS_SERVERS":      dnsServer.Addr(),
		"PORTAL_DOMAIN_DNS_TIMEOUT":      "300ms",
		"PORTAL_DOMAIN_CANONICAL_SUFFIX": "portal.test",
	}}
}

// counts returns how many domain rows and jobs exist, to prove bad input
// wrote nothing.
func (b *cliBundle) counts(t *testing.T) (rows, jobs int) {
	t.Helper()
	require.NoError(t, b.schema.Pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM portal_domains), (SELECT count(*) FROM river_job)`).Scan(&rows, &jobs))
	return rows, jobs
}

const tenantA = "abc12345-0000-4000-8000-00000000000a"

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"register", "--nope"}, "flag provided but not defined"},
		{"bad tenant", []string{"register", "--tenant", "acme", "--domain", "portal.acme.test"}, `tenant "acme" is not a UUID`},
		{"missing domain", []string{"register", "--tenant", tenantA}, "--domain is required"},
		{"apex domain", []string{"register", "--tenant", tenantA, "--domain", "acme.com"}, "apex domain"},
		{"wildcard", []string{"register", "--tenant", tenantA, "--domain", "*.acme.com"}, "Wildcard"},
		{"bad domain id", []string{"retry", "--tenant", tenantA, "--domain-id", "42"}, `domain id "42" is not a UUID`},
		{"bad status filter", []string{"status", "--status", "happy"}, `unknown status "happy"`},
		{"doctor needs one target", []string{"doctor"}, "exactly one of --domain or --domain-id"},
		{"migrate direction", []string{"migrate", "sideways"}, `unknown direction "sideways"`},
		{"the product has no dev stack", []string{"dev"}, `unknown command "dev"`},
		{"the product has no bench", []string{"bench", "-n", "5"}, `unknown command "bench"`},
		{"bad suffix", []string{"register", "--tenant", tenantA, "--domain", "portal.acme.com", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// No database is configured that exists: usage errors must not need one.
			res := cli(t, map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing", "PORTAL_DOMAIN_DNS_SERVERS": "127.0.0.1:1"}, tc.args...)
			require.Equal(t, 2, res.code, res.stderr)
			require.Contains(t, res.stderr, tc.want)
		})
	}
	t.Run("bad environment", func(t *testing.T) {
		t.Parallel()
		res := cli(t, map[string]string{"PORTAL_DOMAIN_DNS_SERVERS": "not a server:99999"}, "status")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "PORTAL_DOMAIN_DNS_SERVERS")
		res = cli(t, map[string]string{"PORTAL_DOMAIN_DNS_SERVERS": "127.0.0.1", "PORTAL_DOMAIN_DNS_DEADLINE": "soon"}, "status")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "PORTAL_DOMAIN_DNS_DEADLINE")
	})
	t.Run("unreachable database is a runtime failure that says where", func(t *testing.T) {
		t.Parallel()
		res := cli(t, map[string]string{"DATABASE_URL": "postgres://postgres:s3cret@127.0.0.1:1/nothing", "PORTAL_DOMAIN_DNS_SERVERS": "127.0.0.1"}, "status")
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "database unreachable")
		require.Contains(t, res.stderr, "127.0.0.1:1")
		require.NotContains(t, res.stderr, "s3cret", "passwords never reach the output")
	})
}

func TestDomainCommands(t *testing.T) {
	t.Parallel()
	b := setup(t)

	res := cli(t, b.env, "register", "--tenant", tenantA, "--domain", "Portal.Acme.Test.")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "portal.acme.test.  CNAME  abc1234.portal.test.")
	rows, jobs := b.counts(t)
	require.Equal(t, 1, rows)
	require.Equal(t, 1, jobs)

	res = cli(t, b.env, "register", "--tenant", tenantA, "--domain", "portal.acme.test")
	require.Equal(t, 0, res.code)
	require.Contains(t, res.stdout, "already registered")

	res = cli(t, b.env, "register", "--tenant", "def56789-0000-4000-8000-00000000000b", "--domain", "portal.acme.test")
	require.Equal(t, 2, res.code)
	require.Contains(t, res.stderr, "already registered by another tenant")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(res.stderr), "\n")+1, "one line: %q", res.stderr)
	rows, jobs = b.counts(t)
	require.Equal(t, 1, rows)
	require.Equal(t, 1, jobs)

	res = cli(t, b.env, "status", "--json")
	require.Equal(t, 0, res.code, res.stderr)
	var recs []domain.Record
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &recs))
	require.Len(t, recs, 1)
	id := recs[0].ID
	require.Equal(t, domain.StatusPendingDNS, recs[0].Status)

	res = cli(t, b.env, "status")
	require.Equal(t, 0, res.code)
	require.Contains(t, res.stdout, "portal.acme.test")
	require.Contains(t, res.stdout, "pending_dns")

	res = cli(t, b.env, "retry", "--tenant", tenantA, "--domain-id", id)
	require.Equal(t, 2, res.code)
	require.Contains(t, res.stderr, "retry applies only to dns_failed and certificate_failed")

	res = cli(t, b.env, "refresh", "--tenant", "def56789-0000-4000-8000-00000000000b", "--domain-id", id)
	require.Equal(t, 2, res.code, "another tenant's domain")
	require.Contains(t, res.stderr, "not found")

	res = cli(t, b.env, "refresh", "--tenant", tenantA, "--domain-id", id)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "generation 2")

	res = cli(t, b.env, "render", "--domain-id", id)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, `"kind": "Certificate"`)
	require.Contains(t, res.stdout, `"kind": "Gateway"`)
	require.Contains(t, res.stdout, `"kind": "VirtualService"`)
	require.Contains(t, res.stdout, "portal-domain-abc1234")
	installation, err := db.InstallationID(context.Background(), b.schema.Pool)
	require.NoError(t, err)
	require.Contains(t, res.stdout, `"portal.alga-psa.com/installation": "`+installation+`"`, "labelled as the apply stage labels it")

	res = cli(t, b.env, "disable", "--tenant", tenantA, "--domain-id", id)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "disabled")

	res = cli(t, b.env, "status", "--domain-id", id)
	require.Equal(t, 0, res.code)
	require.Contains(t, res.stdout, "History:")
	require.Contains(t, res.stdout, "disabled")
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	b := setup(t)

	res := cli(t, b.env, "doctor", "--domain", "portal.acme.test", "--canonical-host", "abc1234.portal.test")
	require.Equal(t, 0, res.code, res.stdout+res.stderr)
	require.Contains(t, res.stdout, "✓ cname")
	require.Contains(t, res.stdout, "✓ caa")

	res = cli(t, b.env, "doctor", "--domain", "wrong.acme.test", "--canonical-host", "abc1234.portal.test")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stdout, "✗ cname")
	require.Contains(t, res.stdout, "fix:")
	require.Contains(t, res.stdout, "Detected CNAME www.acme.test")

	res = cli(t, b.env, "doctor", "--domain", "portal.strict.acme.test", "--canonical-host", "abc1234.portal.test", "--json")
	require.Equal(t, 1, res.code)
	var report DoctorReport
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &report))
	require.False(t, report.Registered)
	require.Equal(t, dns.OutcomeCAAForbidden, report.DNS.Outcome)
	require.Nil(t, report.Cluster, "an unregistered domain gets DNS checks only")
	require.Contains(t, report.Next, "CAA")
	require.False(t, report.OK)

	res = cli(t, b.env, "doctor", "--domain", "portal.nobody.test")
	require.Equal(t, 2, res.code, "an unregistered domain needs --canonical-host")
	require.Contains(t, res.stderr, "not registered")

	res = cli(t, b.env, "register", "--tenant", tenantA, "--domain", "portal.acme.test")
	require.Equal(t, 0, res.code, res.stderr)
	res = cli(t, b.env, "doctor", "--domain", "portal.acme.test")
	require.Equal(t, 0, res.code, "the registered canonical host is used: %s", res.stdout)
	require.NotContains(t, res.stdout, "River UI", "no link without PORTAL_DOMAIN_UI_URL")

	// With the UI's public address, doctor and status link to the domain's
	// jobs there.
	withUI := map[string]string{"PORTAL_DOMAIN_UI_URL": "https://ops.example.com/riverui/"}
	for k, v := range b.env {
		withUI[k] = v
	}
	const link = "https://ops.example.com/riverui/jobs?tags=domain_portal_acme_test"
	res = cli(t, withUI, "doctor", "--domain", "portal.acme.test")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "Jobs in River UI: "+link)
	res = cli(t, withUI, "doctor", "--domain", "portal.acme.test", "--json")
	require.Equal(t, 0, res.code, res.stderr)
	var withLink DoctorReport
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &withLink))
	require.Equal(t, dns.OutcomeVerified, withLink.DNS.Outcome)
	require.Equal(t, link, withLink.JobsURL)
	res = cli(t, b.env, "status", "--tenant", tenantA, "--json")
	require.Equal(t, 0, res.code, res.stderr)
	var recs []domain.Record
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &recs))
	require.Len(t, recs, 1)
	res = cli(t, withUI, "status", "--domain-id", recs[0].ID)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "Jobs in River UI: "+link)

	withUI["PORTAL_DOMAIN_UI_URL"] = "https://user:secret@ops.example.com/riverui"
	res = cli(t, withUI, "status")
	require.Equal(t, 2, res.code)
	require.Contains(t, res.stderr, "PORTAL_DOMAIN_UI_URL")
	require.NotContains(t, res.stderr, "secret", "a rejected address is not echoed with its credentials")
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	s := dbtest.New(t)
	env := map[string]string{"DATABASE_URL": s.URL, "PORTAL_DOMAIN_DNS_SERVERS": "127.0.0.1"}
	res := cli(t, env, "migrate", "status")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "001_portal_domains\tpending")
	res = cli(t, env, "migrate", "up")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "applied 001_portal_domains")
	res = cli(t, env, "migrate", "up")
	require.Equal(t, 0, res.code)
	require.Contains(t, res.stdout, "(0 new migrations)")
	res = cli(t, env, "migrate", "down")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "reverted 001_portal_domains")
	res = cli(t, env, "migrate", "up")
	require.Equal(t, 0, res.code)
}

func TestWorkerCommandStopsOnSignal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	env := map[string]string{}
	for k, v := range b.env {
		env[k] = v
	}
	env["PORTAL_DOMAIN_UI_ADDR"] = addr
	env["KUBECONFIG"] = ""

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// The worker writes its log while the test reads it for the failure
	// message.
	var stderr lockedBuffer
	go func() {
		done <- Run(ctx, []string{"worker"}, func(k string) string { return env[k] }, strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	ready := func() bool {
		resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for deadline := time.Now().Add(30 * time.Second); !ready(); {
		select {
		case err := <-done:
			t.Fatalf("worker exited before it was ready (%v): %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "worker never became ready: %s", stderr.String())
	}
	cancel() // what SIGTERM does through signal.NotifyContext
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(40 * time.Second):
		t.Fatal("worker did not stop")
	}
	require.Contains(t, stderr.String(), "worker stopped")
}

// lockedBuffer is a bytes.Buffer that one goroutine may write while another
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
