package kubetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/k8s"
)

// Field managers of the cert-manager controllers whose writes these
// helpers play.
const (
	readinessManager = "cert-manager-certificates-readiness"
	issuingManager   = "cert-manager-certificates-issuing"
)

// UpdateCertificateStatus plays cert-manager: it reads the Certificate,
// lets mutate edit its status map (created if absent) and writes the status
// subresource, retrying on write conflicts.
func (e *Env) UpdateCertificateStatus(ctx context.Context, namespace, name string, mutate func(cert *unstructured.Unstructured, status map[string]any)) error {
	return issuer.UpdateStatus(ctx, e.Dynamic, namespace, name, nil, readinessManager, mutate)
}

// SetCertificateReady sets the Ready condition as cert-manager would
// (issuer.MarkReady, issuer.MarkNotReady): Ready=true also fills the
// validity and clears the failure fields; Ready=false with a reason other
// than Issuing or DoesNotExist counts a failed issuance.
func (e *Env) SetCertificateReady(ctx context.Context, namespace, name string, ready bool, reason, message string) error {
	return e.UpdateCertificateStatus(ctx, namespace, name, func(cert *unstructured.Unstructured, status map[string]any) {
		if ready {
			issuer.MarkReady(cert, status, time.Now(), message)
		} else {
			issuer.MarkNotReady(cert, status, time.Now(), reason, message)
		}
	})
}

// CreateTLSSecret plays cert-manager issuing: it creates the Certificate's
// spec.secretName as the kubernetes.io/tls Secret issuer.Issue makes,
// signed by the Env's CA, and returns the certificate PEM. A Secret that
// exists already is an AlreadyExists error.
func (e *Env) CreateTLSSecret(ctx context.Context, namespace, certName string) ([]byte, error) {
	cert, err := e.Dynamic.Resource(k8s.CertificateGVR).Namespace(namespace).Get(ctx, certName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Certificate %s/%s: %w", namespace, certName, err)
	}
	secret, certPEM, err := issuer.Issue(e.CA, cert, time.Now())
	if err != nil {
		return nil, err
	}
	if _, err := e.Dynamic.Resource(k8s.SecretGVR).Namespace(namespace).Create(ctx, secret,
		metav1.CreateOptions{FieldManager: issuingManager}); err != nil {
		return nil, fmt.Errorf("create Secret %s/%s: %w", namespace, secret.GetName(), err)
	}
	return certPEM, nil
}

// RenewCertificate plays cert-manager renewing an issued Certificate at
// now: it writes a new key pair into the existing Secret, then marks the
// Certificate Ready again with the new validity (notAfter from now), in
// that order, and returns the new certificate PEM.
func (e *Env) RenewCertificate(ctx context.Context, namespace, certName string, now time.Time) ([]byte, error) {
	cert, err := e.Dynamic.Resource(k8s.CertificateGVR).Namespace(namespace).Get(ctx, certName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Certificate %s/%s: %w", namespace, certName, err)
	}
	secret, certPEM, err := issuer.Issue(e.CA, cert, now)
	if err != nil {
		return nil, err
	}
	if _, err := e.Dynamic.Resource(k8s.SecretGVR).Namespace(namespace).Apply(ctx, secret.GetName(), secret,
		metav1.ApplyOptions{FieldManager: issuingManager, Force: true}); err != nil {
		return nil, fmt.Errorf("renew Secret %s/%s: %w", namespace, secret.GetName(), err)
	}
	err = e.UpdateCertificateStatus(ctx, namespace, certName, func(cert *unstructured.Unstructured, status map[string]any) {
		issuer.MarkReady(cert, status, now, "Certificate is up to date and has not expired")
	})
	return certPEM, err
}

// SelfSignedPEM makes a self-signed certificate for names, valid from
// notBefore to notAfter, as PEM certificate and key (issuer.SelfSigned).
func SelfSignedPEM(notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte, err error) {
	return issuer.SelfSigned(notBefore, notAfter, names...)
}

