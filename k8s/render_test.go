package k8s

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

var update = flag.Bool("update", false, "rewrite the golden files in fixtures/manifests")

const goldenDir = "../fixtures/manifests"

func testDomain() Domain {
	return Domain{
		ID:            "5b0c3d0e-8a53-4c65-9f0e-2f3c1d9a7e41",
		Tenant:        "abc12345-6789-4def-8123-456789abcdef",
		Host:          "portal.acme.com",
		CanonicalHost: "abc1234.portal.algapsa.com",
	}
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name string
		d    Domain
		cfg  Config
	}{
		{name: "default", d: testDomain(), cfg: Config{}},
		{name: "challenge", d: testDomain(), cfg: Config{ChallengeHost: "acme-solver.msp.svc.cluster.local"}},
		{
			name: "custom",
			d: Domain{
				ID:            "0f8e2a7c-1111-4222-8333-444455556666",
				Tenant:        "fedcba98-7654-4321-8fed-cba987654321",
				Host:          "Clients.Example.ORG.",
				CanonicalHost: "fedcba98.portal.example.net",
			},
			cfg: Config{
				CertNamespace:    "portals",
				GatewayNamespace: "ingress",
				IssuerKind:       "Issuer",
				IssuerName:       "letsencrypt-staging",
				GatewaySelector:  map[string]string{"app": "gw", "istio": "public"},
				ServiceHost:      "portal.portals.svc.cluster.local",
				ServicePort:      8080,
				ChallengeHost:    "solver.portals.svc.cluster.local",
				ChallengePort:    9000,
			},
		},
		{
			name: "long-host",
			d: Domain{
				ID:            "77777777-8888-4999-8aaa-bbbbbbbbbbbb",
				Tenant:        "77777777-0000-4000-8000-000000000000",
				Host:          "a-rather-long-client-portal-name.with-several-labels.customer-example.co.uk",
				CanonicalHost: "7777777.portal.algapsa.com",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			objs, err := Render(tc.d, tc.cfg)
			require.NoError(t, err)
			for file, obj := range map[string]*unstructured.Unstructured{
				SnapshotCertificate:    objs.Certificate,
				SnapshotGateway:        objs.Gateway,
				SnapshotVirtualService: objs.VirtualService,
			} {
				got, err := SnapshotJSON(obj)
				require.NoError(t, err)
				path := filepath.Join(goldenDir, tc.name, file)
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
					require.NoError(t, os.WriteFile(path, got, 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "golden file missing: run go test ./k8s -run TestRenderGolden -update")
				require.Equal(t, string(want), string(got), "rendered %s differs from %s", obj.GetKind(), path)
			}
		})
	}
}

