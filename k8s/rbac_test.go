package k8s_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/portal-domains/portal-domains/k8s"
	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

// loadRBAC creates deploy/rbac.yaml with its namespaces moved to the test's
// (msp → cert namespace, istio-system → gateway namespace) and its cluster
// objects renamed per test, and returns a rest.Config for the ServiceAccount.
func loadRBAC(t *testing.T, env *kubetest.Env, cfg k8s.Config) *bundle {
	t.Helper()
	root, err := kubetest.ModuleRoot()
	require.NoError(t, err)
	objs, err := kubetest.ReadManifests(filepath.Join(root, "deploy", "rbac.yaml"))
	require.NoError(t, err)
	ns := map[string]string{"msp": cfg.CertNamespace, "istio-system": cfg.GatewayNamespace}
	var sa string
	for _, o := range objs {
		if o.GetNamespace() != "" {
			require.Contains(t, ns, o.GetNamespace(), "rbac.yaml uses an unexpected namespace")
			o.SetNamespace(ns[o.GetNamespace()])
		} else {
			o.SetName(o.GetName() + "-" + cfg.CertNamespace)
		}
		if o.GetKind() == "ServiceAccount" {
			sa = o.GetName()
		}
		if ref, ok, _ := unstructured.NestedString(o.Object, "roleRef", "kind"); ok && ref == "ClusterRole" {
			name, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
			require.NoError(t, unstructured.SetNestedField(o.Object, name+"-"+cfg.CertNamespace, "roleRef", "name"))
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range subjects {
			m := s.(map[string]any)
			m["namespace"] = ns[m["namespace"].(string)]
		}
		if subjects != nil {
			require.NoError(t, unstructured.SetNestedSlice(o.Object, subjects, "subjects"))
		}
	}
	require.NotEmpty(t, sa, "rbac.yaml has no ServiceAccount")
	require.NoError(t, env.Create(t.Context(), objs...))

	b := setupOn(t, env, env.ServiceAccountConfig(t, cfg.CertNamespace, sa))
	b.cfg = cfg
	b.names, err = k8s.NamesFor(b.d, cfg)
	require.NoError(t, err)
	return b
}

// TestRBAC runs everything the worker does as the ServiceAccount from
// deploy/rbac.yaml, and checks a few things it must not be able to do. A
// verb missing from rbac.yaml fails here with Forbidden.
func TestRBAC(t *testing.T) {
	t.Parallel()
	env := kubetest.Start(t)
	cfg := k8s.Config{CertNamespace: env.Namespace(t, "msp"), GatewayNamespace: env.Namespace(t, "gw"), Installation: randomUUID(t)}
	b := loadRBAC(t, env, cfg)
	ctx := t.Context()

	t.Run("WorkerCalls", func(t *testing.T) {
		// The informer falls back to re-listing when a watch is refused,
		// which would hide a missing watch verb; check the verb directly.
		dyn, err := dynamic.NewForConfig(env.ServiceAccountConfig(t, cfg.CertNamespace, "portal-domains"))
		require.NoError(t, err)
		wi, err := dyn.Resource(k8s.CertificateGVR).Namespace(metav1.NamespaceAll).
			Watch(ctx, metav1.ListOptions{LabelSelector: k8s.ManagedSelector})
		require.NoError(t, err, "watch certificates")
		wi.Stop()

		for _, gvr := range []schema.GroupVersionResource{k8s.GatewayGVR, k8s.VirtualServiceGVR} {
			wi, err := dyn.Resource(gvr).Namespace(metav1.NamespaceAll).
				Watch(ctx, metav1.ListOptions{LabelSelector: k8s.InstallationSelector(cfg.Installation)})
			require.NoError(t, err, "watch %s", gvr.Resource)
			wi.Stop()
		}

		w := watch(t, b.client, b.d.ID)
		hands := make(chan k8s.HandChange, 10)
		handsCtx, stopHands := context.WithCancel(context.WithoutCancel(ctx))
		handsDone := make(chan error, 1)
		go func() {
			handsDone <- b.client.WatchHandChanges(handsCtx, cfg.Installation, func(c k8s.HandChange) {
				if c.DomainID == b.d.ID {
					hands <- c
				}
			})
		}()
		t.Cleanup(func() { stopHands(); require.NoError(t, <-handsDone) })

		res, err := b.client.Apply(ctx, b.render(t)) // create through apply
		require.NoError(t, err)
		_, err = b.client.Apply(ctx, b.render(t)) // unchanged
		require.NoError(t, err)
		b.cfg.ChallengeHost = "solver.example.svc"
		_, err = b.client.Apply(ctx, b.render(t)) // patch
		require.NoError(t, err)
		_, err = b.client.Reclaim(ctx, b.render(t)) // forced patch
		require.NoError(t, err)
		require.Equal(t, b.names.Secret, res.SecretName)

		// A hand edit of the Gateway is seen by the watch and by Drift, and
		// the forced apply takes it back, all as the ServiceAccount.
		gw, err := env.Dynamic.Resource(k8s.GatewayGVR).Namespace(cfg.GatewayNamespace).Get(ctx, b.names.Gateway, metav1.GetOptions{})
		require.NoError(t, err)
		require.NoError(t, unstructured.SetNestedStringMap(gw.Object, map[string]string{"istio": "elsewhere"}, "spec", "selector"))
		_, err = env.Dynamic.Resource(k8s.GatewayGVR).Namespace(cfg.GatewayNamespace).Update(ctx, gw, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
		require.NoError(t, err)
		select {
		case c := <-hands:
			require.Equal(t, k8s.HandChange{Kind: "Gateway", Namespace: cfg.GatewayNamespace, Name: b.names.Gateway, DomainID: b.d.ID,
				Tenant: b.d.Tenant, Host: b.d.Host, Change: k8s.ChangeEdited, Revision: c.Revision, Managers: []string{"kubectl-edit"}}, c)
		case <-time.After(30 * time.Second):
			t.Fatal("the hand edit was not reported")
		}
		drift, err := b.client.Drift(ctx, b.render(t))
		require.NoError(t, err)
		require.Len(t, drift, 1)
		require.Equal(t, []string{"spec.selector.istio"}, drift[0].Fields)
		_, err = b.client.Reclaim(ctx, b.render(t))
		require.NoError(t, err)
		drift, err = b.client.Drift(ctx, b.render(t))
		require.NoError(t, err)
		require.Empty(t, drift)

		w.next(t, func(s k8s.CertStatus) bool { return s.Exists })

		// After a failed issuance the worker reads the CA's reason from the
		// Challenge, and doctor describes everything.
		_, err = env.CreateFailedIssuance(ctx, cfg.CertNamespace, b.names.Certificate, "urn:ietf:params:acme:error:connection: refused")
		require.NoError(t, err)
		chain, err := b.client.Issuance(ctx, cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err, "read the issuance chain")
		problem, failed := chain.CAProblem()
		require.True(t, failed)
		require.Equal(t, "refused", problem.Detail)
		described, err := b.client.DescribeDomain(ctx, b.d, b.cfg)
		require.NoError(t, err, "describe the domain")
		require.Empty(t, described.IssuanceError)
		require.Len(t, described.Issuance.Challenges, 1)
		require.NoError(t, env.SetCertificateReady(ctx, cfg.CertNamespace, b.names.Certificate, true, "Ready", "ok"))
		w.next(t, func(s k8s.CertStatus) bool { return s.Ready == k8s.ReadyTrue })

		st, err := b.client.GetCertificateStatus(ctx, cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		require.True(t, st.IsReady())
		require.True(t, st.ObjectsPresent)

		all, err := b.client.ListManaged(ctx, k8s.InstallationSelector(b.cfg.Installation))
		require.NoError(t, err)
		n := 0
		for _, m := range all {
			if m.DomainID == b.d.ID {
				n++
			}
		}
		require.Equal(t, 3, n)

		_, err = env.CreateTLSSecret(ctx, cfg.CertNamespace, b.names.Certificate)
		require.NoError(t, err)
		copied, err := b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopied, copied)
		copied, err = b.client.CopySecretToGateway(ctx, b.d, b.cfg)
		require.NoError(t, err)
		require.Equal(t, k8s.SecretCopyCurrent, copied)
		require.NoError(t, b.client.Delete(ctx, b.d, b.cfg))
		_, err = env.Clientset.CoreV1().Secrets(cfg.CertNamespace).Get(ctx, b.names.Secret, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "the Secret was deleted: %v", err)
		_, err = env.Clientset.CoreV1().Secrets(cfg.GatewayNamespace).Get(ctx, b.names.Secret, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "the Secret's copy was deleted: %v", err)

		// Orphan sweep path.
		_, err = b.client.Apply(ctx, b.render(t))
		require.NoError(t, err)
		all, err = b.client.ListManaged(ctx, k8s.InstallationSelector(b.cfg.Installation))
		require.NoError(t, err)
		for _, m := range all {
			if m.DomainID == b.d.ID {
				require.NoError(t, b.client.DeleteManaged(ctx, m, b.cfg.Installation))
			}
		}
	})

	t.Run("Forbidden", func(t *testing.T) {
		saCfg := env.ServiceAccountConfig(t, cfg.CertNamespace, "portal-domains")
		cs, err := kubernetes.NewForConfig(saCfg)
		require.NoError(t, err)
		dyn, err := dynamic.NewForConfig(saCfg)
		require.NoError(t, err)
		other := env.Namespace(t, "other")
		_, err = env.Clientset.CoreV1().Secrets(other).Create(ctx, secret("someone-elses"), metav1.CreateOptions{})
		require.NoError(t, err)

		forbidden := map[string]error{}
		_, forbidden["list pods"] = cs.CoreV1().Pods(cfg.CertNamespace).List(ctx, metav1.ListOptions{})
		forbidden["delete secret in another namespace"] = cs.CoreV1().Secrets(other).Delete(ctx, "someone-elses", metav1.DeleteOptions{})
		_, forbidden["get secret in another namespace"] = cs.CoreV1().Secrets(other).Get(ctx, "someone-elses", metav1.GetOptions{})
		_, forbidden["list secrets in the cert namespace"] = cs.CoreV1().Secrets(cfg.CertNamespace).List(ctx, metav1.ListOptions{})
		_, forbidden["list secrets in the gateway namespace"] = cs.CoreV1().Secrets(cfg.GatewayNamespace).List(ctx, metav1.ListOptions{})
		_, forbidden["create secret"] = cs.CoreV1().Secrets(cfg.CertNamespace).Create(ctx, secret("x"), metav1.CreateOptions{})
		_, forbidden["update certificate status"] = dyn.Resource(k8s.CertificateGVR).Namespace(cfg.CertNamespace).
			UpdateStatus(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
				"metadata": map[string]any{"name": "x", "namespace": cfg.CertNamespace},
			}}, metav1.UpdateOptions{})
		_, forbidden["list services"] = cs.CoreV1().Services(cfg.CertNamespace).List(ctx, metav1.ListOptions{})
		_, forbidden["list challenges in another namespace"] = dyn.Resource(k8s.ChallengeGVR).Namespace(other).List(ctx, metav1.ListOptions{})
		_, forbidden["get a challenge"] = dyn.Resource(k8s.ChallengeGVR).Namespace(cfg.CertNamespace).Get(ctx, "x", metav1.GetOptions{})
		_, forbidden["create an order"] = dyn.Resource(k8s.OrderGVR).Namespace(cfg.CertNamespace).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "acme.cert-manager.io/v1", "kind": "Order", "metadata": map[string]any{"name": "x"}}}, metav1.CreateOptions{})

		d := newDomain(t)
		otherCfg := k8s.Config{CertNamespace: other, GatewayNamespace: cfg.GatewayNamespace}
		objs, err := k8s.Render(d, otherCfg)
		require.NoError(t, err)
		_, forbidden["apply a Certificate outside the cert namespace"] = b.client.Apply(ctx, objs)
		otherCfg = k8s.Config{CertNamespace: cfg.CertNamespace, GatewayNamespace: other}
		objs, err = k8s.Render(d, otherCfg)
		require.NoError(t, err)
		_, forbidden["apply a Gateway outside the gateway namespace"] = b.client.Apply(ctx, objs)

		for what, err := range forbidden {
			require.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
		}
		_, err = env.Clientset.CoreV1().Secrets(other).Get(ctx, "someone-elses", metav1.GetOptions{})
		require.NoError(t, err)
	})
}

func secret(name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		StringData: map[string]string{"password": "hunter2"},
	}
}