// CreateFailedIssuance plays cert-manager after the CA refused to validate
// the Certificate namespace/certName: a failed CertificateRequest
// controlled by the Certificate, an invalid Order controlled by that
// request and an invalid HTTP-01 Challenge controlled by the Order whose
// status.reason is challengeReason. It returns the Challenge's token.
func (e *Env) CreateFailedIssuance(ctx context.Context, namespace, certName, challengeReason string) (string, error) {
	cert, err := e.Dynamic.Resource(k8s.CertificateGVR).Namespace(namespace).Get(ctx, certName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get Certificate %s/%s: %w", namespace, certName, err)
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if len(dnsNames) == 0 {
		return "", fmt.Errorf("Certificate %s/%s has no dnsNames", namespace, certName)
	}
	issuerRef := map[string]any{"name": "test-issuer", "kind": "ClusterIssuer", "group": "cert-manager.io"}
	now := time.Now().UTC().Format(time.RFC3339)
	const token = "tok3n-for-tests"
	// create makes obj controlled by owner and then sets its status, as
	// cert-manager's controllers do in two writes. Requests and Orders get
	// the Certificate's labels, Challenges none, as cert-manager does.
	create := func(gvr schema.GroupVersionResource, owner *unstructured.Unstructured, obj map[string]any, status map[string]any) (*unstructured.Unstructured, error) {
		u := &unstructured.Unstructured{Object: obj}
		u.SetNamespace(namespace)
		if gvr != k8s.ChallengeGVR {
			u.SetLabels(cert.GetLabels())
		}
		yes := true
		u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: owner.GetAPIVersion(), Kind: owner.GetKind(),
			Name: owner.GetName(), UID: owner.GetUID(), Controller: &yes, BlockOwnerDeletion: &yes}})
		res := e.Dynamic.Resource(gvr).Namespace(namespace)
		made, err := res.Create(ctx, u, metav1.CreateOptions{FieldManager: "cert-manager"})
		if err != nil {
			return nil, fmt.Errorf("create %s %s: %w", gvr.Resource, u.GetName(), err)
		}
		made.Object["status"] = status
		if made, err = res.UpdateStatus(ctx, made, metav1.UpdateOptions{FieldManager: "cert-manager"}); err != nil {
			return nil, fmt.Errorf("set status of %s %s: %w", gvr.Resource, u.GetName(), err)
		}
		return made, nil
	}
	csr := base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	req, err := create(k8s.CertificateRequestGVR, cert, map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
		"metadata": map[string]any{"name": certName + "-1", "annotations": map[string]any{
			"cert-manager.io/certificate-name": certName, "cert-manager.io/certificate-revision": "1"}},
		"spec": map[string]any{"request": csr, "issuerRef": issuerRef},
	}, map[string]any{"failureTime": now, "conditions": []any{map[string]any{
		"type": "Ready", "status": "False", "reason": "Failed", "lastTransitionTime": now,
		"message": fmt.Sprintf(`Failed to wait for order resource "%s-1-1" to become ready: order is in "invalid" state: `, certName)}}})
	if err != nil {
		return "", err
	}
	order, err := create(k8s.OrderGVR, req, map[string]any{
		"apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
		"metadata": map[string]any{"name": certName + "-1-1"},
		"spec":     map[string]any{"request": csr, "issuerRef": issuerRef, "dnsNames": []any{dnsNames[0]}},
	}, map[string]any{"state": "invalid", "failureTime": now})
	if err != nil {
		return "", err
	}
	_, err = create(k8s.ChallengeGVR, order, map[string]any{
		"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
		"metadata": map[string]any{"name": certName + "-1-1-1"},
		"spec": map[string]any{"url": "https://ca.test/chal/1", "authorizationURL": "https://ca.test/authz/1", "dnsName": dnsNames[0],
			"type": "HTTP-01", "token": token, "key": token + ".thumbprint", "issuerRef": issuerRef,
			"solver": map[string]any{"http01": map[string]any{"ingress": map[string]any{}}}},
	}, map[string]any{"state": "invalid", "reason": challengeReason, "processing": false, "presented": false})
	return token, err
}
