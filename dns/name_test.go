package dns

import (
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

func TestNormalizeName(t *testing.T) {
	t.Parallel()

	t.Run("lower-cases and drops the trailing dot", func(t *testing.T) {
		t.Parallel()
		for _, in := range []string{"Portal.ACME.com", "portal.acme.com.", "PORTAL.acme.COM."} {
			got, err := normalizeName(in)
			require.NoError(t, err, in)
			require.Equal(t, "portal.acme.com", got, in)
		}
	})

	t.Run("accepts underscores, digits, inner hyphens and 63-character labels", func(t *testing.T) {
		t.Parallel()
		for _, in := range []string{"_acme-challenge.acme.com", "abc1234.portal.algapsa.com", "x--y.example", strings.Repeat("a", 63) + ".test", "localhost"} {
			_, err := normalizeName(in)
			require.NoError(t, err, in)
		}
	})

	t.Run("rejects what DNS cannot carry or a tenant did not mean", func(t *testing.T) {
		t.Parallel()
		for in, want := range map[string]string{
			"":                               "empty",
			".":                              "empty",
			"a..b":                           "empty label",
			".a.b":                           "empty label",
			"a.b..":                          "empty label",
			"portal acme.com":                `contains ' '`,
			"portäl.acme.com":                "punycode",
			"*.acme.com":                     `contains '*'`,
			"-a.acme.com":                    "hyphen",
			"a-.acme.com":                    "hyphen",
			strings.Repeat("a", 64) + ".x":   "longer than 63",
			strings.Repeat("a.", 127) + "ab": "longer than 253",
			`a\.b.com`:                       `contains '\\'`,
		} {
			_, err := normalizeName(in)
			require.ErrorIs(t, err, ErrInvalidName, in)
			require.ErrorContains(t, err, want, in)
		}
	})

	t.Run("sameName is exact apart from case and trailing dot", func(t *testing.T) {
		t.Parallel()
		require.True(t, sameName("ABC1234.portal.test.", "abc1234.PORTAL.test"))
		require.False(t, sameName("evil.abc1234.portal.test", "abc1234.portal.test"))
		require.False(t, sameName("abc1234.portal.test.evil", "abc1234.portal.test"))
	})

	t.Run("parent climbs to the top-level domain and stops", func(t *testing.T) {
		t.Parallel()
		var levels []string
		for l := "a.b.test"; l != ""; l = parent(l) {
			levels = append(levels, l)
		}
		require.Equal(t, []string{"a.b.test", "b.test", "test"}, levels)
	})
}

// FuzzNormalizeName checks the properties the rest of the package relies
// on: normalisation never panics, is idempotent, ignores case and one
// trailing dot, and only accepts names that miekg/dns can put in a query.
func FuzzNormalizeName(f *testing.F) {
	for _, seed := range []string{
		"portal.acme.com", "Portal.ACME.com.", "_acme-challenge.x", "a..b", "", ".", "*.a", "xn--bcher-kva.example",
		"portäl.acme.com", strings.Repeat("a", 63) + ".b", `a\046b.c`, "a b", "1.2.3.4", "a.b.", "A-B.c-d.E",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := normalizeName(in)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidName)
			return
		}
		require.Equal(t, strings.ToLower(got), got)
		require.False(t, strings.HasSuffix(got, "."))
		again, err := normalizeName(got)
		require.NoError(t, err)
		require.Equal(t, got, again)
		upper, err := normalizeName(strings.ToUpper(in))
		require.NoError(t, err, "upper-casing ASCII keeps a name valid")
		require.Equal(t, got, upper)
		dotted, err := normalizeName(got + ".")
		require.NoError(t, err)
		require.Equal(t, got, dotted)
		require.True(t, sameName(in, got))

		_, ok := mdns.IsDomainName(got)
		require.True(t, ok)
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(got), mdns.TypeA)
		_, err = q.Pack()
		require.NoError(t, err, "an accepted name must fit in a query")
		require.Equal(t, got, display(mdns.Fqdn(got)))
	})
}
