// Package gittest serves a bare Git repository over HTTP on loopback with
// git's own http-backend behind net/http/cgi, behind basic auth, for tests of
// the manifest record. It needs the git binary (Debian's git package).
package gittest

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Remote is a bare repository served at URL.
type Remote struct {
	URL      string // http://127.0.0.1:port/repo.git
	Bare     string // the bare repository on disk
	User     string
	Token    string
	server   *httptest.Server
	handler  http.Handler
	addr     string
	mu       sync.Mutex
	beforeRx []func()
}

// Serve starts a remote whose branch main holds one commit (a README), so it
// looks like a cluster-config repository someone already uses.
func Serve(t testing.TB, token string) *Remote {
	t.Helper()
	r := ServeEmpty(t, token)
	r.Commit(t, "README.md", "cluster config\n", "initial commit")
	return r
}

// ServeEmpty starts a remote with no commit and no branch yet.
func ServeEmpty(t testing.TB, token string) *Remote {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	require.NoError(t, err, "the git binary is needed to serve a test remote (Debian: apt-get install git)")
	dir := t.TempDir()
	bare := filepath.Join(dir, "repo.git")
	run(t, dir, "init", "--bare", "--initial-branch=main", bare)
	run(t, bare, "config", "http.receivepack", "true")
	r := &Remote{Bare: bare, User: "x-access-token", Token: token}

	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"},
	}
	r.handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user+":"+pass), []byte(r.User+":"+r.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-receive-pack") {
			r.mu.Lock()
			hooks := r.beforeRx
			r.beforeRx = nil
			r.mu.Unlock()
			for _, h := range hooks {
				h()
			}
		}
		backend.ServeHTTP(w, req)
	})
	r.server = httptest.NewServer(r.handler)
	r.addr = r.server.Listener.Addr().String()
	t.Cleanup(func() { r.mu.Lock(); defer r.mu.Unlock(); r.server.Close() })
	r.URL = r.server.URL + "/repo.git"
	return r
}

// Down stops serving: connections to the remote are refused until Up.
func (r *Remote) Down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.server.Close()
}

// Up serves again on the same address.
func (r *Remote) Up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(r.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.server = srv
}

// BeforeNextPush runs f once, when the next push has read the branch and
// before its objects reach the repository: the moment another writer's push
// makes this one be rejected.
func (r *Remote) BeforeNextPush(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.beforeRx = append(r.beforeRx, f)
}

// Commit commits path=content on main directly in the bare repository, as
// another writer would (an operator's merge, Argo CD's image updater).
func (r *Remote) Commit(t testing.TB, path, content, message string) {
	t.Helper()
	wt := t.TempDir()
	run(t, wt, "clone", "--quiet", r.Bare, ".")
	run(t, wt, "checkout", "--quiet", "-B", "main")
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(wt, path)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(wt, path), []byte(content), 0o644))
	run(t, wt, "add", path)
	run(t, wt, "-c", "user.name=Someone Else", "-c", "user.email=else@example.com", "commit", "--quiet", "-m", message)
	run(t, wt, "push", "--quiet", "origin", "HEAD:main")
}

// Merge merges branch into main with a merge commit, as a reviewer's
// "merge pull request" does.
func (r *Remote) Merge(t testing.TB, branch string) {
	t.Helper()
	wt := t.TempDir()
	run(t, wt, "clone", "--quiet", r.Bare, ".")
	run(t, wt, "-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com", "merge", "--quiet", "--no-ff", "-m", "Merge "+branch, "origin/"+branch)
	run(t, wt, "push", "--quiet", "origin", "HEAD:main")
}

// Branch returns the commit a branch points at, or "" when it does not exist.
func (r *Remote) Branch(t testing.TB, branch string) string {
	t.Helper()
	cmd := exec.Command("git", "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	cmd.Dir = r.Bare
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// ShowAt returns the content of path on rev, and whether it exists.
func (r *Remote) ShowAt(t testing.TB, rev, path string) (string, bool) {
	t.Helper()
	cmd := exec.Command("git", "show", rev+":"+path)
	cmd.Dir = r.Bare
	out, err := cmd.Output()
	if err != nil {
		return "", false
	}
	return string(out), true
}

// Log returns the full messages of main's commits, newest first.
func (r *Remote) Log(t testing.TB) []string {
	t.Helper()
	out := run(t, r.Bare, "log", "--format=%B%x00", "main")
	var msgs []string
	for _, m := range strings.Split(out, "\x00") {
		if m = strings.TrimSpace(m); m != "" {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// Show returns the content of path on main, and whether it exists.
func (r *Remote) Show(t testing.TB, path string) (string, bool) {
	t.Helper()
	return r.ShowAt(t, "main", path)
}

// Everything returns every blob, commit message and ref of the repository as
// text, for checking that a secret was never written to it.
func (r *Remote) Everything(t testing.TB) string {
	t.Helper()
	objs := run(t, r.Bare, "cat-file", "--batch-all-objects", "--batch")
	return objs + run(t, r.Bare, "show-ref")
}

func run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %s: %s", strings.Join(args, " "), out)
	return string(out)
}
