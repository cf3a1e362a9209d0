package jobs

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/portal-domains/portal-domains/domain"
)

// Renewal is watched on active domains only: before that the pipeline's own
// stages report on the certificate, and a disabled domain's is removed.

// renewalFailing: cert-manager's last issuance of the Certificate failed, or
// it has failed since the last success (failedIssuanceAttempts is reset
// only by a successful issuance, while the Issuing condition turns True
// again for each retry).
func renewalFailing(c Certificate) bool {
	return c.FailedIssuanceAttempts > 0 || c.IssuingFailure != ""
}

// expiresWithin: the certificate in the Secret expires within warn of now
// (or has expired).
func expiresWithin(c Certificate, now time.Time, warn time.Duration) bool {
	return !c.NotAfter.IsZero() && c.NotAfter.Sub(now) <= warn
}

// notWatched is the resolution of a renewal alert whose domain or
// Certificate is no longer one whose renewal is watched; "" while it is.
func notWatched(cert *Certificate, row *domain.Record) string {
	switch {
	case row == nil:
		return "The portal domain row was deleted."
	case row.Status == domain.StatusDisabled:
		return fmt.Sprintf("%s was disabled.", row.Domain)
	case row.Status != domain.StatusActive:
		return fmt.Sprintf("%s is %s, no longer active; the pipeline reports on its certificate.", row.Domain, row.Status)
	case cert == nil:
		return fmt.Sprintf("The Certificate of %s is gone.", row.Domain)
	}
	return ""
}

// resolveOrKeep decides what needs no new alert: a condition that is gone
// resolves the open alert (if any), and one still alerted on stays as it is
// (same incident). done is false when an alert should open.
func resolveOrKeep(resolution string, open *Alert) (d alertDecision, done bool) {
	switch {
	case resolution != "" && open != nil:
		return alertDecision{Resolve: resolution}, true
	case resolution != "" || open != nil:
		return alertDecision{}, true
	}
	return alertDecision{}, false
}

