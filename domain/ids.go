package domain

import (
	"fmt"

	"github.com/google/uuid"
)

// TenantID is a tenant's UUID in canonical lower-case form.
type TenantID string

// ParseTenantID accepts any UUID spelling and returns the canonical form.
func ParseTenantID(raw string) (TenantID, error) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: tenant %q is not a UUID", ErrInvalidInput, raw)
	}
	return TenantID(id.String()), nil
}

// Tenant7 is the runbook's short tenant id: the first 7 characters of the UUID.
func (t TenantID) Tenant7() string { return string(t)[:min(7, len(t))] }

// ParseDomainID validates a portal_domains row id.
func ParseDomainID(raw string) (string, error) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: domain id %q is not a UUID", ErrInvalidInput, raw)
	}
	return id.String(), nil
}
