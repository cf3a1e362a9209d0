package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

var (
	t0  = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	rec = domain.Record{ID: "d1", Domain: "portal.acme.com", CanonicalHost: "abc1234.portal.algapsa.com", StatusChangedAt: t0}
	cfg = Config{DNSDeadline: 48 * time.Hour, DNSRecheckMin: 10 * time.Second, DNSRecheckMax: 15 * time.Minute}
)

func TestDecideDNS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		outcome DNSOutcome
		elapsed time.Duration
		to      domain.Status
		snooze  time.Duration
	}{
		{"verified moves on", DNSVerified, time.Minute, domain.StatusPendingCertificate, 0},
		{"a fresh mismatch re-checks in 10s", DNSMismatch, 0, domain.StatusVerifyingDNS, 10 * time.Second},
		{"the re-check grows with the wait", DNSMismatch, 20 * time.Minute, domain.StatusVerifyingDNS, 5 * time.Minute},
		{"and is capped at 15 minutes", DNSMismatch, 10 * time.Hour, domain.StatusVerifyingDNS, 15 * time.Minute},
		{"never past the deadline", DNSMismatch, 48*time.Hour - 30*time.Second, domain.StatusVerifyingDNS, 30 * time.Second},
		{"a mismatch at the deadline fails", DNSMismatch, 48 * time.Hour, domain.StatusDNSFailed, 0},
		{"CAA forbidding fails at the deadline too", DNSCAAForbidden, 49 * time.Hour, domain.StatusDNSFailed, 0},
		{"resolver trouble never fails", DNSResolverError, 100 * time.Hour, domain.StatusVerifyingDNS, 15 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideDNS(DNSVerdict{Outcome: tc.outcome, Message: "seen X; expected Y."}, rec, t0, t0.Add(tc.elapsed), cfg)
			require.Equal(t, tc.to, d.To)
			require.Equal(t, tc.snooze, d.Snooze)
			if tc.to == domain.StatusDNSFailed {
				require.True(t, strings.HasPrefix(d.Message, "seen X; expected Y."), "the observation leads the message")
				require.Contains(t, d.Message, "48 hours")
			}
		})
	}
}

func TestDecideCertificate(t *testing.T) {
	t.Parallel()
	deadline := 6 * time.Hour
	for _, tc := range []struct {
		name    string
		st      CertState
		waited  time.Duration
		to      domain.Status
		reapply bool
		msg     string
	}{
		{"ready with routes deploys", CertState{Found: true, Ready: "True", RoutesPresent: true}, time.Minute, domain.StatusDeploying, false, "issued; checking HTTPS"},
		{"ready without routes re-applies", CertState{Found: true, Ready: "True"}, time.Minute, domain.StatusCertificateIssuing, true, "created again"},
		{"missing certificate re-applies", CertState{}, time.Minute, domain.StatusCertificateIssuing, true, "created again"},
		{"a failure stays visible", CertState{Found: true, Ready: "False", Reason: "Failed", Message: "challenge 404", FailedIssuanceAttempts: 2, RoutesPresent: true},
			time.Minute, domain.StatusCertificateIssuing, false, "cert-manager reports Failed: challenge 404 (2 failed issuance attempts"},
		{"a failed issuance shows cert-manager's Issuing message, not Ready's Secret state", CertState{Found: true, Ready: "False", Reason: "DoesNotExist",
			Message: "Issuing certificate as Secret does not exist", IssuingFailure: `order is in "invalid" state`, FailedIssuanceAttempts: 1, RoutesPresent: true},
			time.Minute, domain.StatusCertificateIssuing, false, `could not be issued: cert-manager reports: order is in "invalid" state (1 failed issuance attempts`},
		{"a failed issuance shows the CA's own reason in tenant words when the Challenge was read", CertState{Found: true, Ready: "False", Reason: "DoesNotExist",
			IssuingFailure: `order is in "invalid" state`, FailedIssuanceAttempts: 1, RoutesPresent: true,
			CAFailure: &CAFailure{Kind: "connection", Detail: "127.0.0.9: Connection refused", URL: "http://portal.acme.com/.well-known/acme-challenge/tok"}},
			time.Minute, domain.StatusCertificateIssuing, false,
			"could not be issued. Let's Encrypt could not reach http://portal.acme.com/.well-known/acme-challenge/tok: 127.0.0.9: Connection refused. " +
				"Check that portal.acme.com's CNAME points to abc1234.portal.algapsa.com and nothing in front of it blocks port 80. (1 failed issuance attempts"},
		{"unknown keeps waiting", CertState{Found: true, Ready: "Unknown", RoutesPresent: true}, time.Minute, domain.StatusCertificateIssuing, false, "Waiting for the certificate"},
		{"past the deadline fails with the reason", CertState{Found: true, Ready: "False", Reason: "Failed", Message: "rate limited", RoutesPresent: true},
			7 * time.Hour, domain.StatusCertificateFailed, false, "rate limited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideCertificate(tc.st, rec, t0.Add(tc.waited), deadline, "letsencrypt.org")
			require.Equal(t, tc.to, d.To)
			require.Equal(t, tc.reapply, d.Reapply)
			require.Contains(t, d.Message, tc.msg)
			if d.To == domain.StatusCertificateIssuing {
				require.Positive(t, d.Snooze)
			}
		})
	}
}

