package k8s

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels put on every object this package renders. LabelManaged is what the
// watch, ListManaged and the orphan sweep select on; LabelDomainID
// is the join key back to the portal_domains row.
const (
	LabelManaged    = "portal.alga-psa.com/managed"
	LabelTenant     = "portal.alga-psa.com/tenant"
	LabelDomainID   = "portal.alga-psa.com/domain-id"
	LabelDomainHost = "portal.alga-psa.com/domain-host"

	// LabelInstallation carries the identity of the installation (its
	// database) that applied the object; only that installation deletes it.
	LabelInstallation = "portal.alga-psa.com/installation"

	// AnnotationDomainHost always holds the full host; the label of the same
	// name is shortened when the host does not fit a label value.
	AnnotationDomainHost = "portal.alga-psa.com/domain-host"

	// ManagedSelector selects every object carrying the managed label, this
	// installation's or not; InstallationSelector narrows it to one.
	ManagedSelector = LabelManaged + "=true"
)

// InstallationSelector selects the managed objects of one installation.
func InstallationSelector(installation string) string {
	return ManagedSelector + "," + LabelInstallation + "=" + installation
}

// UnownedSelector selects managed objects no installation has claimed
// (applied before installations had an identity, or by AlgaPSA itself).
const UnownedSelector = ManagedSelector + ",!" + LabelInstallation

// Group/version/resources of the objects this package manages.
var (
	CertificateGVR    = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
	GatewayGVR        = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}
	VirtualServiceGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	SecretGVR         = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

// ACMEChallengePath is the HTTP-01 path routed to the challenge host.
const ACMEChallengePath = "/.well-known/acme-challenge/"

// Domain is the part of a portal_domains row the objects are built from.
type Domain struct {
	ID     string // portal_domains.id (uuid)
	Tenant string // tenant uuid
	// Host is the tenant's domain, e.g. portal.acme.com.
	Host string
	// CanonicalHost is the CNAME target, e.g. abc1234.portal.algapsa.com; its
	// first label names the objects because it is unique per tenant by
	// construction, where the tenant's first 7 characters are not.
	CanonicalHost string
}

// Names are the object names and namespaces for one domain. Callers that only
// hold a Domain (delete, status checks) get them here rather than re-deriving
// the naming scheme.
type Names struct {
	Prefix           string
	CertNamespace    string // Certificate, Secret and VirtualService
	Certificate      string
	Secret           string
	VirtualService   string
	GatewayNamespace string
	Gateway          string
}

// Objects are the three rendered objects, applied in this order.
type Objects struct {
	Certificate    *unstructured.Unstructured
	Gateway        *unstructured.Unstructured
	VirtualService *unstructured.Unstructured
}

// All returns the objects in apply order: the Certificate first, so issuance
// starts as early as possible; the VirtualService last, so it never routes
// through a Gateway that does not exist yet.
func (o Objects) All() []*unstructured.Unstructured {
	return []*unstructured.Unstructured{o.Certificate, o.Gateway, o.VirtualService}
}

// SecretName is the TLS Secret cert-manager writes for the Certificate.
func (o Objects) SecretName() string {
	if o.Certificate == nil {
		return ""
	}
	s, _, _ := unstructured.NestedString(o.Certificate.Object, "spec", "secretName")
	return s
}

// ErrBadDomain is returned by Render and NamesFor for a domain that cannot be
// turned into valid objects; retrying cannot help.
var ErrBadDomain = errors.New("domain cannot be rendered")

// NamesFor derives the object names for d under cfg (empty cfg fields take
// their defaults). Names are DNS-1123 labels of at most 63 characters.
func NamesFor(d Domain, cfg Config) (Names, error) {
	cfg = cfg.withDefaults()
	canonical := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d.CanonicalHost)), ".")
	prefix, _, _ := strings.Cut(canonical, ".")
	if prefix == "" {
		return Names{}, fmt.Errorf("%w: canonical host %q has no first label", ErrBadDomain, d.CanonicalHost)
	}
	n := Names{
		Prefix:           prefix,
		CertNamespace:    cfg.CertNamespace,
		Certificate:      "portal-domain-" + prefix,
		Secret:           "portal-domain-" + prefix,
		VirtualService:   "portal-domain-vs-" + prefix,
		GatewayNamespace: cfg.GatewayNamespace,
		Gateway:          "portal-domain-gw-" + prefix,
	}
	for _, name := range []string{n.Certificate, n.VirtualService, n.Gateway} {
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return Names{}, fmt.Errorf("%w: object name %q from canonical host %q: %s",
				ErrBadDomain, name, d.CanonicalHost, strings.Join(errs, "; "))
		}
	}
	return n, nil
}

