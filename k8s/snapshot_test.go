package k8s

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestSnapshots(t *testing.T) {
	t.Parallel()

	setup := func(t *testing.T) (string, Objects) {
		t.Helper()
		objs, err := Render(testDomain(), Config{ChallengeHost: "solver.msp.svc"})
		require.NoError(t, err)
		return t.TempDir(), objs
	}

	t.Run("WritesDeterministicFiles", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		require.NoError(t, WriteSnapshots(dir, "abc1234", objs))
		for _, f := range snapshotFiles {
			b, err := os.ReadFile(filepath.Join(dir, "abc1234", f))
			require.NoError(t, err)
			require.Equal(t, byte('\n'), b[len(b)-1])
			require.Contains(t, string(b), "\n  \"apiVersion\"")
		}
		cert, err := os.ReadFile(filepath.Join(dir, "abc1234", SnapshotCertificate))
		require.NoError(t, err)
		want, err := SnapshotJSON(objs.Certificate)
		require.NoError(t, err)
		require.Equal(t, want, cert)
	})

	t.Run("UnchangedFileNotRewritten", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		require.NoError(t, WriteSnapshots(dir, "abc1234", objs))
		path := filepath.Join(dir, "abc1234", SnapshotGateway)
		before, err := os.Stat(path)
		require.NoError(t, err)
		require.NoError(t, WriteSnapshots(dir, "abc1234", objs))
		after, err := os.Stat(path)
		require.NoError(t, err)
		require.True(t, os.SameFile(before, after), "identical snapshot must not be replaced")
	})

	t.Run("DropsServerFields", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		applied := objs.Certificate.DeepCopy()
		applied.SetResourceVersion("123")
		applied.SetUID("u-1")
		applied.Object["status"] = map[string]any{"conditions": []any{}}
		objs.Certificate = applied
		require.NoError(t, WriteSnapshots(dir, "abc1234", objs))
		b, err := os.ReadFile(filepath.Join(dir, "abc1234", SnapshotCertificate))
		require.NoError(t, err)
		require.NotContains(t, string(b), "resourceVersion")
		require.NotContains(t, string(b), "status")
	})

	t.Run("RefusesSecrets", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		objs.Certificate = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": "x"},
			"data":     map[string]any{"tls.key": "c2VjcmV0"},
		}}
		require.ErrorContains(t, WriteSnapshots(dir, "abc1234", objs), "secrets are never snapshotted")
		_, err := os.Stat(filepath.Join(dir, "abc1234"))
		require.ErrorIs(t, err, os.ErrNotExist, "nothing written when one object is refused")
	})

	t.Run("RejectsPathTricks", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		for _, bad := range []string{"", "..", "a/b", "../x", "ABC"} {
			require.Error(t, WriteSnapshots(dir, bad, objs), bad)
			require.Error(t, RemoveSnapshots(dir, bad), bad)
		}
	})

	t.Run("RemoveIsIdempotent", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		require.NoError(t, WriteSnapshots(dir, "abc1234", objs))
		require.NoError(t, RemoveSnapshots(dir, "abc1234"))
		_, err := os.Stat(filepath.Join(dir, "abc1234"))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.NoError(t, RemoveSnapshots(dir, "abc1234"))
	})

	t.Run("RemoveKeepsForeignFiles", func(t *testing.T) {
		t.Parallel()
		dir, objs := setup(t)
		require.NoError(t, WriteSnapshots(dir, "abc1234", objs))
		notes := filepath.Join(dir, "abc1234", "notes.txt")
		require.NoError(t, os.WriteFile(notes, []byte("operator notes"), 0o644))
		require.NoError(t, RemoveSnapshots(dir, "abc1234"))
		_, err := os.Stat(notes)
		require.NoError(t, err)
		_, err = os.Stat(filepath.Join(dir, "abc1234", SnapshotCertificate))
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}
