package worker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/internal/worker"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// webhookReceiver records the alert webhook's POSTs.
type webhookReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []map[string]any
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	r := &webhookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var m map[string]any
		if req.Method != http.MethodPost || json.Unmarshal(body, &m) != nil {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, m)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// events returns the payloads received so far with the given event.
func (r *webhookReceiver) events(event string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, m := range r.got {
		if m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

func (r *webhookReceiver) waitFor(t *testing.T, event string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for len(r.events(event)) < n {
		require.True(t, time.Now().Before(deadline), "the webhook never received %d %s", n, event)
		time.Sleep(50 * time.Millisecond)
	}
	return r.events(event)
}

// runScan enqueues a stuck_scan job, which the running worker works with
// its own wiring, and waits for it to complete.
func runScan(t *testing.T, b *bundle, client *river.Client[pgx.Tx]) {
	t.Helper()
	res, err := client.Insert(b.ctx, jobs.StuckScanArgs{}, nil)
	require.NoError(t, err)
	deadline := time.Now().Add(waitTimeout)
	for {
		job, err := client.JobGet(b.ctx, res.Job.ID)
		require.NoError(t, err)
		if job.State == rivertype.JobStateCompleted {
			return
		}
		require.NotContains(t, []rivertype.JobState{rivertype.JobStateDiscarded, rivertype.JobStateCancelled}, job.State, "scan failed: %v", job.Errors)
		require.True(t, time.Now().Before(deadline), "scan job %d never completed (state %s, errors %v)", job.ID, job.State, job.Errors)
		time.Sleep(50 * time.Millisecond)
	}
}

func countJobs(t *testing.T, b *bundle, kind string) int {
	t.Helper()
	var n int
	require.NoError(t, b.schema.Pool.QueryRow(b.ctx, `SELECT count(*) FROM river_job WHERE kind = $1`, kind).Scan(&n))
	return n
}

func TestStuckCertificateAlert(t *testing.T) {
	t.Parallel()
	hook := newWebhookReceiver(t)
	// The schedule is far away: scans run when the test says, except the
	// one River runs when the worker becomes leader.
	b := setup(t, setupOpts{alerts: worker.AlertConfig{Cron: "@every 24h", WebhookURL: hook.srv.URL + "/services/T0/B0/s3cret"},
		uiURL: "https://ops.example.com/riverui"})
	insertOnly, err := river.NewClient(riverpgxv5.New(b.schema.Pool), &river.Config{})
	require.NoError(t, err)

	// The periodic job is registered and ran on start.
	deadline := time.Now().Add(waitTimeout)
	for countJobs(t, b, jobs.KindStuckScan) == 0 {
		require.True(t, time.Now().Before(deadline), "the periodic stuck_scan never ran on start")
		time.Sleep(50 * time.Millisecond)
	}

	rec := b.register(t, tenant, "portal.acme.test")
	b.waitFor(t, rec.ID, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	names, err := k8s.NamesFor(k8s.Domain{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain, CanonicalHost: rec.CanonicalHost}, b.cfg.Kube)
	require.NoError(t, err)

	// Play cert-manager: issuance failing, not Ready for two hours.
	since := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	lastFailure := since.Add(time.Hour)
	require.NoError(t, b.kube.UpdateCertificateStatus(b.ctx, names.CertNamespace, names.Certificate,
		func(cert *unstructured.Unstructured, status map[string]any) {
			status["conditions"] = []any{map[string]any{"type": "Ready", "status": "False", "reason": "Failed",
				"message": "The ACME server refused the HTTP-01 challenge (404)", "lastTransitionTime": since.Format(time.RFC3339),
				"observedGeneration": cert.GetGeneration()}}
			status["failedIssuanceAttempts"] = int64(2)
			status["lastFailureTime"] = lastFailure.Format(time.RFC3339)
		}))

	// Two scans racing (as after a leader change mid-scan): one alert.
	kube, err := k8s.NewClient(b.kube.Config)
	require.NoError(t, err)
	store, err := worker.NewAlertStore(b.schema.Pool, testLogger(t))
	require.NoError(t, err)
	racer := jobs.NewStuckScanWorker(&jobs.AlertDeps{Store: store, Logger: testLogger(t),
		Certificates: worker.Certificates{Client: kube, Namespace: b.cfg.Kube.CertNamespace, Installation: b.installation},
		WebhookURL:   hook.srv.URL + "/services/T0/B0/s3cret"})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := racer.Work(b.ctx, &river.Job[jobs.StuckScanArgs]{JobRow: &rivertype.JobRow{}}); err != nil {
				t.Errorf("scan: %v", err)
			}
		})
	}
	wg.Wait()
	// And the worker's own scan, twice.
	runScan(t, b, insertOnly)
	runScan(t, b, insertOnly)

	alerts, err := db.ListAlerts(b.ctx, b.schema.Pool, true)
	require.NoError(t, err)
	require.Len(t, alerts, 1, "one alert per incident")
	a := alerts[0]
	require.Equal(t, db.AlertCertificateNotReady, a.Kind)
	require.Equal(t, rec.ID, a.DomainID)
	require.Equal(t, string(tenant), a.Tenant)
	require.Equal(t, "Failed", a.Reason)
	require.Equal(t, 2, a.FailedIssuanceAttempts)
	require.NotNil(t, a.LastFailureTime)
	require.True(t, lastFailure.Equal(*a.LastFailureTime))
	require.NotNil(t, a.NotReadySince)
	require.True(t, since.Equal(*a.NotReadySince))
	require.Nil(t, a.ResolvedAt)
	require.Equal(t, 1, countJobs(t, b, jobs.KindAlertWebhook), "one webhook job per new alert")

	opened := hook.waitFor(t, jobs.AlertEventOpened, 1)
	require.Len(t, opened, 1)
	text, _ := opened[0]["text"].(string)
	require.Contains(t, text, ":rotating_light: Alert: certificate not Ready for portal.acme.test: Certificate "+
		names.CertNamespace+"/"+names.Certificate+" for portal.acme.test has not been Ready for 2h")
	require.Contains(t, text, "cert-manager reports Failed: The ACME server refused the HTTP-01 challenge (404)")
	require.Contains(t, text, "2 failed issuance attempts")
	require.Contains(t, text, "tenant "+string(tenant))
	// The operator goes from the alert to the domain's jobs in River UI.
	const jobsURL = "https://ops.example.com/riverui/jobs?tags=domain_portal_acme_test"
	require.Equal(t, jobsURL, opened[0]["jobs_url"])
	require.Contains(t, text, "Jobs: "+jobsURL)
	fields, _ := opened[0]["alert"].(map[string]any)
	require.Equal(t, rec.ID, fields["portal_domain_id"])
	require.Equal(t, string(tenant), fields["tenant_id"])
	require.Equal(t, db.AlertCertificateNotReady, fields["kind"])
	require.EqualValues(t, 2, fields["failed_issuance_attempts"])
	require.Equal(t, lastFailure.Format(time.RFC3339), fields["last_failure_time"])

	// cert-manager issues: the next scan resolves the alert, and says so.
	b.playCertManager(t, rec, true, "Ready", "Certificate is up to date and has not expired")
	runScan(t, b, insertOnly)
	alerts, err = db.ListAlerts(b.ctx, b.schema.Pool, true)
	require.NoError(t, err)
	require.Len(t, alerts, 1)
	require.NotNil(t, alerts[0].ResolvedAt)
	require.Contains(t, alerts[0].Resolution, "for portal.acme.test is Ready")
	resolved := hook.waitFor(t, jobs.AlertEventResolved, 1)
	require.Contains(t, resolved[0]["text"], ":white_check_mark: Resolved: certificate not Ready for portal.acme.test")

	runScan(t, b, insertOnly)
	require.Len(t, hook.events(jobs.AlertEventOpened), 1, "the webhook heard of the incident exactly once")
	require.Len(t, hook.events(jobs.AlertEventResolved), 1)
	open, err := db.ListAlerts(b.ctx, b.schema.Pool, false)
	require.NoError(t, err)
	require.Empty(t, open)
}

