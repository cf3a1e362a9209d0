package kubetest

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
