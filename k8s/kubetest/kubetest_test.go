package kubetest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/portal-domains/portal-domains/k8s"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) { Main(m) }

func testCertificate(ns string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "Certificate",
		"metadata":   map[string]any{"name": "c1", "namespace": ns},
		"spec": map[string]any{
			"secretName": "c1-tls",
			"dnsNames":   []any{"portal.example.com"},
			"issuerRef":  map[string]any{"kind": "ClusterIssuer", "name": "le"},
			"secretTemplate": map[string]any{
				"labels": map[string]any{"portal.alga-psa.com/managed": "true"},
			},
		},
	}}
}

func TestEnv(t *testing.T) {
	t.Parallel()

	setup := func(t *testing.T) (*Env, string) {
		t.Helper()
		e := Start(t)
		ns := e.Namespace(t, "kubetest")
		require.NoError(t, e.Create(t.Context(), testCertificate(ns)))
		return e, ns
	}

	t.Run("SetCertificateReady", func(t *testing.T) {
		t.Parallel()
		e, ns := setup(t)
		ctx := t.Context()
		require.NoError(t, e.SetCertificateReady(ctx, ns, "c1", false, "Failed", "challenge failed"))
		require.NoError(t, e.SetCertificateReady(ctx, ns, "c1", false, "Failed", "challenge failed again"))
		got, err := e.Dynamic.Resource(k8s.CertificateGVR).Namespace(ns).Get(ctx, "c1", metav1.GetOptions{})
		require.NoError(t, err)
		n, _, _ := unstructured.NestedInt64(got.Object, "status", "failedIssuanceAttempts")
		require.EqualValues(t, 2, n)

		require.NoError(t, e.SetCertificateReady(ctx, ns, "c1", true, "Ready", "Certificate is up to date and has not expired"))
		got, err = e.Dynamic.Resource(k8s.CertificateGVR).Namespace(ns).Get(ctx, "c1", metav1.GetOptions{})
		require.NoError(t, err)
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		require.Len(t, conds, 1)
		require.Equal(t, "True", conds[0].(map[string]any)["status"])
		_, found, _ := unstructured.NestedFieldNoCopy(got.Object, "status", "failedIssuanceAttempts")
		require.False(t, found)
	})

	t.Run("CreateTLSSecret", func(t *testing.T) {
		t.Parallel()
		e, ns := setup(t)
		pemBytes, err := e.CreateTLSSecret(t.Context(), ns, "c1")
		require.NoError(t, err)
		sec, err := e.Clientset.CoreV1().Secrets(ns).Get(t.Context(), "c1-tls", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, corev1.SecretTypeTLS, sec.Type)
		require.Equal(t, "true", sec.Labels["portal.alga-psa.com/managed"])
		require.Equal(t, "c1", sec.Annotations["cert-manager.io/certificate-name"])
		block, _ := pem.Decode(pemBytes)
		cert, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		require.Equal(t, []string{"portal.example.com"}, cert.DNSNames)
	})

	t.Run("CRDSchemaEnforced", func(t *testing.T) {
		t.Parallel()
		e, ns := setup(t)
		bad := testCertificate(ns)
		bad.SetName("c2")
		require.NoError(t, unstructured.SetNestedField(bad.Object, "portal.example.com", "spec", "dnsNames"))
		err := e.Create(t.Context(), bad)
		require.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
	})

	t.Run("ServiceAccountHasNoRightsByDefault", func(t *testing.T) {
		t.Parallel()
		e, ns := setup(t)
		cs, err := kubernetes.NewForConfig(e.ServiceAccountConfig(t, ns, "nobody"))
		require.NoError(t, err)
		_, err = cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		require.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
		require.Contains(t, err.Error(), "system:serviceaccount:"+ns+":nobody")
	})
}

func TestDedicatedRestart(t *testing.T) {
	t.Parallel()
	e := StartDedicated(t)
	ns := e.Namespace(t, "restart")
	e.StopAPIServer(t)
	_, err := e.Clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
	require.Error(t, err)
	e.StartAPIServer(t)
	_, err = e.Clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
	require.NoError(t, err, "etcd keeps the data across an API server restart")
}

func TestEnsureBinaries(t *testing.T) {
	t.Parallel()

	fakeRoot := func(t *testing.T, script string) string {
		t.Helper()
		root := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(root, "scripts"), 0o755))
		// Hold ForkLock while the script is open for writing: a process
		// forked meanwhile by a parallel test would inherit the descriptor
		// until its exec, and running the script then fails with "text
		// file busy" (seen in CI).
		syscall.ForkLock.Lock()
		err := os.WriteFile(filepath.Join(root, "scripts", "build-kube-binaries.sh"), []byte(script), 0o755)
		syscall.ForkLock.Unlock()
		require.NoError(t, err)
		return root
	}

	t.Run("BuildsWhenMissing", func(t *testing.T) {
		t.Parallel()
		root := fakeRoot(t, "#!/bin/sh\nset -e\nd=.cache/kube-bin\nmkdir -p $d\nfor b in kube-apiserver etcd; do printf '#!/bin/sh\\n' > $d/$b; chmod +x $d/$b; done\necho built >> build.log\n")
		dir, err := ensureBinaries(root)
		require.NoError(t, err)
		require.Equal(t, filepath.Join(root, ".cache", "kube-bin"), dir)
		_, err = ensureBinaries(root)
		require.NoError(t, err)
		log, err := os.ReadFile(filepath.Join(root, "build.log"))
		require.NoError(t, err)
		require.Equal(t, "built\n", string(log), "built once, then found")
	})

	t.Run("FailsLoudly", func(t *testing.T) {
		t.Parallel()
		root := fakeRoot(t, "#!/bin/sh\necho 'go: module lookup disabled by GOPROXY=off' >&2\nexit 1\n")
		_, err := ensureBinaries(root)
		require.ErrorContains(t, err, "build kube binaries")
		require.ErrorContains(t, err, "GOPROXY=off")
	})

	t.Run("ScriptThatBuildsNothing", func(t *testing.T) {
		t.Parallel()
		root := fakeRoot(t, "#!/bin/sh\nexit 0\n")
		_, err := ensureBinaries(root)
		require.ErrorContains(t, err, "still lacks kube-apiserver or etcd")
	})
}
