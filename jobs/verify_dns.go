package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// DNSOutcome classifies a DNS check. Only the tenant's own records can fail
// a domain; resolver trouble never does.
type DNSOutcome string

const (
	DNSVerified      DNSOutcome = "verified"
	DNSMismatch      DNSOutcome = "mismatch"
	DNSCAAForbidden  DNSOutcome = "caa_forbidden"
	DNSResolverError DNSOutcome = "resolver_error"
)

// DNSVerdict is one DNS check: its outcome, the tenant-facing message (what
// was seen, what to do) and the raw observation, stored in
// verification_details.
type DNSVerdict struct {
	Outcome     DNSOutcome
	Message     string
	Observation json.RawMessage
}

// DNSChecker runs the CNAME and CAA checks of a domain.
type DNSChecker interface {
	CheckDNS(ctx context.Context, d DomainRef) DNSVerdict
}

// dnsDecision is what to do after a DNS check.
type dnsDecision struct {
	To      domain.Status
	Message string
	Snooze  time.Duration
}

// decideDNS is the pure policy of the verify_dns stage.
func decideDNS(v DNSVerdict, rec domain.Record, started, now time.Time, cfg Config) dnsDecision {
	elapsed := now.Sub(started)
	deadline := cfg.DNSDeadline
	wait := backoff(elapsed, cfg.DNSRecheckMin, cfg.DNSRecheckMax)
	switch v.Outcome {
	case DNSVerified:
		return dnsDecision{To: domain.StatusPendingCertificate,
			Message: fmt.Sprintf("DNS verified: %s points to %s. Requesting a certificate.", rec.Domain, rec.CNAMETarget())}
	case DNSResolverError:
		// Not the tenant's fault: keep checking past the deadline too.
		return dnsDecision{To: domain.StatusVerifyingDNS, Message: v.Message, Snooze: wait}
	}
	if elapsed >= deadline {
		return dnsDecision{To: domain.StatusDNSFailed,
			Message: fmt.Sprintf("%s We stopped checking after %s; fix the record, then retry.", v.Message, formatDuration(deadline))}
	}
	if left := deadline - elapsed; wait > left {
		wait = max(left, time.Second)
	}
	return dnsDecision{To: domain.StatusVerifyingDNS, Message: v.Message, Snooze: wait}
}

// dnsCheckStartedAt reads the deadline's start, written by the trigger
// whenever DNS verification (re)starts.
func dnsCheckStartedAt(rec domain.Record) time.Time {
	var details struct {
		StartedAt time.Time `json:"dns_check_started_at"`
	}
	if err := json.Unmarshal(rec.VerificationDetails, &details); err != nil || details.StartedAt.IsZero() {
		return rec.StatusChangedAt
	}
	return details.StartedAt
}

// VerifyDNSWorker checks the tenant's CNAME (and CAA) and moves the domain
// to pending_certificate, re-checks by snoozing, or fails it at the deadline.
type VerifyDNSWorker struct {
	river.WorkerDefaults[VerifyDNSArgs]
	deps *Deps
}

// Work runs one check.
func (w *VerifyDNSWorker) Work(ctx context.Context, job *river.Job[VerifyDNSArgs]) error {
	begun := w.deps.now()
	rec, logger, current, err := load(ctx, w.deps, job.Args.DomainArgs, domain.KindVerifyDNS, domain.StatusPendingDNS, domain.StatusVerifyingDNS)
	if err != nil || !current {
		return err
	}
	// Rows written by plain SQL passed only the trigger's syntax check; the
	// full policy (apex, public suffix, our own zone) is applied here.
	if _, err := domain.ValidatePortalDomain(rec.Domain, w.deps.Config.CanonicalSuffix); err != nil {
		_, _, err = move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
			From: rec.Status, To: domain.StatusDNSFailed, Message: err.Error()})
		w.deps.Observer.StageFinished(domain.KindVerifyDNS, "invalid", w.deps.now().Sub(begun))
		return err
	}

	// The check comes first and its outcome is written once: a domain
	// whose DNS is right goes straight from pending_dns to
	// pending_certificate, and verifying_dns is shown only while something
	// is wrong, with what.
	verdict := w.deps.DNS.CheckDNS(ctx, refOf(rec))
	w.deps.Observer.DNSChecked(string(verdict.Outcome))
	decision := decideDNS(verdict, rec, dnsCheckStartedAt(rec), w.deps.now(), w.deps.Config)
	details := map[string]any{"dns_outcome": verdict.Outcome, "expected_cname": rec.CNAMETarget()}
	if len(verdict.Observation) > 0 {
		details["observation"] = verdict.Observation
	}
	logger.Info("dns checked", "outcome", verdict.Outcome, "next_status", decision.To, "snooze", decision.Snooze)
	_, moved, err := move(ctx, w.deps, logger, domain.Change{DomainID: rec.ID, Generation: rec.Generation,
		From: rec.Status, To: decision.To, Message: decision.Message, Details: details})
	if err != nil || !moved {
		return err
	}
	if decision.Snooze > 0 {
		return river.JobSnooze(decision.Snooze)
	}
	w.deps.Observer.StageFinished(domain.KindVerifyDNS, string(decision.To), w.deps.now().Sub(dnsCheckStartedAt(rec)))
	return nil
}

func formatDuration(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
	return d.String()
}
