package k8s

import (
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOtherSpecManagers(t *testing.T) {
	t.Parallel()
	entry := func(manager, subresource, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Subresource: subresource, FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	}
	require.Empty(t, otherSpecManagers([]metav1.ManagedFieldsEntry{
		entry(FieldManager, "", `{"f:spec":{"f:dnsNames":{}}}`),
		entry("cert-manager-certificates-readiness", "status", `{"f:status":{}}`),
		entry(FieldManager+"-adopt", "", `{"f:metadata":{"f:labels":{}}}`),
	}), "this worker, status writers and label-only writers are not hand edits of the spec")
	require.Equal(t, []string{"kubectl-client-side-apply", "kubectl-edit"}, otherSpecManagers([]metav1.ManagedFieldsEntry{
		entry(FieldManager, "", `{"f:spec":{}}`),
		entry("kubectl-edit", "", `{"f:spec":{"f:dnsNames":{}}}`),
		entry("kubectl-client-side-apply", "", `{"f:metadata":{},"f:spec":{"f:duration":{}}}`),
		entry("kubectl-edit", "", `{"f:spec":{"f:secretName":{}}}`),
	}))
}

func TestDifferingFields(t *testing.T) {
	t.Parallel()
	objs, err := Render(Domain{ID: "0f783a23-2048-469d-b490-e78de37323eb", Tenant: "abc12345-0000-4000-8000-000000000001",
		Host: "portal.acme.com", CanonicalHost: "abc1234.portal.algapsa.com"}, Config{Installation: "i1"})
	require.NoError(t, err)
	for _, want := range objs.All() {
		have := want.DeepCopy()
		have.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "x"}})
		have.Object["status"] = map[string]any{"conditions": []any{}}
		require.Empty(t, differingFields(want, have), "%s: server-side fields and status are not drift", want.GetKind())
	}
	have := objs.Gateway.DeepCopy()
	have.Object["spec"].(map[string]any)["selector"] = map[string]any{"istio": "elsewhere", "extra": "x"}
	labels := have.GetLabels()
	delete(labels, LabelTenant)
	labels["someone"] = "else"
	have.SetLabels(labels)
	require.Equal(t, []string{"spec.selector.istio", "metadata.labels." + LabelTenant}, differingFields(objs.Gateway, have),
		"fields the worker sets that differ; what only others set is not drift")
	vs := objs.VirtualService.DeepCopy()
	vs.Object["spec"].(map[string]any)["http"] = []any{}
	require.Equal(t, []string{"spec.http"}, differingFields(objs.VirtualService, vs), "lists are compared whole")
}

func TestSlimMetadataIsIdempotent(t *testing.T) {
	t.Parallel()
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "portal-domain-gw-abc1234", Namespace: "istio-system", UID: "u1",
		Generation: 2, Labels: map[string]string{LabelDomainID: "d1", LabelManaged: "true", LabelTenant: "t1"},
		Annotations: map[string]string{AnnotationDomainHost: "portal.acme.com", "other": "x"},
		ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: FieldManager, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}},
			{Manager: "kubectl-edit", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:selector":{}}}`)}},
		}}}
	once, err := slimMetadata(m)
	require.NoError(t, err)
	twice, err := slimMetadata(once)
	require.NoError(t, err)
	require.Equal(t, once, twice, "the informer's initial list runs the transform on slimmed objects")
	slim, ok := twice.(*watchedMeta)
	require.True(t, ok, "the cache holds the compact form, not the PartialObjectMetadata")
	require.Equal(t, []string{"kubectl-edit"}, slim.Managers)
	require.Equal(t, &metav1.ObjectMeta{Name: "portal-domain-gw-abc1234", Namespace: "istio-system", UID: "u1", Generation: 2},
		slim.GetObjectMeta(), "the store reads the identity through meta.Accessor")
	require.Equal(t, HandChange{Kind: "Gateway", Namespace: "istio-system", Name: "portal-domain-gw-abc1234", DomainID: "d1",
		Tenant: "t1", Host: "portal.acme.com", Change: ChangeEdited, Revision: "u1/2", Managers: []string{"kubectl-edit"}},
		handChange("Gateway", slim, ChangeEdited))
	require.Equal(t, slim, slim.DeepCopyObject(), "the store's copies keep every field")
}
