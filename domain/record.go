package domain

import (
	"encoding/json"
	"time"
)

// Record is a portal_domains row.
type Record struct {
	ID                        string          `json:"id"`
	Tenant                    TenantID        `json:"tenant"`
	Domain                    string          `json:"domain"`
	CanonicalHost             string          `json:"canonical_host"`
	Status                    Status          `json:"status"`
	StatusMessage             string          `json:"status_message"`
	LastCheckedAt             *time.Time      `json:"last_checked_at,omitempty"`
	VerificationMethod        string          `json:"verification_method"`
	VerificationDetails       json.RawMessage `json:"verification_details"`
	CertificateSecretName     string          `json:"certificate_secret_name,omitempty"`
	LastSyncedResourceVersion string          `json:"last_synced_resource_version,omitempty"`
	Generation                int64           `json:"pipeline_generation"`
	StatusChangedAt           time.Time       `json:"status_changed_at"`
	CreatedAt                 time.Time       `json:"created_at"`
	UpdatedAt                 time.Time       `json:"updated_at"`
}

// CNAMETarget is the host the domain's CNAME must lead to: the
// expected_cname of verification_details (the trigger keeps it equal to the
// host it chose; AlgaPSA's app sets it too), else the canonical host.
func (r Record) CNAMETarget() string {
	var details struct {
		ExpectedCNAME string `json:"expected_cname"`
	}
	if json.Unmarshal(r.VerificationDetails, &details) == nil {
		if host, err := NormalizeHostname(details.ExpectedCNAME); err == nil && host != "" {
			return host
		}
	}
	return r.CanonicalHost
}

// Change is a guarded status move written by a worker: it applies only while
// the row still has From and Generation, so a stale or duplicate job can
// never move a domain backwards.
type Change struct {
	DomainID   string
	Generation int64
	From       Status
	To         Status
	Message    string
	// Details is merged into verification_details (top-level keys replaced).
	Details map[string]any
	// CertificateSecretName and ResourceVersion, when set, are recorded.
	CertificateSecretName string
	ResourceVersion       string
	// ClearSecretName empties certificate_secret_name (disable).
	ClearSecretName bool
}
