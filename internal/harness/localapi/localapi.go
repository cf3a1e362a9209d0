// Package localapi runs a real kube-apiserver and etcd on loopback
// (controller-runtime's envtest used as a library) with the cert-manager and
// Istio CRDs installed, outside tests: the dev stack (`portal-domains-dev dev`)
// runs the worker against it. k8s/kubetest is the test-only counterpart
// (shared server per test binary, restartable dedicated servers, testing.TB
// helpers); it builds the binaries and loads the CRDs with this package.
//
// kube-apiserver and etcd run as child processes in process groups of their
// own (envtest's choice), so a Ctrl-C on the terminal does not reach them:
// Stop must run, and it makes sure both are gone. If a previous owner of
// the same work directory died without Stop (SIGKILL, a crash), Start kills
// the processes it left behind first.
package localapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options say where the binaries are and where the server keeps its state.
type Options struct {
	// BinDir holds kube-apiserver and etcd (EnsureBinaries).
	BinDir string
	// WorkDir holds the serving certificates, etcd's data, the logs and the
	// kubeconfig. It is emptied first: every Start is a fresh cluster.
	WorkDir string
	// CRDs to install; nil installs LoadCRDs(CRDSources()).
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// Namespaces are created once the server is up.
	Namespaces []string
}

// Server is a running API server.
type Server struct {
	// Config authenticates as a cluster admin (system:masters), with a high
	// client-side rate limit.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file for Config, for kubectl and
	// `KUBECONFIG=... portal-domains status`.
	KubeconfigPath string
	// APIServerPID and EtcdPID are the child processes.
	APIServerPID, EtcdPID int

	env     *envtest.Environment
	workDir string
}

// Host is the API server's URL.
func (s *Server) Host() string { return s.Config.Host }

// LogPath is the file kube-apiserver's output goes to.
func (s *Server) LogPath() string { return filepath.Join(s.workDir, "kube-apiserver.log") }

// Start starts etcd and kube-apiserver on random loopback ports, installs
// the CRDs and writes the kubeconfig. It takes about 5 seconds; ctx only
// cancels the CRD download (envtest's start is not interruptible, so a
// cancelled ctx stops the server again right after it came up).
func Start(ctx context.Context, opts Options) (*Server, error) {
	if !HaveBinaries(opts.BinDir) {
		return nil, fmt.Errorf("no kube-apiserver and etcd in %s (EnsureBinaries builds them)", opts.BinDir)
	}
	work, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("work directory %s: %w", opts.WorkDir, err)
	}
	crds := opts.CRDs
	if crds == nil {
		if crds, err = LoadCRDs(ctx, CRDSources()); err != nil {
			return nil, err
		}
	}
	if err := KillLeftovers(work); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(work); err != nil {
		return nil, fmt.Errorf("clear %s: %w", work, err)
	}
	certDir, dataDir := filepath.Join(work, "apiserver"), filepath.Join(work, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	apiLog, err := os.Create(filepath.Join(work, "kube-apiserver.log"))
	if err != nil {
		return nil, fmt.Errorf("create kube-apiserver log: %w", err)
	}
	etcdLog, err := os.Create(filepath.Join(work, "etcd.log"))
	if err != nil {
		apiLog.Close()
		return nil, fmt.Errorf("create etcd log: %w", err)
	}
	// The child processes hold their own descriptors; ours can go.
	defer apiLog.Close()
	defer etcdLog.Close()
	useExisting := false
	env := &envtest.Environment{
		// Explicit paths: KUBEBUILDER_ASSETS and TEST_ASSET_* must not swap
		// in other binaries behind the operator's back.
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Path: filepath.Join(opts.BinDir, "kube-apiserver"), CertDir: certDir, Out: apiLog, Err: apiLog},
			Etcd:      &envtest.Etcd{Path: filepath.Join(opts.BinDir, "etcd"), DataDir: dataDir, Out: etcdLog, Err: etcdLog},
		},
		UseExistingCluster: &useExisting,
		// Generous bounds: about 5 s is typical, but with several test
		// binaries starting servers on a loaded 2-core machine a start has
		// taken a minute.
		CRDInstallOptions:        envtest.CRDInstallOptions{CRDs: crds, MaxTime: time.Minute},
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  20 * time.Second,
	}
	// An open watch otherwise holds kube-apiserver's graceful shutdown until
	// the watch times out (minutes).
	env.ControlPlane.APIServer.Configure().Set("shutdown-watch-termination-grace-period", "2s")
	cfg, err := env.Start()
	s := &Server{env: env, workDir: work}
	s.findChildren()
	if err != nil {
		stopErr := s.Stop()
		return nil, errors.Join(fmt.Errorf("start kube-apiserver and etcd: %w\nkube-apiserver log tail:\n%s", err, tail(s.LogPath())), stopErr)
	}
	s.Config = cfg
	s.KubeconfigPath = filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(s.KubeconfigPath, env.KubeConfig, 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("write kubeconfig: %w", err), s.Stop())
	}
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(fmt.Errorf("start kube-apiserver: %w", err), s.Stop())
	}
	if err := s.createNamespaces(ctx, opts.Namespaces); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

