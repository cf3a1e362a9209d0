// Package k8s turns a portal domain into the Kubernetes objects that serve it
// (a cert-manager Certificate, an Istio Gateway and VirtualService) and talks
// to the API server about them: server-side apply, status reads, deletes, a
// watch on Certificates, and JSON snapshots of what was applied.
//
// Rendering is pure (Render, ConfigFromEnv) so the jobs can test their
// decisions without a cluster; everything that does I/O hangs off *Client.
package k8s

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults match the AlgaPSA deployment the objects were first written for.
const (
	DefaultCertNamespace    = "msp"
	DefaultGatewayNamespace = "istio-system"
	DefaultIssuerKind       = "ClusterIssuer"
	DefaultIssuerName       = "letsencrypt-prod"
	DefaultServiceHost      = "alga-psa.msp.svc.cluster.local"
	DefaultServicePort      = 3000
	DefaultChallengePort    = 8089
)

// Environment variable names read by ConfigFromEnv.
const (
	EnvCertNamespace    = "PORTAL_DOMAIN_CERT_NAMESPACE"
	EnvGatewayNamespace = "PORTAL_DOMAIN_GATEWAY_NAMESPACE"
	EnvIssuerKind       = "PORTAL_DOMAIN_ISSUER_KIND"
	EnvIssuerName       = "PORTAL_DOMAIN_ISSUER_NAME"
	EnvGatewaySelector  = "PORTAL_DOMAIN_GATEWAY_SELECTOR"
	EnvServiceHost      = "PORTAL_DOMAIN_SERVICE_HOST"
	EnvServicePort      = "PORTAL_DOMAIN_SERVICE_PORT"
	EnvChallengeHost    = "PORTAL_DOMAIN_CHALLENGE_HOST"
	EnvChallengePort    = "PORTAL_DOMAIN_CHALLENGE_PORT"
)

// Config says where the objects go and what they point at. The zero value
// is usable: Render fills every empty field with its default, so callers and
// tests only set what differs from the AlgaPSA deployment.
type Config struct {
	// CertNamespace holds the Certificate, its Secret and the VirtualService
	// (the VirtualService routes to the portal service, which lives there).
	CertNamespace string
	// GatewayNamespace holds the Gateway; the ingress gateway pods only pick
	// up Gateways from namespaces they watch, usually istio-system.
	//
	// Istio reads a Gateway's credentialName from the namespace of the
	// ingress gateway workload, so in a real cluster the TLS Secret must be
	// visible there: either CertNamespace equals the ingress namespace or
	// the Secret is replicated. That is a cluster decision this package
	// does not make.
	GatewayNamespace string
	// IssuerKind is ClusterIssuer or Issuer (cert-manager.io group).
	IssuerKind string
	IssuerName string
	// GatewaySelector picks the ingress gateway pods.
	GatewaySelector map[string]string
	// ServiceHost and ServicePort are the portal the VirtualService routes to.
	ServiceHost string
	ServicePort int
	// ChallengeHost, when set, gets an HTTP-01 route: port 80 on the Gateway,
	// /.well-known/acme-challenge/ routed to ChallengeHost:ChallengePort and
	// every other plain-HTTP request redirected to HTTPS. Empty means the
	// Gateway serves HTTPS only.
	ChallengeHost string
	ChallengePort int
	// Installation is this installation's identity (db.InstallationID):
	// Render puts it on every object as LabelInstallation, Apply refuses to
	// write over an object carrying another (or none), and Delete removes
	// only objects carrying it. Empty renders no label and deletes nothing.
	Installation string
}

// DefaultConfig is the configuration Render uses for every field left empty.
func DefaultConfig() Config {
	return Config{
		CertNamespace:    DefaultCertNamespace,
		GatewayNamespace: DefaultGatewayNamespace,
		IssuerKind:       DefaultIssuerKind,
		IssuerName:       DefaultIssuerName,
		GatewaySelector:  map[string]string{"istio": "ingressgateway"},
		ServiceHost:      DefaultServiceHost,
		ServicePort:      DefaultServicePort,
		ChallengePort:    DefaultChallengePort,
	}
}

// withDefaults returns c with every empty field set to its default; the
// selector map is copied so rendered objects never alias the caller's map.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.CertNamespace == "" {
		c.CertNamespace = d.CertNamespace
	}
	if c.GatewayNamespace == "" {
		c.GatewayNamespace = d.GatewayNamespace
	}
	if c.IssuerKind == "" {
		c.IssuerKind = d.IssuerKind
	}
	if c.IssuerName == "" {
		c.IssuerName = d.IssuerName
	}
	if len(c.GatewaySelector) == 0 {
		c.GatewaySelector = d.GatewaySelector
	} else {
		c.GatewaySelector = maps.Clone(c.GatewaySelector)
	}
	if c.ServiceHost == "" {
		c.ServiceHost = d.ServiceHost
	}
	if c.ServicePort == 0 {
		c.ServicePort = d.ServicePort
	}
	if c.ChallengePort == 0 {
		c.ChallengePort = d.ChallengePort
	}
	return c
}

