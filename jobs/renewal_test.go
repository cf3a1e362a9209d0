package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

func TestDecideRenewalAlerts(t *testing.T) {
	t.Parallel()
	active := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusActive, StatusChangedAt: scanNow.Add(-48 * time.Hour)}
	issuing := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusCertificateIssuing, StatusChangedAt: scanNow.Add(-time.Hour)}
	healthy := &Certificate{Namespace: "msp", Name: "portal-domain-abc1234", DomainID: "d1", Ready: "True",
		NotAfter: scanNow.Add(60 * 24 * time.Hour), RenewalTime: scanNow.Add(30 * 24 * time.Hour)}
	failing := &Certificate{Namespace: "msp", Name: "portal-domain-abc1234", DomainID: "d1", Ready: "True",
		NotAfter: scanNow.Add(20 * 24 * time.Hour), RenewalTime: scanNow.Add(-10 * 24 * time.Hour),
		FailedIssuanceAttempts: 3, LastFailureTime: scanNow.Add(-time.Hour),
		IssuingFailure: `The certificate request has failed to complete and will be retried: order is in "invalid" state`}
	expiring := *failing
	expiring.NotAfter = scanNow.Add(13 * 24 * time.Hour)
	retrying := *failing
	retrying.IssuingFailure = "" // cert-manager's retry is under way: Issuing is True again
	const warn = 14 * 24 * time.Hour
	open := &Alert{ID: 9, DomainID: "d1"}

	t.Run("a failed renewal of an active domain opens one alert with cert-manager's reason", func(t *testing.T) {
		d := decideRenewalAlert(failing, active, nil, "")
		require.NotNil(t, d.Open)
		require.Equal(t, AlertCertificateRenewalFailed, d.Open.Kind)
		require.Equal(t, "Failed", d.Open.Reason)
		require.Contains(t, d.Open.Message, `cert-manager reports: The certificate request has failed to complete and will be retried: order is in "invalid" state.`)
		require.Contains(t, d.Open.Message, "3 failed issuance attempts, the last at 2026-11-26T11:00:00Z")
		require.Contains(t, d.Open.Message, "The domain stays active and serves its current certificate, valid until 2026-12-16T12:00:00Z.")
		require.Equal(t, 3, d.Open.FailedIssuanceAttempts)
		require.Equal(t, domain.StatusActive, d.Open.WhileStatus)
		require.Empty(t, decideRenewalAlert(failing, active, open, "letsencrypt.org"), "same incident: nothing new")
		require.Empty(t, decideRenewalAlert(&retrying, active, open, "letsencrypt.org"), "a retry under way is still the incident")
		require.NotNil(t, decideRenewalAlert(&retrying, active, nil, "letsencrypt.org").Open)
		withCA := *failing
		withCA.CAFailure = &CAFailure{Kind: "connection", Detail: "127.0.0.9: Connection refused", URL: "http://portal.acme.com/.well-known/acme-challenge/tok"}
		d = decideRenewalAlert(&withCA, active, nil, "letsencrypt.org")
		require.Contains(t, d.Open.Message, `order is in "invalid" state. Let's Encrypt could not reach http://portal.acme.com/.well-known/acme-challenge/tok: 127.0.0.9: Connection refused.`)
		require.Equal(t, *withCA.CAFailure, d.Open.Details["ca_failure"])
		justActive := *active
		justActive.StatusChangedAt = failing.LastFailureTime.Add(time.Minute)
		require.Empty(t, decideRenewalAlert(failing, &justActive, nil, "letsencrypt.org"), "failures before activation are the first issuance's")
	})
	t.Run("it resolves once cert-manager issues again, or the domain is no longer active", func(t *testing.T) {
		require.Empty(t, decideRenewalAlert(healthy, active, nil, "letsencrypt.org"))
		require.Contains(t, decideRenewalAlert(healthy, active, open, "letsencrypt.org").Resolve, "issued the certificate for portal.acme.com again; it is valid until 2027-01-25T12:00:00Z")
		require.Empty(t, decideRenewalAlert(failing, issuing, nil, "letsencrypt.org"), "the pipeline reports on a domain not yet active")
		require.Contains(t, decideRenewalAlert(failing, issuing, open, "letsencrypt.org").Resolve, "no longer active")
		require.Contains(t, decideRenewalAlert(nil, active, open, "letsencrypt.org").Resolve, "Certificate of portal.acme.com is gone")
		require.Contains(t, decideRenewalAlert(failing, nil, open, "letsencrypt.org").Resolve, "row was deleted")
	})
	t.Run("a certificate within the warning opens certificate_expiring, renewed resolves it", func(t *testing.T) {
		require.Empty(t, decideExpiryAlert(failing, active, nil, scanNow, warn), "20 days left")
		d := decideExpiryAlert(&expiring, active, nil, scanNow, warn)
		require.NotNil(t, d.Open)
		require.Equal(t, AlertCertificateExpiring, d.Open.Kind)
		require.Equal(t, "Failed", d.Open.Reason, "a failing renewal's reason")
		require.Contains(t, d.Open.Message, "expires at 2026-12-09T12:00:00Z, in 312h, and has not been renewed (cert-manager's renewal was due at 2026-11-16T12:00:00Z): cert-manager reports: ")
		require.Empty(t, decideExpiryAlert(&expiring, active, open, scanNow, warn))
		require.Contains(t, decideExpiryAlert(healthy, active, open, scanNow, warn).Resolve, "was renewed; it is valid until 2027-01-25T12:00:00Z")
		lapsed := *healthy
		lapsed.NotAfter = scanNow.Add(-time.Minute)
		require.Contains(t, decideExpiryAlert(&lapsed, active, nil, scanNow, warn).Open.Message, "expired at 2026-11-26T11:59:00Z")
		require.Equal(t, "Expiring", decideExpiryAlert(&lapsed, active, nil, scanNow, warn).Open.Reason)
		require.Empty(t, decideExpiryAlert(&expiring, issuing, nil, scanNow, warn))
		none := *healthy
		none.NotAfter = time.Time{}
		require.Empty(t, decideExpiryAlert(&none, active, nil, scanNow, warn), "no certificate issued yet")
	})
}

func TestDecideHeal(t *testing.T) {
	t.Parallel()
	rec := domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusActive}
	args := HealArgs{DomainID: "d1", Object: "Gateway", Change: ChangeEdited, Revision: "4"}
	require.False(t, decideHeal(rec, nil, args).Heal, "nothing differs (an undone edit, the worker's own apply): nothing to do")

	d := decideHeal(rec, []ObjectDrift{
		{Kind: "Gateway", Namespace: "istio-system", Name: "portal-domain-gw-abc1234", Change: ChangeEdited,
			Fields: []string{"spec.selector.istio"}, Managers: []string{"kubectl-edit"}},
		{Kind: "VirtualService", Namespace: "msp", Name: "portal-domain-vs-abc1234", Change: ChangeDeleted},
	}, args)
	require.True(t, d.Heal)
	require.Equal(t, "Outside the platform, the gateway was edited and the routing (VirtualService) was deleted for portal.acme.com; it has been restored.", d.Event.Message)
	require.NotContains(t, d.Event.Message, "istio-system", "names and namespaces are for operators, in the details")
	objects := d.Event.Details["objects"].([]any)
	require.Len(t, objects, 2)
	require.Equal(t, []string{"kubectl-edit"}, objects[0].(map[string]any)["changed_by"])
	require.Equal(t, "healed", d.Event.Details["event"])
}
