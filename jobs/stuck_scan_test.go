package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

var scanNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestStuckCutoffs(t *testing.T) {
	t.Parallel()
	cutoffs := StuckCutoffs(scanNow, AlertConfig{})
	ago := func(s domain.Status) time.Duration { return scanNow.Sub(cutoffs[s]) }
	require.Equal(t, 2*time.Hour, ago(domain.StatusPendingDNS), "pending_dns lasts seconds: its job's first run moves it on")
	require.Equal(t, 50*time.Hour, ago(domain.StatusVerifyingDNS), "the 48h DNS deadline, then 2h")
	require.Equal(t, 2*time.Hour, ago(domain.StatusPendingCertificate))
	require.Equal(t, 8*time.Hour, ago(domain.StatusCertificateIssuing), "the 6h certificate deadline, then 2h")
	require.Equal(t, 8*time.Hour, ago(domain.StatusDeploying))
	for _, s := range []domain.Status{domain.StatusActive, domain.StatusDisabled, domain.StatusDNSFailed, domain.StatusCertificateFailed} {
		require.NotContains(t, cutoffs, s, "terminal statuses are never stuck")
	}
	custom := StuckCutoffs(scanNow, AlertConfig{StatusAfter: 30 * time.Minute, DNSDeadline: time.Hour})
	require.Equal(t, 90*time.Minute, scanNow.Sub(custom[domain.StatusVerifyingDNS]))
}

func TestDecideDomainStuck(t *testing.T) {
	t.Parallel()
	row := func(s domain.Status, age time.Duration) *domain.Record {
		return &domain.Record{ID: "d1", Tenant: "t1", Domain: "portal.acme.com", Status: s,
			StatusMessage: "Checking the CNAME record.", StatusChangedAt: scanNow.Add(-age), Generation: 3}
	}
	openFor := func(s domain.Status, age time.Duration) *Alert {
		return &Alert{ID: 7, Kind: AlertDomainStuck, DomainID: "d1", Reason: string(s), NotReadySince: scanNow.Add(-age)}
	}
	for _, tc := range []struct {
		name    string
		row     *domain.Record
		open    *Alert
		opens   bool
		resolve string
	}{
		{"a fresh pending_dns is fine", row(domain.StatusPendingDNS, time.Hour), nil, false, ""},
		{"a pending_dns whose first check never ran is stuck", row(domain.StatusPendingDNS, 3*time.Hour), nil, true, ""},
		{"verifying_dns within the DNS deadline is a tenant fixing DNS", row(domain.StatusVerifyingDNS, 47*time.Hour), nil, false, ""},
		{"verifying_dns within the margin is still the job's to fail", row(domain.StatusVerifyingDNS, 49*time.Hour), nil, false, ""},
		{"verifying_dns past deadline and margin is stuck", row(domain.StatusVerifyingDNS, 51*time.Hour), nil, true, ""},
		{"pending_certificate past 2h is stuck", row(domain.StatusPendingCertificate, 2*time.Hour+time.Second), nil, true, ""},
		{"certificate_issuing within its deadline is the certificate alert's business", row(domain.StatusCertificateIssuing, 5*time.Hour), nil, false, ""},
		{"certificate_issuing past deadline and margin is stuck", row(domain.StatusCertificateIssuing, 9*time.Hour), nil, true, ""},
		{"deploying past deadline and margin is stuck", row(domain.StatusDeploying, 9*time.Hour), nil, true, ""},
		{"an old active domain is not stuck", row(domain.StatusActive, 900*time.Hour), nil, false, ""},
		{"an old failed domain is not stuck", row(domain.StatusDNSFailed, 900*time.Hour), nil, false, ""},
		{"the same incident is alerted once", row(domain.StatusPendingCertificate, 5*time.Hour), openFor(domain.StatusPendingCertificate, 5*time.Hour), false, ""},
		{"moving on resolves", row(domain.StatusCertificateIssuing, time.Minute), openFor(domain.StatusPendingCertificate, 5*time.Hour), false, "moved on from pending_certificate to certificate_issuing"},
		{"moving to a terminal status resolves", row(domain.StatusActive, time.Minute), openFor(domain.StatusDeploying, 9*time.Hour), false, "moved on from deploying to active"},
		{"a restart into the same status is a new incident", row(domain.StatusPendingDNS, 3*time.Hour), openFor(domain.StatusPendingDNS, 30*time.Hour), true, "moved on from pending_dns to pending_dns"},
		{"a deleted row resolves", nil, openFor(domain.StatusPendingDNS, 3*time.Hour), false, "row was deleted"},
		{"a deleted row without an alert is nothing", nil, nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := decideDomainStuck(tc.row, tc.open, scanNow, AlertConfig{})
			if tc.resolve == "" {
				require.Empty(t, d.Resolve)
			} else {
				require.Contains(t, d.Resolve, tc.resolve)
			}
			require.Equal(t, tc.opens, d.Open != nil, "opens")
			if d.Open != nil {
				require.Equal(t, AlertDomainStuck, d.Open.Kind)
				require.Equal(t, tc.row.Status, d.Open.WhileStatus, "opened only while the row is still there")
				require.Equal(t, tc.row.StatusChangedAt, d.Open.WhileSince)
				require.Equal(t, string(tc.row.Status), d.Open.Reason)
				require.Contains(t, d.Open.Message, "portal.acme.com has been "+string(tc.row.Status)+" for ")
				require.Contains(t, d.Open.Message, "Last status message: Checking the CNAME record.")
			}
		})
	}
}

