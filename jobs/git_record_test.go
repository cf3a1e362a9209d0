package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

func TestDecideGitRecord(t *testing.T) {
	t.Parallel()
	row := func(gen int64, s domain.Status, secret string) *domain.Record {
		r := rec
		r.Generation, r.Status, r.CertificateSecretName = gen, s, secret
		return &r
	}
	apply := GitRecordArgs{Change: ChangeApply, DomainID: "d1", Generation: 2, Slug: "abc1234"}
	remove := GitRecordArgs{Change: ChangeRemove, DomainID: "d1", Generation: 3, Slug: "abc1234"}
	for _, tc := range []struct {
		name       string
		args       GitRecordArgs
		byID, byTn *domain.Record
		write      bool
		remove     bool
	}{
		{"an apply of the current generation writes the row's manifests", apply, row(2, domain.StatusActive, "s"), nil, true, false},
		{"an apply of an older generation is left to the newer change", apply, row(3, domain.StatusPendingDNS, "s"), nil, false, false},
		{"an apply whose domain was disabled since is left to the removal", apply, row(2, domain.StatusDisabled, "s"), nil, false, false},
		{"an apply whose row is gone is left to the removal", apply, nil, nil, false, false},
		{"a removal whose row is gone removes the file", remove, nil, nil, false, true},
		{"a removal while the row is still disabled removes the file", remove, row(3, domain.StatusDisabled, ""), row(3, domain.StatusDisabled, ""), false, true},
		{"a removal after the tenant registered again but before its apply removes the file", remove, nil, row(1, domain.StatusPendingDNS, ""), false, true},
		{"a removal after the tenant's new row was applied is left out", remove, nil, row(1, domain.StatusActive, "s"), false, false},
		{"an unknown change records nothing", GitRecordArgs{Change: "rename"}, nil, nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := decideGitRecord(tc.args, tc.byID, tc.byTn)
			require.Equal(t, tc.write, d.write != nil, d.skip)
			require.Equal(t, tc.remove, d.remove, d.skip)
			require.Equal(t, !tc.write && !tc.remove, d.skip != "")
		})
	}
}
