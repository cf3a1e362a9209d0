package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/portal-domains/portal-domains/domain"
	"github.com/portal-domains/portal-domains/jobs"
	"github.com/portal-domains/portal-domains/k8s"
)

// object is one Kubernetes object of a domain, as the test reads it.
type object struct {
	gvr      schema.GroupVersionResource
	ns, name string
}

func (b *bundle) objectsOf(prefix string) []object {
	return []object{
		{k8s.CertificateGVR, b.cfg.Kube.CertNamespace, "portal-domain-" + prefix},
		{k8s.GatewayGVR, b.cfg.Kube.GatewayNamespace, "portal-domain-gw-" + prefix},
		{k8s.VirtualServiceGVR, b.cfg.Kube.CertNamespace, "portal-domain-vs-" + prefix},
	}
}

// versions reads the objects' resourceVersions ("" for a missing one).
func (b *bundle) versions(t *testing.T, objs []object) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		obj, err := b.kube.Dynamic.Resource(o.gvr).Namespace(o.ns).Get(b.ctx, o.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out[o.name] = ""
			continue
		}
		require.NoError(t, err)
		out[o.name] = obj.GetResourceVersion()
	}
	return out
}

// sweepsDone counts the installation's finished orphan sweeps.
func (b *bundle) sweepsDone(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.schema.Pool.QueryRow(b.ctx,
		`SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'completed'`, jobs.KindOrphanSweep).Scan(&n))
	return n
}

// waitForSweeps waits until n more sweeps than now have finished.
func (b *bundle) waitForSweeps(t *testing.T, n int) {
	t.Helper()
	want := b.sweepsDone(t) + n
	require.Eventually(t, func() bool { return b.sweepsDone(t) >= want }, waitTimeout, 100*time.Millisecond,
		"the installation's sweep never ran %d more times", n)
}

// tenantFor makes a tenant whose 7-character prefix is p (7 hex digits) and
// points name at its CNAME target.
func (b *bundle) tenantFor(t *testing.T, p, name string) domain.TenantID {
	t.Helper()
	b.dns.Set(fmt.Sprintf("%s. 300 IN CNAME %s.%s.", name, p, suffix))
	return domain.TenantID(p + "0-0000-4000-8000-" + strings.Repeat(p[:1], 12))
}

