package issuer

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/portal-domains/portal-domains/k8s"
)

// What cert-manager writes, and how: the Certificate's status (conditions,
// validity, revision, failure counters) and the kubernetes.io/tls Secret.
// The Controller uses it to play cert-manager in the dev stack and the
// bench; k8s/kubetest uses it for tests that set a Certificate's state
// step by step.

// Lifetime is how long an issued certificate is valid, as Let's Encrypt's.
const Lifetime = 90 * 24 * time.Hour

// Spec is the part of a Certificate an issuer reads.
type Spec struct {
	SecretName             string
	DNSNames               []string
	IssuerKind, IssuerName string
	SecretLabels           map[string]string
}

// SpecOf reads a Certificate's Spec.
func SpecOf(cert *unstructured.Unstructured) Spec {
	var s Spec
	s.SecretName, _, _ = unstructured.NestedString(cert.Object, "spec", "secretName")
	s.DNSNames, _, _ = unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	s.IssuerKind, _, _ = unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind")
	s.IssuerName, _, _ = unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	s.SecretLabels, _, _ = unstructured.NestedStringMap(cert.Object, "spec", "secretTemplate", "labels")
	return s
}

// namesIssuer: cert-manager defaults an empty issuerRef.kind to Issuer.
func (s Spec) namesIssuer(kind, name string) bool {
	return s.IssuerName == name && strings.EqualFold(cmp.Or(s.IssuerKind, "Issuer"), kind)
}

// ReadyForGeneration reports whether Ready=True was set for the
// Certificate's current spec.
func ReadyForGeneration(cert *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		og, _ := m["observedGeneration"].(int64)
		return m["status"] == "True" && og >= cert.GetGeneration()
	}
	return false
}

// Issue signs a certificate for the Certificate's dnsNames with ca, valid
// for Lifetime from now, and returns the TLS Secret cert-manager would
// write for it: tls.crt, tls.key and ca.crt, the secretTemplate's labels
// and cert-manager's annotations (by which the disable job recognises it).
func Issue(ca *CA, cert *unstructured.Unstructured, now time.Time) (secret *unstructured.Unstructured, certPEM []byte, err error) {
	spec := SpecOf(cert)
	if spec.SecretName == "" || len(spec.DNSNames) == 0 {
		return nil, nil, fmt.Errorf("Certificate %s/%s has no secretName or dnsNames", cert.GetNamespace(), cert.GetName())
	}
	certPEM, keyPEM, err := ca.Issue(spec.DNSNames, now.Add(-time.Minute), now.Add(Lifetime))
	if err != nil {
		return nil, nil, err
	}
	labels := map[string]any{"controller.cert-manager.io/fao": "true"}
	for k, v := range spec.SecretLabels {
		labels[k] = v
	}
	annotations := map[string]any{
		"cert-manager.io/certificate-name": cert.GetName(),
		"cert-manager.io/alt-names":        strings.Join(spec.DNSNames, ","),
		"cert-manager.io/common-name":      spec.DNSNames[0],
		"cert-manager.io/issuer-name":      spec.IssuerName,
		"cert-manager.io/issuer-kind":      spec.IssuerKind,
		"cert-manager.io/issuer-group":     "cert-manager.io",
		"portal-domains.dev/issued-by":     "stand-in issuer (local CA); not a real certificate",
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name":        spec.SecretName,
			"namespace":   cert.GetNamespace(),
			"labels":      labels,
			"annotations": annotations,
		},
		"type": "kubernetes.io/tls",
		"data": map[string]any{
			"tls.crt": base64.StdEncoding.EncodeToString(certPEM),
			"tls.key": base64.StdEncoding.EncodeToString(keyPEM),
			"ca.crt":  base64.StdEncoding.EncodeToString(ca.CertPEM()),
		},
	}}, certPEM, nil
}

