package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
)

var certificateGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// UpdateCertificateStatus plays cert-manager: it reads the Certificate,
// lets mutate edit its status map (created if absent) and writes the status
// subresource, retrying on write conflicts.
func (e *Env) UpdateCertificateStatus(ctx context.Context, namespace, name string, mutate func(cert *unstructured.Unstructured, status map[string]any)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		res := e.Dynamic.Resource(certificateGVR).Namespace(namespace)
		cert, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get Certificate %s/%s: %w", namespace, name, err)
		}
		status, _, _ := unstructured.NestedMap(cert.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		mutate(cert, status)
		if err := unstructured.SetNestedMap(cert.Object, status, "status"); err != nil {
			return err
		}
		_, err = res.UpdateStatus(ctx, cert, metav1.UpdateOptions{FieldManager: "cert-manager-certificates-readiness"})
		return err
	})
}

// SetCertificateReady sets the Ready condition as cert-manager would: for
// the current generation, with lastTransitionTime moved only when the status
// changes. Ready=true also fills notBefore/notAfter/renewalTime (90-day
// certificate) and clears the failure fields; Ready=false with a non-empty
// reason other than "Issuing" or "DoesNotExist" counts a failed issuance
// (failedIssuanceAttempts+1, lastFailureTime now).
func (e *Env) SetCertificateReady(ctx context.Context, namespace, name string, ready bool, reason, message string) error {
	return e.UpdateCertificateStatus(ctx, namespace, name, func(cert *unstructured.Unstructured, status map[string]any) {
		now := time.Now().UTC().Truncate(time.Second)
		st := "False"
		if ready {
			st = "True"
		}
		ltt := now.Format(time.RFC3339)
		conds, _ := status["conditions"].([]any)
		var kept []any
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Ready" {
				if m["status"] == st {
					if prev, ok := m["lastTransitionTime"].(string); ok {
						ltt = prev
					}
				}
				continue
			}
			kept = append(kept, c)
		}
		status["conditions"] = append(kept, map[string]any{
			"type":               "Ready",
			"status":             st,
			"reason":             reason,
			"message":            message,
			"lastTransitionTime": ltt,
			"observedGeneration": cert.GetGeneration(),
		})
		if ready {
			status["notBefore"] = now.Format(time.RFC3339)
			status["notAfter"] = now.Add(90 * 24 * time.Hour).Format(time.RFC3339)
			status["renewalTime"] = now.Add(60 * 24 * time.Hour).Format(time.RFC3339)
			delete(status, "failedIssuanceAttempts")
			delete(status, "lastFailureTime")
			return
		}
		if reason != "" && reason != "Issuing" && reason != "DoesNotExist" {
			n, _ := status["failedIssuanceAttempts"].(int64)
			status["failedIssuanceAttempts"] = n + 1
			status["lastFailureTime"] = now.Format(time.RFC3339)
		}
	})
}

// CreateTLSSecret plays cert-manager issuing: it reads the Certificate and
// creates its spec.secretName as a kubernetes.io/tls Secret holding a real
// (self-signed) certificate for spec.dnsNames, with the secretTemplate
// labels and cert-manager's annotations. It returns the certificate PEM.
func (e *Env) CreateTLSSecret(ctx context.Context, namespace, certName string) ([]byte, error) {
	cert, err := e.Dynamic.Resource(certificateGVR).Namespace(namespace).Get(ctx, certName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Certificate %s/%s: %w", namespace, certName, err)
	}
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	labels, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "secretTemplate", "labels")
	issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	issuerKind, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind")
	if secretName == "" || len(dnsNames) == 0 {
		return nil, fmt.Errorf("Certificate %s/%s has no secretName or dnsNames", namespace, certName)
	}
	certPEM, keyPEM, err := SelfSignedPEM(time.Now().Add(-time.Minute), time.Now().Add(90*24*time.Hour), dnsNames...)
	if err != nil {
		return nil, err
	}
	if labels == nil {
		labels = map[string]string{}
	}
	labels["controller.cert-manager.io/fao"] = "true"
	_, err = e.Clientset.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:   secretName,
			Labels: labels,
			Annotations: map[string]string{
				"cert-manager.io/certificate-name": certName,
				"cert-manager.io/alt-names":        strings.Join(dnsNames, ","),
				"cert-manager.io/issuer-name":      issuer,
				"cert-manager.io/issuer-kind":      issuerKind,
				"cert-manager.io/issuer-group":     "cert-manager.io",
			},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": certPEM},
	}, metav1.CreateOptions{FieldManager: "cert-manager-certificates-issuing"})
	if err != nil {
		return nil, fmt.Errorf("create Secret %s/%s: %w", namespace, secretName, err)
	}
	return certPEM, nil
}

// SelfSignedPEM makes a self-signed ECDSA certificate for names, valid from
// notBefore to notAfter, as PEM certificate and key.
func SelfSignedPEM(notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
