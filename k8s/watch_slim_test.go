package k8s

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	slim := out.(*unstructured.Unstructured)
	require.Equal(t, certStatusFrom(cert), certStatusFrom(slim))
	require.Equal(t, "d1", slim.GetLabels()[LabelDomainID])
	require.Empty(t, slim.GetManagedFields())
	require.Empty(t, slim.GetAnnotations())
	_, hasIssuer, _ := unstructured.NestedMap(slim.Object, "spec", "issuerRef")
	require.False(t, hasIssuer)
}
