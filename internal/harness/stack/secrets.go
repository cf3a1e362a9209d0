package stack

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/portal-domains/portal-domains/k8s"
)

// IstioSecrets finds the certificate for a server name as Istio's ingress gateway does: the
// Istio Gateway with an HTTPS server on port 443 whose hosts include the name gives
// tls.credentialName, a Secret read from the Gateway's own namespace (Istio reads no other).
type IstioSecrets struct {
	Dynamic dynamic.Interface
	Kube    kubernetes.Interface
	Logger  *slog.Logger
}

// Certificate returns the key pair of the Secret that serves name.
func (s IstioSecrets) Certificate(ctx context.Context, name string) (*tls.Certificate, error) {
	gws, err := s.Dynamic.Resource(k8s.GatewayGVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Istio Gateways: %w", err)
	}
	for _, gw := range gws.Items {
		servers, _, _ := unstructured.NestedSlice(gw.Object, "spec", "servers")
		for _, sv := range servers {
			m, _ := sv.(map[string]any)
			num, _, _ := unstructured.NestedInt64(m, "port", "number")
			cred, _, _ := unstructured.NestedString(m, "tls", "credentialName")
			hosts, _, _ := unstructured.NestedStringSlice(m, "hosts")
			if num != 443 || cred == "" || !hostsMatch(hosts, name) {
				continue
			}
			sec, err := s.Kube.CoreV1().Secrets(gw.GetNamespace()).Get(ctx, cred, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("Gateway %s/%s serves %s with credentialName %s, read from namespace %s as Istio does: %w",
					gw.GetNamespace(), gw.GetName(), name, cred, gw.GetNamespace(), err)
			}
			pair, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
			if err != nil {
				return nil, fmt.Errorf("Secret %s/%s: %w", gw.GetNamespace(), cred, err)
			}
			return &pair, nil
		}
	}
	return nil, fmt.Errorf("no Istio Gateway has an HTTPS server on port 443 for %s", name)
}

// hostsMatch reports whether a Gateway server's hosts ("name", "ns/name", "*.domain", "*")
// cover name.
func hostsMatch(hosts []string, name string) bool {
	for _, h := range hosts {
		if _, after, ok := strings.Cut(h, "/"); ok {
			h = after
		}
		h = strings.ToLower(h)
		switch {
		case h == "*" || h == name:
			return true
		case strings.HasPrefix(h, "*.") && strings.HasSuffix(name, h[1:]):
			return true
		}
	}
	return false
}
