package worker_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/worker"
)

func TestKubeRateFromEnv(t *testing.T) {
	t.Parallel()
	read := func(extra map[string]string) (worker.Config, error) {
		return worker.ConfigFromEnv(func(k string) string {
			if k == "PORTAL_DOMAIN_DNS_SERVERS" {
				return "127.0.0.1:53"
			}
			return extra[k]
		})
	}
	cfg, err := read(nil)
	require.NoError(t, err)
	require.Zero(t, cfg.KubeQPS, "unset keeps the client's defaults")
	require.Zero(t, cfg.KubeBurst)

	cfg, err = read(map[string]string{"PORTAL_DOMAIN_KUBE_QPS": "50.5", "PORTAL_DOMAIN_KUBE_BURST": " 100 "})
	require.NoError(t, err)
	require.InDelta(t, 50.5, cfg.KubeQPS, 1e-9)
	require.Equal(t, 100, cfg.KubeBurst)

	for env, value := range map[string]string{
		"PORTAL_DOMAIN_KUBE_QPS":   "fast",
		"PORTAL_DOMAIN_KUBE_BURST": "-3",
	} {
		_, err := read(map[string]string{env: value})
		require.ErrorContains(t, err, env)
	}
	_, err = read(map[string]string{"PORTAL_DOMAIN_KUBE_QPS": "0"})
	require.ErrorContains(t, err, "PORTAL_DOMAIN_KUBE_QPS")
}