// Validate reports the first field that could not produce objects the API
// server accepts. Empty fields are valid (they take defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	if errs := validation.IsValidLabelValue(c.Installation); len(errs) > 0 {
		return fmt.Errorf("installation id %q cannot be a label value: %s", c.Installation, strings.Join(errs, "; "))
	}
	for _, ns := range []struct{ env, v string }{
		{EnvCertNamespace, c.CertNamespace},
		{EnvGatewayNamespace, c.GatewayNamespace},
	} {
		if errs := validation.IsDNS1123Label(ns.v); len(errs) > 0 {
			return fmt.Errorf("%s %q is not a valid namespace name: %s", ns.env, ns.v, strings.Join(errs, "; "))
		}
	}
	switch c.IssuerKind {
	case "ClusterIssuer", "Issuer":
	default:
		return fmt.Errorf("%s %q: want ClusterIssuer or Issuer", EnvIssuerKind, c.IssuerKind)
	}
	if errs := validation.IsDNS1123Subdomain(c.IssuerName); len(errs) > 0 {
		return fmt.Errorf("%s %q is not a valid issuer name: %s", EnvIssuerName, c.IssuerName, strings.Join(errs, "; "))
	}
	for _, k := range slices.Sorted(maps.Keys(c.GatewaySelector)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("%s: label key %q: %s", EnvGatewaySelector, k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(c.GatewaySelector[k]); len(errs) > 0 {
			return fmt.Errorf("%s: label %s value %q: %s", EnvGatewaySelector, k, c.GatewaySelector[k], strings.Join(errs, "; "))
		}
	}
	if err := validateHost(EnvServiceHost, c.ServiceHost); err != nil {
		return err
	}
	if err := validatePort(EnvServicePort, c.ServicePort); err != nil {
		return err
	}
	if c.ChallengeHost != "" {
		if err := validateHost(EnvChallengeHost, c.ChallengeHost); err != nil {
			return err
		}
	}
	return validatePort(EnvChallengePort, c.ChallengePort)
}

func validateHost(env, host string) error {
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 {
		return fmt.Errorf("%s %q is not a valid service host name: %s", env, host, strings.Join(errs, "; "))
	}
	return nil
}

func validatePort(env string, port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("%s %d: want a port between 1 and 65535", env, port)
	}
	return nil
}

// ConfigFromEnv reads the PORTAL_DOMAIN_* variables through getenv (os.Getenv
// in main, a map in tests). Unset or blank variables take their defaults;
// anything set but unusable is an error naming the variable, so a typo in a
// Deployment fails the worker at start instead of the first apply.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	c := Config{
		CertNamespace:    get(EnvCertNamespace),
		GatewayNamespace: get(EnvGatewayNamespace),
		IssuerKind:       get(EnvIssuerKind),
		IssuerName:       get(EnvIssuerName),
		ServiceHost:      strings.ToLower(get(EnvServiceHost)),
		ChallengeHost:    strings.ToLower(get(EnvChallengeHost)),
	}
	if v := get(EnvGatewaySelector); v != "" {
		sel, err := parseSelector(v)
		if err != nil {
			return Config{}, fmt.Errorf("%s %q: %w", EnvGatewaySelector, v, err)
		}
		c.GatewaySelector = sel
	}
	var err error
	if c.ServicePort, err = parsePort(EnvServicePort, get(EnvServicePort)); err != nil {
		return Config{}, err
	}
	if c.ChallengePort, err = parsePort(EnvChallengePort, get(EnvChallengePort)); err != nil {
		return Config{}, err
	}
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseSelector reads "k=v,k=v". Duplicate keys are an error rather than
// last-wins, because a selector that silently drops a term matches more
// ingress pods than intended.
func parseSelector(s string) (map[string]string, error) {
	sel := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("term %q: want key=value", pair)
		}
		if _, dup := sel[k]; dup {
			return nil, fmt.Errorf("key %q appears twice", k)
		}
		sel[k] = v
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("no key=value terms")
	}
	return sel, nil
}

// parsePort returns 0 for an empty value so withDefaults fills it in.
func parsePort(env, v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s %q: want a port number between 1 and 65535", env, v)
	}
	return p, nil
}
