package jobs

import (
	"context"
	"errors"
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
	// CAFailure is the CA's own reason for that failure, read from the
	// Challenge or Order of the failed issuance; nil when it could not be
	// read (cert-manager has already started the next attempt) or the
	// issuance did not fail.
	CAFailure *CAFailure
	// RoutesPresent: the Gateway and VirtualService exist.
	RoutesPresent bool
	// Drift names what of the Certificate's spec differs from what this
	// worker applies (a hand edit such as changed dnsNames); "" when none.
	Drift string
}

// CAFailure is why the certificate authority refused to validate a domain,
// in its own words: cert-manager's Certificate says only that the order
// failed.
type CAFailure struct {
	// Kind is the ACME problem type: connection, dns, unauthorized,
	// incorrectResponse, caa, tls, rateLimited, rejectedIdentifier, … or ""
	// when the CA named none.
	Kind string `json:"kind,omitempty"`
	// Detail is the CA's message; it may hold URLs and addresses.
	Detail string `json:"detail"`
	// URL is the challenge URL the CA fetched, when known.
	URL string `json:"url,omitempty"`
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
	// ServeCertificate puts the issued certificate where the gateway reads
	// it (a copy of the TLS Secret in the gateway's namespace, when that is
	// not the Certificate's); false while cert-manager has not stored it.
	ServeCertificate(ctx context.Context, d DomainRef) (bool, error)
	Delete(ctx context.Context, d DomainRef) error
	// Drift reads the domain's objects and reports those deleted or
	// differing in a field the worker sets; ErrKubeNotOurs when one exists
	// without this installation's label.
	Drift(ctx context.Context, d DomainRef) ([]ObjectDrift, error)
}

// ProbeResult is one HTTPS check of a live domain.
type ProbeResult struct {
	OK bool
	// Message says what failed, for the tenant and the operator.
	Message string
	// CertificateNotAfter is the served certificate's expiry, when the
	// handshake got that far (zero otherwise).
	CertificateNotAfter time.Time
}

// Prober makes an HTTPS request to the domain and checks the certificate
// served covers it.
type Prober interface {
	Probe(ctx context.Context, d DomainRef) ProbeResult
}

// Kinds of Kube failure. The Kube implementation wraps its errors with one
// of these, so the tenant is told a plain sentence (tenantKubeReason) while
// the operator gets the API server's own words in the logs and the domain's
// event history.
var (
	ErrKubeForbidden   = errors.New("the cluster refused the request as forbidden")
	ErrKubeInvalid     = errors.New("the cluster rejected the objects as invalid")
	ErrKubeConflict    = errors.New("the objects were changed by another writer")
	ErrKubeUnavailable = errors.New("the cluster was unavailable")
	ErrKubeTimeout     = errors.New("the cluster did not answer in time")
	// ErrKubeNotOurs: objects of the same names exist and carry another
	// installation's identity, or none.
	ErrKubeNotOurs = errors.New("the objects belong to another installation")
)

// tenantKubeReason is the sentence a tenant reads about a failed apply or
// delete: what happened in plain words and what to do, never the API
// server's message (which names service accounts, namespaces and
// addresses).
func tenantKubeReason(err error) string {
	switch {
	case errors.Is(err, ErrKubeNotOurs):
		return "The platform found existing routing for this domain that it does not manage, and left it untouched. Contact support to have it released."
	case errors.Is(err, ErrKubeForbidden):
		return "The platform is not permitted to set up routing for this domain. Contact support."
	case errors.Is(err, ErrKubeInvalid):
		return "The platform could not produce a valid configuration for this domain. Contact support."
	case errors.Is(err, ErrKubeConflict):
		return "The routing for this domain was changed outside the platform. Contact support."
	case errors.Is(err, ErrKubeTimeout):
		return "The platform did not answer in time."
	case errors.Is(err, ErrKubeUnavailable):
		return "The platform was temporarily unavailable."
	}
	return "The platform could not set up routing for this domain."
}