// UpdateStatus edits a Certificate's status subresource as fieldManager:
// mutate gets the Certificate and its status map (created when absent).
// It starts from seen when given (an informer's copy) and reads the
// Certificate otherwise, and again after each write conflict.
func UpdateStatus(ctx context.Context, dyn dynamic.Interface, namespace, name string, seen *unstructured.Unstructured,
	fieldManager string, mutate func(cert *unstructured.Unstructured, status map[string]any)) error {
	res := dyn.Resource(k8s.CertificateGVR).Namespace(namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cert *unstructured.Unstructured
		if seen != nil {
			cert, seen = seen.DeepCopy(), nil
		} else {
			var err error
			if cert, err = res.Get(ctx, name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		status, _, _ := unstructured.NestedMap(cert.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		mutate(cert, status)
		if err := unstructured.SetNestedMap(cert.Object, status, "status"); err != nil {
			return err
		}
		_, err := res.UpdateStatus(ctx, cert, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("update status of Certificate %s/%s: %w", namespace, name, err)
	}
	return nil
}

// MarkReady sets what cert-manager shows once a certificate is issued:
// Ready=True for the current generation, no Issuing condition, the
// validity (notBefore, notAfter, renewalTime at two thirds), the next
// revision, and no failure counters.
func MarkReady(cert *unstructured.Unstructured, status map[string]any, now time.Time, message string) {
	now = now.UTC().Truncate(time.Second)
	setCondition(status, cert.GetGeneration(), now, "Ready", "True", "Ready", message)
	removeCondition(status, "Issuing")
	status["notBefore"] = now.Format(time.RFC3339)
	status["notAfter"] = now.Add(Lifetime).Format(time.RFC3339)
	status["renewalTime"] = now.Add(Lifetime * 2 / 3).Format(time.RFC3339)
	rev, _ := status["revision"].(int64)
	status["revision"] = rev + 1
	delete(status, "failedIssuanceAttempts")
	delete(status, "lastFailureTime")
}

// MarkNotReady sets Ready=False with reason and message. A reason other
// than Issuing or DoesNotExist (which cert-manager sets while it works)
// counts a failed issuance, as cert-manager's failedIssuanceAttempts and
// lastFailureTime do.
func MarkNotReady(cert *unstructured.Unstructured, status map[string]any, now time.Time, reason, message string) {
	now = now.UTC().Truncate(time.Second)
	setCondition(status, cert.GetGeneration(), now, "Ready", "False", reason, message)
	if reason != "" && reason != "Issuing" && reason != "DoesNotExist" {
		n, _ := status["failedIssuanceAttempts"].(int64)
		status["failedIssuanceAttempts"] = n + 1
		status["lastFailureTime"] = now.Format(time.RFC3339)
	}
}

// MarkIssuing sets what cert-manager shows while it works on a
// Certificate: Issuing=True with the reason issuance was triggered and,
// when that reason is DoesNotExist (no Secret yet), Ready=False with the
// same reason, which cert-manager does not count as a failure.
func MarkIssuing(cert *unstructured.Unstructured, status map[string]any, now time.Time, reason, message string) {
	setCondition(status, cert.GetGeneration(), now, "Issuing", "True", reason, message)
	if reason == "DoesNotExist" {
		MarkNotReady(cert, status, now, reason, message)
	}
}

// setCondition sets one condition the way cert-manager does: for the given
// generation, moving lastTransitionTime only when the status changes.
func setCondition(status map[string]any, generation int64, now time.Time, typ, st, reason, message string) {
	ltt := now.UTC().Truncate(time.Second).Format(time.RFC3339)
	conds, _ := status["conditions"].([]any)
	kept := make([]any, 0, len(conds)+1)
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			if prev, ok := m["lastTransitionTime"].(string); ok && m["status"] == st {
				ltt = prev
			}
			continue
		}
		kept = append(kept, c)
	}
	status["conditions"] = append(kept, map[string]any{
		"type": typ, "status": st, "reason": reason, "message": message,
		"lastTransitionTime": ltt, "observedGeneration": generation,
	})
}

func removeCondition(status map[string]any, typ string) {
	conds, _ := status["conditions"].([]any)
	kept := make([]any, 0, len(conds))
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] != typ {
			kept = append(kept, c)
		}
	}
	status["conditions"] = kept
}
