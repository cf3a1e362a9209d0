// Package acme runs real issuance on loopback for the dev stack and the tests: Pebble, the
// ACME test CA of Let's Encrypt, and cert-manager's own ACME controllers (built by
// scripts/build-acme-binaries.sh into .cache/acme-bin) against the local kube-apiserver,
// with a ClusterIssuer for Pebble that solves HTTP-01 through an Ingress of class istio.
//
// Pebble validates HTTP-01 on port 80 of the address the tenant's domain resolves to through
// the local DNS server (its -dnsserver), and cert-manager's self-check asks the same server
// (--acme-http01-solver-nameservers): both reach port 80 of the address the zone gives the
// domain, where the local gateway (stack.HTTP01) answers from the solver Pod's spec. Each
// stack may take its own loopback address (127.x.y.z), so several can bind port 80 at once.
package acme

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portal-domains/portal-domains/internal/harness/issuer"
)

// SolverIngressClass is the ingress class of the Ingress cert-manager creates for each HTTP-01
// challenge: Istio's ingress controller serves Ingresses of class istio through its ingress
// gateway, as the local gateway does.
const SolverIngressClass = "istio"

// ClusterResourceNamespace holds the ClusterIssuer's ACME account key, as in an installation
// of cert-manager.
const ClusterResourceNamespace = "cert-manager"

// Options say what to run against.
type Options struct {
	// BinDir holds cert-manager-controller and pebble (EnsureBinaries).
	BinDir string
	// WorkDir gets Pebble's config and certificate, and both processes' logs.
	WorkDir string
	// API is the kube-apiserver the controllers work against, with cert-manager's CRDs
	// installed (localapi installs them all).
	API *rest.Config
	// Kubeconfig is a kubeconfig file for API.
	Kubeconfig string
	// DNSAddr is the local DNS server ("127.0.0.1:port"): Pebble resolves the domains it
	// validates through it, and so does cert-manager's HTTP-01 self-check.
	DNSAddr string
	// PebbleDNSAddr, when set, is the DNS server Pebble resolves through instead of DNSAddr: a
	// test can make a name resolve elsewhere for the CA than for cert-manager's self-check.
	PebbleDNSAddr string
	// IssuerName is the ClusterIssuer to create.
	IssuerName string
	// Validity is how long Pebble's certificates last (0: 90 days). Short ones make renewal
	// observable.
	Validity time.Duration
	// CAAIdentities are the names Pebble looks for in CAA records (nil: letsencrypt.org, as
	// it stands in for Let's Encrypt).
	CAAIdentities []string
	// Logger gets what the stand-in garbage collector deletes.
	Logger *slog.Logger
	// MinimumBackoff is cert-manager's first wait before it retries a failed issuance (0: its
	// default, 1h); it doubles with each failure.
	MinimumBackoff time.Duration
}

// ACME is Pebble and cert-manager's controllers, running.
type ACME struct {
	// DirectoryURL is Pebble's ACME directory.
	DirectoryURL string
	// RootPEM is the root Pebble's certificates chain to (fresh each start): what the probe
	// trusts.
	RootPEM []byte
	// IssuerName is the ClusterIssuer.
	IssuerName string
	// PebblePID and ControllerPID are the two processes.
	PebblePID, ControllerPID int

	workDir string
	procs   []*exec.Cmd
	waited  []chan error
	stopGC  context.CancelFunc
	gcDone  chan struct{}
}

// PebbleLog and ControllerLog are the processes' output.
func (a *ACME) PebbleLog() string     { return filepath.Join(a.workDir, "pebble.log") }
func (a *ACME) ControllerLog() string { return filepath.Join(a.workDir, "cert-manager.log") }

// EnsureBinaries builds cert-manager-controller and pebble on first use
// (scripts/build-acme-binaries.sh, cached) and returns their directory.
func EnsureBinaries(ctx context.Context, root string, out io.Writer) (string, error) {
	dir := filepath.Join(root, ".cache", "acme-bin")
	if haveBinaries(dir) {
		return dir, nil
	}
	script := filepath.Join(root, "scripts", "build-acme-binaries.sh")
	cmd := exec.CommandContext(ctx, script)
	cmd.Stdout, cmd.Stderr = io.Discard, out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	if !haveBinaries(dir) {
		return "", fmt.Errorf("%s left no cert-manager-controller and pebble in %s", script, dir)
	}
	return dir, nil
}