// Render builds the Certificate, Gateway and VirtualService for d. It does no
// I/O; the same input always gives the same objects, which is what makes
// re-applying them a no-op and the golden files stable.
func Render(d Domain, cfg Config) (Objects, error) {
	if err := cfg.Validate(); err != nil {
		return Objects{}, fmt.Errorf("render portal domain objects: %w", err)
	}
	cfg = cfg.withDefaults()
	names, err := NamesFor(d, cfg)
	if err != nil {
		return Objects{}, err
	}
	host := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d.Host)), ".")
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 || !strings.Contains(host, ".") ||
		slices.ContainsFunc(strings.Split(host, "."), func(l string) bool { return len(l) > 63 }) {
		return Objects{}, fmt.Errorf("%w: host %q is not a fully qualified domain name", ErrBadDomain, d.Host)
	}
	for _, l := range []struct{ what, v string }{{"domain id", d.ID}, {"tenant", d.Tenant}} {
		if errs := validation.IsValidLabelValue(l.v); len(errs) > 0 || l.v == "" {
			return Objects{}, fmt.Errorf("%w: %s %q cannot be a label value", ErrBadDomain, l.what, l.v)
		}
	}

	labels := map[string]string{
		LabelManaged:    "true",
		LabelTenant:     d.Tenant,
		LabelDomainID:   d.ID,
		LabelDomainHost: hostLabelValue(host),
	}
	if cfg.Installation != "" {
		labels[LabelInstallation] = cfg.Installation
	}
	meta := func(name, namespace string) map[string]any {
		return map[string]any{
			"name":        name,
			"namespace":   namespace,
			"labels":      stringMap(labels),
			"annotations": map[string]any{AnnotationDomainHost: host},
		}
	}

	cert := map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "Certificate",
		"metadata":   meta(names.Certificate, names.CertNamespace),
		"spec": map[string]any{
			"secretName": names.Secret,
			"dnsNames":   []any{host},
			"issuerRef": map[string]any{
				"group": "cert-manager.io",
				"kind":  cfg.IssuerKind,
				"name":  cfg.IssuerName,
			},
			"privateKey": map[string]any{"rotationPolicy": "Always"},
			// The labels on the Secret let ListManaged and an operator find
			// it from the domain, and let the orphan sweep see it.
			"secretTemplate": map[string]any{"labels": stringMap(labels)},
		},
	}

	servers := []any{map[string]any{
		"port":  map[string]any{"number": int64(443), "name": "https-" + names.Prefix, "protocol": "HTTPS"},
		"hosts": []any{host},
		"tls":   map[string]any{"mode": "SIMPLE", "credentialName": names.Secret},
	}}
	if cfg.ChallengeHost != "" {
		servers = append(servers, map[string]any{
			"port":  map[string]any{"number": int64(80), "name": "http-" + names.Prefix, "protocol": "HTTP"},
			"hosts": []any{host},
		})
	}
	gw := map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "Gateway",
		"metadata":   meta(names.Gateway, names.GatewayNamespace),
		"spec": map[string]any{
			"selector": stringMap(cfg.GatewaySelector),
			"servers":  servers,
		},
	}

	var routes []any
	if cfg.ChallengeHost != "" {
		routes = append(routes,
			map[string]any{
				"name":  "acme-challenge",
				"match": []any{map[string]any{"uri": map[string]any{"prefix": ACMEChallengePath}}},
				"route": []any{destination(cfg.ChallengeHost, cfg.ChallengePort)},
			},
			map[string]any{
				"name":     "https-redirect",
				"match":    []any{map[string]any{"port": int64(80)}},
				"redirect": map[string]any{"scheme": "https", "redirectCode": int64(301)},
			},
		)
	}
	routes = append(routes, map[string]any{
		"name":  "portal",
		"route": []any{destination(cfg.ServiceHost, cfg.ServicePort)},
	})
	vs := map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   meta(names.VirtualService, names.CertNamespace),
		"spec": map[string]any{
			"hosts":    []any{host},
			"gateways": []any{names.GatewayNamespace + "/" + names.Gateway},
			"http":     routes,
		},
	}

	return Objects{
		Certificate:    &unstructured.Unstructured{Object: cert},
		Gateway:        &unstructured.Unstructured{Object: gw},
		VirtualService: &unstructured.Unstructured{Object: vs},
	}, nil
}

func destination(host string, port int) map[string]any {
	return map[string]any{"destination": map[string]any{
		"host": host,
		"port": map[string]any{"number": int64(port)},
	}}
}

// stringMap converts to the map type unstructured objects must hold.
func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range maps.All(m) {
		out[k] = v
	}
	return out
}

// hostLabelValue returns host when it fits a label value (63 characters).
// A longer host is cut and suffixed with a hash so the label stays unique
// and valid; the full host is in AnnotationDomainHost. Selecting by domain
// is done on LabelDomainID, never on this label.
func hostLabelValue(host string) string {
	if len(validation.IsValidLabelValue(host)) == 0 {
		return host
	}
	sum := sha256.Sum256([]byte(host))
	cut := strings.TrimRight(host[:min(len(host), 54)], ".-")
	return cut + "-" + hex.EncodeToString(sum[:])[:8]
}
