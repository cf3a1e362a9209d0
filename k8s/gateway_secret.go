package k8s

import (
	"context"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Istio's ingress gateway reads a Gateway's tls.credentialName from the
// namespace its own Pods run in, while cert-manager writes the Secret beside
// the Certificate. When the two namespaces differ the worker keeps a copy of
// the Secret in the gateway namespace, as AlgaPSA does, marked with
// AlgaPSA's own origin labels so either can recognise the other's copy.
const (
	LabelOriginSecretName      = "portal.alga-psa.com/origin-secret-name"
	LabelOriginSecretNamespace = "portal.alga-psa.com/origin-secret-namespace"
	// AnnotationOriginResourceVersion is the source Secret's resourceVersion
	// the copy was made from: equal means the copy is current.
	AnnotationOriginResourceVersion = "portal.alga-psa.com/origin-resource-version"
)

// SecretCopy is what CopySecretToGateway found or did.
type SecretCopy string

const (
	// SecretCopyNotNeeded: the gateway reads the Certificate's own namespace.
	SecretCopyNotNeeded SecretCopy = "not_needed"
	// SecretSourceMissing: cert-manager has not written the Secret (yet).
	SecretSourceMissing SecretCopy = "source_missing"
	// SecretCopyCurrent: the copy already holds the source's data.
	SecretCopyCurrent SecretCopy = "current"
	// SecretCopied: the copy was created or brought up to date.
	SecretCopied SecretCopy = "copied"
)

// CopySecretToGateway makes the TLS Secret cert-manager issued for the
// domain's Certificate available in the gateway namespace, where Istio reads
// it. It copies only tls.crt and tls.key, only from a Secret cert-manager
// issued for that Certificate, and only over a Secret that is this
// installation's copy (or AlgaPSA's copy of the same source, which it then
// claims). It writes nothing when the copy is current, so calling it again is
// cheap. Errors never carry the Secret's data.
func (c *Client) CopySecretToGateway(ctx context.Context, d Domain, cfg Config) (SecretCopy, error) {
	n, err := NamesFor(d, cfg)
	if err != nil {
		return "", fmt.Errorf("copy TLS Secret: %w", err)
	}
	if n.GatewayNamespace == n.CertNamespace {
		return SecretCopyNotNeeded, nil
	}
	objs, err := Render(d, cfg)
	if err != nil {
		return "", fmt.Errorf("copy TLS Secret: %w", err)
	}
	srcOp := fmt.Sprintf("read Secret %s/%s", n.CertNamespace, n.Secret)
	src, err := c.dyn.Resource(SecretGVR).Namespace(n.CertNamespace).Get(ctx, n.Secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return SecretSourceMissing, nil
	}
	if err != nil {
		return "", classify(ctx, srcOp, err)
	}
	if issuedFor := src.GetAnnotations()[certManagerCertificateName]; issuedFor != n.Certificate {
		return "", fmt.Errorf("%s: %w: not copied: cert-manager did not issue it for Certificate %s", srcOp, ErrNotOurs, n.Certificate)
	}
	crt, _, _ := unstructured.NestedString(src.Object, "data", "tls.crt")
	key, _, _ := unstructured.NestedString(src.Object, "data", "tls.key")
	if crt == "" || key == "" {
		// cert-manager writes the pair together; a half-written Secret is
		// waited for like a missing one.
		return SecretSourceMissing, nil
	}

	dstOp := fmt.Sprintf("copy Secret %s/%s to %s", n.CertNamespace, n.Secret, n.GatewayNamespace)
	dst, err := c.dyn.Resource(SecretGVR).Namespace(n.GatewayNamespace).Get(ctx, n.Secret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", classify(ctx, dstOp, err)
	default:
		if err := copyOwnedBy(dst, n, cfg.Installation, dstOp); err != nil {
			return "", err
		}
		if dst.GetLabels()[LabelInstallation] == cfg.Installation &&
			dst.GetAnnotations()[AnnotationOriginResourceVersion] == src.GetResourceVersion() {
			return SecretCopyCurrent, nil
		}
	}

	labels := maps.Clone(objs.Certificate.GetLabels())
	labels[LabelOriginSecretName] = n.Secret
	labels[LabelOriginSecretNamespace] = n.CertNamespace
	copied := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name":      n.Secret,
			"namespace": n.GatewayNamespace,
			"labels":    stringMap(labels),
			"annotations": map[string]any{
				AnnotationDomainHost:            objs.Certificate.GetAnnotations()[AnnotationDomainHost],
				AnnotationOriginResourceVersion: src.GetResourceVersion(),
			},
		},
		"type": "kubernetes.io/tls",
		"data": map[string]any{"tls.crt": crt, "tls.key": key},
	}}
	// Force: the copy is ours (checked above); fields an earlier AlgaPSA
	// kubectl apply owns are taken over rather than reported as a conflict.
	_, err = c.dyn.Resource(SecretGVR).Namespace(n.GatewayNamespace).Apply(ctx, n.Secret, copied,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return "", classify(ctx, dstOp, err)
	}
	return SecretCopied, nil
}

const certManagerCertificateName = "cert-manager.io/certificate-name"

// isSecretCopy: sec is a copy of a Secret from another namespace, made by
// this worker or by AlgaPSA.
func isSecretCopy(sec *unstructured.Unstructured) bool {
	origin := sec.GetLabels()[LabelOriginSecretNamespace]
	return origin != "" && origin != sec.GetNamespace()
}

// copyOwnedBy is nil when dst is this installation's copy of n's Secret, or
// AlgaPSA's copy of it (no installation label, same origin), which this
// installation may take over.
func copyOwnedBy(dst *unstructured.Unstructured, n Names, installation, op string) error {
	l := dst.GetLabels()
	sameOrigin := isSecretCopy(dst) && l[LabelOriginSecretNamespace] == n.CertNamespace && l[LabelOriginSecretName] == n.Secret
	switch have := l[LabelInstallation]; {
	case !sameOrigin:
		return fmt.Errorf("%s: %w: a Secret of that name exists that is not a copy of %s/%s; it was left untouched",
			op, ErrNotOurs, n.CertNamespace, n.Secret)
	case have == "" || (installation != "" && have == installation):
		return nil
	default:
		return ownedBy(dst, installation, op)
	}
}

// deleteSecretCopy deletes the copy of the domain's TLS Secret in the
// gateway namespace when it is this installation's copy (or AlgaPSA's
// unlabelled copy of the same source). A Secret of that name that is not a
// copy is left: with reportOthers it is reported as ErrNotOurs, otherwise
// (the orphan sweep, which cannot tell the namespaces apart) silently.
func (c *Client) deleteSecretCopy(ctx context.Context, n Names, installation string, reportOthers bool) error {
	op := fmt.Sprintf("delete Secret copy %s/%s", n.GatewayNamespace, n.Secret)
	res := c.dyn.Resource(SecretGVR).Namespace(n.GatewayNamespace)
	sec, err := res.Get(ctx, n.Secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify(ctx, op, err)
	}
	if !isSecretCopy(sec) && !reportOthers {
		return nil
	}
	if n.CertNamespace == "" {
		n.CertNamespace = sec.GetLabels()[LabelOriginSecretNamespace]
	}
	if err := copyOwnedBy(sec, n, installation, op); err != nil {
		return err
	}
	if installation == "" {
		return fmt.Errorf("%s: %w: no installation id configured", op, ErrNotOurs)
	}
	uid := sec.GetUID()
	err = res.Delete(ctx, n.Secret, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s: re-created since it was read, not deleted: %w", op, err)
	}
	return classify(ctx, op, err)
}
