package domain

import "time"

// Stage is the job that works a non-terminal status. Entering the status
// enqueues the job (the database trigger does it, in the same transaction),
// and the job moves the domain on. `migrate up` copies this table into
// portal_domain_stage_jobs so SQL and Go enqueue identical jobs.
type Stage struct {
	Status      Status
	Kind        string
	Queue       string
	MaxAttempts int
	// FirstRunDelay holds the job back after the status is entered, for a
	// stage that something else wakes: await_certificate is woken by the
	// Certificate watch when cert-manager reports, so checking the moment
	// after apply would only find "not issued yet" and cost a job, three
	// API reads and a status write per domain.
	FirstRunDelay time.Duration
	// Priority is River's (1 runs first, 4 last): within a queue, jobs
	// that bring a domain live go before apply jobs, so in a bulk import a
	// domain whose certificate is Ready does not wait behind thousands of
	// applies.
	Priority int
}

// CertificateFirstCheck is how long after apply the await_certificate job
// looks at the Certificate when no watch event woke it first.
const CertificateFirstCheck = 30 * time.Second

// Job kinds, one per stage.
const (
	KindVerifyDNS        = "verify_dns"
	KindApply            = "apply"
	KindAwaitCertificate = "await_certificate"
	KindProbe            = "probe"
	KindDisable          = "disable"
)

// Queues, so a backlog in one outside system never starves another.
const (
	QueueDNS         = "dns"
	QueueKubernetes  = "kubernetes"
	QueueProbe       = "probe"
	QueueMaintenance = "maintenance"
)

// Stages maps each working status to its job. pending_dns and verifying_dns
// share verify_dns: the job itself moves pending_dns → verifying_dns, and the
// unique key makes the second enqueue a no-op.
var Stages = []Stage{
	{StatusPendingDNS, KindVerifyDNS, QueueDNS, 25, 0, 1},
	{StatusVerifyingDNS, KindVerifyDNS, QueueDNS, 25, 0, 1},
	{StatusPendingCertificate, KindApply, QueueKubernetes, 12, 0, 2},
	{StatusCertificateIssuing, KindAwaitCertificate, QueueKubernetes, 25, CertificateFirstCheck, 1},
	{StatusDeploying, KindProbe, QueueProbe, 25, 0, 1},
	{StatusDisabled, KindDisable, QueueKubernetes, 25, 0, 1},
}

// StageFor returns the stage working status s, if any.
func StageFor(s Status) (Stage, bool) {
	for _, st := range Stages {
		if st.Status == s {
			return st, true
		}
	}
	return Stage{}, false
}

// StageByKind returns the stage of a job kind.
func StageByKind(kind string) (Stage, bool) {
	for _, st := range Stages {
		if st.Kind == kind {
			return st, true
		}
	}
	return Stage{}, false
}

// ReconcileCursor is where a reconcile pass stands: the last working row a
// window examined, in (status_changed_at, id) order. The zero cursor starts
// a pass at the oldest working row.
type ReconcileCursor struct {
	StatusChangedAt time.Time
	ID              string
}

// IsZero reports whether the cursor starts a pass.
func (c ReconcileCursor) IsZero() bool { return c.ID == "" }
