package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/portal-domains/portal-domains/domain"
)

// KindStuckScan is the periodic job that opens and resolves alerts.
const KindStuckScan = "stuck_scan"

// Alert kinds, as stored in portal_domain_alerts.kind.
const (
	// AlertCertificateNotReady: a managed Certificate has not been Ready
	// for longer than AlertConfig.CertificateAfter.
	AlertCertificateNotReady = "certificate_not_ready"
	// AlertDomainStuck: a domain has sat in a working status longer than
	// that status can legitimately take (see StuckCutoffs).
	AlertDomainStuck = "domain_stuck"
	// AlertCertificateRenewalFailed: cert-manager's last attempt to issue
	// the Certificate of an active domain failed (a renewal, or a re-issue
	// after a hand-deleted Secret); the domain serves its current
	// certificate meanwhile.
	AlertCertificateRenewalFailed = "certificate_renewal_failed"
	// AlertCertificateExpiring: the certificate of an active domain expires
	// within AlertConfig.ExpiryWarn, so cert-manager has not renewed it in
	// time (it renews a third of the lifetime before expiry by default).
	AlertCertificateExpiring = "certificate_expiring"
)

// AlertKinds lists every kind of alert (portal_domain_alerts.kind): the
// stuck scan's, the renewal watch's and the re-check's.
var AlertKinds = []string{AlertCertificateNotReady, AlertDomainStuck, AlertCertificateRenewalFailed, AlertCertificateExpiring,
	AlertDNSDrift, AlertHTTPSFailed}

// Alert is one portal_domain_alerts row as the scan and the webhook see it.
// Its JSON is the webhook's structured "alert" field.
type Alert struct {
	ID                     int64          `json:"id"`
	Kind                   string         `json:"kind"`
	DomainID               string         `json:"portal_domain_id"`
	Tenant                 string         `json:"tenant_id"`
	Domain                 string         `json:"domain"`
	Reason                 string         `json:"reason,omitempty"`
	Message                string         `json:"message,omitempty"`
	FailedIssuanceAttempts int            `json:"failed_issuance_attempts,omitempty"`
	LastFailureTime        time.Time      `json:"last_failure_time,omitzero"`
	NotReadySince          time.Time      `json:"not_ready_since,omitzero"`
	Details                map[string]any `json:"details,omitempty"`
	OpenedAt               time.Time      `json:"opened_at,omitzero"`
	ResolvedAt             time.Time      `json:"resolved_at,omitzero"`
	Resolution             string         `json:"resolution,omitempty"`
}

// AlertOpening is an alert the scan wants open. The store fills in tenant
// and host from the row, and opens nothing if the domain's row is gone or
// disabled, if WhileStatus/WhileSince no longer describe the row, or if an
// alert of the kind is already open for the domain.
type AlertOpening struct {
	DomainID               string
	Kind                   string
	Reason                 string
	Message                string
	FailedIssuanceAttempts int
	LastFailureTime        time.Time
	NotReadySince          time.Time
	Details                map[string]any
	WhileStatus            domain.Status
	WhileSince             time.Time
}

// AlertStore is what the scan needs of the database.
type AlertStore interface {
	// OpenAlerts returns every unresolved alert.
	OpenAlerts(ctx context.Context) ([]Alert, error)
	// StuckDomains returns up to limit rows in a working status entered
	// before that status's cutoff, oldest first.
	StuckDomains(ctx context.Context, cutoffs map[domain.Status]time.Time, limit int) ([]domain.Record, error)
	// Domains reads rows by id; ids without a row are absent.
	Domains(ctx context.Context, ids []string) (map[string]domain.Record, error)
	// OpenAlert opens the alert unless it is open already; opened says
	// whether this call opened it. With notify, an alert_webhook job is
	// enqueued in the same transaction, so a new alert is announced
	// exactly when it is stored.
	OpenAlert(ctx context.Context, o AlertOpening, notify bool) (a Alert, opened bool, err error)
	// ResolveAlert resolves an open alert; resolved says whether this call
	// did (false when another scan got there first). notify as OpenAlert.
	ResolveAlert(ctx context.Context, id int64, resolution string, notify bool) (a Alert, resolved bool, err error)
}

