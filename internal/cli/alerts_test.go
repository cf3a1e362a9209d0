package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
)

func TestAlertsCommand(t *testing.T) {
	t.Parallel()
	b := setup(t)

	res := cli(t, b.env, "alerts")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "no open alerts")

	require.Equal(t, 0, cli(t, b.env, "register", "--tenant", tenantA, "--domain", "portal.acme.test").code)
	var id string
	require.NoError(t, b.schema.Pool.QueryRow(t.Context(), `SELECT id::text FROM portal_domains WHERE tenant = $1`, tenantA).Scan(&id))
	a, opened, err := db.OpenAlert(t.Context(), b.schema.Pool, db.NewAlert{DomainID: id, Kind: db.AlertCertificateNotReady,
		Reason: "Failed", Message: "Certificate msp/portal-domain-abc1234 for portal.acme.test has not been Ready for 2h.", FailedIssuanceAttempts: 2})
	require.NoError(t, err)
	require.True(t, opened)

	res = cli(t, b.env, "alerts")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "certificate_not_ready")
	require.Contains(t, res.stdout, "portal.acme.test")
	require.Contains(t, res.stdout, "Failed")

	_, _, err = db.ResolveAlert(t.Context(), b.schema.Pool, a.ID, "Certificate is Ready.")
	require.NoError(t, err)
	res = cli(t, b.env, "alerts")
	require.Contains(t, res.stdout, "no open alerts")
	res = cli(t, b.env, "alerts", "--all", "--json")
	require.Equal(t, 0, res.code, res.stderr)
	var listed []db.Alert
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &listed))
	require.Len(t, listed, 1)
	require.Equal(t, "Certificate is Ready.", listed[0].Resolution)
	require.NotNil(t, listed[0].ResolvedAt)
}