func TestRender(t *testing.T) {
	t.Parallel()

	t.Run("NamesFromCanonicalPrefix", func(t *testing.T) {
		t.Parallel()
		objs, err := Render(testDomain(), Config{})
		require.NoError(t, err)
		require.Equal(t, "portal-domain-abc1234", objs.Certificate.GetName())
		require.Equal(t, "msp", objs.Certificate.GetNamespace())
		require.Equal(t, "portal-domain-gw-abc1234", objs.Gateway.GetName())
		require.Equal(t, "istio-system", objs.Gateway.GetNamespace())
		require.Equal(t, "portal-domain-vs-abc1234", objs.VirtualService.GetName())
		require.Equal(t, "msp", objs.VirtualService.GetNamespace())
		require.Equal(t, "portal-domain-abc1234", objs.SecretName())
		gws, _, _ := unstructured.NestedStringSlice(objs.VirtualService.Object, "spec", "gateways")
		require.Equal(t, []string{"istio-system/portal-domain-gw-abc1234"}, gws)
		for _, o := range objs.All() {
			require.Equal(t, "true", o.GetLabels()[LabelManaged])
			require.Equal(t, testDomain().ID, o.GetLabels()[LabelDomainID])
			require.Equal(t, testDomain().Tenant, o.GetLabels()[LabelTenant])
			require.Equal(t, "portal.acme.com", o.GetLabels()[LabelDomainHost])
		}
	})

	t.Run("SameInputSameObjects", func(t *testing.T) {
		t.Parallel()
		a, err := Render(testDomain(), Config{ChallengeHost: "solver.msp.svc"})
		require.NoError(t, err)
		b, err := Render(testDomain(), Config{ChallengeHost: "solver.msp.svc"})
		require.NoError(t, err)
		require.Equal(t, a, b)
	})

	t.Run("DoesNotAliasSelector", func(t *testing.T) {
		t.Parallel()
		sel := map[string]string{"istio": "x"}
		objs, err := Render(testDomain(), Config{GatewaySelector: sel})
		require.NoError(t, err)
		sel["istio"] = "changed"
		got, _, _ := unstructured.NestedStringMap(objs.Gateway.Object, "spec", "selector")
		require.Equal(t, map[string]string{"istio": "x"}, got)
	})

	t.Run("LongHostLabelShortened", func(t *testing.T) {
		t.Parallel()
		d := testDomain()
		d.Host = strings.Repeat("a", 60) + ".example.com"
		objs, err := Render(d, Config{})
		require.NoError(t, err)
		v := objs.Certificate.GetLabels()[LabelDomainHost]
		require.Empty(t, validation.IsValidLabelValue(v))
		require.Equal(t, d.Host, objs.Certificate.GetAnnotations()[AnnotationDomainHost])
		dns, _, _ := unstructured.NestedStringSlice(objs.Certificate.Object, "spec", "dnsNames")
		require.Equal(t, []string{d.Host}, dns)
	})

	bad := []struct {
		name string
		edit func(*Domain, *Config)
		want string
	}{
		{"PrefixTooLong", func(d *Domain, _ *Config) { d.CanonicalHost = strings.Repeat("a", 47) + ".portal.algapsa.com" }, "must be no more than 63 characters"},
		{"PrefixFitsExactly", nil, ""},
		{"PrefixNotDNS", func(d *Domain, _ *Config) { d.CanonicalHost = "abc_123.portal.algapsa.com" }, "portal-domain-abc_123"},
		{"EmptyCanonical", func(d *Domain, _ *Config) { d.CanonicalHost = "" }, "no first label"},
		{"HostNotFQDN", func(d *Domain, _ *Config) { d.Host = "localhost" }, "not a fully qualified"},
		{"HostWildcard", func(d *Domain, _ *Config) { d.Host = "*.acme.com" }, "not a fully qualified"},
		{"EmptyID", func(d *Domain, _ *Config) { d.ID = "" }, "domain id"},
		{"TenantWithSlash", func(d *Domain, _ *Config) { d.Tenant = "a/b" }, "tenant"},
		{"BadIssuerKind", func(_ *Domain, c *Config) { c.IssuerKind = "Vault" }, "ClusterIssuer or Issuer"},
		{"BadNamespace", func(_ *Domain, c *Config) { c.CertNamespace = "MSP" }, EnvCertNamespace},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, cfg := testDomain(), Config{}
			if tc.edit == nil {
				d.CanonicalHost = strings.Repeat("b", 46) + ".portal.algapsa.com"
				objs, err := Render(d, cfg)
				require.NoError(t, err)
				require.Len(t, objs.Gateway.GetName(), 63)
				return
			}
			tc.edit(&d, &cfg)
			_, err := Render(d, cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestRenderRefusesHostsThatEscapeAField: a domain name is written into
// dnsNames, hosts, a label and an annotation; anything but a plain DNS name
// (quotes, newlines, paths, lists, wildcards, another label) is refused
// before any object exists, and a tenant or installation id that is not a
// label value is refused too.
func TestRenderRefusesHostsThatEscapeAField(t *testing.T) {
	t.Parallel()
	for _, host := range []string{
		"portal.acme.com\"\n  evil: true",
		"portal.acme.com\nkind: ClusterRole",
		"portal.acme.com/../../istio-system",
		"portal.acme.com,other.example",
		"portal.acme.com other.example",
		"*.acme.com",
		"portal.acme.com:443",
		"localhost",
		"",
		strings.Repeat("a", 64) + ".acme.com",
	} {
		d := testDomain()
		d.Host = host
		_, err := Render(d, Config{})
		require.ErrorIs(t, err, ErrBadDomain, "%q", host)
	}
	d := testDomain()
	d.Tenant = "abc\nlabels: x"
	_, err := Render(d, Config{})
	require.ErrorIs(t, err, ErrBadDomain)
	_, err = Render(testDomain(), Config{Installation: "not a label value"})
	require.ErrorContains(t, err, "installation id")
	objs, err := Render(testDomain(), Config{Installation: "5b0c3d0e-8a53-4c65-9f0e-2f3c1d9a7e41"})
	require.NoError(t, err)
	for _, o := range objs.All() {
		require.Equal(t, "5b0c3d0e-8a53-4c65-9f0e-2f3c1d9a7e41", o.GetLabels()[LabelInstallation])
	}
}