func TestDecideCertificateAlert(t *testing.T) {
	t.Parallel()
	const after = time.Hour
	issuing := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusCertificateIssuing}
	failed := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusCertificateFailed}
	active := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusActive}
	disabled := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusDisabled}
	withCAReason := &domain.Record{ID: "d1", Domain: "portal.acme.com", Status: domain.StatusCertificateIssuing,
		VerificationDetails: []byte(`{"last_ca_failure": {"kind": "dns", "detail": "NXDOMAIN looking up A for portal.acme.com"}}`)}
	cert := func(ready string, transitioned, created time.Duration, mutate ...func(*Certificate)) *Certificate {
		c := &Certificate{Namespace: "msp", Name: "portal-domain-abc1234", DomainID: "d1", Ready: ready,
			CreatedAt: scanNow.Add(-created)}
		if transitioned > 0 {
			c.LastTransitionTime = scanNow.Add(-transitioned)
		}
		for _, m := range mutate {
			m(c)
		}
		return c
	}
	failing := func(c *Certificate) {
		c.Reason, c.Message = "Failed", "ACME challenge failed: 404 at /.well-known/acme-challenge/x"
		c.FailedIssuanceAttempts, c.LastFailureTime = 3, scanNow.Add(-20*time.Minute)
	}
	open := &Alert{ID: 9, Kind: AlertCertificateNotReady, DomainID: "d1", NotReadySince: scanNow.Add(-3 * time.Hour)}
	for _, tc := range []struct {
		name      string
		cert      *Certificate
		row       *domain.Record
		open      *Alert
		opens     bool
		since     time.Duration // expected not_ready_since, ago
		resolve   string
		inMessage string
	}{
		{"not ready for under an hour is patience", cert("False", 59*time.Minute, 2*time.Hour, failing), issuing, nil, false, 0, "", ""},
		{"exactly an hour is not over an hour", cert("False", time.Hour, 2*time.Hour, failing), issuing, nil, false, 0, "", ""},
		{"False for over an hour opens", cert("False", 2*time.Hour, 3*time.Hour, failing), issuing, nil, true, 2 * time.Hour, "",
			"cert-manager reports Failed: ACME challenge failed"},
		{"Unknown counts as not Ready", cert("Unknown", 2*time.Hour, 3*time.Hour), issuing, nil, true, 2 * time.Hour, "", "Ready condition is Unknown"},
		{"no condition counts from creation", cert("", 0, 90*time.Minute), issuing, nil, true, 90 * time.Minute, "",
			"cert-manager has not reported on it"},
		{"a failed domain whose certificate is still not Ready opens too", cert("False", 7*time.Hour, 7*time.Hour, failing), failed, nil, true, 7 * time.Hour, "", "3 failed issuance attempts"},
		{"an active domain whose renewal fails opens too", cert("False", 2*time.Hour, 900*time.Hour, failing), active, nil, true, 2 * time.Hour, "", "Failed"},
		{"the CA's reason kept on the row goes into the alert", cert("False", 2*time.Hour, 3*time.Hour, failing), withCAReason, nil, true, 2 * time.Hour, "",
			"The CA's reason (dns): NXDOMAIN looking up A for portal.acme.com"},
		{"one alert per incident", cert("False", 4*time.Hour, 5*time.Hour, failing), issuing, open, false, 0, "", ""},
		{"Ready resolves", cert("True", time.Minute, 5*time.Hour), active, open, false, 0, "is Ready", ""},
		{"Ready without an alert is nothing", cert("True", time.Minute, 5*time.Hour), active, nil, false, 0, "", ""},
		{"disabling resolves", cert("False", 4*time.Hour, 5*time.Hour, failing), disabled, open, false, 0, "was disabled", ""},
		{"a disabled domain never opens", cert("False", 4*time.Hour, 5*time.Hour, failing), disabled, nil, false, 0, "", ""},
		{"a deleted row resolves", cert("False", 4*time.Hour, 5*time.Hour, failing), nil, open, false, 0, "row was deleted", ""},
		{"an orphaned certificate never opens", cert("False", 4*time.Hour, 5*time.Hour, failing), nil, nil, false, 0, "", ""},
		{"a deleted Certificate resolves", nil, issuing, open, false, 0, "Certificate of portal.acme.com is gone", ""},
		{"a stale condition neither opens", cert("False", 4*time.Hour, 5*time.Hour, func(c *Certificate) { c.Stale = true }), issuing, nil, false, 0, "", ""},
		{"nor resolves", cert("True", 4*time.Hour, 5*time.Hour, func(c *Certificate) { c.Stale = true }), issuing, open, false, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := decideCertificateAlert(tc.cert, tc.row, tc.open, scanNow, after)
			if tc.resolve == "" {
				require.Empty(t, d.Resolve)
			} else {
				require.Contains(t, d.Resolve, tc.resolve)
			}
			require.Equal(t, tc.opens, d.Open != nil, "opens")
			if d.Open == nil {
				return
			}
			require.Equal(t, AlertCertificateNotReady, d.Open.Kind)
			require.Equal(t, scanNow.Add(-tc.since), d.Open.NotReadySince)
			require.Equal(t, tc.cert.FailedIssuanceAttempts, d.Open.FailedIssuanceAttempts)
			require.Equal(t, tc.cert.LastFailureTime, d.Open.LastFailureTime)
			require.Contains(t, d.Open.Message, "Certificate msp/portal-domain-abc1234 for portal.acme.com has not been Ready for ")
			require.Contains(t, d.Open.Message, tc.inMessage)
			require.Empty(t, d.Open.WhileStatus, "a certificate alert does not depend on the domain's status")
		})
	}
}

