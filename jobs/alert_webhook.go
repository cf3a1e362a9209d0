package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// KindAlertWebhook posts one alert event to PORTAL_DOMAIN_ALERT_WEBHOOK_URL.
const KindAlertWebhook = "alert_webhook"

// Webhook events.
const (
	AlertEventOpened   = "alert_opened"
	AlertEventResolved = "alert_resolved"
)

// webhookAttempts: River's backoff (attempt⁴ seconds) spreads 12 attempts
// over about half a day, long enough to ride out a chat outage.
const webhookAttempts = 12

// AlertWebhookArgs carries the alert as it was when the event happened, so
// the message says what the scan saw even if it is delivered late.
type AlertWebhookArgs struct {
	Event   string `json:"event" river:"unique"`
	AlertID int64  `json:"alert_id" river:"unique"`
	Alert   Alert  `json:"alert"`
}

func (AlertWebhookArgs) Kind() string { return KindAlertWebhook }

// InsertOpts: the maintenance queue, unique per alert and event, so even an
// enqueue repeated by mistake posts once.
func (AlertWebhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: domain.QueueMaintenance, MaxAttempts: webhookAttempts,
		UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// NewAlertWebhookArgs builds the job for an event about a.
func NewAlertWebhookArgs(event string, a Alert) AlertWebhookArgs {
	return AlertWebhookArgs{Event: event, AlertID: a.ID, Alert: a}
}

// webhookPayload is what the webhook receives: a Slack-compatible text
// (Slack ignores the other fields) plus the structured alert for anything
// that wants to route or deduplicate on it.
type webhookPayload struct {
	Text    string `json:"text"`
	Event   string `json:"event"`
	Alert   Alert  `json:"alert"`
	JobsURL string `json:"jobs_url,omitempty"`
}

// alertText is the one-line human message of an event.
func alertText(event string, a Alert) string {
	who := fmt.Sprintf("(tenant %s, portal domain %s, alert %d)", a.Tenant, a.DomainID, a.ID)
	title := map[string]string{AlertCertificateNotReady: "certificate not Ready", AlertDomainStuck: "domain stuck",
		AlertDNSDrift: "DNS no longer points here", AlertHTTPSFailed: "HTTPS check failing"}[a.Kind]
	if title == "" {
		title = a.Kind
	}
	if event == AlertEventResolved {
		return fmt.Sprintf(":white_check_mark: Resolved: %s for %s: %s %s", title, a.Domain, a.Resolution, who)
	}
	return fmt.Sprintf(":rotating_light: Alert: %s for %s: %s %s", title, a.Domain, a.Message, who)
}

// AlertWebhookWorker posts alert events. A non-2xx answer or a network
// error fails the attempt and River retries with backoff; the scan that
// enqueued the job never waits for it.
type AlertWebhookWorker struct {
	river.WorkerDefaults[AlertWebhookArgs]
	deps *AlertDeps
}

// Timeout bounds one attempt.
func (w *AlertWebhookWorker) Timeout(*river.Job[AlertWebhookArgs]) time.Duration {
	return 30 * time.Second
}

// Work posts the event once.
func (w *AlertWebhookWorker) Work(ctx context.Context, job *river.Job[AlertWebhookArgs]) error {
	a := job.Args.Alert
	logger := w.deps.Logger.With("job_kind", KindAlertWebhook, "event", job.Args.Event, "alert_id", a.ID,
		"alert_kind", a.Kind, "tenant_id", a.Tenant, "portal_domain_id", a.DomainID)
	if w.deps.WebhookURL == "" {
		logger.Warn("alert webhook no longer configured (PORTAL_DOMAIN_ALERT_WEBHOOK_URL unset); event not sent")
		return nil
	}
	payload := webhookPayload{Text: alertText(job.Args.Event, a), Event: job.Args.Event, Alert: a,
		JobsURL: domain.JobsURL(w.deps.UIURL, a.Domain, domain.TenantID(a.Tenant))}
	if payload.JobsURL != "" {
		payload.Text += " Jobs: " + payload.JobsURL
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return river.JobCancel(fmt.Errorf("encode alert webhook payload: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.deps.WebhookURL, bytes.NewReader(body))
	if err != nil {
		// The URL is the secret: say which variable, never its value.
		return river.JobCancel(errors.New("PORTAL_DOMAIN_ALERT_WEBHOOK_URL is not a usable URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portal-domains")
	client := w.deps.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post alert webhook: %w", redactURL(err, w.deps.WebhookURL))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("alert webhook answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	}
	logger.Info("alert webhook delivered", "http_status", resp.StatusCode, "attempt", job.Attempt)
	return nil
}

// redactURL keeps the webhook URL (which may hold a token in its path or
// query) out of an HTTP error, since River stores and logs job errors: the
// *url.Error that names the URL is replaced by its cause (a network error
// names at most host:port), and any copy of the URL left in the text is
// masked.
func redactURL(err error, raw string) error {
	op := ""
	var ue *url.Error
	if errors.As(err, &ue) {
		op, err = ue.Op, ue.Err
	}
	secrets := []string{raw}
	if u, perr := url.Parse(raw); perr == nil && len(u.RequestURI()) > 1 {
		secrets = append(secrets, u.RequestURI())
	}
	return redactedError{op: op, err: err, secrets: secrets}
}

type redactedError struct {
	op      string
	err     error
	secrets []string
}

func (e redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "<webhook-url>")
	}
	if e.op != "" {
		msg = e.op + ": " + msg
	}
	return msg
}

func (e redactedError) Unwrap() error { return e.err }
