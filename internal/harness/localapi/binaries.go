package localapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BinDir is where scripts/build-kube-binaries.sh puts kube-apiserver and
// etcd, relative to the module root.
const BinDir = ".cache/kube-bin"

// buildLock is locked around a build, so a dev stack and test binaries
// (k8s/kubetest builds through EnsureBinaries too) never build the binaries
// at the same time.
const buildLock = ".cache/kube-bin.lock"

// modulePath identifies this repository's go.mod in FindRoot.
const modulePath = "github.com/portal-domains/portal-domains"

// FindRoot walks up from dir to the directory holding this repository's
// go.mod, where EnsureBinaries finds the build script and the binaries; ""
// when there is none (the binary runs elsewhere).
func FindRoot(dir string) string {
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(mod), []byte("module "+modulePath)) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// HaveBinaries reports whether binDir holds executable kube-apiserver and
// etcd.
func HaveBinaries(binDir string) bool {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(binDir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// EnsureBinaries returns <root>/.cache/kube-bin, first building
// kube-apiserver and etcd with <root>/scripts/build-kube-binaries.sh when
// they are missing (about 10 minutes on a cold Go cache, once). The
// script's lines, among them its own heartbeat every 30 seconds, go to
// progress, so a first `make run` does not look hung. Cancelling ctx kills the whole
// build (the script, go build and the compilers it started).
func EnsureBinaries(ctx context.Context, root string, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	binDir := filepath.Join(root, BinDir)
	if HaveBinaries(binDir) {
		return binDir, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", binDir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(root, buildLock), progress)
	if err != nil {
		return "", err
	}
	defer unlock()
	if HaveBinaries(binDir) { // another process built them while we waited
		return binDir, nil
	}
	script := filepath.Join(root, "scripts", "build-kube-binaries.sh")
	fmt.Fprintf(progress, "kube-apiserver and etcd are not in %s yet: building them from the Go module proxy with %s\n", binDir, script)
	fmt.Fprintln(progress, "(about 10 minutes and 2.3 GB of memory the first time, then cached; Ctrl-C stops the build)")
	if err := runBuild(ctx, root, script, progress); err != nil {
		return "", err
	}
	if !HaveBinaries(binDir) {
		return "", fmt.Errorf("%s ran but %s still lacks kube-apiserver or etcd", script, binDir)
	}
	return binDir, nil
}

// runBuild runs the build script in its own process group, streaming its
// output to progress.
func runBuild(ctx context.Context, root, script string, progress io.Writer) error {
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = root
	// A process group of its own, so cancelling kills go build and the
	// compilers too, not only bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var tail []string // read only after copied is closed
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(progress, "  build: "+line)
			tail = append(tail, line)
			if len(tail) > 40 {
				tail = tail[1:]
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-copied
		return fmt.Errorf("start %s: %w", script, err)
	}
	err := cmd.Wait()
	pw.Close()
	<-copied
	if ctx.Err() != nil {
		return fmt.Errorf("build kube binaries: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("build kube binaries with %s: %w\n%s", script, err, strings.Join(tail, "\n"))
	}
	fmt.Fprintf(progress, "  build: done in %s\n", time.Since(begin).Round(time.Second))
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can
// cancel the wait, and says once that it is waiting.
func lockFile(ctx context.Context, path string, progress io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(progress, "another process is building the kube binaries (%s is locked); waiting for it\n", path)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for %s: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