func TestAlertText(t *testing.T) {
	t.Parallel()
	a := Alert{ID: 4, Kind: AlertCertificateNotReady, DomainID: "d1", Tenant: "t1", Domain: "portal.acme.com",
		Message: "Certificate msp/x for portal.acme.com has not been Ready for 2h.", Resolution: "Certificate msp/x for portal.acme.com is Ready."}
	require.Equal(t, ":rotating_light: Alert: certificate not Ready for portal.acme.com: Certificate msp/x for portal.acme.com has not been Ready for 2h. (tenant t1, portal domain d1, alert 4)",
		alertText(AlertEventOpened, a))
	require.Equal(t, ":white_check_mark: Resolved: certificate not Ready for portal.acme.com: Certificate msp/x for portal.acme.com is Ready. (tenant t1, portal domain d1, alert 4)",
		alertText(AlertEventResolved, a))
	a.Kind = AlertDomainStuck
	require.Contains(t, alertText(AlertEventOpened, a), "Alert: domain stuck for portal.acme.com")
}

func TestRoughDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		30 * time.Second:                          "under a minute",
		45*time.Minute + 10*time.Second:           "45m",
		2 * time.Hour:                             "2h",
		2*time.Hour + 5*time.Minute + time.Second: "2h5m",
		50 * time.Hour:                            "50h",
	} {
		require.Equal(t, want, roughDuration(d))
	}
}

