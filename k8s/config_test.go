package k8s

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()

	t.Run("EmptyGivesDefaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := ConfigFromEnv(envFunc(nil))
		require.NoError(t, err)
		require.Equal(t, DefaultConfig(), cfg)
	})

	t.Run("AllSet", func(t *testing.T) {
		t.Parallel()
		cfg, err := ConfigFromEnv(envFunc(map[string]string{
			EnvCertNamespace:    "portals",
			EnvGatewayNamespace: " ingress ",
			EnvIssuerKind:       "Issuer",
			EnvIssuerName:       "le-staging",
			EnvGatewaySelector:  "istio=public, app=gw,",
			EnvServiceHost:      "Portal.portals.svc",
			EnvServicePort:      "8080",
			EnvChallengeHost:    "solver.portals.svc",
			EnvChallengePort:    "9000",
		}))
		require.NoError(t, err)
		require.Equal(t, Config{
			CertNamespace:    "portals",
			GatewayNamespace: "ingress",
			IssuerKind:       "Issuer",
			IssuerName:       "le-staging",
			GatewaySelector:  map[string]string{"istio": "public", "app": "gw"},
			ServiceHost:      "portal.portals.svc",
			ServicePort:      8080,
			ChallengeHost:    "solver.portals.svc",
			ChallengePort:    9000,
		}, cfg)
	})

	bad := []struct {
		name, env, value, want string
	}{
		{"PortNotNumber", EnvServicePort, "http", EnvServicePort + ` "http": want a port number`},
		{"PortZero", EnvServicePort, "0", "between 1 and 65535"},
		{"PortTooBig", EnvChallengePort, "65536", EnvChallengePort},
		{"IssuerKind", EnvIssuerKind, "clusterissuer", "want ClusterIssuer or Issuer"},
		{"IssuerName", EnvIssuerName, "Lets Encrypt", EnvIssuerName},
		{"Namespace", EnvCertNamespace, "msp.prod", "not a valid namespace name"},
		{"GatewayNamespace", EnvGatewayNamespace, strings.Repeat("a", 64), EnvGatewayNamespace},
		{"SelectorNoEquals", EnvGatewaySelector, "istio", `term "istio": want key=value`},
		{"SelectorEmptyKey", EnvGatewaySelector, "=x", "want key=value"},
		{"SelectorDuplicate", EnvGatewaySelector, "a=1,a=2", `key "a" appears twice`},
		{"SelectorOnlyCommas", EnvGatewaySelector, ",,", "no key=value terms"},
		{"SelectorBadValue", EnvGatewaySelector, "istio=in gress", "label istio value"},
		{"SelectorBadKey", EnvGatewaySelector, "is tio=x", `label key "is tio"`},
		{"ServiceHost", EnvServiceHost, "http://portal", EnvServiceHost},
		{"ChallengeHost", EnvChallengeHost, "solver:8089", EnvChallengeHost},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ConfigFromEnv(envFunc(map[string]string{tc.env: tc.value}))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// formatEnv is the inverse of ConfigFromEnv, used to check round trips.
func formatEnv(c Config) map[string]string {
	var sel []string
	for _, k := range slices.Sorted(maps.Keys(c.GatewaySelector)) {
		sel = append(sel, k+"="+c.GatewaySelector[k])
	}
	return map[string]string{
		EnvCertNamespace:    c.CertNamespace,
		EnvGatewayNamespace: c.GatewayNamespace,
		EnvIssuerKind:       c.IssuerKind,
		EnvIssuerName:       c.IssuerName,
		EnvGatewaySelector:  strings.Join(sel, ","),
		EnvServiceHost:      c.ServiceHost,
		EnvServicePort:      fmt.Sprint(c.ServicePort),
		EnvChallengeHost:    c.ChallengeHost,
		EnvChallengePort:    fmt.Sprint(c.ChallengePort),
	}
}

// FuzzConfigFromEnv checks that any environment either fails with an error
// naming a variable or yields a config that validates, renders and survives
// a round trip through its own env form.
func FuzzConfigFromEnv(f *testing.F) {
	f.Add("msp", "istio-system", "ClusterIssuer", "letsencrypt-prod", "istio=ingressgateway", "alga-psa.msp.svc.cluster.local", "3000", "", "8089")
	f.Add("", "", "", "", "", "", "", "solver.msp.svc", "")
	f.Add("a", "b", "Issuer", "x.y", "a=b,c=d,", "h", "65535", "c", "1")
	f.Add("A", "-", "issuer", "", "=", "", "-1", "x:y", "0x10")
	f.Add("", "", "", "", "k=v,k=w", "", " 80 ", "", "+80")
	f.Fuzz(func(t *testing.T, certNS, gwNS, kind, name, sel, svc, svcPort, ch, chPort string) {
		env := map[string]string{
			EnvCertNamespace: certNS, EnvGatewayNamespace: gwNS, EnvIssuerKind: kind,
			EnvIssuerName: name, EnvGatewaySelector: sel, EnvServiceHost: svc,
			EnvServicePort: svcPort, EnvChallengeHost: ch, EnvChallengePort: chPort,
		}
		cfg, err := ConfigFromEnv(envFunc(env))
		if err != nil {
			require.Contains(t, err.Error(), "PORTAL_DOMAIN_", "error must name the variable")
			return
		}
		require.NoError(t, cfg.Validate())
		_, err = Render(testDomain(), cfg)
		require.NoError(t, err)
		again, err := ConfigFromEnv(envFunc(formatEnv(cfg)))
		require.NoError(t, err)
		require.Equal(t, cfg, again)
	})
}