func haveBinaries(dir string) bool {
	for _, b := range []string{"cert-manager-controller", "pebble"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Start starts Pebble and the controllers, creates the ClusterIssuer and returns once it is
// Ready (its ACME account registered with Pebble).
func Start(ctx context.Context, opts Options) (_ *ACME, err error) {
	if !haveBinaries(opts.BinDir) {
		return nil, fmt.Errorf("no cert-manager-controller and pebble in %s (EnsureBinaries builds them)", opts.BinDir)
	}
	if opts.IssuerName == "" || opts.DNSAddr == "" {
		return nil, errors.New("acme: IssuerName and DNSAddr are required")
	}
	work, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", work, err)
	}
	a := &ACME{IssuerName: opts.IssuerName, workDir: work}
	defer func() {
		if err != nil {
			_ = a.Stop()
		}
	}()

	kube, err := kubernetes.NewForConfig(opts.API)
	if err != nil {
		return nil, err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ClusterResourceNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", ClusterResourceNamespace, err)
	}

	if err := a.startPebble(ctx, opts); err != nil {
		return nil, err
	}
	if err := a.startController(opts); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(opts.API)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gcCtx, stopGC := context.WithCancel(context.WithoutCancel(ctx))
	a.stopGC, a.gcDone = stopGC, make(chan struct{})
	go func() {
		defer close(a.gcDone)
		ownerGC{dyn: dyn, logger: logger.With("component", "owner-gc")}.run(gcCtx)
	}()
	if err := a.createIssuer(ctx, opts); err != nil {
		return nil, err
	}
	return a, nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startPebble serves Pebble's ACME API over HTTPS with a certificate from a throwaway CA of
// its own (pebble-tls-ca.pem, the ClusterIssuer's caBundle); the certificates Pebble issues
// chain to another root, made fresh by Pebble on every start (RootPEM).
func (a *ACME) startPebble(ctx context.Context, opts Options) error {
	listenPort, err := freePort()
	if err != nil {
		return err
	}
	mgmtPort, err := freePort()
	if err != nil {
		return err
	}
	tlsPort, err := freePort()
	if err != nil {
		return err
	}
	now := time.Now()
	ca, err := issuer.NewCA(now)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue([]string{"localhost"}, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	if err != nil {
		return err
	}
	files := map[string][]byte{"pebble-tls.pem": certPEM, "pebble-tls.key": keyPEM, "pebble-tls-ca.pem": ca.CertPEM()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(a.workDir, name), b, 0o600); err != nil {
			return err
		}
	}
	caa := opts.CAAIdentities
	if len(caa) == 0 {
		caa = []string{"letsencrypt.org"}
	}
	validity := opts.Validity
	if validity <= 0 {
		validity = 90 * 24 * time.Hour
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           "127.0.0.1:" + strconv.Itoa(listenPort),
		"managementListenAddress": "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":             filepath.Join(a.workDir, "pebble-tls.pem"),
		"privateKey":              filepath.Join(a.workDir, "pebble-tls.key"),
		// HTTP-01 is answered on port 80, as for a real CA: cert-manager's self-check asks
		// there too, whatever the CA's setting.
		"httpPort":                       80,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]any{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"caaIdentities":                  caa,
		"profiles": map[string]any{"default": map[string]any{
			"description":    "portal-domains local stack",
			"validityPeriod": int64(validity / time.Second),
		}},
	}}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(a.workDir, "pebble-config.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(opts.BinDir, "pebble"), "-config", cfgPath, "-dnsserver", cmp.Or(opts.PebbleDNSAddr, opts.DNSAddr))
	// No random validation delay, no rejected nonces, no reused authorizations: every
	// issuance runs every step, quickly.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	if err := a.spawn(cmd, "pebble.log"); err != nil {
		return fmt.Errorf("start pebble: %w", err)
	}
	a.PebblePID = cmd.Process.Pid
	a.DirectoryURL = fmt.Sprintf("https://localhost:%d/dir", listenPort)

	pool := ca.Pool()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if err := a.until(ctx, 20*time.Second, "pebble's directory at "+a.DirectoryURL, func() (bool, error) {
		resp, err := client.Get(a.DirectoryURL)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return err
	}
	// Pebble makes a fresh root on every start; the management API serves it.
	resp, err := client.Get(fmt.Sprintf("https://localhost:%d/roots/0", mgmtPort))
	if err != nil {
		return fmt.Errorf("read pebble's root: %w", err)
	}
	defer resp.Body.Close()
	if a.RootPEM, err = io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read pebble's root: status %d, %v", resp.StatusCode, err)
	}
	if err := os.WriteFile(filepath.Join(a.workDir, "pebble-root.pem"), a.RootPEM, 0o644); err != nil {
		return err
	}
	return nil
}

func (a *ACME) startController(opts Options) error {
	args := []string{
		"-kubeconfig", opts.Kubeconfig,
		"-acme-http01-solver-nameservers", opts.DNSAddr,
		"-cluster-resource-namespace", ClusterResourceNamespace,
		"-v", "2",
	}
	if opts.MinimumBackoff > 0 {
		args = append(args, "-certificate-request-minimum-backoff-duration", opts.MinimumBackoff.String())
	}
	cmd := exec.Command(filepath.Join(opts.BinDir, "cert-manager-controller"), args...)
	if err := a.spawn(cmd, "cert-manager.log"); err != nil {
		return fmt.Errorf("start cert-manager's controllers: %w", err)
	}
	a.ControllerPID = cmd.Process.Pid
	return nil
}

var clusterIssuerGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "clusterissuers"}