// TestTwoInstallationsShareACluster runs three installations (three
// databases) against one API server and the same namespaces, each sweeping
// every second with no grace period: each sweep deletes only its own
// installation's orphans, neither changes the other's objects, and an empty
// database deletes nothing.
func TestTwoInstallationsShareACluster(t *testing.T) {
	t.Parallel()
	fast := setupOpts{sweepInterval: time.Second, sweep: jobs.SweepConfig{MinAge: time.Nanosecond}}
	a := setup(t, fast)
	fast.shareCluster = a
	b := setup(t, fast)
	require.NotEqual(t, a.installation, b.installation)

	aLive := a.register(t, a.tenantFor(t, "aaaaaa1", "a1.acme.test"), "a1.acme.test")
	aGone := a.register(t, a.tenantFor(t, "aaaaaa2", "a2.acme.test"), "a2.acme.test")
	bLive := b.register(t, b.tenantFor(t, "bbbbbb1", "b1.acme.test"), "b1.acme.test")
	bGone := b.register(t, b.tenantFor(t, "bbbbbb2", "b2.acme.test"), "b2.acme.test")
	for _, d := range []struct {
		b  *bundle
		id string
	}{{a, aLive.ID}, {a, aGone.ID}, {b, bLive.ID}, {b, bGone.ID}} {
		d.b.waitFor(t, d.id, "reached certificate_issuing", func(r domain.Record) bool { return r.Status == domain.StatusCertificateIssuing })
	}
	for _, o := range append(a.objectsOf("aaaaaa1"), b.objectsOf("bbbbbb1")...) {
		obj, err := a.kube.Dynamic.Resource(o.gvr).Namespace(o.ns).Get(a.ctx, o.name, metav1.GetOptions{})
		require.NoError(t, err)
		want := a.installation
		if strings.Contains(o.name, "bbbbbb1") {
			want = b.installation
		}
		require.Equal(t, want, obj.GetLabels()[k8s.LabelInstallation], o.name)
	}
	aObjs, bObjs := a.objectsOf("aaaaaa1"), b.objectsOf("bbbbbb1")
	aBefore, bBefore := a.versions(t, aObjs), b.versions(t, bObjs)

	t.Run("AnotherInstallationCannotTakeOverObjects", func(t *testing.T) {
		// B registers A's tenant and domain: same object names. B's apply
		// refuses to write over A's objects and B's tenant reads a plain
		// sentence.
		rec := b.register(t, domain.TenantID(aLive.Tenant), "a1.acme.test")
		failed := b.waitFor(t, rec.ID, "failed", func(r domain.Record) bool { return r.Status == domain.StatusCertificateFailed })
		require.Contains(t, failed.StatusMessage, "does not manage")
		requirePlain(t, failed.StatusMessage)
		require.Equal(t, aBefore, a.versions(t, aObjs), "A's objects unchanged")

		// Disabling it in B deletes nothing of A's: B's disable job leaves
		// the objects, says so in B's history, and removes B's row.
		_, err := b.schema.Pool.Exec(b.ctx, `UPDATE portal_domains SET status = 'disabled' WHERE id = $1`, rec.ID)
		require.NoError(t, err)
		b.waitForDeleted(t, rec.ID)
		require.Equal(t, aBefore, a.versions(t, aObjs), "A's objects neither deleted nor changed by B's disable")
		require.Contains(t, b.eventDetails(t, rec.ID), "left_in_place")
	})

	// Tenant deletion in each database: each sweep deletes its own orphans.
	_, err := a.schema.Pool.Exec(a.ctx, `DELETE FROM portal_domains WHERE id = $1`, aGone.ID)
	require.NoError(t, err)
	_, err = b.schema.Pool.Exec(b.ctx, `DELETE FROM portal_domains WHERE id = $1`, bGone.ID)
	require.NoError(t, err)
	for _, side := range []struct {
		b      *bundle
		prefix string
	}{{a, "aaaaaa2"}, {b, "bbbbbb2"}} {
		objs := side.b.objectsOf(side.prefix)
		require.Eventually(t, func() bool {
			for _, v := range side.b.versions(t, objs) {
				if v != "" {
					return false
				}
			}
			return true
		}, waitTimeout, 100*time.Millisecond, "the sweep deletes its own orphans (%s)", side.prefix)
	}

	// A third installation with an empty database: every object in the
	// cluster would look orphaned to it, were it not for the identity.
	empty := fast
	empty.shareCluster = a
	c := setup(t, empty)
	a.waitForSweeps(t, 3)
	b.waitForSweeps(t, 3)
	c.waitForSweeps(t, 3)
	require.Equal(t, aBefore, a.versions(t, aObjs), "A's live objects neither deleted nor changed")
	require.Equal(t, bBefore, b.versions(t, bObjs), "B's live objects neither deleted nor changed")
}

// requirePlain fails when a tenant-facing message holds what the API server
// said: its error body, internal names, namespaces or addresses.
func requirePlain(t *testing.T, msg string) {
	t.Helper()
	for _, leak := range []string{"forbidden:", "is forbidden", "serviceaccount", "system:", "namespace", "portal-domain-", "cert-manager.io",
		"networking.istio.io", "127.0.0.1", "https://", "dial tcp", "connection refused", "admission", "field manager", "installation ",
		"denied", "conflict with", ".spec"} {
		require.NotContains(t, strings.ToLower(msg), strings.ToLower(leak), "tenant-facing message %q", msg)
	}
}

// eventDetails returns the details of the domain's history rows.
func (b *bundle) eventDetails(t *testing.T, id string) string {
	t.Helper()
	rows, err := b.schema.Pool.Query(b.ctx, `SELECT details::text FROM portal_domain_events WHERE domain_id = $1 ORDER BY id`, id)
	require.NoError(t, err)
	defer rows.Close()
	var all []string
	for rows.Next() {
		var d string
		require.NoError(t, rows.Scan(&d))
		all = append(all, d)
	}
	require.NoError(t, rows.Err())
	return strings.Join(all, "\n")
}

