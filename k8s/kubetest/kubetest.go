// Package kubetest runs a real kube-apiserver and etcd with the cert-manager
// and Istio CRDs installed (internal/harness/localapi, which also starts the
// dev stack's and the bench's), so tests exercise server-side apply,
// field-manager conflicts, CRD schema validation and RBAC exactly as a
// cluster would. Nothing runs cert-manager or Istio: tests
// play cert-manager with SetCertificateReady and CreateTLSSecret
// (internal/harness/issuer), or run issuer.Controller.
//
// One API server is shared per test binary (about 5 s to start). A package
// that uses it calls Main from TestMain, which stops the server when the
// tests end; each test takes its own namespaces from Namespace. A test that
// stops the API server takes a private one with StartDedicated.
//
// The binaries come from scripts/build-kube-binaries.sh into
// <module root>/.cache/kube-bin; when they are missing, Start builds them
// with localapi (minutes, once) and fails the test if that fails. It never
// skips.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
)

// Env is a running API server. Config authenticates as a cluster admin
// (system:masters); ServiceAccountConfig gives a least-privilege one.
type Env struct {
	Config    *rest.Config
	Dynamic   dynamic.Interface
	Clientset kubernetes.Interface
	// CA signs the certificates CreateTLSSecret writes.
	CA *issuer.CA

	api       *localapi.Server
	workDir   string
	dedicated bool
	mu        sync.Mutex // serialises stop and Stop/StartAPIServer
	stopped   bool
}

// shared is the per-test-binary API server, and live every server this
// binary started. They are package state on purpose: sharing one server
// across a binary's tests is the point, and Main is what stops them.
var (
	shared struct {
		mu      sync.Mutex
		inMain  bool
		env     *Env
		err     error
		started bool
	}
	live struct {
		mu   sync.Mutex
		envs map[*Env]struct{}
	}
	// A build of the binaries runs in a process group of its own (so that
	// cancelling it kills go build and the compilers too), which a Ctrl-C
	// on the terminal does not reach: Main's signal handler cancels
	// buildCtx, then takes buildMu, which ensureBinaries holds for reading,
	// to wait until the build's processes are gone.
	buildMu               sync.RWMutex
	buildCtx, cancelBuild = context.WithCancel(context.Background())
)

// Main runs the package's tests and then stops the shared API server, so
// no kube-apiserver or etcd outlives the test binary. It also stops every
// server, and a build of the binaries, on SIGINT/SIGTERM: envtest starts
// the servers in their own process group, and localapi the build, so a
// Ctrl-C on go test would otherwise leave them running. (A go test -timeout
// panic still can: it runs no cleanup.) Call it from TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "kubetest: %v: stopping API servers\n", sig)
		cancelBuild()
		buildMu.Lock() // a cancelled build returns once its processes are killed
		stopAll()
		os.Exit(130)
	}()

	code := m.Run()
	signal.Stop(sigs)
	if err := stopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: stopping API servers: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func stopAll() error {
	live.mu.Lock()
	envs := make([]*Env, 0, len(live.envs))
	for e := range live.envs {
		envs = append(envs, e)
	}
	live.mu.Unlock()
	var errs []error
	for _, e := range envs {
		errs = append(errs, e.stop())
	}
	return errors.Join(errs...)
}

// Start returns the test binary's shared API server, starting it on first
// use. It fails the test (never skips) if the server cannot start.
func Start(t testing.TB) *Env {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("kubetest.Start: call kubetest.Main(m) from TestMain, so the shared API server is stopped when the tests end")
	}
	if !shared.started {
		shared.started = true
		begin := time.Now()
		shared.env, shared.err = start(false)
		if shared.err == nil {
			t.Logf("kubetest: shared API server up in %s at %s", time.Since(begin).Round(time.Millisecond), shared.env.Config.Host)
		}
	}
	if shared.err != nil {
		t.Fatalf("kubetest: start API server: %v", shared.err)
	}
	return shared.env
}

// StartDedicated starts a private API server for one test, stopped in the
// test's cleanup. Only a dedicated server may be stopped and restarted
// (StopAPIServer, StartAPIServer): doing that to the shared one would fail
// every other test running in parallel.
func StartDedicated(t testing.TB) *Env {
	t.Helper()
	begin := time.Now()
	e, err := start(true)
	if err != nil {
		t.Fatalf("kubetest: start dedicated API server: %v", err)
	}
	t.Logf("kubetest: dedicated API server up in %s at %s", time.Since(begin).Round(time.Millisecond), e.Config.Host)
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("kubetest: stop dedicated API server: %v", err)
		}
	})
	return e
}