// fakeAlertStore is an in-memory AlertStore with the same once-per-incident
// rule as the SQL.
type fakeAlertStore struct {
	mu              sync.Mutex
	rows            map[string]domain.Record
	alerts          []Alert
	notified        []string
	StuckDomainsErr error
}

var _ AlertStore = (*fakeAlertStore)(nil)

func (f *fakeAlertStore) OpenAlerts(context.Context) ([]Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Alert
	for _, a := range f.alerts {
		if a.ResolvedAt.IsZero() {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *fakeAlertStore) StuckDomains(_ context.Context, cutoffs map[domain.Status]time.Time, limit int) ([]domain.Record, error) {
	if f.StuckDomainsErr != nil {
		return nil, f.StuckDomainsErr
	}
	var out []domain.Record
	for _, r := range f.rows {
		if c, ok := cutoffs[r.Status]; ok && r.StatusChangedAt.Before(c) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeAlertStore) Domains(_ context.Context, ids []string) (map[string]domain.Record, error) {
	out := map[string]domain.Record{}
	for _, id := range ids {
		if r, ok := f.rows[id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

func (f *fakeAlertStore) OpenAlert(_ context.Context, o AlertOpening, notify bool) (Alert, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rows[o.DomainID]
	if !ok || r.Status == domain.StatusDisabled {
		return Alert{}, false, nil
	}
	for _, a := range f.alerts {
		if a.DomainID == o.DomainID && a.Kind == o.Kind && a.ResolvedAt.IsZero() {
			return Alert{}, false, nil
		}
	}
	a := Alert{ID: int64(len(f.alerts) + 1), Kind: o.Kind, DomainID: o.DomainID, Tenant: string(r.Tenant), Domain: r.Domain,
		Reason: o.Reason, Message: o.Message, NotReadySince: o.NotReadySince, OpenedAt: scanNow}
	f.alerts = append(f.alerts, a)
	if notify {
		f.notified = append(f.notified, AlertEventOpened+" "+o.Kind+" "+o.DomainID)
	}
	return a, true, nil
}

func (f *fakeAlertStore) ResolveAlert(_ context.Context, id int64, resolution string, notify bool) (Alert, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.alerts {
		if a.ID == id && a.ResolvedAt.IsZero() {
			f.alerts[i].ResolvedAt, f.alerts[i].Resolution = scanNow, resolution
			if notify {
				f.notified = append(f.notified, AlertEventResolved+" "+a.Kind+" "+a.DomainID)
			}
			return f.alerts[i], true, nil
		}
	}
	return Alert{}, false, nil
}

type fakeCertificates struct {
	ListFunc func(ctx context.Context) ([]Certificate, error)
}

func (f fakeCertificates) ManagedCertificates(ctx context.Context) ([]Certificate, error) {
	return f.ListFunc(ctx)
}

func TestStuckScanWorker(t *testing.T) {
	t.Parallel()

	type bundle struct {
		store  *fakeAlertStore
		certs  []Certificate
		worker *StuckScanWorker
	}
	setup := func(t *testing.T) *bundle {
		t.Helper()
		b := &bundle{store: &fakeAlertStore{rows: map[string]domain.Record{
			"stuck": {ID: "stuck", Tenant: "t1", Domain: "stuck.acme.com", Status: domain.StatusPendingCertificate, StatusChangedAt: scanNow.Add(-3 * time.Hour)},
			"cert":  {ID: "cert", Tenant: "t2", Domain: "cert.acme.com", Status: domain.StatusCertificateIssuing, StatusChangedAt: scanNow.Add(-3 * time.Hour)},
			"fine":  {ID: "fine", Tenant: "t3", Domain: "fine.acme.com", Status: domain.StatusActive, StatusChangedAt: scanNow.Add(-300 * time.Hour)},
		}}}
		b.certs = []Certificate{
			{Namespace: "msp", Name: "c-cert", DomainID: "cert", Ready: "False", Reason: "Failed", LastTransitionTime: scanNow.Add(-2 * time.Hour)},
			{Namespace: "msp", Name: "c-fine", DomainID: "fine", Ready: "True", LastTransitionTime: scanNow.Add(-200 * time.Hour)},
			{Namespace: "msp", Name: "c-orphan", DomainID: "gone", Ready: "False", LastTransitionTime: scanNow.Add(-200 * time.Hour)},
		}
		b.worker = NewStuckScanWorker(&AlertDeps{Store: b.store, WebhookURL: "http://hook.invalid/",
			Certificates: fakeCertificates{ListFunc: func(context.Context) ([]Certificate, error) { return b.certs, nil }},
			Now:          func() time.Time { return scanNow }})
		return b
	}
	work := func(t *testing.T, w *StuckScanWorker) error {
		t.Helper()
		return w.Work(context.Background(), &river.Job[StuckScanArgs]{JobRow: &rivertype.JobRow{}})
	}

	t.Run("opens one alert per incident and notifies once", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, work(t, b.worker))
		require.NoError(t, work(t, b.worker))
		require.Equal(t, []string{"alert_opened domain_stuck stuck", "alert_opened certificate_not_ready cert"}, b.store.notified)
		require.Len(t, b.store.alerts, 2)
	})

	t.Run("resolves when the certificate is Ready and the domain moves on", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, work(t, b.worker))
		b.certs[0].Ready, b.certs[0].LastTransitionTime = "True", scanNow
		stuck := b.store.rows["stuck"]
		stuck.Status, stuck.StatusChangedAt = domain.StatusCertificateIssuing, scanNow
		b.store.rows["stuck"] = stuck
		require.NoError(t, work(t, b.worker))
		require.Equal(t, []string{"alert_opened domain_stuck stuck", "alert_opened certificate_not_ready cert",
			"alert_resolved domain_stuck stuck", "alert_resolved certificate_not_ready cert"}, b.store.notified)
		open, err := b.store.OpenAlerts(context.Background())
		require.NoError(t, err)
		require.Empty(t, open)
	})

	t.Run("a new alert is logged at ERROR with the tenant and domain, once", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var buf bytes.Buffer
		b.worker.deps.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
		require.NoError(t, work(t, b.worker))
		require.NoError(t, work(t, b.worker))
		var errorLines []map[string]any
		for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
			var m map[string]any
			require.NoError(t, json.Unmarshal(line, &m))
			if m["level"] == "ERROR" {
				errorLines = append(errorLines, m)
			}
		}
		require.Len(t, errorLines, 2)
		require.Equal(t, "alert opened", errorLines[1]["msg"])
		require.Equal(t, "t2", errorLines[1]["tenant_id"])
		require.Equal(t, "cert", errorLines[1]["portal_domain_id"])
		require.Equal(t, AlertCertificateNotReady, errorLines[1]["alert_kind"])
	})

	t.Run("a failing part does not stop the other", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.store.StuckDomainsErr = errors.New("database on fire")
		err := work(t, b.worker)
		require.ErrorContains(t, err, "database on fire")
		require.Equal(t, []string{"alert_opened certificate_not_ready cert"}, b.store.notified)
	})

	t.Run("without a webhook nothing is enqueued", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.worker.deps.WebhookURL = ""
		require.NoError(t, work(t, b.worker))
		require.Len(t, b.store.alerts, 2)
		require.Empty(t, b.store.notified)
	})

	t.Run("without a cluster certificate alerts are left alone", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, work(t, b.worker))
		b.worker.deps.Certificates = nil
		b.certs = nil
		require.NoError(t, work(t, b.worker))
		open, err := b.store.OpenAlerts(context.Background())
		require.NoError(t, err)
		require.Len(t, open, 2)
	})
}

