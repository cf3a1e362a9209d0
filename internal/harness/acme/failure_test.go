package acme_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/cli"
	"github.com/portal-domains/portal-domains/internal/harness/acme"
	"github.com/portal-domains/portal-domains/k8s"
)

// TestFailedIssuanceAlertsAndRecovers runs the worker against real cert-manager and Pebble
// with a domain whose name resolves elsewhere for the CA than for cert-manager's self-check:
// the self-check passes, Pebble's validation cannot connect, and cert-manager records a real
// failure. The tenant sees cert-manager's reason, the stuck scan opens one alert carrying the
// Certificate's failedIssuanceAttempts and lastFailureTime, and once the name is fixed
// cert-manager's own retry (after its backoff, shortened here) issues, the domain goes
// active and the alert is resolved.
func TestFailedIssuanceAlertsAndRecovers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const suffix = canonicalSuffix
	const tenantID = "f00dcaf0-0000-4000-8000-000000000001"
	s := startIssuanceStack(t, issuanceOptions{schemaPrefix: "acmefail", zone: "fail.test", prefix: "f00dcaf", pebbleElsewhere: true,
		issuer: acme.Options{MinimumBackoff: 20 * time.Second}})
	database, api, pebbleDNS, ip, dyn := s.database, s.api, s.pebbleDNS, s.ip, s.dyn

	env := s.startWorker(t, map[string]string{"PORTAL_DOMAIN_STUCK_AFTER": "25s"})
	rec := s.register(t, tenantID, "portal.fail.test")
	certStatus := func() map[string]any {
		c, err := dyn.Resource(k8s.CertificateGVR).Namespace("msp").Get(ctx, "portal-domain-f00dcaf", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		st, _, _ := unstructured.NestedMap(c.Object, "status")
		return st
	}

	s.eventually(t, "cert-manager's failure shown to the tenant", 2*time.Minute, func() (bool, string) {
		r := s.record(t, rec.ID)
		return r.Status == domain.StatusCertificateIssuing && strings.Contains(r.StatusMessage, "failed issuance attempt"),
			fmt.Sprintf("%s: %s", r.Status, r.StatusMessage)
	})
	r := s.record(t, rec.ID)
	t.Logf("status_message: %s", r.StatusMessage)
	// Not cert-manager's `order is in "invalid" state`, but the CA's own reason, read from the
	// Challenge, in words the tenant can act on.
	require.Contains(t, r.StatusMessage, "could not be issued. Let's Encrypt could not reach http://portal.fail.test/.well-known/acme-challenge/")
	require.Contains(t, r.StatusMessage, "Check that portal.fail.test's CNAME points to f00dcaf.portal.test and nothing in front of it blocks port 80.")
	require.Contains(t, r.StatusMessage, "connection refused", "the CA's own words")
	require.NotContains(t, r.StatusMessage, `order is in "invalid" state`)

	var alert db.Alert
	s.eventually(t, "one open alert with the Certificate's failure counts", time.Minute, func() (bool, string) {
		alerts, err := db.ListAlerts(ctx, database.Pool, true)
		require.NoError(t, err)
		var mine []db.Alert
		for _, al := range alerts {
			if al.DomainID == rec.ID {
				mine = append(mine, al)
			}
		}
		if len(mine) == 0 {
			return false, "no alert"
		}
		require.Len(t, mine, 1, "exactly one alert per incident")
		alert = mine[0]
		return alert.FailedIssuanceAttempts >= 1 && alert.LastFailureTime != nil, fmt.Sprintf("%+v", alert)
	})
	st := certStatus()
	require.NotNil(t, st)
	attempts, _, _ := unstructured.NestedInt64(st, "failedIssuanceAttempts")
	lastFailure, _, _ := unstructured.NestedString(st, "lastFailureTime")
	require.EqualValues(t, attempts, alert.FailedIssuanceAttempts, "the alert carries the Certificate's failedIssuanceAttempts")
	require.Equal(t, lastFailure, alert.LastFailureTime.UTC().Format(time.RFC3339), "the alert carries the Certificate's lastFailureTime")
	require.Nil(t, alert.ResolvedAt)
	require.Contains(t, alert.Message, "The CA's reason (connection): ", "the alert carries the CA's reason the await job kept")
	t.Logf("alert: %s (%d failed issuance attempts, last failure %s)", alert.Message, alert.FailedIssuanceAttempts, lastFailure)

	// doctor walks the failing chain: the Certificate's Issuing=False, the Order and Challenge
	// with the CA's reason, the open alert, and a Next line saying what to fix. cert-manager
	// keeps the failed request (and its Order and Challenge) until its retry, and replaces it
	// then: wait for doctor to see a failed attempt kept.
	env["KUBECONFIG"] = api.KubeconfigPath
	doctor := func(args ...string) (string, int) {
		var stdout, stderr strings.Builder
		err := cli.Run(ctx, append([]string{"doctor"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
		return stdout.String(), cli.ExitCode(err, &stderr)
	}
	var failing cli.DoctorReport
	s.eventually(t, "doctor --json shows the failed issuance with the CA's reason and the alert", time.Minute, func() (bool, string) {
		out, code := doctor("portal.fail.test", "--json")
		require.Equal(t, 1, code, "doctor fails while something needs fixing: %s", out)
		failing = cli.DoctorReport{}
		require.NoError(t, json.Unmarshal([]byte(out), &failing), out)
		c := failing.Cluster
		return c != nil && c.CAProblem != nil && len(failing.Alerts) == 1, out
	})
	require.True(t, failing.Registered)
	require.Equal(t, rec.ID, failing.Row.ID)
	require.NotEmpty(t, failing.Events)
	require.NotEmpty(t, failing.Jobs)
	require.Equal(t, "verified", string(failing.DNS.Outcome))
	for _, o := range failing.Cluster.Objects {
		require.Equal(t, o.Kind != "Secret", o.Exists, "%s %s/%s", o.Kind, o.Namespace, o.Name)
	}
	issuing := map[string]string{}
	for _, c := range failing.Cluster.Certificate.Conditions {
		issuing[c.Type] = c.Status + " " + c.Reason
	}
	require.Equal(t, "False Failed", issuing["Issuing"])
	chain := failing.Cluster.Issuance
	require.NotNil(t, chain.Request)
	require.Equal(t, "Failed", chain.Request.State)
	require.NotNil(t, chain.Order)
	require.Equal(t, "invalid", chain.Order.State)
	require.Len(t, chain.Challenges, 1)
	require.Equal(t, "invalid", chain.Challenges[0].State)
	require.Contains(t, chain.Challenges[0].Reason, "connection refused")
	require.Equal(t, "connection", failing.Cluster.CAProblem.Type)
	require.Equal(t, alert.ID, failing.Alerts[0].ID)
	require.False(t, failing.OK)
	require.Contains(t, failing.Next, "Let's Encrypt could not reach http://portal.fail.test/.well-known/acme-challenge/")
	require.Contains(t, failing.Next, "Check that portal.fail.test's CNAME points to f00dcaf.portal.test")

	var text string
	s.eventually(t, "doctor prints the same, section by section", time.Minute, func() (bool, string) {
		var code int
		text, code = doctor("portal.fail.test")
		require.Equal(t, 1, code, text)
		return strings.Contains(text, "Challenge ") && strings.Contains(text, "The CA's reason"), text
	})
	t.Logf("doctor portal.fail.test:\n%s", text)
	at := 0
	for _, want := range []string{"Domain portal.fail.test", "certificate_issuing", "Jobs:", "DNS and CAA:", "✓ cname",
		"Objects in the cluster:", "✓ Certificate msp/portal-domain-f00dcaf", "Issuing=False Failed",
		"Issuance:", "CertificateRequest ", ": Failed", "Order ", ": invalid", "Challenge ", ": invalid", "The CA's reason (connection)",
		"HTTPS https://portal.fail.test/:", "Open alerts:", "certificate_not_ready", "Next: Let's Encrypt could not reach"} {
		i := strings.Index(text[at:], want)
		require.GreaterOrEqual(t, i, 0, "%q in order after position %d", want, at)
		at += i + len(want)
	}

	// The fix: the name now resolves to the gateway for the CA too. cert-manager tries again
	// after its backoff, on its own.
	require.NoError(t, pebbleDNS.Set("f00dcaf.portal.test. 1 IN A "+ip))
	s.eventually(t, "active after cert-manager's retry", 2*time.Minute, func() (bool, string) {
		r := s.record(t, rec.ID)
		return r.Status == domain.StatusActive, fmt.Sprintf("%s: %s", r.Status, r.StatusMessage)
	})
	s.eventually(t, "the alert resolved", time.Minute, func() (bool, string) {
		alerts, err := db.ListAlerts(ctx, database.Pool, true)
		require.NoError(t, err)
		for _, al := range alerts {
			if al.DomainID == rec.ID {
				require.Equal(t, alert.ID, al.ID, "no second alert")
				return al.ResolvedAt != nil, fmt.Sprintf("%+v", al)
			}
		}
		return false, "alert gone"
	})

	// Issued: doctor shows what HTTPS serves (Pebble's certificate for the domain) and
	// that nothing is left to do.
	start := time.Now()
	out, code := doctor("portal.fail.test", "--json")
	t.Logf("doctor --json of the issued domain took %s", time.Since(start).Round(time.Millisecond))
	var issued cli.DoctorReport
	require.NoError(t, json.Unmarshal([]byte(out), &issued), out)
	require.Equal(t, 0, code, out)
	require.True(t, issued.OK)
	require.NotNil(t, issued.HTTPS)
	require.True(t, issued.HTTPS.OK, issued.HTTPS.Message)
	require.Contains(t, issued.HTTPS.Issuer, "Pebble")
	require.Equal(t, []string{"portal.fail.test"}, issued.HTTPS.Names)
	require.NotNil(t, issued.HTTPS.NotAfter)
	require.True(t, issued.HTTPS.NotAfter.After(time.Now()))
	require.Empty(t, issued.Alerts)
	require.Contains(t, issued.Next, "Nothing to do: portal.fail.test is active and serves a certificate from "+issued.HTTPS.Issuer)
	text, code = doctor("portal.fail.test")
	require.Equal(t, 0, code, text)
	require.Contains(t, text, "serves a certificate from "+issued.HTTPS.Issuer+" for portal.fail.test, valid until ")
	require.Contains(t, text, "Ready=True")
	t.Logf("doctor portal.fail.test once issued:\n%s", text)
}
