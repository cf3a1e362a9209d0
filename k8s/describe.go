package k8s

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ObjectState is one of a domain's objects as the API server holds it.
type ObjectState struct {
	Kind      string     `json:"kind"`
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Exists    bool       `json:"exists"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	// Installation is the object's LabelInstallation ("" when it has none).
	Installation    string `json:"installation,omitempty"`
	ResourceVersion string `json:"resource_version,omitempty"`
}

// Condition is one of a Certificate's status conditions.
type Condition struct {
	Type    string    `json:"type"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason,omitempty"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"`
}

// CertificateDetail is the Certificate's status as cert-manager wrote it.
type CertificateDetail struct {
	Issuer                 string      `json:"issuer"`
	DNSNames               []string    `json:"dns_names"`
	Conditions             []Condition `json:"conditions"`
	Revision               int64       `json:"revision,omitempty"`
	NotAfter               *time.Time  `json:"not_after,omitempty"`
	RenewalTime            *time.Time  `json:"renewal_time,omitempty"`
	FailedIssuanceAttempts int         `json:"failed_issuance_attempts,omitempty"`
	LastFailureTime        *time.Time  `json:"last_failure_time,omitempty"`
}

// DomainState is what the API server holds about one domain, for an
// operator's diagnosis: each object applied (and the TLS Secret
// cert-manager writes, and its copy for the gateway), the Certificate's
// status and its issuance chain.
type DomainState struct {
	Objects []ObjectState `json:"objects"`
	// Certificate is nil when the Certificate does not exist.
	Certificate *CertificateDetail `json:"certificate,omitempty"`
	Issuance    Issuance           `json:"issuance"`
	// IssuanceError says why the chain could not be read (a missing RBAC
	// verb); the rest is still filled in.
	IssuanceError string `json:"issuance_error,omitempty"`
}

// DescribeDomain reads d's Certificate, Gateway, VirtualService, TLS Secret
// and, when the gateway namespace differs, the Secret's copy there
// (metadata only: a Secret's data is never kept), and the Certificate's
// issuance chain. It fails only when the objects cannot be
// read at all (ErrUnreachable, Forbidden).
func (c *Client) DescribeDomain(ctx context.Context, d Domain, cfg Config) (DomainState, error) {
	var out DomainState
	n, err := NamesFor(d, cfg)
	if err != nil {
		return out, fmt.Errorf("describe portal domain objects: %w", err)
	}
	type object struct {
		gvr             schema.GroupVersionResource
		namespace, name string
	}
	objects := []object{
		{CertificateGVR, n.CertNamespace, n.Certificate},
		{GatewayGVR, n.GatewayNamespace, n.Gateway},
		{VirtualServiceGVR, n.CertNamespace, n.VirtualService},
		{SecretGVR, n.CertNamespace, n.Secret},
	}
	if n.GatewayNamespace != n.CertNamespace {
		// The copy the gateway reads (CopySecretToGateway).
		objects = append(objects, object{SecretGVR, n.GatewayNamespace, n.Secret})
	}
	for _, o := range objects {
		kind := kindOf(o.gvr)
		st := ObjectState{Kind: kind, Namespace: o.namespace, Name: o.name}
		obj, err := c.dyn.Resource(o.gvr).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && !isMissingResource(err):
		case err != nil:
			return out, classify(ctx, fmt.Sprintf("get %s %s/%s", kind, o.namespace, o.name), err)
		default:
			created := obj.GetCreationTimestamp().Time
			st.Exists, st.CreatedAt = true, &created
			st.Installation = obj.GetLabels()[LabelInstallation]
			st.ResourceVersion = obj.GetResourceVersion()
			if o.gvr == CertificateGVR {
				out.Certificate = certificateDetail(obj)
			}
		}
		out.Objects = append(out.Objects, st)
	}
	if out.Certificate != nil {
		if out.Issuance, err = c.Issuance(ctx, n.CertNamespace, n.Certificate); err != nil {
			out.IssuanceError = err.Error()
		}
	}
	return out, nil
}

func certificateDetail(obj *unstructured.Unstructured) *CertificateDetail {
	d := &CertificateDetail{}
	kind, _, _ := unstructured.NestedString(obj.Object, "spec", "issuerRef", "kind")
	name, _, _ := unstructured.NestedString(obj.Object, "spec", "issuerRef", "name")
	d.Issuer = kind + "/" + name
	d.DNSNames, _, _ = unstructured.NestedStringSlice(obj.Object, "spec", "dnsNames")
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		cond := Condition{Since: parseTime(m["lastTransitionTime"])}
		cond.Type, _ = m["type"].(string)
		cond.Status, _ = m["status"].(string)
		cond.Reason, _ = m["reason"].(string)
		cond.Message, _ = m["message"].(string)
		d.Conditions = append(d.Conditions, cond)
	}
	if v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "revision"); ok {
		d.Revision, _ = asInt64(v)
	}
	if v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "failedIssuanceAttempts"); ok {
		n, _ := asInt64(v)
		d.FailedIssuanceAttempts = int(n)
	}
	d.NotAfter = timeField(*obj, "status", "notAfter")
	d.RenewalTime = timeField(*obj, "status", "renewalTime")
	d.LastFailureTime = timeField(*obj, "status", "lastFailureTime")
	return d
}