func start(dedicated bool) (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	binDir, err := ensureBinaries(root)
	if err != nil {
		return nil, err
	}
	crds, err := loadCRDs()
	if err != nil {
		return nil, err
	}
	ca, err := issuer.NewCA(time.Now())
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	api, err := localapi.Start(context.Background(), localapi.Options{BinDir: binDir, WorkDir: work, CRDs: crds})
	if err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	e := &Env{CA: ca, api: api, workDir: work, dedicated: dedicated}
	live.mu.Lock()
	if live.envs == nil {
		live.envs = map[*Env]struct{}{}
	}
	live.envs[e] = struct{}{}
	live.mu.Unlock()
	if err := e.setConfig(api.Config); err != nil {
		_ = e.stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) setConfig(cfg *rest.Config) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	e.Config, e.Dynamic, e.Clientset = cfg, dyn, cs
	return nil
}

// stop stops kube-apiserver and etcd. It holds e.mu throughout, so a
// concurrent caller (Main's exit path racing the signal handler) waits for
// the processes to be gone instead of exiting under them; later calls are
// no-ops.
func (e *Env) stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	if err := e.api.Stop(); err != nil {
		return err
	}
	e.stopped = true
	live.mu.Lock()
	delete(live.envs, e)
	live.mu.Unlock()
	_ = os.RemoveAll(e.workDir)
	return nil
}

// StopAPIServer stops kube-apiserver and leaves etcd running, so a client
// sees connection refused and, after StartAPIServer, finds its objects and
// CRDs again. Dedicated servers only.
func (e *Env) StopAPIServer(t testing.TB) {
	t.Helper()
	e.restart(t, "StopAPIServer", "stopped", e.api.StopAPIServer)
}

// StartAPIServer starts kube-apiserver again on the same address and
// certificates after StopAPIServer, and waits until it serves.
func (e *Env) StartAPIServer(t testing.TB) {
	t.Helper()
	e.restart(t, "StartAPIServer", "restarted", e.api.StartAPIServer)
}

// restart runs step (stopping or starting kube-apiserver) on a dedicated
// server and logs how long it took.
func (e *Env) restart(t testing.TB, name, done string, step func() error) {
	t.Helper()
	if !e.dedicated {
		t.Fatalf("kubetest: %s on the shared API server; use StartDedicated", name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	begin := time.Now()
	if err := step(); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Logf("kubetest: kube-apiserver %s in %s", done, time.Since(begin).Round(time.Millisecond))
}

// Namespace creates a fresh namespace named <prefix>-<random> for one test.
// Namespaces are not deleted: envtest runs no namespace controller, and the
// server goes away with the test binary.
func (e *Env) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := e.Clientset.CoreV1().Namespaces().Create(context.WithoutCancel(t.Context()), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	return ns.Name
}

// ServiceAccountConfig creates the ServiceAccount namespace/name (if it is
// not there yet) and returns a rest.Config that authenticates as it with a
// bound token from the TokenRequest API, as a pod would. RBAC then decides
// what it may do, so a test can load deploy/ RBAC and check it.
func (e *Env) ServiceAccountConfig(t testing.TB, namespace, name string) *rest.Config {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	_, err := e.Clientset.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create service account %s/%s: %v", namespace, name, err)
	}
	exp := int64(3600)
	tok, err := e.Clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token for service account %s/%s: %v", namespace, name, err)
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

// ModuleRoot is the repository above the working directory (a package
// directory under `go test`).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := localapi.FindRoot(dir)
	if root == "" {
		return "", errors.New("kubetest: no portal-domains go.mod above the working directory")
	}
	return root, nil
}

// ensureBinaries returns the directory holding kube-apiserver and etcd,
// building them with localapi.EnsureBinaries when missing; its file lock
// keeps parallel test binaries (and a dev stack) from building twice. The
// build's progress goes to stderr.
func ensureBinaries(root string) (string, error) {
	buildMu.RLock()
	defer buildMu.RUnlock()
	return localapi.EnsureBinaries(buildCtx, root, os.Stderr)
}
