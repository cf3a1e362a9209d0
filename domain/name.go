// Package domain holds the pure rules of portal domains: how a tenant's input
// becomes a hostname we can provision, the canonical host its CNAME must point
// to, and the status machine. Nothing here does I/O, so every rule is tested
// with tables and fuzzing and shared by the CLI, the Go API and the workers.
package domain

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// ErrInvalidDomain is wrapped by every validation failure, so callers can map
// it to "bad input" (exit code 2, HTTP 400) without parsing messages.
var ErrInvalidDomain = errors.New("invalid domain")

// ValidationError carries a message written for the tenant who typed the name.
type ValidationError struct {
	Input   string
	Message string
}

func (e *ValidationError) Error() string { return e.Message }
func (e *ValidationError) Unwrap() error { return ErrInvalidDomain }

func invalid(input, format string, args ...any) error {
	return &ValidationError{Input: input, Message: fmt.Sprintf(format, args...)}
}

// DefaultCanonicalSuffix is the zone under which canonical hosts live.
const DefaultCanonicalSuffix = "portal.algapsa.com"

const (
	maxNameLength  = 253
	maxLabelLength = 63
)

// idnaProfile converts internationalised names to punycode with the checks
// browsers apply at lookup time.
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.BidiRule(), idna.StrictDomainName(false))

// NormalizeHostname trims, lower-cases, removes one trailing dot, converts IDN
// to punycode and checks hostname syntax. It does not apply the portal
// policy (apex, public suffix, canonical zone); see ValidatePortalDomain.
func NormalizeHostname(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	if name == "" {
		return "", invalid(raw, "Enter a domain name, for example portal.example.com.")
	}
	name = strings.TrimSuffix(name, ".")
	if strings.HasPrefix(name, "*") {
		return "", invalid(raw, "Wildcard domains like %q are not supported; enter one host name such as portal.example.com.", raw)
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return "", invalid(raw, "%q is an IP address; enter a domain name such as portal.example.com.", raw)
	}
	ascii := strings.ToLower(name)
	if !isASCII(ascii) {
		converted, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", invalid(raw, "%q is not a valid internationalised domain name: %v.", raw, err)
		}
		ascii = strings.ToLower(converted)
	}
	if len(ascii) > maxNameLength {
		return "", invalid(raw, "The domain name is %d characters long; the limit is %d.", len(ascii), maxNameLength)
	}
	labels := strings.Split(ascii, ".")
	for _, label := range labels {
		if err := checkLabel(raw, label); err != nil {
			return "", err
		}
	}
	if len(labels) < 2 {
		return "", invalid(raw, "%q is a single label; enter a full domain name such as portal.example.com.", raw)
	}
	return ascii, nil
}

func checkLabel(raw, label string) error {
	switch {
	case label == "":
		return invalid(raw, "%q has an empty label (two dots in a row, or a leading dot).", raw)
	case len(label) > maxLabelLength:
		return invalid(raw, "The label %q is %d characters long; each part between dots may have at most %d.", label, len(label), maxLabelLength)
	case label[0] == '-' || label[len(label)-1] == '-':
		return invalid(raw, "The label %q starts or ends with a hyphen, which DNS does not allow.", label)
	}
	for _, c := range label {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return invalid(raw, "The label %q contains %q; use only letters, digits and hyphens.", label, string(c))
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ValidatePortalDomain normalises raw and applies the portal policy: the
// name must be a host below a registrable domain (a CNAME cannot live at a
// zone apex), must not be a public suffix, and must not be inside our own
// canonical zone (which would let a tenant point at another tenant).
func ValidatePortalDomain(raw, canonicalSuffix string) (string, error) {
	name, err := NormalizeHostname(raw)
	if err != nil {
		return "", err
	}
	suffix := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(canonicalSuffix), "."))
	if suffix != "" && (name == suffix || strings.HasSuffix(name, "."+suffix)) {
		return "", invalid(raw, "%q is inside the portal's own zone %s; enter a domain you own, such as portal.example.com.", name, suffix)
	}
	publicSuffix, icann := publicsuffix.PublicSuffix(name)
	if name == publicSuffix && (icann || strings.Contains(publicSuffix, ".")) {
		return "", invalid(raw, "%q is a public suffix, not a domain you can own; enter a host such as portal.example.%s.", name, name)
	}
	registrable, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return "", invalid(raw, "%q is a public suffix, not a domain you can own.", name)
	}
	if registrable == name {
		return "", invalid(raw, "%q is an apex domain, where a CNAME record cannot be created; use a subdomain such as portal.%s.", name, name)
	}
	return name, nil
}

// NormalizeSuffix validates the configured canonical suffix. It is taken whole:
// AlgaPSA once derived it from a URL and produced x.portal.portal.example.com.
func NormalizeSuffix(raw string) (string, error) {
	suffix, err := NormalizeHostname(raw)
	if err != nil {
		return "", fmt.Errorf("canonical suffix: %w", err)
	}
	return suffix, nil
}

// CanonicalPrefixLength is how many characters of the tenant id a canonical
// host starts with; longer prefixes are used only after a collision.
const CanonicalPrefixLength = 7

// CanonicalHost is the CNAME target for a tenant: the first prefixLen hex
// digits of its UUID (hyphens dropped, so every length is a valid label), a
// dot, then the suffix. The database extends prefixLen when two tenants share
// the first 7 characters.
func CanonicalHost(tenant TenantID, suffix string, prefixLen int) string {
	hex := strings.ReplaceAll(string(tenant), "-", "")
	prefixLen = max(CanonicalPrefixLength, min(prefixLen, len(hex)))
	return hex[:prefixLen] + "." + suffix
}

// CanonicalPrefix is the first label of a canonical host, which is unique per
// tenant by construction and names the tenant's Kubernetes objects.
func CanonicalPrefix(canonicalHost string) string {
	prefix, _, _ := strings.Cut(canonicalHost, ".")
	return prefix
}