// ClusterIssuer is the ClusterIssuer an operator would create for this CA: ACME, the CA's
// TLS trusted through caBundle, HTTP-01 through an Ingress of class istio.
func ClusterIssuer(name, directoryURL string, caBundlePEM []byte) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "ClusterIssuer",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{"acme": map[string]any{
			"server":              directoryURL,
			"caBundle":            base64.StdEncoding.EncodeToString(caBundlePEM),
			"privateKeySecretRef": map[string]any{"name": name + "-account-key"},
			"solvers": []any{map[string]any{
				"http01": map[string]any{"ingress": map[string]any{"ingressClassName": SolverIngressClass}},
			}},
		}},
	}}
}

func (a *ACME) createIssuer(ctx context.Context, opts Options) error {
	caBundle, err := os.ReadFile(filepath.Join(a.workDir, "pebble-tls-ca.pem"))
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(opts.API)
	if err != nil {
		return err
	}
	obj := ClusterIssuer(opts.IssuerName, a.DirectoryURL, caBundle)
	if _, err := dyn.Resource(clusterIssuerGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ClusterIssuer %s: %w", opts.IssuerName, err)
	}
	return a.until(ctx, 60*time.Second, "ClusterIssuer "+opts.IssuerName+" Ready", func() (bool, error) {
		ci, err := dyn.Resource(clusterIssuerGVR).Get(ctx, opts.IssuerName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(ci.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Ready" {
				if m["status"] == "True" {
					return true, nil
				}
				return false, fmt.Errorf("%v: %v", m["reason"], m["message"])
			}
		}
		return false, nil
	})
}

// spawn starts cmd in a process group of its own, its output in logName.
func (a *ACME) spawn(cmd *exec.Cmd, logName string) error {
	f, err := os.Create(filepath.Join(a.workDir, logName))
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	a.procs = append(a.procs, cmd)
	a.waited = append(a.waited, done)
	return nil
}

// until checks cond every 100 ms until it holds, a started process exits, or timeout passes.
func (a *ACME) until(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		lastErr = err
		for i, done := range a.waited {
			select {
			case werr := <-done:
				done <- werr
				return fmt.Errorf("waiting for %s: %s exited (%v); its log: %s", what, filepath.Base(a.procs[i].Path), werr, a.logOf(i))
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not after %s (last error: %v); logs in %s%s", what, timeout, lastErr, a.workDir, a.tails())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// tails is the end of each process's log, for an error message.
func (a *ACME) tails() string {
	var sb strings.Builder
	for i := range a.procs {
		b, _ := os.ReadFile(a.logOf(i))
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		fmt.Fprintf(&sb, "\n--- end of %s:\n%s", a.logOf(i), b)
	}
	return sb.String()
}

func (a *ACME) logOf(i int) string {
	if filepath.Base(a.procs[i].Path) == "pebble" {
		return a.PebbleLog()
	}
	return a.ControllerLog()
}

// Stop ends both processes (SIGTERM, then SIGKILL after 5 s) and waits for them.
func (a *ACME) Stop() error {
	if a.stopGC != nil {
		a.stopGC()
		<-a.gcDone
		a.stopGC = nil
	}
	var errs []error
	for i, cmd := range a.procs {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-a.waited[i]:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-a.waited[i]
			errs = append(errs, fmt.Errorf("%s (pid %d) ignored SIGTERM for 5 s and was killed", filepath.Base(cmd.Path), cmd.Process.Pid))
		}
	}
	a.procs, a.waited = nil, nil
	return errors.Join(errs...)
}
