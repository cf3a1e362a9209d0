package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Snapshot file names inside <dir>/<tenant7>/, as the runbook expects them.
const (
	SnapshotCertificate    = "certificate.json"
	SnapshotGateway        = "gateway.json"
	SnapshotVirtualService = "virtualservice.json"
)

var snapshotFiles = []string{SnapshotCertificate, SnapshotGateway, SnapshotVirtualService}

// WriteSnapshots writes the objects as JSON to <dir>/<tenant7>/ so an
// operator can see (and diff, and kubectl apply) exactly what the worker
// applied. The bytes are deterministic (sorted keys, two-space indent,
// trailing newline) and server-populated fields (status, managedFields,
// resourceVersion, uid...) are dropped, so writing the same domain twice
// gives identical files; an unchanged file is not rewritten. Each file is
// replaced atomically (temp file, fsync, rename): a reader never sees half a
// file. Secrets are refused: snapshots sit on a plain volume.
func WriteSnapshots(dir, tenant7 string, objs Objects) error {
	tdir, err := snapshotDir(dir, tenant7)
	if err != nil {
		return err
	}
	want := []struct {
		kind, file string
		obj        *unstructured.Unstructured
	}{
		{"Certificate", SnapshotCertificate, objs.Certificate},
		{"Gateway", SnapshotGateway, objs.Gateway},
		{"VirtualService", SnapshotVirtualService, objs.VirtualService},
	}
	// Encode everything before touching the disk so a bad object leaves the
	// previous snapshots intact.
	data := make([][]byte, len(want))
	for i, w := range want {
		if w.obj == nil {
			return fmt.Errorf("write snapshot %s: no %s object", w.file, w.kind)
		}
		if k := w.obj.GetKind(); k != w.kind {
			return fmt.Errorf("write snapshot %s: got a %q object, want %s (secrets are never snapshotted)", w.file, k, w.kind)
		}
		if data[i], err = SnapshotJSON(w.obj); err != nil {
			return fmt.Errorf("write snapshot %s: %w", w.file, err)
		}
	}
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return fmt.Errorf("create snapshot directory: %w", err)
	}
	for i, w := range want {
		if err := writeFileAtomic(filepath.Join(tdir, w.file), data[i]); err != nil {
			return fmt.Errorf("write snapshot %s: %w", w.file, err)
		}
	}
	return nil
}

// RemoveSnapshots deletes the snapshot files for tenant7 and then the
// directory if nothing else is in it. Missing files are not an error, so a
// disable that ran before can run again.
func RemoveSnapshots(dir, tenant7 string) error {
	tdir, err := snapshotDir(dir, tenant7)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(tdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove snapshots: %w", err)
	}
	for _, e := range entries {
		if !isSnapshotFile(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(tdir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove snapshot %s: %w", e.Name(), err)
		}
	}
	if err := os.Remove(tdir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Someone keeps their own files there; leave them and the directory.
		if rest, rerr := os.ReadDir(tdir); rerr == nil && len(rest) > 0 {
			return nil
		}
		return fmt.Errorf("remove snapshot directory: %w", err)
	}
	return nil
}

// SnapshotJSON is the exact byte form WriteSnapshots writes for obj.
func SnapshotJSON(obj *unstructured.Unstructured) ([]byte, error) {
	if obj.GetKind() == "Secret" {
		return nil, errors.New("refusing to snapshot a Secret")
	}
	clean := obj.DeepCopy()
	delete(clean.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink"} {
		unstructured.RemoveNestedField(clean.Object, "metadata", f)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	// encoding/json writes map keys sorted, which makes the bytes stable;
	// Encode adds the trailing newline.
	if err := enc.Encode(clean.Object); err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return buf.Bytes(), nil
}

func snapshotDir(dir, tenant7 string) (string, error) {
	if dir == "" {
		return "", errors.New("snapshot directory is empty")
	}
	// tenant7 becomes a path element: only a DNS label is accepted, which
	// rules out "..", slashes and anything else that could escape dir.
	if errs := validation.IsDNS1123Label(tenant7); len(errs) > 0 {
		return "", fmt.Errorf("snapshot tenant prefix %q: %s", tenant7, strings.Join(errs, "; "))
	}
	return filepath.Join(dir, tenant7), nil
}

func isSnapshotFile(name string) bool {
	for _, f := range snapshotFiles {
		if name == f || (strings.HasPrefix(name, "."+f+".") && strings.HasSuffix(name, ".tmp")) {
			return true
		}
	}
	return false
}

func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// Persist the rename itself; best effort, some filesystems refuse.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
