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
