package k8s

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// What cert-manager makes on the way to a Certificate: read-only here.
var (
	CertificateRequestGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificaterequests"}
	OrderGVR              = schema.GroupVersionResource{Group: "acme.cert-manager.io", Version: "v1", Resource: "orders"}
	ChallengeGVR          = schema.GroupVersionResource{Group: "acme.cert-manager.io", Version: "v1", Resource: "challenges"}
)

// annotationCertificateRevision is the Certificate revision a
// CertificateRequest was made for (cert-manager's own annotation).
const annotationCertificateRevision = "cert-manager.io/certificate-revision"

// Issuance is the chain cert-manager made for a Certificate's latest
// issuance: its newest CertificateRequest, that request's ACME Order and
// the Order's Challenges. After a failed issuance cert-manager keeps the
// failed request, and so the Order and Challenges it owns, until it retries
// after its backoff; that is the window in which the CA's reason can be
// read. Zero when cert-manager has made nothing (yet) or a non-ACME issuer
// signs.
type Issuance struct {
	Request    *IssuanceStep  `json:"certificate_request,omitempty"`
	Order      *IssuanceStep  `json:"order,omitempty"`
	Challenges []IssuanceStep `json:"challenges,omitempty"`
}

// IssuanceStep is one object of the chain, flattened.
type IssuanceStep struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// State is a CertificateRequest's Ready reason (Pending, Issued,
	// Failed, Denied) or an Order's or Challenge's status.state (pending,
	// ready, valid, invalid, errored, expired).
	State string `json:"state"`
	// Reason is a CertificateRequest's Ready message or an Order's or
	// Challenge's status.reason.
	Reason      string     `json:"reason,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	FailureTime *time.Time `json:"failure_time,omitempty"`
	// Type, DNSName and URL are a Challenge's: http-01 or dns-01, the name
	// validated and, for http-01, the URL the CA fetches.
	Type    string `json:"type,omitempty"`
	DNSName string `json:"dns_name,omitempty"`
	URL     string `json:"url,omitempty"`
}

// CAProblem is the CA's own account of why it refused to validate, read
// from a failed Challenge (or, when no Challenge says, the Order).
type CAProblem struct {
	// Type is the ACME problem type without its urn:ietf:params:acme:error:
	// prefix (connection, dns, unauthorized, incorrectResponse, caa, tls,
	// rateLimited, …); "" when the reason names none.
	Type string
	// Detail is the CA's words (URLs and addresses, never keys).
	Detail string
	// URL is the challenge URL the CA fetched; DNSName the name validated.
	URL     string
	DNSName string
}

// failedStates are the ACME states after which nothing more happens.
var failedStates = []string{"invalid", "errored", "expired"}

// acmeProblem finds the problem type and the CA's detail in the messages
// cert-manager writes, e.g. "Error accepting authorization: acme:
// authorization error for portal.acme.com: 400
// urn:ietf:params:acme:error:connection: <the CA's detail>".
var acmeProblem = regexp.MustCompile(`urn:ietf:params:acme:error:([A-Za-z]+)[: ]*(.*)`)

// CAProblem is the CA's reason for the failure of this issuance; false
// when no Challenge or Order of the chain has failed.
func (i Issuance) CAProblem() (CAProblem, bool) {
	for _, ch := range i.Challenges {
		if slices.Contains(failedStates, ch.State) && ch.Reason != "" {
			p := parseProblem(ch.Reason)
			p.URL, p.DNSName = ch.URL, ch.DNSName
			return p, true
		}
	}
	if i.Order != nil && slices.Contains(failedStates, i.Order.State) && i.Order.Reason != "" {
		return parseProblem(i.Order.Reason), true
	}
	return CAProblem{}, false
}

func parseProblem(reason string) CAProblem {
	reason = strings.Join(strings.Fields(reason), " ")
	if m := acmeProblem.FindStringSubmatch(reason); m != nil {
		return CAProblem{Type: m[1], Detail: strings.TrimSpace(m[2])}
	}
	for _, prefix := range []string{"Error accepting authorization: ", "Error accepting challenge: "} {
		reason = strings.TrimPrefix(reason, prefix)
	}
	return CAProblem{Detail: reason}
}

// Issuance reads the chain of the Certificate namespace/name: the
// CertificateRequests it controls, the newest of them, the Order that
// request controls and the Challenges that Order controls. cert-manager
// copies the Certificate's labels onto its requests and their Orders, so
// the domain-id label narrows those lists. A missing Certificate gives a
// zero Issuance.
func (c *Client) Issuance(ctx context.Context, namespace, certName string) (Issuance, error) {
	var out Issuance
	cert, err := c.dyn.Resource(CertificateGVR).Namespace(namespace).Get(ctx, certName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && !isMissingResource(err) {
		return out, nil
	}
	if err != nil {
		return out, classify(ctx, fmt.Sprintf("get Certificate %s/%s", namespace, certName), err)
	}
	selector := ""
	if id := cert.GetLabels()[LabelDomainID]; id != "" {
		selector = LabelDomainID + "=" + id
	}
	reqs, err := c.controlledBy(ctx, CertificateRequestGVR, namespace, selector, cert.GetUID())
	if err != nil || len(reqs) == 0 {
		return out, err
	}
	req := slices.MaxFunc(reqs, func(a, b unstructured.Unstructured) int {
		if ra, rb := revisionOf(a), revisionOf(b); ra != rb {
			return ra - rb
		}
		return a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time)
	})
	out.Request = requestStep(req)

	orders, err := c.controlledBy(ctx, OrderGVR, namespace, selector, req.GetUID())
	if err != nil || len(orders) == 0 {
		return out, err
	}
	order := slices.MaxFunc(orders, func(a, b unstructured.Unstructured) int {
		return a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time)
	})
	out.Order = acmeStep("Order", order)

	// cert-manager gives Challenges no labels; they are few, as it deletes
	// them once their Order is valid.
	challenges, err := c.controlledBy(ctx, ChallengeGVR, namespace, "", order.GetUID())
	if err != nil {
		return out, err
	}
	for _, ch := range challenges {
		out.Challenges = append(out.Challenges, *acmeStep("Challenge", ch))
	}
	slices.SortFunc(out.Challenges, func(a, b IssuanceStep) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// controlledBy lists the objects of gvr in namespace matching selector whose
// controller owner reference is owner.
func (c *Client) controlledBy(ctx context.Context, gvr schema.GroupVersionResource, namespace, selector string, owner types.UID) ([]unstructured.Unstructured, error) {
	var out []unstructured.Unstructured
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		page, err := c.dyn.Resource(gvr).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return nil, classify(ctx, fmt.Sprintf("list %s in %s", gvr.Resource, namespace), err)
		}
		for _, obj := range page.Items {
			if ref := metav1.GetControllerOfNoCopy(&obj); ref != nil && ref.UID == owner {
				out = append(out, obj)
			}
		}
		if page.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = page.GetContinue()
	}
}

func revisionOf(obj unstructured.Unstructured) int {
	n, _ := strconv.Atoi(obj.GetAnnotations()[annotationCertificateRevision])
	return n
}

func requestStep(obj unstructured.Unstructured) *IssuanceStep {
	s := &IssuanceStep{Kind: "CertificateRequest", Name: obj.GetName(), State: "Pending", CreatedAt: obj.GetCreationTimestamp().Time}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		switch m["type"] {
		case "Ready":
			if reason, _ := m["reason"].(string); reason != "" {
				s.State = reason
			}
			s.Reason, _ = m["message"].(string)
		case "Denied":
			if m["status"] == "True" && s.Reason == "" {
				s.State = "Denied"
				s.Reason, _ = m["message"].(string)
			}
		}
	}
	s.FailureTime = timeField(obj, "status", "failureTime")
	return s
}

func acmeStep(kind string, obj unstructured.Unstructured) *IssuanceStep {
	s := &IssuanceStep{Kind: kind, Name: obj.GetName(), CreatedAt: obj.GetCreationTimestamp().Time}
	s.State, _, _ = unstructured.NestedString(obj.Object, "status", "state")
	s.Reason, _, _ = unstructured.NestedString(obj.Object, "status", "reason")
	s.FailureTime = timeField(obj, "status", "failureTime")
	if kind == "Challenge" {
		s.Type, _, _ = unstructured.NestedString(obj.Object, "spec", "type")
		s.DNSName, _, _ = unstructured.NestedString(obj.Object, "spec", "dnsName")
		// The token is public (the CA fetches it over plain HTTP); spec.key,
		// the key authorisation, is never read.
		token, _, _ := unstructured.NestedString(obj.Object, "spec", "token")
		if s.Type == "HTTP-01" || strings.EqualFold(s.Type, "http-01") {
			s.URL = "http://" + s.DNSName + ACMEChallengePath + token
		}
	}
	if s.State == "" {
		s.State = "pending"
	}
	return s
}

func timeField(obj unstructured.Unstructured, fields ...string) *time.Time {
	v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, fields...)
	if !ok {
		return nil
	}
	t := parseTime(v)
	if t.IsZero() {
		return nil
	}
	return &t
}
