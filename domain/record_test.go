package domain_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

func TestCNAMETarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, details, want string
	}{
		{"expected_cname wins", `{"expected_cname": "abc12345.portal.test"}`, "abc12345.portal.test"},
		{"normalised", `{"expected_cname": " ABC12345.Portal.Test. "}`, "abc12345.portal.test"},
		{"missing: the canonical host", `{"requested_domain": "portal.acme.test"}`, "abc1234.portal.test"},
		{"not a host name: the canonical host", `{"expected_cname": "not a host"}`, "abc1234.portal.test"},
		{"not a string: the canonical host", `{"expected_cname": 7}`, "abc1234.portal.test"},
		{"empty details", ``, "abc1234.portal.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := domain.Record{CanonicalHost: "abc1234.portal.test", VerificationDetails: json.RawMessage(tc.details)}
			require.Equal(t, tc.want, rec.CNAMETarget())
		})
	}
}
