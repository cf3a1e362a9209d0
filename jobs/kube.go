package jobs

import (
	"context"
	"time"
)

// DomainRef is what the outside systems need to know of a domain: the
// objects are named from the canonical host's first label, and the DNS check
// follows the CNAME to CNAMETarget.
type DomainRef struct {
	ID            string
	Tenant        string
	Host          string
	CanonicalHost string
	CNAMETarget   string
}

// Applied is the outcome of a successful apply.
type Applied struct {
	SecretName      string
	ResourceVersion string
	// CertificateReady: the Certificate was Ready already when applied.
	CertificateReady bool
}

// CertState is the Certificate's Ready condition as cert-manager reports it.
type CertState struct {
	Found  bool
	Ready  string // "True", "False", "Unknown" or "" when absent
	Reason string
	// Message is cert-manager's message for the condition.
	Message string
	// Since is the condition's lastTransitionTime.
	Since                  time.Time
	FailedIssuanceAttempts int
	// IssuingFailure is cert-manager's message for its last failed issuance (the Issuing
	// condition, reason Failed); "" when the last attempt did not fail.
	IssuingFailure string
	// RoutesPresent: the Gateway and VirtualService exist.
	RoutesPresent bool
	// Drift names what of the Certificate's spec differs from what this
	// worker applies (a hand edit such as changed dnsNames); "" when none.
	Drift string
}

// Kube renders and applies, reads and deletes a domain's objects. Errors
// wrapping ErrPermanent are not retried.
type Kube interface {
	Apply(ctx context.Context, d DomainRef) (Applied, error)
	// Reclaim applies again objects this worker applied before, taking
	// back fields someone changed by hand since.
	Reclaim(ctx context.Context, d DomainRef) (Applied, error)
	CertificateState(ctx context.Context, d DomainRef) (CertState, error)
	// CertificateReadyWatched says whether the Certificate watch has seen
	// the Certificate Ready already (no request; false when no watch runs).
	CertificateReadyWatched(d DomainRef) bool
	Delete(ctx context.Context, d DomainRef) error
}

// ProbeResult is one HTTPS check of a live domain.
type ProbeResult struct {
	OK bool
	// Message says what failed, for the tenant and the operator.
	Message string
}

// Prober makes an HTTPS request to the domain and checks the certificate
// served covers it.
type Prober interface {
	Probe(ctx context.Context, d DomainRef) ProbeResult
}