// TestTenantMessagesArePlain fails applies with real API server errors and
// checks that the tenant reads a plain sentence while the event history
// keeps the API server's words.
func TestTenantMessagesArePlain(t *testing.T) {
	t.Parallel()

	t.Run("Forbidden", func(t *testing.T) {
		t.Parallel()
		probe := setup(t, setupOpts{})
		// A ServiceAccount with no role at all: every request is forbidden.
		sa := probe.kube.ServiceAccountConfig(t, probe.cfg.Kube.CertNamespace, "no-rights")
		b := setup(t, setupOpts{shareCluster: probe, restConfig: sa})
		rec := b.register(t, tenant, "portal.acme.test")
		failed := b.waitFor(t, rec.ID, "failed", func(r domain.Record) bool { return r.Status == domain.StatusCertificateFailed })
		require.Contains(t, failed.StatusMessage, "not permitted")
		requirePlain(t, failed.StatusMessage)
		require.Contains(t, b.eventDetails(t, rec.ID), "forbidden", "the operator's history keeps the API server's answer")
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		// An admission policy in the test's namespace rejects every
		// Certificate as Invalid, naming internal details.
		denyCertificates(t, b, metav1.StatusReasonInvalid)
		rec := b.register(t, tenant, "portal.acme.test")
		failed := b.waitFor(t, rec.ID, "failed", func(r domain.Record) bool { return r.Status == domain.StatusCertificateFailed })
		require.Contains(t, failed.StatusMessage, "valid configuration")
		requirePlain(t, failed.StatusMessage)
		require.Contains(t, b.eventDetails(t, rec.ID), "internal-issuer.svc.cluster.local")
	})

	t.Run("Conflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		// An operator's kubectl owns dnsNames of this installation's
		// Certificate with another value: server-side apply conflicts.
		cert := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
			"metadata": map[string]any{"name": "portal-domain-abc1234", "namespace": b.cfg.Kube.CertNamespace,
				"labels": map[string]any{k8s.LabelManaged: "true", k8s.LabelInstallation: b.installation}},
			"spec": map[string]any{"secretName": "portal-domain-abc1234", "dnsNames": []any{"hand.edited.test"},
				"issuerRef": map[string]any{"name": "letsencrypt-prod", "kind": "ClusterIssuer", "group": "cert-manager.io"}},
		}}
		body, err := json.Marshal(cert.Object)
		require.NoError(t, err)
		force := true
		_, err = b.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.Kube.CertNamespace).Patch(b.ctx, "portal-domain-abc1234",
			types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "kubectl-edit", Force: &force})
		require.NoError(t, err)
		rec := b.register(t, tenant, "portal.acme.test")
		failed := b.waitFor(t, rec.ID, "failed", func(r domain.Record) bool { return r.Status == domain.StatusCertificateFailed })
		require.Contains(t, failed.StatusMessage, "changed outside the platform")
		requirePlain(t, failed.StatusMessage)
		require.Contains(t, b.eventDetails(t, rec.ID), "kubectl-edit")
	})

	t.Run("Unavailable", func(t *testing.T) {
		t.Parallel()
		probe := setup(t, setupOpts{})
		// An address where no API server answers any more.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		gone := rest.CopyConfig(probe.kube.Config)
		gone.Host = "https://" + addr
		b := setup(t, setupOpts{shareCluster: probe, restConfig: gone})
		rec := b.register(t, tenant, "portal.acme.test")
		retrying := b.waitFor(t, rec.ID, "retrying", func(r domain.Record) bool {
			return r.Status == domain.StatusPendingCertificate && strings.Contains(r.StatusMessage, "retrying")
		})
		require.Contains(t, retrying.StatusMessage, "temporarily unavailable")
		requirePlain(t, retrying.StatusMessage)
		require.Contains(t, b.eventDetails(t, rec.ID), addr)
	})
}

// denyCertificates installs a ValidatingAdmissionPolicy rejecting every
// Certificate created in the bundle's namespace with reason.
func denyCertificates(t *testing.T, b *bundle, reason metav1.StatusReason) {
	t.Helper()
	ctx := context.WithoutCancel(b.ctx)
	name := "deny-" + b.cfg.Kube.CertNamespace
	fail := admissionv1.Fail
	deny := []admissionv1.ValidationAction{admissionv1.Deny}
	policies := b.kube.Clientset.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	_, err := policies.Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"cert-manager.io"}, APIVersions: []string{"v1"}, Resources: []string{"certificates"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "false", Reason: &reason,
				Message: "issuer internal-issuer.svc.cluster.local refuses this namespace"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = b.kube.Clientset.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name, ValidationActions: deny,
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": b.cfg.Kube.CertNamespace}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.kube.Clientset.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = policies.Delete(ctx, name, metav1.DeleteOptions{})
	})
	// The policy takes effect once the API server has compiled it: wait
	// until a dry-run create of a Certificate is refused.
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
		"metadata": map[string]any{"name": "policy-probe", "namespace": b.cfg.Kube.CertNamespace},
		"spec": map[string]any{"secretName": "x", "dnsNames": []any{"x.test"},
			"issuerRef": map[string]any{"name": "x", "kind": "ClusterIssuer"}},
	}}
	require.Eventually(t, func() bool {
		_, err := b.kube.Dynamic.Resource(k8s.CertificateGVR).Namespace(b.cfg.Kube.CertNamespace).Create(ctx, probe,
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && apierrors.IsInvalid(err)
	}, waitTimeout, 100*time.Millisecond, "the admission policy never took effect")
}
