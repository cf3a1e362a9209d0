package localapi_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/k8s"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	root := localapi.FindRoot(dir)
	require.NotEmpty(t, root, "no go.mod above the working directory")
	return root
}

func TestStart(t *testing.T) {
	t.Parallel()
	binDir, err := localapi.EnsureBinaries(t.Context(), moduleRoot(t), testWriter{t})
	require.NoError(t, err)
	work := filepath.Join(t.TempDir(), "kube")
	srv, err := localapi.Start(t.Context(), localapi.Options{BinDir: binDir, WorkDir: work})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			require.NoError(t, srv.Stop())
		}
	})

	t.Run("the kubeconfig file reaches the API server, with the CRDs installed", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", srv.KubeconfigPath)
		require.NoError(t, err)
		require.Equal(t, srv.Host(), cfg.Host+"/")
		dyn, err := dynamic.NewForConfig(cfg)
		require.NoError(t, err)
		for _, gvr := range []schema.GroupVersionResource{k8s.CertificateGVR, k8s.GatewayGVR, k8s.VirtualServiceGVR} {
			_, err := dyn.Resource(gvr).List(t.Context(), metav1.ListOptions{})
			require.NoError(t, err, "list %s", gvr.Resource)
		}
	})

	t.Run("both child processes are known by PID", func(t *testing.T) {
		require.Positive(t, srv.APIServerPID)
		require.Positive(t, srv.EtcdPID)
		require.True(t, localapi.Alive(srv.APIServerPID))
		require.True(t, localapi.Alive(srv.EtcdPID))
	})

	t.Run("processes left by an owner that died are killed by the next start's KillLeftovers", func(t *testing.T) {
		require.NoError(t, localapi.KillLeftovers(work))
		require.False(t, localapi.Alive(srv.APIServerPID))
		require.False(t, localapi.Alive(srv.EtcdPID))
		require.NoError(t, srv.Stop(), "stopping after the processes died is fine")
		stopped = true
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
