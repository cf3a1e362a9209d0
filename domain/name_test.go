package domain_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

func TestValidatePortalDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "portal.acme.com", want: "portal.acme.com"},
		{in: "  Portal.ACME.com.  ", want: "portal.acme.com"},
		{in: "portal.acme.co.uk", want: "portal.acme.co.uk"},
		{in: "portal.bücher.de", want: "portal.xn--bcher-kva.de"},
		{in: "a-b.c-d.example.org", want: "a-b.c-d.example.org"},
		{in: "", wantErr: "Enter a domain name"},
		{in: "   ", wantErr: "Enter a domain name"},
		{in: "acme.com", wantErr: "apex domain"},
		{in: "acme.co.uk", wantErr: "apex domain"},
		{in: "co.uk", wantErr: "public suffix"},
		{in: "com", wantErr: "single label"},
		{in: "localhost", wantErr: "single label"},
		{in: "*.acme.com", wantErr: "Wildcard"},
		{in: "192.168.1.10", wantErr: "IP address"},
		{in: "[::1]", wantErr: "IP address"},
		{in: "portal..acme.com", wantErr: "empty label"},
		{in: ".portal.acme.com", wantErr: "empty label"},
		{in: "-portal.acme.com", wantErr: "hyphen"},
		{in: "portal-.acme.com", wantErr: "hyphen"},
		{in: "por_tal.acme.com", wantErr: "letters, digits and hyphens"},
		{in: "portal acme.com", wantErr: "letters, digits and hyphens"},
		{in: strings.Repeat("a", 64) + ".acme.com", wantErr: "at most 63"},
		{in: strings.Repeat("abcdefghi.", 26) + "com", wantErr: "the limit is 253"},
		{in: "abc1234.portal.algapsa.com", wantErr: "portal's own zone"},
		{in: "portal.algapsa.com", wantErr: "portal's own zone"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := domain.ValidatePortalDomain(tc.in, domain.DefaultCanonicalSuffix)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, domain.ErrInvalidDomain)
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestCanonicalHost(t *testing.T) {
	t.Parallel()
	tenant := domain.TenantID("0f3a9c21-77aa-4b1e-9d2e-5c1f00a1b2c3")
	require.Equal(t, "0f3a9c2.portal.algapsa.com", domain.CanonicalHost(tenant, "portal.algapsa.com", 7))
	require.Equal(t, "0f3a9c2177.portal.example.com", domain.CanonicalHost(tenant, "portal.example.com", 10), "longer prefixes skip hyphens")
	require.Equal(t, "0f3a9c2.portal.algapsa.com", domain.CanonicalHost(tenant, "portal.algapsa.com", 3), "never shorter than 7")
	require.Equal(t, "0f3a9c2177aa4b1e9d2e5c1f00a1b2c3.s.com", domain.CanonicalHost(tenant, "s.com", 99))
	require.Equal(t, "0f3a9c2", domain.CanonicalPrefix("0f3a9c2.portal.algapsa.com"))
	require.Equal(t, "0f3a9c2", tenant.Tenant7())

	suffix, err := domain.NormalizeSuffix("Portal.Portal.Example.com.")
	require.NoError(t, err)
	require.Equal(t, "portal.portal.example.com", suffix, "the suffix is taken whole")
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	t.Run("every status can restart and be disabled", func(t *testing.T) {
		for _, s := range domain.Statuses {
			_, err := domain.CheckTransition(s, domain.StatusPendingDNS)
			require.NoError(t, err)
			if s != domain.StatusDisabled {
				_, err = domain.CheckTransition(s, domain.StatusDisabled)
				require.NoError(t, err)
			}
		}
	})
	t.Run("the happy path is allowed in order", func(t *testing.T) {
		path := []domain.Status{domain.StatusPendingDNS, domain.StatusVerifyingDNS, domain.StatusPendingCertificate,
			domain.StatusCertificateIssuing, domain.StatusDeploying, domain.StatusActive}
		for i := 1; i < len(path); i++ {
			_, err := domain.CheckTransition(path[i-1], path[i])
			require.NoError(t, err)
		}
	})
	t.Run("nothing moves backwards or skips a stage", func(t *testing.T) {
		for _, pair := range [][2]domain.Status{
			{domain.StatusActive, domain.StatusDeploying},
			{domain.StatusCertificateIssuing, domain.StatusPendingCertificate},
			{domain.StatusPendingDNS, domain.StatusActive},
			{domain.StatusVerifyingDNS, domain.StatusActive},
			{domain.StatusDisabled, domain.StatusActive},
			{domain.StatusDNSFailed, domain.StatusPendingCertificate},
		} {
			_, err := domain.CheckTransition(pair[0], pair[1])
			require.ErrorIs(t, err, domain.ErrIllegalTransition, "%s → %s", pair[0], pair[1])
		}
	})
	t.Run("terminal statuses have no stage job", func(t *testing.T) {
		for _, s := range domain.Statuses {
			_, has := domain.StageFor(s)
			require.Equal(t, !s.Terminal() || s == domain.StatusDisabled, has, s)
		}
	})
	t.Run("messages are cut to 1024 bytes on a rune boundary", func(t *testing.T) {
		long := strings.Repeat("é", 600)
		cut := domain.TruncateMessage(long)
		require.LessOrEqual(t, len(cut), domain.MaxStatusMessageLength)
		require.True(t, strings.HasSuffix(cut, "…"))
		require.True(t, strings.HasPrefix(long, strings.TrimSuffix(cut, "…")))
	})
}

// FuzzValidatePortalDomain checks the validator never panics and that what it
// accepts is normalised, idempotent and acceptable to the SQL trigger's rules.
func FuzzValidatePortalDomain(f *testing.F) {
	for _, seed := range []string{"portal.acme.com", "Portal.Acme.COM.", "portal.bücher.de", "*.x.com", "1.2.3.4", "a..b", "xn--bcher-kva.example.com", "co.uk", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := domain.ValidatePortalDomain(in, domain.DefaultCanonicalSuffix)
		if err != nil {
			require.ErrorIs(t, err, domain.ErrInvalidDomain)
			require.NotEmpty(t, err.Error())
			return
		}
		require.LessOrEqual(t, len(got), 253)
		require.Equal(t, strings.ToLower(got), got)
		require.False(t, strings.HasSuffix(got, "."))
		for _, label := range strings.Split(got, ".") {
			require.NotEmpty(t, label)
			require.LessOrEqual(t, len(label), 63)
			require.NotEqual(t, byte('-'), label[0])
			require.NotEqual(t, byte('-'), label[len(label)-1])
			for _, c := range label {
				require.True(t, c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-', "label %q", label)
			}
		}
		again, err := domain.ValidatePortalDomain(got, domain.DefaultCanonicalSuffix)
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
