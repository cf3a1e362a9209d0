package acme_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/portal-domains/portal-domains/internal/harness/acme"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
	"github.com/portal-domains/portal-domains/internal/harness/stack"
	"github.com/portal-domains/portal-domains/k8s"
)

func TestIssuance(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, kubeBin, acmeBin := binaries(t)

	work := t.TempDir()
	api := startAPIServer(t, kubeBin, filepath.Join(work, "kube"), "msp")

	// A loopback address of this test's own, so that port 80 is free on it.
	ip := loopbackIP()
	zone, err := localdns.ParseZone(strings.NewReader(`$ORIGIN issue.test.
$TTL 60
@       SOA ns.test. hostmaster.issue.test. 1 3600 600 86400 60
@       NS  ns.test.
portal  A   `+ip+`
`), "issue.test.zone")
	require.NoError(t, err)
	dns, err := localdns.Start("127.0.0.1:0", zone)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dns.Close(context.Background())) })

	kube, err := kubernetes.NewForConfig(api.Config)
	require.NoError(t, err)
	ln, err := stack.ListenHTTP01(ip + ":80")
	require.NoError(t, err)
	var mu sync.Mutex
	var answered []string // user agents that got an answer for portal.issue.test
	h01 := stack.ServeHTTP01(ln, stack.HTTP01Options{Kube: kube, IngressClass: acme.SolverIngressClass,
		OnAnswer: func(host, pod, userAgent string) {
			mu.Lock()
			defer mu.Unlock()
			if host == "portal.issue.test" && strings.HasPrefix(pod, "msp/cm-acme-http-solver-") {
				answered = append(answered, userAgent)
			}
		}})
	t.Cleanup(func() { require.NoError(t, h01.Close(context.Background())) })

	a, err := acme.Start(ctx, acme.Options{
		BinDir: acmeBin, WorkDir: filepath.Join(work, "acme"), API: api.Config, Kubeconfig: api.KubeconfigPath,
		DNSAddr: dns.Addr(), IssuerName: "pebble",
	})
	require.NoError(t, err, "logs in %s", filepath.Join(work, "acme"))
	t.Cleanup(func() { require.NoError(t, a.Stop()) })

	dyn, err := dynamic.NewForConfig(api.Config)
	require.NoError(t, err)
	cert := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
		"metadata": map[string]any{"name": "portal", "namespace": "msp"},
		"spec": map[string]any{
			"secretName": "portal-tls",
			"dnsNames":   []any{"portal.issue.test"},
			"issuerRef":  map[string]any{"kind": "ClusterIssuer", "name": "pebble"},
		},
	}}
	_, err = dyn.Resource(k8s.CertificateGVR).Namespace("msp").Create(ctx, cert, metav1.CreateOptions{})
	require.NoError(t, err)

	w, err := dyn.Resource(k8s.CertificateGVR).Namespace("msp").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=portal"})
	require.NoError(t, err)
	defer w.Stop()
	timeout := time.After(2 * time.Minute)
	for ready := false; !ready; {
		select {
		case ev := <-w.ResultChan():
			obj, ok := ev.Object.(*unstructured.Unstructured)
			require.True(t, ok, "watch event %v", ev)
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, c := range conds {
				m := c.(map[string]any)
				t.Logf("Certificate %s=%s %s: %s", m["type"], m["status"], m["reason"], m["message"])
				if m["type"] == "Ready" && m["status"] == "True" {
					ready = true
				}
			}
		case <-timeout:
			logs, _ := os.ReadFile(a.ControllerLog())
			t.Fatalf("Certificate not Ready after 2 minutes; cert-manager's log:\n%s", tailOf(logs, 8000))
		}
	}

	secret, err := kube.CoreV1().Secrets("msp").Get(ctx, "portal-tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, corev1.SecretTypeTLS, secret.Type)
	leaf, inter := parseChain(t, secret.Data["tls.crt"])
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(a.RootPEM))
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "portal.issue.test", Roots: roots, Intermediates: inter})
	require.NoError(t, err, "the issued certificate chains to Pebble's root")

	mu.Lock()
	defer mu.Unlock()
	var selfChecks, pebble int
	for _, ua := range answered {
		switch {
		case strings.Contains(ua, "cert-manager"):
			selfChecks++
		case strings.Contains(strings.ToLower(ua), "pebble") || strings.Contains(ua, "letsencrypt"):
			pebble++
		}
	}
	require.GreaterOrEqual(t, selfChecks, 1, "cert-manager's self-check went through the gateway's port 80: %q", answered)
	require.GreaterOrEqual(t, pebble, 1, "Pebble's validation went through the gateway's port 80: %q", answered)
}

func parseChain(t *testing.T, chainPEM []byte) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	require.NotEmpty(t, certs)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	return certs[0], inter
}

func tailOf(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// binaries finds the repository and its kube and ACME binaries, building
// them the first time.
func binaries(t *testing.T) (root, kubeBin, acmeBin string) {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	root = localapi.FindRoot(dir)
	kubeBin, err = localapi.EnsureBinaries(t.Context(), root, testWriter{t})
	require.NoError(t, err)
	acmeBin, err = acme.EnsureBinaries(t.Context(), root, testWriter{t})
	require.NoError(t, err)
	return root, kubeBin, acmeBin
}

// startAPIServer starts kube-apiserver and etcd in workDir with the
// namespaces made, and stops them when the test ends.
func startAPIServer(t *testing.T, kubeBin, workDir string, namespaces ...string) *localapi.Server {
	t.Helper()
	api, err := localapi.Start(t.Context(), localapi.Options{BinDir: kubeBin, WorkDir: workDir, Namespaces: namespaces})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, api.Stop()) })
	return api
}

// loopbackIP is an address of 127/8 for this test alone, so that port 80 is
// free on it.
func loopbackIP() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
