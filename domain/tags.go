package domain

import (
	"net/url"
	"strings"
)

// River tags allow letters, digits, '_' and '-' (at most 255 characters),
// so a domain's dots are written as underscores, which no host name contains:
// the tag stays readable, typeable, and maps back to one name. The SQL side
// (portal_domains_enqueue_stages) builds the same tags.
const (
	DomainTagPrefix = "domain_"
	TenantTagPrefix = "tenant_"
	maxTagLength    = 255
)

// DomainTag is the River tag of a domain's jobs: "domain_portal_acme_com"
// for portal.acme.com; empty for a name too long to fit a tag.
func DomainTag(name string) string {
	tag := DomainTagPrefix + strings.ReplaceAll(name, ".", "_")
	if len(tag) > maxTagLength {
		return ""
	}
	return tag
}

// TenantTag is the River tag of a tenant's jobs: "tenant_" and the tenant id.
func TenantTag(tenant TenantID) string { return TenantTagPrefix + string(tenant) }

// JobTags are the tags every job about the domain carries.
func JobTags(name string, tenant TenantID) []string {
	if tag := DomainTag(name); tag != "" {
		return []string{tag, TenantTag(tenant)}
	}
	return []string{TenantTag(tenant)}
}

// JobsURL is the River UI's list of the domain's jobs, under uiURL (the UI's
// public address, PORTAL_DOMAIN_UI_URL, ending in /riverui); empty without one.
func JobsURL(uiURL, name string, tenant TenantID) string {
	if uiURL == "" {
		return ""
	}
	tag := DomainTag(name)
	if tag == "" {
		tag = TenantTag(tenant)
	}
	return strings.TrimRight(uiURL, "/") + "/jobs?tags=" + url.QueryEscape(tag)
}
