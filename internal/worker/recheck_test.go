package worker_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/telemetry"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
)

const liveMessage = "Your domain is live and protected by HTTPS."

// waitForRecheck polls the domain's re-check row until cond holds.
func (b *bundle) waitForRecheck(t *testing.T, id, what string, cond func(db.Recheck) bool) db.Recheck {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var r db.Recheck
	for time.Now().Before(deadline) {
		var err error
		r, err = db.GetRecheck(b.ctx, b.schema.Pool, id)
		if err == nil && cond(r) {
			return r
		}
		if !errors.Is(err, db.ErrNotFound) {
			require.NoError(t, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("re-check never %s; last %+v", what, r)
	return r
}

// gauge reads one sample of a scrape-time gauge from the worker's registry.
func (b *bundle) gauge(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := b.worker.Registry().Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" || hasLabel(m, label, value) {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s=%q} in the worker's metrics", name, label, value)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestActiveRecheck: an active domain whose CNAME is removed stays active,
// its message says what was seen and what to do, one alert opens after the
// grace period and is resolved once the CNAME is back, with the live
// message restored.
func TestActiveRecheck(t *testing.T) {
	t.Parallel()
	hook := newWebhookReceiver(t)
	const grace = 2 * time.Second
	b := setup(t, setupOpts{recheck: jobs.RecheckConfig{Interval: time.Second, Grace: grace},
		alerts: worker.AlertConfig{Cron: "@every 24h", WebhookURL: hook.srv.URL + "/hooks/s3cret"}})
	rec := b.register(t, tenant, "portal.acme.test")
	b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
	active := b.waitFor(t, rec.ID, "became active", func(r domain.Record) bool { return r.Status == domain.StatusActive })

	// The scheduler finds the new active domain and checks it: all well,
	// and the expiry of the certificate HTTPS serves is recorded.
	healthy := b.waitForRecheck(t, rec.ID, "checked the live domain", func(r db.Recheck) bool { return r.Checks >= 1 })
	require.Equal(t, jobs.RecheckOK, healthy.LastOutcome)
	require.Empty(t, healthy.ProblemKind)
	require.NotNil(t, healthy.ServedNotAfter)
	require.WithinDuration(t, time.Now().Add(24*time.Hour), *healthy.ServedNotAfter, time.Hour, "the test gateway's certificate")
	require.Equal(t, active.Generation, healthy.Generation)
	row, err := db.GetDomain(b.ctx, b.schema.Pool, rec.ID)
	require.NoError(t, err)
	require.Equal(t, liveMessage, row.StatusMessage)
	require.Equal(t, active.UpdatedAt, row.UpdatedAt, "a healthy check does not write the domain's row")

	// The tenant moves DNS providers and the CNAME is gone.
	b.dns.Remove("portal.acme.test", "CNAME")
	drifted := b.waitFor(t, rec.ID, "told the tenant about the missing CNAME", func(r domain.Record) bool {
		return r.StatusMessage != liveMessage
	})
	require.Equal(t, domain.StatusActive, drifted.Status, "AlgaPSA's enum has no state for it: the domain stays active")
	require.Equal(t, active.Generation, drifted.Generation, "nothing restarted")
	require.Contains(t, drifted.StatusMessage, "No DNS record found for portal.acme.test (NXDOMAIN)")
	require.Contains(t, drifted.StatusMessage, "Add a CNAME record for portal.acme.test pointing to abc1234.portal.test")
	var details struct {
		LiveCheck map[string]any `json:"live_check"`
	}
	require.NoError(t, json.Unmarshal(drifted.VerificationDetails, &details))
	require.Equal(t, jobs.RecheckDNSMismatch, details.LiveCheck["outcome"])
	require.Equal(t, jobs.AlertDNSDrift, details.LiveCheck["problem"])
	require.Equal(t, "abc1234.portal.test", details.LiveCheck["expected_cname"])
	require.NotNil(t, details.LiveCheck["observation"], "what the resolver saw")

	// After the grace period, one alert.
	opened := hook.waitFor(t, jobs.AlertEventOpened, 1)
	alerts, err := db.ListAlerts(b.ctx, b.schema.Pool, true)
	require.NoError(t, err)
	require.Len(t, alerts, 1)
	a := alerts[0]
	require.Equal(t, db.AlertDNSDrift, a.Kind)
	require.Equal(t, rec.ID, a.DomainID)
	require.Nil(t, a.ResolvedAt)
	require.NotNil(t, a.NotReadySince)
	require.GreaterOrEqual(t, a.OpenedAt.Sub(*a.NotReadySince), grace, "opened only once the problem outlasted the grace period")
	require.Contains(t, a.Message, "no longer leads to abc1234.portal.test")
	events, err := db.ListEvents(b.ctx, b.schema.Pool, rec.ID)
	require.NoError(t, err)
	var toldAt time.Time
	for _, e := range events {
		if e.Message == drifted.StatusMessage {
			toldAt, err = time.Parse(time.RFC3339Nano, e.CreatedAt)
			require.NoError(t, err)
		}
	}
	require.False(t, toldAt.IsZero(), "the drift message is in the history")
	require.True(t, toldAt.Before(a.OpenedAt), "the tenant was told before the alert opened")
	require.Contains(t, opened[0]["text"], "Alert: DNS no longer points here for portal.acme.test")
	require.Equal(t, 1.0, b.gauge(t, telemetry.MetricRecheckProblems, "kind", "dns_drift"))

	// More checks of the same incident open nothing more and leave the
	// message as it was.
	during := b.waitForRecheck(t, rec.ID, "checked twice more", func(r db.Recheck) bool {
		return r.Checks >= healthy.Checks+3 && r.ProblemKind == db.AlertDNSDrift
	})
	require.True(t, during.ProblemSince.Equal(*a.NotReadySince), "one incident")
	alerts, err = db.ListAlerts(b.ctx, b.schema.Pool, true)
	require.NoError(t, err)
	require.Len(t, alerts, 1, "one alert per incident")
	row, err = db.GetDomain(b.ctx, b.schema.Pool, rec.ID)
	require.NoError(t, err)
	require.Equal(t, drifted.StatusMessage, row.StatusMessage)
	require.Equal(t, drifted.UpdatedAt, row.UpdatedAt, "the same finding is not written again")

	// The tenant restores the record.
	b.dns.Set("portal.acme.test. 300 IN CNAME abc1234.portal.test.")
	fixed := b.waitFor(t, rec.ID, "went back to the live message", func(r domain.Record) bool { return r.StatusMessage == liveMessage })
	require.Equal(t, domain.StatusActive, fixed.Status)
	require.Equal(t, active.Generation, fixed.Generation)
	resolved := hook.waitFor(t, jobs.AlertEventResolved, 1)
	require.Contains(t, resolved[0]["text"], "Resolved: DNS no longer points here for portal.acme.test")
	alerts, err = db.ListAlerts(b.ctx, b.schema.Pool, true)
	require.NoError(t, err)
	require.Len(t, alerts, 1)
	require.NotNil(t, alerts[0].ResolvedAt)
	require.Contains(t, alerts[0].Resolution, "portal.acme.test points to abc1234.portal.test")
	after := b.waitForRecheck(t, rec.ID, "recorded the recovery", func(r db.Recheck) bool { return r.ProblemKind == "" })
	require.Equal(t, jobs.RecheckOK, after.LastOutcome)
	require.Equal(t, 0.0, b.gauge(t, telemetry.MetricRecheckProblems, "kind", "dns_drift"))
	require.Len(t, hook.events(jobs.AlertEventOpened), 1, "the webhook heard of the incident once")
	require.Equal(t, []domain.Status{domain.StatusPendingDNS, domain.StatusPendingCertificate, domain.StatusCertificateIssuing,
		domain.StatusDeploying, domain.StatusActive}, statuses(t, b, rec.ID), "never left active")

	// Disabled: the checks stop, and the schedule row goes when it comes
	// due.
	require.NoError(t, db.InTx(b.ctx, b.schema.Pool, func(tx pgx.Tx) error {
		_, err := db.Disable(b.ctx, tx, tenant, rec.ID)
		return err
	}))
	b.waitForDeleted(t, rec.ID)
	deadline := time.Now().Add(waitTimeout)
	for {
		_, err := db.GetRecheck(b.ctx, b.schema.Pool, rec.ID)
		if errors.Is(err, db.ErrNotFound) {
			break
		}
		require.NoError(t, err)
		require.True(t, time.Now().Before(deadline), "the re-check row of a deleted domain was never dropped")
		time.Sleep(50 * time.Millisecond)
	}
}