func TestAlertWebhookWorker(t *testing.T) {
	t.Parallel()
	alert := Alert{ID: 4, Kind: AlertCertificateNotReady, DomainID: "d1", Tenant: "t1", Domain: "portal.acme.com",
		Reason: "Failed", Message: "Certificate msp/x for portal.acme.com has not been Ready for 2h.", FailedIssuanceAttempts: 3,
		NotReadySince: scanNow.Add(-2 * time.Hour), OpenedAt: scanNow}
	job := &river.Job[AlertWebhookArgs]{JobRow: &rivertype.JobRow{Attempt: 1}, Args: NewAlertWebhookArgs(AlertEventOpened, alert)}

	receiver := func(t *testing.T, status int) (*httptest.Server, chan map[string]any) {
		got := make(chan map[string]any, 10)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "bad payload", http.StatusBadRequest)
				return
			}
			got <- m
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv, got
	}

	t.Run("posts the text and the structured alert", func(t *testing.T) {
		t.Parallel()
		srv, got := receiver(t, http.StatusOK)
		w := &AlertWebhookWorker{deps: &AlertDeps{WebhookURL: srv.URL + "/services/T000/B000/s3cret", Logger: discard()}}
		require.NoError(t, w.Work(context.Background(), job))
		m := <-got
		require.Equal(t, alertText(AlertEventOpened, alert), m["text"])
		require.Equal(t, AlertEventOpened, m["event"])
		fields := m["alert"].(map[string]any)
		require.Equal(t, "t1", fields["tenant_id"])
		require.Equal(t, "d1", fields["portal_domain_id"])
		require.EqualValues(t, 3, fields["failed_issuance_attempts"])
		require.Equal(t, "2026-11-26T10:00:00Z", fields["not_ready_since"])
		require.NotContains(t, fields, "resolved_at")
	})

	t.Run("a non-2xx answer fails the attempt so River retries", func(t *testing.T) {
		t.Parallel()
		srv, _ := receiver(t, http.StatusServiceUnavailable)
		w := &AlertWebhookWorker{deps: &AlertDeps{WebhookURL: srv.URL + "/hook?token=s3cret", Logger: discard()}}
		err := w.Work(context.Background(), job)
		require.ErrorContains(t, err, "503")
		require.NotContains(t, err.Error(), "s3cret")
	})

	t.Run("a network error never carries the URL", func(t *testing.T) {
		t.Parallel()
		srv, _ := receiver(t, http.StatusOK)
		srv.Close()
		w := &AlertWebhookWorker{deps: &AlertDeps{WebhookURL: srv.URL + "/services/T000/B000/s3cret?key=s3cret", Logger: discard()}}
		err := w.Work(context.Background(), job)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cret")
		require.Contains(t, err.Error(), "post alert webhook")
	})

	t.Run("an unusable URL is cancelled without naming it", func(t *testing.T) {
		t.Parallel()
		w := &AlertWebhookWorker{deps: &AlertDeps{WebhookURL: "http://exa mple.com/s3cret", Logger: discard()}}
		err := w.Work(context.Background(), job)
		var cancel *rivertype.JobCancelError
		require.ErrorAs(t, err, &cancel)
		require.NotContains(t, err.Error(), "s3cret")
	})

	t.Run("no URL configured anymore: dropped", func(t *testing.T) {
		t.Parallel()
		w := &AlertWebhookWorker{deps: &AlertDeps{Logger: discard()}}
		require.NoError(t, w.Work(context.Background(), job))
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestAlertWebhookArgsAreUniquePerAlertAndEvent(t *testing.T) {
	t.Parallel()
	opts := AlertWebhookArgs{}.InsertOpts()
	require.Equal(t, domain.QueueMaintenance, opts.Queue)
	require.True(t, opts.UniqueOpts.ByArgs)
	raw, err := json.Marshal(NewAlertWebhookArgs(AlertEventResolved, Alert{ID: 5}))
	require.NoError(t, err)
	require.True(t, strings.Contains(string(raw), `"event":"alert_resolved"`) && strings.Contains(string(raw), `"alert_id":5`))
}
