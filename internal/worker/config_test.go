package worker_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/worker"
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

func TestFetchCooldownFromEnv(t *testing.T) {
	t.Parallel()
	read := func(value string) (worker.Config, error) {
		return worker.ConfigFromEnv(func(k string) string {
			switch k {
			case "PORTAL_DOMAIN_DNS_SERVERS":
				return "127.0.0.1:53"
			case "PORTAL_DOMAIN_FETCH_COOLDOWN":
				return value
			}
			return ""
		})
	}
	cfg, err := read("")
	require.NoError(t, err)
	require.Equal(t, worker.DefaultFetchCooldown, cfg.FetchCooldown)
	cfg, err = read("5ms")
	require.NoError(t, err)
	require.Equal(t, 5*time.Millisecond, cfg.FetchCooldown)
	// River refuses less than 1 ms, and more than its 1 s poll interval.
	for _, bad := range []string{"0", "500us", "2s", "-1ms", "soon"} {
		_, err := read(bad)
		require.ErrorContains(t, err, "PORTAL_DOMAIN_FETCH_COOLDOWN", bad)
	}
}

func TestRecheckFromEnv(t *testing.T) {
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
	require.Equal(t, 6*time.Hour, cfg.Recheck.Interval)
	require.Equal(t, time.Hour, cfg.Recheck.Grace)
	require.Equal(t, worker.DefaultRecheckWorkers, cfg.RecheckWorkers)

	cfg, err = read(map[string]string{"PORTAL_DOMAIN_ACTIVE_RECHECK": "2h", "PORTAL_DOMAIN_DRIFT_GRACE": "72h",
		"PORTAL_DOMAIN_RECHECK_WORKERS": "4"})
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, cfg.Recheck.Interval)
	require.Equal(t, 72*time.Hour, cfg.Recheck.Grace)
	require.Equal(t, 4, cfg.RecheckWorkers)

	for env, value := range map[string]string{
		"PORTAL_DOMAIN_ACTIVE_RECHECK":  "30s",
		"PORTAL_DOMAIN_DRIFT_GRACE":     "0",
		"PORTAL_DOMAIN_RECHECK_WORKERS": "none",
	} {
		_, err := read(map[string]string{env: value})
		require.ErrorContains(t, err, env, value)
	}
	_, err = read(map[string]string{"PORTAL_DOMAIN_ACTIVE_RECHECK": "30d"})
	require.ErrorContains(t, err, "not a duration like")
	_, err = read(map[string]string{"PORTAL_DOMAIN_ACTIVE_RECHECK": "200h"})
	require.ErrorContains(t, err, "must be from 1m to 168h")
}