func TestCAFailureMessage(t *testing.T) {
	t.Parallel()
	url := "http://portal.acme.com/.well-known/acme-challenge/tok"
	for _, tc := range []struct {
		failure CAFailure
		want    []string
	}{
		{CAFailure{Kind: "connection", Detail: "Connection refused", URL: url},
			[]string{"Let's Encrypt could not reach " + url + ": Connection refused.", "CNAME points to abc1234.portal.algapsa.com", "blocks port 80"}},
		{CAFailure{Kind: "connection", Detail: `Get "` + url + `": dial tcp 127.0.0.9:80: connect: connection refused`, URL: url},
			[]string{"could not reach " + url + ": dial tcp 127.0.0.9:80: connect: connection refused. Check"}},
		{CAFailure{Kind: "connection", Detail: "127.0.0.9: Fetching " + url + ": Connection refused", URL: url},
			[]string{"could not reach " + url + ": 127.0.0.9: Connection refused. Check"}},
		{CAFailure{Kind: "unauthorized", Detail: `The key authorization file from the server did not match this challenge`, URL: url},
			[]string{"fetched " + url + " but did not get this platform's answer", "no proxy or CDN"}},
		{CAFailure{Kind: "dns", Detail: "NXDOMAIN looking up A for portal.acme.com"},
			[]string{"could not look up portal.acme.com: NXDOMAIN", "DNS servers of portal.acme.com answer"}},
		{CAFailure{Kind: "caa", Detail: "CAA record for portal.acme.com prevents issuance"},
			[]string{"not allowed to issue certificates for portal.acme.com by its CAA records", "Add a CAA record allowing letsencrypt.org"}},
		{CAFailure{Kind: "rateLimited", Detail: "too many failed authorizations recently"},
			[]string{"limiting certificates for portal.acme.com", "Nothing needs changing"}},
		{CAFailure{Detail: "something new"},
			[]string{"Let's Encrypt refused to validate portal.acme.com: something new.", "CNAME points to"}},
		{CAFailure{Kind: "connection", Detail: strings.Repeat("x", 1000)},
			[]string{"could not reach http://portal.acme.com/.well-known/acme-challenge/…: xxx", "x….", "blocks port 80"}},
	} {
		msg := CAFailureMessage(rec, "letsencrypt.org", tc.failure)
		for _, w := range tc.want {
			require.Contains(t, msg, w)
		}
		require.Less(t, len(msg), 700, "the CA's detail is cut short: %s", msg)
	}
	require.Contains(t, CAFailureMessage(rec, "pki.goog", CAFailure{Kind: "connection"}), "The certificate authority (pki.goog) could not reach")
}

func TestDecideProbe(t *testing.T) {
	t.Parallel()
	ok := decideProbe(ProbeResult{OK: true}, rec, t0, time.Hour)
	require.Equal(t, domain.StatusActive, ok.To)
	retry := decideProbe(ProbeResult{Message: "certificate covers only other.example"}, rec, t0.Add(time.Minute), time.Hour)
	require.Equal(t, domain.StatusDeploying, retry.To)
	require.Contains(t, retry.Message, "certificate covers only other.example")
	require.Positive(t, retry.Snooze)
	failed := decideProbe(ProbeResult{Message: "connection refused"}, rec, t0.Add(2*time.Hour), time.Hour)
	require.Equal(t, domain.StatusCertificateFailed, failed.To)
}

