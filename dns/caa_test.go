package dns

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEvaluateCAA(t *testing.T) {
	t.Parallel()
	issue := func(v string) CAARecord { return CAARecord{Tag: "issue", Value: v} }

	for _, tc := range []struct {
		name     string
		records  []CAARecord
		allowed  bool
		issuers  []string
		critical bool
	}{
		{name: "no records allow every CA", allowed: true},
		{name: "an issue record naming the CA allows it", records: []CAARecord{issue("letsencrypt.org")}, allowed: true, issuers: []string{"letsencrypt.org"}},
		{name: "issuer comparison ignores case and white space", records: []CAARecord{issue(" LetsEncrypt.ORG ")}, allowed: true, issuers: []string{"letsencrypt.org"}},
		{name: "parameters after the semicolon are ignored", records: []CAARecord{issue("letsencrypt.org; accounturi=https://x/acct/1")}, allowed: true, issuers: []string{"letsencrypt.org"}},
		{name: "another CA only forbids", records: []CAARecord{issue("sectigo.com")}, issuers: []string{"sectigo.com"}},
		{name: "one of several issue records is enough", records: []CAARecord{issue("sectigo.com"), issue("letsencrypt.org")}, allowed: true, issuers: []string{"sectigo.com", "letsencrypt.org"}},
		{name: "an empty issuer forbids all", records: []CAARecord{issue(";")}},
		{name: "an empty value forbids all", records: []CAARecord{issue("")}},
		{name: "an empty issuer does not cancel an allowing record", records: []CAARecord{issue(";"), issue("letsencrypt.org")}, allowed: true, issuers: []string{"letsencrypt.org"}},
		{name: "issuer names are not matched by suffix", records: []CAARecord{issue("evil-letsencrypt.org")}, issuers: []string{"evil-letsencrypt.org"}},
		{name: "issuer names are not matched by prefix", records: []CAARecord{issue("letsencrypt.org.evil.example")}, issuers: []string{"letsencrypt.org.evil.example"}},
		{name: "issuewild does not restrict a non-wildcard name", records: []CAARecord{{Tag: "issuewild", Value: "sectigo.com"}}, allowed: true},
		{name: "iodef alone does not restrict", records: []CAARecord{{Tag: "iodef", Value: "mailto:a@b.test"}}, allowed: true},
		{name: "tags are case-insensitive", records: []CAARecord{{Tag: "ISSUE", Value: "sectigo.com"}}, issuers: []string{"sectigo.com"}},
		{name: "an unknown critical tag forbids", records: []CAARecord{issue("letsencrypt.org"), {Flag: 128, Tag: "tbs", Value: "x"}}, critical: true},
		{name: "an unknown non-critical tag is ignored", records: []CAARecord{issue("letsencrypt.org"), {Flag: 0, Tag: "tbs", Value: "x"}}, allowed: true, issuers: []string{"letsencrypt.org"}},
		{name: "a known tag with the critical flag is fine", records: []CAARecord{{Flag: 128, Tag: "issue", Value: "letsencrypt.org"}}, allowed: true, issuers: []string{"letsencrypt.org"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := EvaluateCAA(tc.records, "letsencrypt.org")
			require.Equal(t, tc.allowed, v.Allowed)
			require.Equal(t, tc.issuers, v.Issuers)
			require.Equal(t, tc.critical, v.Critical != nil)
		})
	}
}
