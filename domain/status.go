package domain

import (
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidInput marks input that can never succeed (bad ids, flags).
var ErrInvalidInput = errors.New("invalid input")

// Status is the AlgaPSA portal_domain_status enum, in its declared order.
type Status string

const (
	StatusPendingDNS         Status = "pending_dns"
	StatusVerifyingDNS       Status = "verifying_dns"
	StatusDNSFailed          Status = "dns_failed"
	StatusPendingCertificate Status = "pending_certificate"
	StatusCertificateIssuing Status = "certificate_issuing"
	StatusCertificateFailed  Status = "certificate_failed"
	StatusDeploying          Status = "deploying"
	StatusActive             Status = "active"
	StatusDisabled           Status = "disabled"
)

// Statuses lists every status in the enum's order (the migration creates the
// enum from the same order).
var Statuses = []Status{
	StatusPendingDNS, StatusVerifyingDNS, StatusDNSFailed, StatusPendingCertificate,
	StatusCertificateIssuing, StatusCertificateFailed, StatusDeploying, StatusActive, StatusDisabled,
}

// ParseStatus rejects anything that is not an enum value.
func ParseStatus(s string) (Status, error) {
	if slices.Contains(Statuses, Status(s)) {
		return Status(s), nil
	}
	return "", fmt.Errorf("%w: unknown status %q", ErrInvalidInput, s)
}

// Terminal statuses have no job working on them.
func (s Status) Terminal() bool {
	switch s {
	case StatusActive, StatusDisabled, StatusDNSFailed, StatusCertificateFailed:
		return true
	}
	return false
}

// Failed statuses are the ones Retry starts over from.
func (s Status) Failed() bool { return s == StatusDNSFailed || s == StatusCertificateFailed }

// Transition is one allowed move of the status machine with the message a
// tenant sees when nothing more specific is known.
type Transition struct {
	From    Status
	To      Status
	Message string
}

// Transitions is the single table of allowed moves. `migrate up` copies it
// into portal_domain_transitions, which the database trigger enforces for
// every writer (workers, the Go API and the SaaS app's plain SQL).
//
// Restarts: any status may go to pending_dns (domain changed, retry, or the
// app's upsert) and to disabled. Self-moves keep a stage while its message
// changes (a DNS re-check, a certificate still issuing, a probe retry).
var Transitions = buildTransitions()

func buildTransitions() []Transition {
	var table []Transition
	for _, from := range Statuses {
		table = append(table, Transition{from, StatusPendingDNS, "Waiting for the DNS check to start."})
		if from != StatusDisabled {
			table = append(table, Transition{from, StatusDisabled, "The portal domain is disabled."})
		}
	}
	return append(table,
		Transition{StatusPendingDNS, StatusVerifyingDNS, "Checking the CNAME record."},
		Transition{StatusVerifyingDNS, StatusVerifyingDNS, "Checking the CNAME record."},
		Transition{StatusPendingDNS, StatusDNSFailed, "The domain cannot be verified."},
		Transition{StatusVerifyingDNS, StatusDNSFailed, "The CNAME record was not found before the deadline."},
		Transition{StatusVerifyingDNS, StatusPendingCertificate, "DNS verified; requesting a certificate."},
		// The first check passed: no verifying_dns in between.
		Transition{StatusPendingDNS, StatusPendingCertificate, "DNS verified; requesting a certificate."},
		Transition{StatusCertificateFailed, StatusPendingCertificate, "Retrying certificate issuance."},
		Transition{StatusPendingCertificate, StatusPendingCertificate, "Applying the certificate and gateway."},
		Transition{StatusPendingCertificate, StatusCertificateIssuing, "Waiting for the certificate to be issued."},
		Transition{StatusPendingCertificate, StatusCertificateFailed, "The certificate and gateway could not be applied."},
		Transition{StatusCertificateIssuing, StatusCertificateIssuing, "Waiting for the certificate to be issued."},
		Transition{StatusCertificateIssuing, StatusCertificateFailed, "The certificate was not issued before the deadline."},
		Transition{StatusCertificateIssuing, StatusDeploying, "Certificate issued; checking HTTPS."},
		Transition{StatusDeploying, StatusDeploying, "Checking HTTPS."},
		Transition{StatusDeploying, StatusCertificateFailed, "HTTPS did not come up before the deadline."},
		Transition{StatusDeploying, StatusActive, "Your domain is live and protected by HTTPS."},
		Transition{StatusDisabled, StatusDisabled, "The portal domain is disabled."},
	)
}

// ErrIllegalTransition is returned for a move not in Transitions.
var ErrIllegalTransition = errors.New("illegal status transition")

// CheckTransition returns the default message of an allowed move, or an
// error naming both ends.
func CheckTransition(from, to Status) (string, error) {
	for _, t := range Transitions {
		if t.From == from && t.To == to {
			return t.Message, nil
		}
	}
	return "", fmt.Errorf("%w: %s → %s", ErrIllegalTransition, from, to)
}

// MaxStatusMessageLength is where status_message is cut, so a resolver or API
// server dumping a huge error cannot bloat the row.
const MaxStatusMessageLength = 1024

// TruncateMessage cuts a message to MaxStatusMessageLength bytes on a rune
// boundary, marking the cut with an ellipsis.
func TruncateMessage(msg string) string {
	if len(msg) <= MaxStatusMessageLength {
		return msg
	}
	cut := MaxStatusMessageLength - len("…")
	for cut > 0 && !runeStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }
