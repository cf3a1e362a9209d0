package k8s

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

func TestSlimCertificateKeepsWhatTheWatchReads(t *testing.T) {
	t.Parallel()
	cert := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "Certificate",
		"metadata": map[string]any{
			"name": "portal-domain-abc1234", "namespace": "msp", "uid": "u1", "resourceVersion": "42", "generation": int64(3),
			"labels":        map[string]any{LabelDomainID: "d1", LabelManaged: "true", LabelTenant: "t1"},
			"annotations":   map[string]any{"big": "annotation"},
			"managedFields": []any{map[string]any{"manager": "portal-domains", "fieldsV1": map[string]any{"f:spec": map[string]any{}}}},
		},
		"spec": map[string]any{"secretName": "portal-domain-abc1234", "dnsNames": []any{"portal.acme.com"},
			"issuerRef": map[string]any{"kind": "ClusterIssuer", "name": "letsencrypt-prod"}},
		"status": map[string]any{
			"conditions": []any{map[string]any{"type": "Ready", "status": "False", "reason": "Failed", "message": "challenge 404",
				"lastTransitionTime": "2026-11-26T10:00:00Z", "observedGeneration": int64(3)}},
			"failedIssuanceAttempts": int64(2), "lastFailureTime": "2026-11-26T10:00:00Z",
		},
	}}
	out, err := slimCertificate(cert)
	require.NoError(t, err)
	slim, ok := out.(*watchedCert)
	require.True(t, ok, "the cache holds the compact form, not %T", out)
	require.Equal(t, certStatusFrom(cert), slim.Status)
	require.Equal(t, "d1", slim.DomainID)
	require.Equal(t, &watchedCert{Name: "portal-domain-abc1234", Namespace: "msp", UID: "u1", DomainID: "d1", Status: certStatusFrom(cert)}, slim,
		"identity and status only: no labels, annotations, managed fields or other spec")
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(slim)
	require.NoError(t, err)
	require.Equal(t, "msp/portal-domain-abc1234", key, "the store keys the compact form as it keyed the Certificate")
	m, err := meta.Accessor(slim)
	require.NoError(t, err)
	require.Equal(t, "42", m.GetResourceVersion())
	require.Equal(t, int64(3), m.GetGeneration())
	twice, err := slimCertificate(slim)
	require.NoError(t, err)
	require.Same(t, slim, twice, "the informer's initial list runs the transform on slimmed objects")
	cp := slim.DeepCopyObject().(*watchedCert)
	require.Equal(t, slim, cp, "the store's copies keep every field")
	cp.Status.DNSNames[0] = "changed"
	require.Equal(t, []string{"portal.acme.com"}, slim.Status.DNSNames, "a copy shares no slice with the cached object")
	st := slim.status()
	st.DNSNames[0] = "changed"
	require.Equal(t, []string{"portal.acme.com"}, slim.Status.DNSNames, "what the handlers get shares no slice with the cache")
}