func TestAlertConfigFromEnv(t *testing.T) {
	t.Parallel()
	base := map[string]string{"PORTAL_DOMAIN_DNS_SERVERS": "127.0.0.1:53"}
	read := func(extra map[string]string) (worker.Config, error) {
		return worker.ConfigFromEnv(func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		})
	}

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := read(nil)
		require.NoError(t, err)
		require.Equal(t, worker.DefaultStuckCron, cfg.Alerts.Cron)
		from := time.Date(2026, 11, 26, 12, 1, 0, 0, time.UTC)
		require.Equal(t, time.Date(2026, 11, 26, 12, 5, 0, 0, time.UTC), cfg.Alerts.Schedule.Next(from))
		require.Equal(t, time.Hour, cfg.Alerts.StuckAfter)
		require.Equal(t, 2*time.Hour, cfg.Alerts.StatusAfter)
		require.Empty(t, cfg.Alerts.WebhookURL)
	})

	t.Run("set", func(t *testing.T) {
		t.Parallel()
		cfg, err := read(map[string]string{"PORTAL_DOMAIN_STUCK_CRON": "@every 90s", "PORTAL_DOMAIN_STUCK_AFTER": "30m",
			"PORTAL_DOMAIN_STUCK_STATUS_AFTER": "4h", "PORTAL_DOMAIN_ALERT_WEBHOOK_URL": "https://hooks.example.com/T0/B0/s3cret"})
		require.NoError(t, err)
		from := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
		require.Equal(t, from.Add(90*time.Second), cfg.Alerts.Schedule.Next(from))
		require.Equal(t, 30*time.Minute, cfg.Alerts.StuckAfter)
		require.Equal(t, 4*time.Hour, cfg.Alerts.StatusAfter)
		require.Equal(t, "https://hooks.example.com/T0/B0/s3cret", cfg.Alerts.WebhookURL)
	})

	for name, tc := range map[string]struct{ key, value string }{
		"bad cron":      {"PORTAL_DOMAIN_STUCK_CRON", "every five minutes"},
		"bad threshold": {"PORTAL_DOMAIN_STUCK_AFTER", "soon"},
		"negative":      {"PORTAL_DOMAIN_STUCK_STATUS_AFTER", "-1h"},
		"bad webhook":   {"PORTAL_DOMAIN_ALERT_WEBHOOK_URL", "hooks.example.com/s3cret"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := read(map[string]string{tc.key: tc.value})
			require.ErrorContains(t, err, tc.key)
			require.NotContains(t, err.Error(), "s3cret", "a webhook URL may hold a secret")
		})
	}
}