func TestPlanSweep(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	old, older, oldest := now.Add(-2*time.Hour), now.Add(-3*time.Hour), now.Add(-4*time.Hour)
	objs := []ManagedObject{
		{Kind: "Certificate", Name: "live", DomainID: "live", CreatedAt: oldest},
		{Kind: "Certificate", Name: "b", DomainID: "gone", CreatedAt: old},
		{Kind: "Gateway", Name: "unlabelled", DomainID: "", CreatedAt: oldest},
		{Kind: "Gateway", Name: "young", DomainID: "gone", CreatedAt: now.Add(-time.Minute)},
		{Kind: "Gateway", Name: "no-timestamp", DomainID: "gone"},
		{Kind: "VirtualService", Name: "c", DomainID: "gone", CreatedAt: oldest},
		{Kind: "VirtualService", Name: "d", DomainID: "gone", CreatedAt: older},
	}
	keep := map[string]bool{"live": true}

	t.Run("OnlyOrphansOldEnough", func(t *testing.T) {
		plan := planSweep(objs, keep, now, SweepConfig{MinAge: time.Hour, MaxDeletes: 10})
		require.Equal(t, 7, plan.Listed)
		require.Equal(t, []string{"c", "d", "b"}, names(plan.Delete), "oldest first; live domains and unlabelled objects left alone")
		require.Equal(t, []string{"young", "no-timestamp"}, names(plan.TooYoung))
		require.Empty(t, plan.Deferred)
	})
	t.Run("CapPerRun", func(t *testing.T) {
		plan := planSweep(objs, keep, now, SweepConfig{MinAge: time.Hour, MaxDeletes: 2})
		require.Equal(t, []string{"c", "d"}, names(plan.Delete))
		require.Equal(t, []string{"b"}, names(plan.Deferred))
	})
	t.Run("ZeroCapDeletesNothing", func(t *testing.T) {
		plan := planSweep(objs, keep, now, SweepConfig{MinAge: time.Hour})
		require.Empty(t, plan.Delete)
		require.Len(t, plan.Deferred, 3)
	})
}

func names(objs []ManagedObject) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	require.Equal(t, 2*time.Second, retryDelay(1))
	require.Equal(t, 64*time.Second, retryDelay(6))
	require.Equal(t, 5*time.Minute, retryDelay(20))
}

// TestDecideCertificateKeepsTheCAsReason: while cert-manager tries again
// (Issuing is True again and the failed attempt's Challenge is gone), the
// CA's reason read at the failure stays in the tenant's message; once the
// certificate is Ready it is dropped.
func TestDecideCertificateKeepsTheCAsReason(t *testing.T) {
	t.Parallel()
	failure := &CAFailure{Kind: "connection", Detail: "connection refused", URL: "http://portal.acme.com/.well-known/acme-challenge/tok"}
	failed := CertState{Found: true, Ready: "False", Reason: "DoesNotExist", IssuingFailure: `order is in "invalid" state`,
		FailedIssuanceAttempts: 1, RoutesPresent: true, CAFailure: failure}
	details, err := json.Marshal(certDetails(failed))
	require.NoError(t, err)
	kept := rec
	kept.VerificationDetails = details

	retrying := CertState{Found: true, Ready: "False", Reason: "DoesNotExist", Message: "Issuing certificate as Secret does not exist",
		FailedIssuanceAttempts: 1, RoutesPresent: true}
	d := decideCertificate(retrying, kept, t0.Add(time.Hour), 6*time.Hour, "letsencrypt.org")
	require.Equal(t, domain.StatusCertificateIssuing, d.To)
	require.Contains(t, d.Message, "being requested again after 1 failed issuance attempts; the last one failed: Let's Encrypt could not reach "+failure.URL+": connection refused.")

	d = decideCertificate(retrying, rec, t0.Add(time.Hour), 6*time.Hour, "letsencrypt.org")
	require.NotContains(t, d.Message, "Let's Encrypt", "nothing kept, nothing shown")

	cleared := certDetails(CertState{Found: true, Ready: "True", RoutesPresent: true})
	require.Contains(t, cleared, caFailureKey)
	require.Nil(t, cleared[caFailureKey], "Ready drops the kept reason")
}
