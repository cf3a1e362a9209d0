package worker

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/robfig/cron/v3"

	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// DefaultStuckCron runs the stuck scan every five minutes: cheap (an index
// range and one list of Certificates) and well inside the one-hour
// threshold.
const DefaultStuckCron = "*/5 * * * *"

// AlertConfig configures the stuck scan and its webhook.
type AlertConfig struct {
	// Cron is PORTAL_DOMAIN_STUCK_CRON, a robfig/cron schedule (five
	// fields, or a descriptor such as "@every 5m"); Schedule is it parsed.
	// Both empty: DefaultStuckCron.
	Cron     string
	Schedule cron.Schedule
	// StuckAfter (PORTAL_DOMAIN_STUCK_AFTER, 1h): a Certificate not Ready
	// for longer is alerted on.
	StuckAfter time.Duration
	// StatusAfter (PORTAL_DOMAIN_STUCK_STATUS_AFTER, 2h): how long past its
	// status's own deadline a domain may sit before it is alerted on.
	StatusAfter time.Duration
	// ExpiryWarn (PORTAL_DOMAIN_EXPIRY_WARN, 14 days): an active domain's
	// certificate expiring within this is alerted on.
	ExpiryWarn time.Duration
	// WebhookURL (PORTAL_DOMAIN_ALERT_WEBHOOK_URL) receives new and
	// resolved alerts; empty: alerts are logged and stored only. It may
	// carry a secret and is never logged.
	WebhookURL string
}

// alertConfigFromEnv reads the alert settings; errors name the variable
// and, for the webhook, never echo its value.
func alertConfigFromEnv(getenv func(string) string) (AlertConfig, error) {
	cfg := AlertConfig{Cron: cmp.Or(strings.TrimSpace(getenv("PORTAL_DOMAIN_STUCK_CRON")), DefaultStuckCron)}
	var err error
	if cfg.Schedule, err = cron.ParseStandard(cfg.Cron); err != nil {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_STUCK_CRON: %q is not a cron schedule such as %q or \"@every 5m\": %w", cfg.Cron, DefaultStuckCron, err)
	}
	if cfg.StuckAfter, err = parseDuration(getenv("PORTAL_DOMAIN_STUCK_AFTER"), time.Hour); err != nil {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_STUCK_AFTER: %w", err)
	}
	if cfg.StatusAfter, err = parseDuration(getenv("PORTAL_DOMAIN_STUCK_STATUS_AFTER"), 2*time.Hour); err != nil {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_STUCK_STATUS_AFTER: %w", err)
	}
	if cfg.ExpiryWarn, err = parseDuration(getenv("PORTAL_DOMAIN_EXPIRY_WARN"), jobs.DefaultExpiryWarn); err != nil {
		return cfg, fmt.Errorf("PORTAL_DOMAIN_EXPIRY_WARN: %w", err)
	}
	if raw := strings.TrimSpace(getenv("PORTAL_DOMAIN_ALERT_WEBHOOK_URL")); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("PORTAL_DOMAIN_ALERT_WEBHOOK_URL: not an http(s) URL with a host (value not shown: it may hold a secret)")
		}
		cfg.WebhookURL = raw
	}
	return cfg, nil
}

// addAlerts registers the stuck scan and the webhook job and returns the
// scan's periodic job. Certificates are scanned only with a cluster, and
// only in the namespace this worker puts them in.
func (w *Worker) addAlerts(workers *river.Workers, cfg Config, store *AlertStore) (*river.PeriodicJob, error) {
	alerts := cfg.Alerts
	if alerts.Schedule == nil {
		alerts.Cron = cmp.Or(alerts.Cron, DefaultStuckCron)
		schedule, err := cron.ParseStandard(alerts.Cron)
		if err != nil {
			return nil, fmt.Errorf("stuck scan schedule %q: %w", alerts.Cron, err)
		}
		alerts.Schedule = schedule
	}
	deps := &jobs.AlertDeps{Store: store, WebhookURL: alerts.WebhookURL, UIURL: cfg.UIURL, Logger: w.logger,
		Config: jobs.AlertConfig{CertificateAfter: alerts.StuckAfter, StatusAfter: alerts.StatusAfter, ExpiryWarn: alerts.ExpiryWarn,
			DNSDeadline: cfg.DNSDeadline, CertDeadline: cfg.CertDeadline}}
	if w.kube != nil {
		certs := Certificates{Client: w.kube, Namespace: cmp.Or(cfg.Kube.CertNamespace, k8s.DefaultCertNamespace),
			Installation: cfg.Kube.Installation}
		deps.Certificates, deps.CAFailures, deps.CAAIdentity = certs, certs, cfg.CAAIdentity
	}
	jobs.AddAlertWorkers(workers, deps)
	w.logger.Info("stuck scan scheduled", "cron", alerts.Cron, "certificates", deps.Certificates != nil,
		"webhook", alerts.WebhookURL != "")
	return jobs.StuckScanPeriodicJob(alerts.Schedule), nil
}
