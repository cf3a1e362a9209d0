package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/k8s"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// writeKubeconfig writes a kubeconfig file for cfg, as an operator's.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// TestSweepAndAdopt: `sweep --dry-run` lists this installation's orphans and
// deletes nothing, `sweep` deletes them and nothing else, and `adopt` claims
// only unlabelled objects whose domain is in this database, listing each.
func TestSweepAndAdopt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	env := kubetest.Start(t)
	certNS, gwNS := env.Namespace(t, "msp"), env.Namespace(t, "gw")
	b.env["KUBECONFIG"] = writeKubeconfig(t, env.Config)
	b.env["PORTAL_DOMAIN_CERT_NAMESPACE"] = certNS
	b.env["PORTAL_DOMAIN_GATEWAY_NAMESPACE"] = gwNS
	b.env["PORTAL_DOMAIN_SWEEP_MIN_AGE"] = "1ns"
	installation, err := db.InstallationID(ctx, b.schema.Pool)
	require.NoError(t, err)
	client, err := k8s.NewClient(env.Config)
	require.NoError(t, err)

	register := func(tenant, host string) domain.Record {
		var res db.Result
		require.NoError(t, db.InTx(ctx, b.schema.Pool, func(tx pgx.Tx) error {
			var err error
			res, err = db.Register(ctx, tx, domain.TenantID(tenant), host, "portal.test")
			return err
		}))
		return res.Record
	}
	apply := func(rec domain.Record, installation string) {
		objs, err := k8s.Render(k8s.Domain{ID: rec.ID, Tenant: string(rec.Tenant), Host: rec.Domain, CanonicalHost: rec.CanonicalHost},
			k8s.Config{CertNamespace: certNS, GatewayNamespace: gwNS, Installation: installation})
		require.NoError(t, err)
		_, err = client.Apply(ctx, objs)
		require.NoError(t, err)
	}
	exists := func(name string) bool {
		_, err := env.Dynamic.Resource(k8s.CertificateGVR).Namespace(certNS).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false
		}
		require.NoError(t, err)
		return true
	}

	live := register("aaaaaaa1-0000-4000-8000-000000000001", "live.acme.test")
	orphan := register("bbbbbbb1-0000-4000-8000-000000000002", "orphan.acme.test")
	legacy := register("ccccccc1-0000-4000-8000-000000000003", "legacy.acme.test")
	apply(live, installation)
	apply(orphan, installation)
	apply(legacy, "") // before installation ids
	foreign := domain.Record{ID: "dddddddd-0000-4000-8000-000000000004", Tenant: "ddddddd1-0000-4000-8000-000000000004",
		Domain: "foreign.acme.test", CanonicalHost: "ddddddd.portal.test"}
	apply(foreign, "another-installation")
	stranger := domain.Record{ID: "eeeeeeee-0000-4000-8000-000000000005", Tenant: "eeeeeee1-0000-4000-8000-000000000005",
		Domain: "stranger.acme.test", CanonicalHost: "eeeeeee.portal.test"}
	apply(stranger, "") // unlabelled, and no row here
	_, err = b.schema.Pool.Exec(ctx, `DELETE FROM portal_domains WHERE id = $1`, orphan.ID)
	require.NoError(t, err)

	type line struct {
		Action, Kind, Name string
		DomainID           string `json:"domain_id"`
	}
	run := func(args ...string) []line {
		res := cli(t, b.env, args...)
		require.Equal(t, 0, res.code, res.stderr)
		var out []line
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &out), res.stdout)
		return out
	}

	dry := run("sweep", "--dry-run", "--json")
	require.Len(t, dry, 3, "the orphan's three objects: %v", dry)
	for _, l := range dry {
		require.Equal(t, "would_delete", l.Action)
		require.Equal(t, orphan.ID, l.DomainID)
	}
	require.True(t, exists("portal-domain-bbbbbbb"), "a dry run deletes nothing")

	swept := run("sweep", "--json")
	require.Len(t, swept, 3)
	for _, l := range swept {
		require.Equal(t, "deleted", l.Action)
		require.Equal(t, orphan.ID, l.DomainID)
	}
	require.False(t, exists("portal-domain-bbbbbbb"))
	for _, name := range []string{"portal-domain-aaaaaaa", "portal-domain-ccccccc", "portal-domain-ddddddd", "portal-domain-eeeeeee"} {
		require.True(t, exists(name), "%s: live, unlabelled or another installation's objects stay", name)
	}

	wouldAdopt := run("adopt", "--dry-run", "--json")
	actions := map[string]string{}
	for _, l := range wouldAdopt {
		actions[l.DomainID+"/"+l.Kind] = l.Action
	}
	require.Equal(t, map[string]string{
		legacy.ID + "/Certificate": "would_adopt", legacy.ID + "/Gateway": "would_adopt", legacy.ID + "/VirtualService": "would_adopt",
		stranger.ID + "/Certificate": "not_adopted", stranger.ID + "/Gateway": "not_adopted", stranger.ID + "/VirtualService": "not_adopted",
	}, actions)
	cert, err := env.Dynamic.Resource(k8s.CertificateGVR).Namespace(certNS).Get(ctx, "portal-domain-ccccccc", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, cert.GetLabels()[k8s.LabelInstallation], "a dry run changes nothing")

	res := cli(t, b.env, "adopt")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, 3, strings.Count(res.stdout, "adopted      "), res.stdout)
	cert, err = env.Dynamic.Resource(k8s.CertificateGVR).Namespace(certNS).Get(ctx, "portal-domain-ccccccc", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, installation, cert.GetLabels()[k8s.LabelInstallation])
	other, err := env.Dynamic.Resource(k8s.CertificateGVR).Namespace(certNS).Get(ctx, "portal-domain-eeeeeee", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, other.GetLabels()[k8s.LabelInstallation], "objects of no row here are not adopted")
}