// Certificate is a managed cert-manager Certificate as the scan sees it.
type Certificate struct {
	Namespace, Name string
	DomainID        string
	// Ready is the Ready condition's status: "True", "False", "Unknown",
	// or "" when cert-manager has not written one.
	Ready   string
	Reason  string
	Message string
	// LastTransitionTime of the Ready condition (zero without one) and
	// the object's creation time.
	LastTransitionTime, CreatedAt time.Time
	FailedIssuanceAttempts        int
	LastFailureTime               time.Time
	// Stale: the condition was computed for an older spec (just after a
	// re-apply), so it says nothing about the current one.
	Stale bool
	// IssuingFailure is cert-manager's message when its last issuance
	// failed (the Issuing condition False with reason Failed); "" while it
	// issues or after a success.
	IssuingFailure string
	// NotAfter is when the certificate in the Secret expires and
	// RenewalTime when cert-manager means to renew it (zero before the
	// first issuance).
	NotAfter, RenewalTime time.Time
	// CAFailure is the CA's own reason for the failed issuance, read by
	// the scan only for a renewal alert it is about to open; nil otherwise.
	CAFailure *CAFailure
}

// CAFailureReader reads the CA's reason for a Certificate's failed
// issuance from what cert-manager keeps of it (its Challenge or Order);
// nil when there is none to read.
type CAFailureReader interface {
	CAFailure(ctx context.Context, namespace, name string) *CAFailure
}

// CertificateLister lists the managed Certificates (ListManaged in k8s).
type CertificateLister interface {
	ManagedCertificates(ctx context.Context) ([]Certificate, error)
}

// AlertConfig holds the scan's thresholds.
type AlertConfig struct {
	// CertificateAfter: how long a Certificate may be not Ready before it
	// is alerted on (PORTAL_DOMAIN_STUCK_AFTER, 1h: cert-manager's first
	// retry after a failed issuance comes after an hour).
	CertificateAfter time.Duration
	// StatusAfter: how long a domain may sit in a status past that status's
	// own deadline (PORTAL_DOMAIN_STUCK_STATUS_AFTER, 2h). See StuckCutoffs.
	StatusAfter time.Duration
	// DNSDeadline and CertDeadline are the stages' deadlines (jobs.Config).
	DNSDeadline, CertDeadline time.Duration
	// ExpiryWarn: a certificate of an active domain expiring within this
	// is alerted on (PORTAL_DOMAIN_EXPIRY_WARN, 14 days).
	ExpiryWarn time.Duration
	// Limit caps the stuck domains handled per scan, so an outage that
	// strands thousands of domains is reported in batches, oldest first,
	// rather than in one huge scan.
	Limit int
}

// DefaultExpiryWarn: Let's Encrypt's certificates last 90 days and
// cert-manager renews them 30 days before expiry, so 14 days left means
// renewal has been failing for over two weeks.
const DefaultExpiryWarn = 14 * 24 * time.Hour

// DefaultAlertConfig returns the documented defaults.
func DefaultAlertConfig() AlertConfig {
	d := DefaultConfig()
	return AlertConfig{CertificateAfter: time.Hour, StatusAfter: 2 * time.Hour, ExpiryWarn: DefaultExpiryWarn,
		DNSDeadline: d.DNSDeadline, CertDeadline: d.CertDeadline, Limit: 1000}
}

func (c AlertConfig) withDefaults() AlertConfig {
	d := DefaultAlertConfig()
	c.CertificateAfter = cmp.Or(max(c.CertificateAfter, 0), d.CertificateAfter)
	c.StatusAfter = cmp.Or(max(c.StatusAfter, 0), d.StatusAfter)
	c.ExpiryWarn = cmp.Or(max(c.ExpiryWarn, 0), d.ExpiryWarn)
	c.DNSDeadline = cmp.Or(max(c.DNSDeadline, 0), d.DNSDeadline)
	c.CertDeadline = cmp.Or(max(c.CertDeadline, 0), d.CertDeadline)
	c.Limit = cmp.Or(max(c.Limit, 0), d.Limit)
	return c
}

// AlertDeps are what the alerting jobs use.
type AlertDeps struct {
	Store AlertStore
	// Certificates is nil without a cluster: then only domain_stuck alerts
	// are raised, and certificate alerts are left as they are (nothing can
	// be seen to resolve them).
	Certificates CertificateLister
	// CAFailures, when set, adds the CA's own reason to a renewal alert;
	// CAAIdentity names the CA in it.
	CAFailures  CAFailureReader
	CAAIdentity string
	// WebhookURL, when set, receives every new and resolved alert. It may
	// carry a secret (Slack puts one in the path): it is never logged.
	WebhookURL string
	// UIURL, when set, is the River UI's public address: each event links
	// to the domain's jobs there.
	UIURL string
	// HTTPClient posts to the webhook; nil: a client with a 10s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Config     AlertConfig
	// Now is the clock; tests may pin it.
	Now func() time.Time
}