func (s *Server) createNamespaces(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	for _, ns := range names {
		if ns == "" {
			continue
		}
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	return nil
}

// StopAPIServer stops kube-apiserver alone and leaves etcd running, so a
// client sees connection refused and, after StartAPIServer, finds its
// objects and CRDs again.
func (s *Server) StopAPIServer() error {
	if err := s.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w\n%s", err, tail(s.LogPath()))
	}
	return nil
}

// StartAPIServer starts kube-apiserver again on the same address and
// certificates after StopAPIServer, and waits until it serves.
func (s *Server) StartAPIServer() error {
	if err := s.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("restart kube-apiserver: %w\n%s", err, tail(s.LogPath()))
	}
	s.findChildren()
	return nil
}

// Stop stops kube-apiserver and etcd (SIGTERM, SIGKILL after 20 s) and
// checks that both processes are gone, killing what is left. etcd's data
// goes; the logs stay in the work directory until the next Start.
func (s *Server) Stop() error {
	err := s.env.Stop()
	for _, pid := range []int{s.APIServerPID, s.EtcdPID} {
		if pid > 0 && Alive(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range []int{s.APIServerPID, s.EtcdPID} {
		for pid > 0 && Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if pid > 0 && Alive(pid) {
			err = errors.Join(err, fmt.Errorf("process %d is still running after SIGKILL", pid))
		}
	}
	_ = os.RemoveAll(filepath.Join(s.workDir, "etcd"))
	if err != nil {
		return fmt.Errorf("stop kube-apiserver and etcd: %w", err)
	}
	return nil
}

// findChildren records the PIDs of our kube-apiserver and etcd: envtest
// keeps its exec.Cmds private, so read them from /proc (children of this
// process whose command line names this work directory).
func (s *Server) findChildren() {
	self := os.Getpid()
	for _, p := range processesUsing(s.workDir) {
		if p.ppid != self {
			continue
		}
		switch p.name {
		case "kube-apiserver":
			s.APIServerPID = p.pid
		case "etcd":
			s.EtcdPID = p.pid
		}
	}
}

// Alive reports whether pid names a running (not zombie) process.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return errors.Is(err, syscall.EPERM)
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, state, ok := parseStat(stat)
	return ok && state != "Z" && state != "X"
}

// KillLeftovers SIGKILLs kube-apiserver and etcd processes whose command
// line names workDir: those of an earlier owner of the directory that died
// without stopping them. It waits until they are gone.
func KillLeftovers(workDir string) error {
	procs := processesUsing(workDir)
	for _, p := range procs {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL) // envtest makes each its own group leader
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for Alive(p.pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("leftover %s (pid %d) using %s does not die", p.name, p.pid, workDir)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

type process struct {
	pid, ppid int
	name      string // base name of argv[0]
}

// processesUsing lists kube-apiserver and etcd processes with an argument
// inside dir (envtest passes --cert-dir and --data-dir).
func processesUsing(dir string) []process {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		name := filepath.Base(args[0])
		if name != "kube-apiserver" && name != "etcd" {
			continue
		}
		uses := false
		for _, a := range args[1:] {
			if strings.Contains(a, dir+string(filepath.Separator)) || strings.HasSuffix(a, "="+dir) || a == dir {
				uses = true
				break
			}
		}
		if !uses {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		ppid, _, ok := parseStat(stat)
		if !ok {
			continue
		}
		out = append(out, process{pid: pid, ppid: ppid, name: name})
	}
	return out
}

// parseStat reads the parent pid and state from /proc/<pid>/stat, whose
// second field (the command) may contain spaces and parentheses.
func parseStat(stat []byte) (ppid int, state string, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, "", false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0, "", false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, fields[0], err == nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}
