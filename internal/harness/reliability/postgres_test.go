package reliability_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/k8s/kubetest"
)

// pgServer is a throwaway Postgres cluster of one test, so the test can stop
// and start it without disturbing the shared test database. It is started
// with scripts/ensure-postgres.sh (which installs and initialises it the
// way `make test` does) and removed when the test ends.
type pgServer struct {
	URL     string
	port    int
	dataDir string
	script  string
}

func startDedicatedPostgres(t *testing.T) *pgServer {
	t.Helper()
	root, err := kubetest.ModuleRoot()
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	p := &pgServer{
		URL:     fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", port),
		port:    port,
		dataDir: fmt.Sprintf("/tmp/portal-domains-pg-%d", port),
		script:  filepath.Join(root, "scripts", "ensure-postgres.sh"),
	}
	// A data directory left by an earlier run on this port is stale.
	require.NoError(t, os.RemoveAll(p.dataDir))
	p.Start(t)
	t.Cleanup(func() {
		if err := p.pgctl("stop", "-m", "immediate"); err != nil {
			t.Logf("stop dedicated Postgres on port %d: %v", p.port, err)
		}
		_ = os.RemoveAll(p.dataDir)
	})
	return p
}

// Start starts the cluster (again): ensure-postgres.sh finds it stopped and
// starts it with the same data directory and options.
func (p *pgServer) Start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.script, p.URL)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "start dedicated Postgres with %s: %s", p.script, out)
}

// Crash stops the cluster like a power cut: `pg_ctl stop -m immediate`
// aborts every backend without a checkpoint, and the next start recovers
// from the write-ahead log.
func (p *pgServer) Crash(t *testing.T) {
	t.Helper()
	require.NoError(t, p.pgctl("stop", "-m", "immediate", "-t", "30"))
}

// pgctl runs pg_ctl on the cluster, as user postgres when running as root
// (ensure-postgres.sh initialised it as postgres).
func (p *pgServer) pgctl(args ...string) error {
	bin, err := findPgCtl()
	if err != nil {
		return err
	}
	argv := append([]string{bin, "-D", p.dataDir}, args...)
	if os.Geteuid() == 0 {
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// findPgCtl looks where ensure-postgres.sh looks: PATH, then the newest
// Debian cluster binaries.
func findPgCtl() (string, error) {
	if bin, err := exec.LookPath("pg_ctl"); err == nil {
		return bin, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		return "", fmt.Errorf("pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")
	}
	slices.SortFunc(matches, func(a, b string) int { return versionOf(a) - versionOf(b) })
	return matches[len(matches)-1], nil
}

func versionOf(path string) int {
	var v int
	_, _ = fmt.Sscanf(filepath.Base(filepath.Dir(filepath.Dir(path))), "%d", &v)
	return v
}