func (d *AlertDeps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// AddAlertWorkers registers stuck_scan and alert_webhook. alert_webhook is
// registered even without a webhook URL, so jobs enqueued while one was set
// are worked (and dropped with a log line) rather than left unknown.
func AddAlertWorkers(workers *river.Workers, deps *AlertDeps) {
	river.AddWorker(workers, NewStuckScanWorker(deps))
	river.AddWorker(workers, &AlertWebhookWorker{deps: deps})
}

// StuckScanPeriodicJob runs the scan on schedule (a robfig/cron Schedule
// satisfies river.PeriodicSchedule), and once when a worker becomes leader,
// so a restart never leaves a gap of a whole period. River enqueues
// periodic jobs on the elected leader only, so several workers do not scan
// at once; the SQL is idempotent for when they do anyway.
func StuckScanPeriodicJob(schedule river.PeriodicSchedule) *river.PeriodicJob {
	return river.NewPeriodicJob(schedule,
		func() (river.JobArgs, *river.InsertOpts) { return StuckScanArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true})
}

// StuckScanArgs has no fields: one scan covers every domain.
type StuckScanArgs struct{}

func (StuckScanArgs) Kind() string { return KindStuckScan }

// InsertOpts: the maintenance queue; at most one scan waiting or running,
// so a slow scan never piles up behind itself.
func (StuckScanArgs) InsertOpts() river.InsertOpts {
	return maintenanceOnce()
}

// maintenanceOnce is the InsertOpts of a periodic maintenance job: the
// maintenance queue, three attempts, and at most one such job waiting or
// running.
func maintenanceOnce() river.InsertOpts {
	return river.InsertOpts{Queue: domain.QueueMaintenance, MaxAttempts: 3,
		UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending,
			rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// StuckCutoffs says, per working status, before when a domain must have
// entered it to count as stuck. A status whose stage has its own deadline
// is not stuck while the stage is still within it: verifying_dns lasts up
// to the DNS deadline (48h) while a tenant fixes DNS, certificate_issuing
// and deploying up to the certificate deadline (6h), after which their jobs
// fail the domain. Only when the domain is still there StatusAfter past the
// deadline has the pipeline stopped moving it (no worker, jobs discarded,
// resolver trouble that the DNS stage deliberately waits out). pending_dns
// and pending_certificate have no deadline: their jobs move them on within
// seconds, so StatusAfter alone applies (a pending_dns row that old never
// had its first DNS check).
func StuckCutoffs(now time.Time, cfg AlertConfig) map[domain.Status]time.Time {
	cfg = cfg.withDefaults()
	return map[domain.Status]time.Time{
		domain.StatusPendingDNS:         now.Add(-cfg.StatusAfter),
		domain.StatusVerifyingDNS:       now.Add(-(cfg.DNSDeadline + cfg.StatusAfter)),
		domain.StatusPendingCertificate: now.Add(-cfg.StatusAfter),
		domain.StatusCertificateIssuing: now.Add(-(cfg.CertDeadline + cfg.StatusAfter)),
		domain.StatusDeploying:          now.Add(-(cfg.CertDeadline + cfg.StatusAfter)),
	}
}

// alertDecision is what the scan does about one domain and alert kind:
// resolve the open alert (when Resolve is set), then open a new one (when
// Open is set). Both empty: leave things as they are.
type alertDecision struct {
	Resolve string
	Open    *AlertOpening
}

// decideDomainStuck is the pure policy for domain_stuck. An incident is one
// stay in one status: the alert records the status and when the row
// entered it, and is resolved as soon as the row is elsewhere.
func decideDomainStuck(row *domain.Record, open *Alert, now time.Time, cfg AlertConfig) alertDecision {
	var d alertDecision
	if open != nil {
		switch {
		case row == nil:
			d.Resolve = "The portal domain row was deleted."
		case row.Status != domain.Status(open.Reason) || !row.StatusChangedAt.Equal(open.NotReadySince):
			d.Resolve = fmt.Sprintf("%s moved on from %s to %s.", row.Domain, open.Reason, row.Status)
		default:
			return d // same incident, already alerted
		}
	}
	if row == nil {
		return d
	}
	cutoff, working := StuckCutoffs(now, cfg)[row.Status]
	if !working || !row.StatusChangedAt.Before(cutoff) {
		return d
	}
	stuckFor := now.Sub(row.StatusChangedAt)
	expected := now.Sub(cutoff)
	msg := fmt.Sprintf("%s has been %s for %s (since %s), longer than the %s that status may take; the pipeline is not moving it on.",
		row.Domain, row.Status, roughDuration(stuckFor), row.StatusChangedAt.UTC().Format(time.RFC3339), roughDuration(expected))
	if row.StatusMessage != "" {
		msg += " Last status message: " + row.StatusMessage
	}
	d.Open = &AlertOpening{DomainID: row.ID, Kind: AlertDomainStuck, Reason: string(row.Status), Message: msg,
		NotReadySince: row.StatusChangedAt, WhileStatus: row.Status, WhileSince: row.StatusChangedAt,
		Details: map[string]any{"status": string(row.Status), "status_changed_at": row.StatusChangedAt.UTC(),
			"stuck_after": expected.String(), "generation": row.Generation}}
	return d
}

// notReadySince is when the Certificate stopped (or never started) being
// Ready: the Ready condition's last transition, or without one the
// object's creation.
func notReadySince(c Certificate) time.Time {
	if c.Ready != "" && !c.LastTransitionTime.IsZero() {
		return c.LastTransitionTime
	}
	return c.CreatedAt
}

// decideCertificateAlert is the pure policy for certificate_not_ready. An
// incident lasts until the Certificate is seen Ready (or the domain is
// disabled, or its row or Certificate is gone); a stale condition (a
// re-apply cert-manager has not looked at yet) neither opens nor resolves.
func decideCertificateAlert(cert *Certificate, row *domain.Record, open *Alert, now time.Time, after time.Duration) alertDecision {
	var resolution string
	switch {
	case row == nil:
		resolution = "The portal domain row was deleted."
	case row.Status == domain.StatusDisabled:
		resolution = fmt.Sprintf("%s was disabled.", row.Domain)
	case cert == nil:
		resolution = fmt.Sprintf("The Certificate of %s is gone.", row.Domain)
	case cert.Stale:
		return alertDecision{}
	case cert.Ready == "True":
		resolution = fmt.Sprintf("Certificate %s/%s for %s is Ready.", cert.Namespace, cert.Name, row.Domain)
	}
	if resolution != "" {
		if open == nil {
			return alertDecision{}
		}
		return alertDecision{Resolve: resolution}
	}
	since := notReadySince(*cert)
	if open != nil || since.IsZero() || now.Sub(since) <= after {
		return alertDecision{}
	}
	msg := certificateAlertMessage(*cert, row.Domain, since, now)
	details := map[string]any{"certificate": cert.Namespace + "/" + cert.Name, "ready": cmp.Or(cert.Ready, "missing"),
		"domain_status": string(row.Status)}
	// The await job keeps the CA's reason for the last failure on the row:
	// the reason cert-manager's conditions do not give.
	if f := lastCAFailure(*row); f != nil && cert.FailedIssuanceAttempts > 0 {
		msg += fmt.Sprintf(" The CA's reason (%s): %s", cmp.Or(f.Kind, "unknown"), f.Detail)
		details["ca_failure"] = f
	}
	return alertDecision{Open: &AlertOpening{DomainID: row.ID, Kind: AlertCertificateNotReady,
		Reason: cmp.Or(cert.Reason, "NoReadyCondition"), Message: msg,
		FailedIssuanceAttempts: cert.FailedIssuanceAttempts, LastFailureTime: cert.LastFailureTime, NotReadySince: since,
		Details: details}}
}

func certificateAlertMessage(c Certificate, host string, since, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Certificate %s/%s for %s has not been Ready for %s (since %s)", c.Namespace, c.Name, host,
		roughDuration(now.Sub(since)), since.UTC().Format(time.RFC3339))
	switch {
	case c.Ready == "":
		b.WriteString(": cert-manager has not reported on it (is cert-manager running?)")
	case c.Reason != "" || c.Message != "":
		fmt.Fprintf(&b, ": cert-manager reports %s: %s", cmp.Or(c.Reason, c.Ready), c.Message)
	default:
		fmt.Fprintf(&b, ": its Ready condition is %s", c.Ready)
	}
	b.WriteString(".")
	if c.FailedIssuanceAttempts > 0 {
		writeFailedAttempts(&b, c)
		b.WriteString("; cert-manager retries after 1h, 2h, 4h…")
	}
	return b.String()
}

// writeFailedAttempts writes " N failed issuance attempts" and, when known,
// when the last one was, for the alert messages that cite cert-manager's
// count.
func writeFailedAttempts(b *strings.Builder, c Certificate) {
	fmt.Fprintf(b, " %d failed issuance attempts", c.FailedIssuanceAttempts)
	if !c.LastFailureTime.IsZero() {
		fmt.Fprintf(b, ", the last at %s", c.LastFailureTime.UTC().Format(time.RFC3339))
	}
}

// roughDuration prints a duration to the minute: "2h5m", "45m", "50h".
func roughDuration(d time.Duration) string {
	d = d.Truncate(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case d < time.Minute:
		return "under a minute"
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}

// StuckScanWorker opens and resolves alerts: stuck certificates and stuck
// domains.
type StuckScanWorker struct {
	river.WorkerDefaults[StuckScanArgs]
	deps *AlertDeps
}

// NewStuckScanWorker returns the scan worker; tests may call its Work
// directly.
func NewStuckScanWorker(deps *AlertDeps) *StuckScanWorker {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	deps.Config = deps.Config.withDefaults()
	return &StuckScanWorker{deps: deps}
}

// scanTally counts what one scan did, for its summary line.
type scanTally struct{ opened, resolved int }

// Work reads the open alerts, then checks domains and certificates. Each
// part runs even if the other fails; the job fails (and is retried) if
// either did.
func (w *StuckScanWorker) Work(ctx context.Context, job *river.Job[StuckScanArgs]) error {
	now := w.deps.now()
	open, err := w.deps.Store.OpenAlerts(ctx)
	if err != nil {
		return fmt.Errorf("read open alerts: %w", err)
	}
	byKind := map[string]map[string]Alert{}
	for _, kind := range AlertKinds {
		byKind[kind] = map[string]Alert{}
	}
	for _, a := range open {
		if m := byKind[a.Kind]; m != nil {
			m[a.DomainID] = a
		}
	}
	var tally scanTally
	var errs []error
	if err := w.scanDomains(ctx, now, byKind[AlertDomainStuck], &tally); err != nil {
		errs = append(errs, err)
	}
	if w.deps.Certificates != nil {
		if err := w.scanCertificates(ctx, now, byKind, &tally); err != nil {
			errs = append(errs, err)
		}
	}
	w.deps.Logger.Info("stuck scan finished", "job_kind", KindStuckScan, "alerts_open_before", len(open),
		"opened", tally.opened, "resolved", tally.resolved, "errors", len(errs))
	return errors.Join(errs...)
}

func (w *StuckScanWorker) scanDomains(ctx context.Context, now time.Time, open map[string]Alert, tally *scanTally) error {
	cfg := w.deps.Config
	stuck, err := w.deps.Store.StuckDomains(ctx, StuckCutoffs(now, cfg), cfg.Limit)
	if err != nil {
		return fmt.Errorf("list stuck domains: %w", err)
	}
	if len(stuck) >= cfg.Limit {
		w.deps.Logger.Warn("more stuck domains than one scan handles; the rest follow in later scans", "limit", cfg.Limit)
	}
	rows := make(map[string]domain.Record, len(stuck)+len(open))
	for _, r := range stuck {
		rows[r.ID] = r
	}
	var missing []string
	for id := range open {
		if _, ok := rows[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		more, err := w.deps.Store.Domains(ctx, missing)
		if err != nil {
			return fmt.Errorf("read domains with open alerts: %w", err)
		}
		for id, r := range more {
			rows[id] = r
		}
	}
	var errs []error
	for _, id := range unionKeys(rows, open) {
		d := decideDomainStuck(ptrIf(rows, id), ptrIf(open, id), now, cfg)
		if err := w.act(ctx, d, ptrIf(open, id), tally); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *StuckScanWorker) scanCertificates(ctx context.Context, now time.Time, byKind map[string]map[string]Alert, tally *scanTally) error {
	after, warn := w.deps.Config.CertificateAfter, w.deps.Config.ExpiryWarn
	listed, err := w.deps.Certificates.ManagedCertificates(ctx)
	if err != nil {
		return fmt.Errorf("list managed certificates: %w", err)
	}
	// One Certificate per domain; should there be two, the one that is
	// not Ready speaks for the domain.
	certs := map[string]Certificate{}
	for _, c := range listed {
		if c.DomainID == "" {
			continue
		}
		if prev, ok := certs[c.DomainID]; !ok || (prev.Ready == "True" && c.Ready != "True") {
			certs[c.DomainID] = c
		}
	}
	// Rows are read only for Certificates that may open an alert and for
	// alerts that may resolve: a handful, however many domains are Ready.
	need := map[string]bool{}
	for _, kind := range []string{AlertCertificateNotReady, AlertCertificateRenewalFailed, AlertCertificateExpiring} {
		for id := range byKind[kind] {
			need[id] = true
		}
	}
	for id, c := range certs {
		if (c.Ready != "True" && !c.Stale && now.Sub(notReadySince(c)) > after) || renewalFailing(c) || expiresWithin(c, now, warn) {
			need[id] = true
		}
	}
	if len(need) == 0 {
		return nil
	}
	rows, err := w.deps.Store.Domains(ctx, slices.Sorted(maps.Keys(need)))
	if err != nil {
		return fmt.Errorf("read domains of stuck certificates: %w", err)
	}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(need)) {
		cert, row := ptrIf(certs, id), ptrIf(rows, id)
		if w.deps.CAFailures != nil && cert != nil && row != nil && row.Status == domain.StatusActive && renewalFailing(*cert) &&
			ptrIf(byKind[AlertCertificateRenewalFailed], id) == nil {
			cert.CAFailure = w.deps.CAFailures.CAFailure(ctx, cert.Namespace, cert.Name)
		}
		for kind, d := range map[string]alertDecision{
			AlertCertificateNotReady:      decideCertificateAlert(cert, row, ptrIf(byKind[AlertCertificateNotReady], id), now, after),
			AlertCertificateRenewalFailed: decideRenewalAlert(cert, row, ptrIf(byKind[AlertCertificateRenewalFailed], id), w.deps.CAAIdentity),
			AlertCertificateExpiring:      decideExpiryAlert(cert, row, ptrIf(byKind[AlertCertificateExpiring], id), now, warn),
		} {
			if err := w.act(ctx, d, ptrIf(byKind[kind], id), tally); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// act carries out a decision: resolve, then open. New alerts are logged at
// ERROR with the tenant and domain, so log-based alerting sees them too.
func (w *StuckScanWorker) act(ctx context.Context, d alertDecision, open *Alert, tally *scanTally) error {
	notify := w.deps.WebhookURL != ""
	if d.Resolve != "" && open != nil {
		a, resolved, err := w.deps.Store.ResolveAlert(ctx, open.ID, d.Resolve, notify)
		if err != nil {
			return fmt.Errorf("resolve alert %d: %w", open.ID, err)
		}
		if resolved {
			tally.resolved++
			w.deps.Logger.Info("alert resolved", "alert_id", a.ID, "alert_kind", a.Kind, "tenant_id", a.Tenant,
				"portal_domain_id", a.DomainID, "domain", a.Domain, "resolution", a.Resolution,
				"open_for", a.ResolvedAt.Sub(a.OpenedAt).Round(time.Second))
		}
	}
	if d.Open == nil {
		return nil
	}
	a, opened, err := w.deps.Store.OpenAlert(ctx, *d.Open, notify)
	if err != nil {
		return fmt.Errorf("open %s alert for %s: %w", d.Open.Kind, d.Open.DomainID, err)
	}
	if opened {
		tally.opened++
		w.deps.Logger.Error("alert opened", "alert_id", a.ID, "alert_kind", a.Kind, "tenant_id", a.Tenant,
			"portal_domain_id", a.DomainID, "domain", a.Domain, "reason", a.Reason, "message", a.Message,
			"failed_issuance_attempts", a.FailedIssuanceAttempts, "last_failure_time", a.LastFailureTime,
			"not_ready_since", a.NotReadySince)
	}
	return nil
}

func ptrIf[V any](m map[string]V, k string) *V {
	if v, ok := m[k]; ok {
		return &v
	}
	return nil
}

// unionKeys returns the keys of both maps, sorted, so a scan acts in a
// stable order.
func unionKeys[A, B any](a map[string]A, b map[string]B) []string {
	seen := make(map[string]bool, len(a)+len(b))
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	return slices.Sorted(maps.Keys(seen))
}
