package domain_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

// riverTag is River's own rule for a tag.
var riverTag = regexp.MustCompile(`\A[\w][\w\-]+[\w]\z`)

func TestJobTags(t *testing.T) {
	t.Parallel()
	tenant := domain.TenantID("1ec7ec41-4a5b-4c6d-9e7f-8a9b0c1d2e03")
	tags := domain.JobTags("portal.initech.test", tenant)
	require.Equal(t, []string{"domain_portal_initech_test", "tenant_1ec7ec41-4a5b-4c6d-9e7f-8a9b0c1d2e03"}, tags)
	for _, tag := range tags {
		require.Regexp(t, riverTag, tag)
	}
	require.Equal(t, "domain_xn--bcher-kva_example", domain.DomainTag("xn--bcher-kva.example"))

	long := strings.Repeat("a", 61) + "." + strings.Repeat("b", 61) + "." + strings.Repeat("c", 61) + "." + strings.Repeat("d", 61) + ".test"
	require.Empty(t, domain.DomainTag(long), "too long for a River tag")
	require.Equal(t, []string{domain.TenantTag(tenant)}, domain.JobTags(long, tenant))

	require.Equal(t, "https://ops.example.com/riverui/jobs?tags=domain_portal_initech_test",
		domain.JobsURL("https://ops.example.com/riverui/", "portal.initech.test", tenant))
	require.Empty(t, domain.JobsURL("", "portal.initech.test", tenant))
}

func FuzzDomainTag(f *testing.F) {
	f.Add("portal.acme.com")
	f.Add("a-b.c-d.example")
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := domain.NormalizeHostname(raw)
		if err != nil {
			return
		}
		tag := domain.DomainTag(name)
		if tag == "" {
			require.Greater(t, len(domain.DomainTagPrefix)+len(name), 255)
			return
		}
		require.Regexp(t, riverTag, tag, "a valid host name makes a valid River tag")
		require.Equal(t, name, strings.ReplaceAll(strings.TrimPrefix(tag, domain.DomainTagPrefix), "_", "."), "the tag maps back to the name")
	})
}