// renewedResolution ends what says the certificate was issued again with
// its new expiry, when known.
func renewedResolution(what string, cert *Certificate) string {
	if !cert.NotAfter.IsZero() {
		what += "; it is valid until " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	return what + "."
}

// decideRenewalAlert is the pure policy for certificate_renewal_failed: one
// alert from the first failed issuance of an active domain's Certificate
// until cert-manager issues it (which resets the failure count), carrying
// cert-manager's reason, the attempts and the last failure. Failures from
// before the domain went active are the first issuance's, which the
// pipeline reported: cert-manager may mark the new certificate Ready a
// moment before it clears their count.
func decideRenewalAlert(cert *Certificate, row *domain.Record, open *Alert, caaIdentity string) alertDecision {
	resolution := notWatched(cert, row)
	if resolution == "" && !renewalFailing(*cert) {
		resolution = renewedResolution(fmt.Sprintf("cert-manager issued the certificate for %s again", row.Domain), cert)
	}
	if d, done := resolveOrKeep(resolution, open); done {
		return d
	}
	c := *cert
	if !c.LastFailureTime.IsZero() && c.LastFailureTime.Before(row.StatusChangedAt) {
		return alertDecision{}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Renewing the certificate of %s (Certificate %s/%s) failed", row.Domain, c.Namespace, c.Name)
	if c.IssuingFailure != "" {
		fmt.Fprintf(&b, ": cert-manager reports: %s", c.IssuingFailure)
	} else {
		b.WriteString("; cert-manager is trying again")
	}
	b.WriteString(".")
	if c.CAFailure != nil {
		b.WriteString(" " + CAFailureMessage(*row, caaIdentity, *c.CAFailure))
	}
	if c.FailedIssuanceAttempts > 0 {
		writeFailedAttempts(&b, c)
		b.WriteString("; cert-manager retries after 1h, 2h, 4h….")
	}
	fmt.Fprintf(&b, " The domain stays active and serves its current certificate%s.", validUntil(c))
	details := map[string]any{"certificate": c.Namespace + "/" + c.Name, "domain_status": string(row.Status)}
	if !c.NotAfter.IsZero() {
		details["not_after"] = c.NotAfter.UTC()
	}
	if !c.RenewalTime.IsZero() {
		details["renewal_time"] = c.RenewalTime.UTC()
	}
	if c.CAFailure != nil {
		details["ca_failure"] = *c.CAFailure
	}
	return alertDecision{Open: &AlertOpening{DomainID: row.ID, Kind: AlertCertificateRenewalFailed,
		Reason: issuingReason(c), Message: b.String(), FailedIssuanceAttempts: c.FailedIssuanceAttempts,
		LastFailureTime: c.LastFailureTime, NotReadySince: c.LastFailureTime, Details: details,
		WhileStatus: domain.StatusActive, WhileSince: row.StatusChangedAt}}
}

// decideExpiryAlert is the pure policy for certificate_expiring: one alert
// while an active domain's certificate expires within warn, resolved when a
// renewed certificate (a later notAfter) is in its Secret.
func decideExpiryAlert(cert *Certificate, row *domain.Record, open *Alert, now time.Time, warn time.Duration) alertDecision {
	resolution := notWatched(cert, row)
	if resolution == "" && !expiresWithin(*cert, now, warn) {
		resolution = renewedResolution(fmt.Sprintf("The certificate of %s was renewed", row.Domain), cert)
	}
	if d, done := resolveOrKeep(resolution, open); done {
		return d
	}
	c := *cert
	var b strings.Builder
	if left := c.NotAfter.Sub(now); left > 0 {
		fmt.Fprintf(&b, "The certificate of %s (Certificate %s/%s) expires at %s, in %s, and has not been renewed",
			row.Domain, c.Namespace, c.Name, c.NotAfter.UTC().Format(time.RFC3339), roughDuration(left))
	} else {
		fmt.Fprintf(&b, "The certificate of %s (Certificate %s/%s) expired at %s and has not been renewed",
			row.Domain, c.Namespace, c.Name, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if !c.RenewalTime.IsZero() {
		fmt.Fprintf(&b, " (cert-manager's renewal was due at %s)", c.RenewalTime.UTC().Format(time.RFC3339))
	}
	switch {
	case c.IssuingFailure != "":
		fmt.Fprintf(&b, ": cert-manager reports: %s", c.IssuingFailure)
	case c.Ready != "True" && c.Message != "":
		fmt.Fprintf(&b, ": cert-manager reports %s: %s", cmp.Or(c.Reason, c.Ready), c.Message)
	}
	b.WriteString(".")
	if c.FailedIssuanceAttempts > 0 {
		writeFailedAttempts(&b, c)
		b.WriteString(".")
	}
	reason := "Expiring"
	if renewalFailing(c) {
		reason = issuingReason(c)
	}
	details := map[string]any{"certificate": c.Namespace + "/" + c.Name, "not_after": c.NotAfter.UTC(),
		"expiry_warn": warn.String(), "domain_status": string(row.Status)}
	if !c.RenewalTime.IsZero() {
		details["renewal_time"] = c.RenewalTime.UTC()
	}
	return alertDecision{Open: &AlertOpening{DomainID: row.ID, Kind: AlertCertificateExpiring, Reason: reason,
		Message: b.String(), FailedIssuanceAttempts: c.FailedIssuanceAttempts, LastFailureTime: c.LastFailureTime,
		NotReadySince: c.NotAfter.Add(-warn), Details: details, WhileStatus: domain.StatusActive, WhileSince: row.StatusChangedAt}}
}

// issuingReason is the reason a renewal alert carries: that of
// cert-manager's Issuing condition after a failed issuance, which is
// always "Failed" (its message says why).
func issuingReason(Certificate) string { return "Failed" }

func validUntil(c Certificate) string {
	if c.NotAfter.IsZero() {
		return ""
	}
	return ", valid until " + c.NotAfter.UTC().Format(time.RFC3339)
}
