package acme_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/harness/acme"
	"github.com/portal-domains/portal-domains/jobs"
)

// Pebble's certificates in TestRenewalWatched last a minute; cert-manager renews them two
// thirds of the way through (20 s before expiry), and an issuance takes about 10 s here
// (five self-check passes 2 s apart), so the expiry warning of 5 s is reached only when a
// renewal fails.
const (
	renewalValidity   = 60 * time.Second
	renewalExpiryWarn = "5s"
	renewalsToWatch   = 3
)

// TestRenewalWatched runs the worker against real cert-manager and Pebble issuing
// one-minute certificates. The domain stays active through several renewals, each served
// by the gateway as soon as cert-manager writes it. Then the name resolves elsewhere for
// the CA: the next renewal fails, a certificate_renewal_failed alert opens carrying
// cert-manager's own reason and the CA's, and a certificate_expiring alert as the certificate nears its
// end; once the name is fixed, cert-manager's retry renews it, both alerts resolve, and the
// domain was active throughout.
func TestRenewalWatched(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const suffix = canonicalSuffix
	const tenantID = "5eed0000-0000-4000-8000-000000000001"
	const host = "portal.renew.test"
	s := startIssuanceStack(t, issuanceOptions{schemaPrefix: "acmerenew", zone: "renew.test", prefix: "5eed000",
		issuer: acme.Options{Validity: renewalValidity, MinimumBackoff: 10 * time.Second}})
	database, pebbleDNS, ip, elsewhere, kube, gw, a := s.database, s.pebbleDNS, s.ip, s.elsewhere, s.kube, s.gw, s.acme
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(a.RootPEM))

	s.startWorker(t, map[string]string{"PORTAL_DOMAIN_EXPIRY_WARN": renewalExpiryWarn})
	rec := s.register(t, tenantID, host)
	// secretCert is the certificate cert-manager last wrote to the domain's Secret.
	secretCert := func() *x509.Certificate {
		sec, err := kube.CoreV1().Secrets("istio-system").Get(ctx, "portal-domain-5eed000", metav1.GetOptions{})
		require.NoError(t, err)
		leaf, _ := parseChain(t, sec.Data["tls.crt"])
		return leaf
	}
	// served is the certificate the gateway serves for the domain, verified against
	// Pebble's root as a browser would (expiry aside: the failure below lets it lapse).
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", gw.Addr(), &tls.Config{ServerName: host, InsecureSkipVerify: true})
		require.NoError(t, err)
		defer conn.Close()
		chain := conn.ConnectionState().PeerCertificates
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err = chain[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: chain[0].NotBefore.Add(time.Second)})
		require.NoError(t, err, "the gateway serves Pebble's certificate for %s", host)
		return chain[0]
	}
	alertsOf := func(kind string) []db.Alert {
		all, err := db.ListAlerts(ctx, database.Pool, true)
		require.NoError(t, err)
		var out []db.Alert
		for _, al := range all {
			if al.DomainID == rec.ID && al.Kind == kind {
				out = append(out, al)
			}
		}
		return out
	}

	s.eventually(t, "active", 2*time.Minute, func() (bool, string) {
		r := s.record(t, rec.ID)
		return r.Status == domain.StatusActive, fmt.Sprintf("%s: %s", r.Status, r.StatusMessage)
	})
	first := secretCert()
	require.Equal(t, first.SerialNumber, served().SerialNumber)
	require.InDelta(t, renewalValidity.Seconds(), first.NotAfter.Sub(first.NotBefore).Seconds(), 2, "Pebble's short-lived profile")
	t.Logf("issued %s, valid %s to %s", first.SerialNumber, first.NotBefore.Format(time.TimeOnly), first.NotAfter.Format(time.TimeOnly))

	// Several renewals, each a new certificate in the Secret that the gateway then serves.
	current := first
	for i := 1; i <= renewalsToWatch; i++ {
		prev := current
		s.eventually(t, fmt.Sprintf("renewal %d served", i), 2*renewalValidity, func() (bool, string) {
			current = secretCert()
			if current.SerialNumber.Cmp(prev.SerialNumber) == 0 {
				return false, "the Secret still holds " + prev.SerialNumber.String()
			}
			s := served()
			return s.SerialNumber.Cmp(current.SerialNumber) == 0, "the gateway serves " + s.SerialNumber.String()
		})
		require.True(t, current.NotAfter.After(prev.NotAfter))
		t.Logf("renewal %d: %s, valid %s to %s", i, current.SerialNumber, current.NotBefore.Format(time.TimeOnly), current.NotAfter.Format(time.TimeOnly))
		require.Equal(t, domain.StatusActive, s.record(t, rec.ID).Status)
	}
	require.Empty(t, alertsOf(jobs.AlertCertificateRenewalFailed), "no renewal failed")

	// Break the challenge route: the CA now finds nothing at the domain's address, so the
	// next renewal fails (cert-manager's own self-check, through the right DNS, passes).
	require.NoError(t, pebbleDNS.Set("5eed000.portal.test. 1 IN A "+elsewhere))
	broken := current
	var failed db.Alert
	s.eventually(t, "a certificate_renewal_failed alert with cert-manager's reason", 2*renewalValidity, func() (bool, string) {
		got := alertsOf(jobs.AlertCertificateRenewalFailed)
		if len(got) == 0 {
			return false, "no alert"
		}
		require.Len(t, got, 1, "one alert per incident")
		failed = got[0]
		return true, ""
	})
	t.Logf("alert: %s: %s", failed.Reason, failed.Message)
	require.Equal(t, "Failed", failed.Reason, "the Issuing condition's reason")
	require.Contains(t, failed.Message, "cert-manager reports: ", "cert-manager's own message")
	require.Contains(t, failed.Message, `order is in "invalid" state`, "the CA refused the order")
	require.Contains(t, failed.Message, "Let's Encrypt could not reach http://"+host+"/.well-known/acme-challenge/",
		"and the CA's own reason, from the failed Challenge")
	require.GreaterOrEqual(t, failed.FailedIssuanceAttempts, 1)
	require.NotNil(t, failed.LastFailureTime)
	require.Nil(t, failed.ResolvedAt)
	s.eventually(t, "a certificate_expiring alert as the certificate nears its end", renewalValidity, func() (bool, string) {
		return len(alertsOf(jobs.AlertCertificateExpiring)) == 1, "no alert"
	})
	expiring := alertsOf(jobs.AlertCertificateExpiring)[0]
	t.Logf("alert: %s: %s", expiring.Reason, expiring.Message)
	require.Contains(t, expiring.Message, broken.NotAfter.UTC().Format(time.RFC3339))
	r := s.record(t, rec.ID)
	require.Equal(t, domain.StatusActive, r.Status, "the domain stays active while renewal fails")
	require.Equal(t, broken.SerialNumber, served().SerialNumber, "and serves its current certificate")

	// The fix: cert-manager's next retry (after its backoff) renews, and both alerts resolve.
	require.NoError(t, pebbleDNS.Set("5eed000.portal.test. 1 IN A "+ip))
	s.eventually(t, "renewed after the fix, and served", 2*time.Minute, func() (bool, string) {
		current = secretCert()
		return current.SerialNumber.Cmp(broken.SerialNumber) != 0 && served().SerialNumber.Cmp(current.SerialNumber) == 0,
			"still " + broken.SerialNumber.String()
	})
	for _, kind := range []string{jobs.AlertCertificateRenewalFailed, jobs.AlertCertificateExpiring} {
		s.eventually(t, kind+" resolved", time.Minute, func() (bool, string) {
			got := alertsOf(kind)
			require.Len(t, got, 1, "no second alert")
			return got[0].ResolvedAt != nil, fmt.Sprintf("%+v", got[0])
		})
		t.Logf("%s resolved: %s", kind, alertsOf(kind)[0].Resolution)
	}

	// Active throughout: the history has no status after active.
	events, err := db.ListEvents(ctx, database.Pool, rec.ID)
	require.NoError(t, err)
	var after []domain.Status
	activated := false
	for _, e := range events {
		if activated {
			after = append(after, e.To)
		}
		activated = activated || e.To == domain.StatusActive
	}
	for _, s := range after {
		require.Equal(t, domain.StatusActive, s, "the domain left active during renewals: %v", after)
	}
	require.Equal(t, domain.StatusActive, s.record(t, rec.ID).Status)
}
