package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portal-domains/portal-domains/internal/server"
)

// child is a `portal-domains worker` process. It runs as a process of its
// own, as deployed, so its memory is its own (/proc/<pid>/status) and not
// mixed with the bench's API clients, issuer and DNS server.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	uiAddr  string
	exited  chan struct{}
	waitErr error
}

// workerEnv is the child's whole environment: nothing of the bench's own
// leaks in (no KUBECONFIG of the operator's, no in-cluster variables), so a
// worker without kube really has none.
type workerEnv struct {
	kube bool
	// certNS and gatewayNS are where its objects go; issuer is the
	// issuerRef name it renders.
	certNS, gatewayNS, issuer string
	// probeAddr and probeCAFile, when set, replace the dev gateway and CA
	// the probe dials and trusts (row 7: cert-manager's Secrets, Pebble's
	// root).
	probeAddr, probeCAFile string
}

func (b *bench) env(w workerEnv, uiAddr string) []string {
	env := map[string]string{
		"DATABASE_URL":                     b.url,
		"PORTAL_DOMAIN_CANONICAL_SUFFIX":   canonicalSuffix,
		"PORTAL_DOMAIN_CAA_IDENTITY":       caaIdentity,
		"PORTAL_DOMAIN_DNS_SERVERS":        b.dns.Addr(),
		"PORTAL_DOMAIN_UI_ADDR":            uiAddr,
		"PORTAL_DOMAIN_DNS_WORKERS":        strconv.Itoa(b.opts.DNSWorkers),
		"PORTAL_DOMAIN_KUBE_WORKERS":       strconv.Itoa(b.opts.KubeWorkers),
		"PORTAL_DOMAIN_PROBE_WORKERS":      strconv.Itoa(b.opts.ProbeWorkers),
		"PORTAL_DOMAIN_SHUTDOWN_TIMEOUT":   "5s",
		"PORTAL_DOMAIN_PROBE_DIAL_ADDRESS": b.gateway.Addr(),
		"PORTAL_DOMAIN_PROBE_CA_FILE":      b.caFile,
		"LOG_LEVEL":                        "info",
		"HOME":                             b.work,
	}
	if w.kube {
		env["KUBECONFIG"] = b.api.KubeconfigPath
		env["PORTAL_DOMAIN_CERT_NAMESPACE"] = w.certNS
		env["PORTAL_DOMAIN_GATEWAY_NAMESPACE"] = w.gatewayNS
		env["PORTAL_DOMAIN_ISSUER_KIND"] = "ClusterIssuer"
		env["PORTAL_DOMAIN_ISSUER_NAME"] = w.issuer
	}
	if w.probeAddr != "" {
		env["PORTAL_DOMAIN_PROBE_DIAL_ADDRESS"] = w.probeAddr
		env["PORTAL_DOMAIN_PROBE_CA_FILE"] = w.probeCAFile
	}
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", server.EnvProfiling, "PORTAL_DOMAIN_TRANSITION_GROUP"} {
		if v := b.opts.Getenv(k); v != "" {
			env[k] = v
		}
	}
	out := make([]string, 0, len(env)+len(b.opts.WorkerEnv))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return append(out, b.opts.WorkerEnv...)
}

// startWorker runs the worker and waits until it is ready (/readyz answers
// and River has started), then a little longer so its leader election and
// start-up scans are over before anything is timed.
func (b *bench) startWorker(ctx context.Context, name string, w workerEnv) (*child, error) {
	uiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c := &child{name: name, uiAddr: uiAddr, logPath: filepath.Join(b.work, "worker-"+name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return nil, fmt.Errorf("worker log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	c.cmd = exec.Command(b.opts.WorkerCommand[0], b.opts.WorkerCommand[1:]...)
	c.cmd.Env = b.env(w, uiAddr)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	// Should the bench itself be killed, the worker goes with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", strings.Join(b.opts.WorkerCommand, " "), err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	if err := c.waitReady(ctx); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	b.processes.started(RoleWorker, name, c.cmd.Process.Pid)
	b.progress("  worker %q running (pid %d, log %s)", name, c.cmd.Process.Pid, c.logPath)
	select {
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), c.stop())
	case <-time.After(time.Second):
	}
	return c, nil
}

func (c *child) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(90 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("worker %s exited while starting (%v):\n%s", c.name, c.waitErr, c.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("worker %s not ready after 90s:\n%s", c.name, c.logTail())
		}
		resp, err := client.Get("http://" + c.uiAddr + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if log, _ := os.ReadFile(c.logPath); bytes.Contains(log, []byte("worker started")) {
			return nil
		}
	}
}

// stop sends SIGTERM, as a deployment would, and waits for the graceful
// stop; SIGKILL after 30 s.
func (c *child) stop() error {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
			return fmt.Errorf("worker %s did not stop within 30s of SIGTERM; killed", c.name)
		}
	}
	if c.waitErr != nil {
		return fmt.Errorf("worker %s: %w:\n%s", c.name, c.waitErr, c.logTail())
	}
	return nil
}

// memory reads the worker's resident set now (VmRSS) and its peak so far
// (VmHWM), in MB.
func (c *child) memory() (rss, peak float64, err error) {
	f, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("read worker memory: %w", err)
	}
	return parseStatusMemory(f)
}

// pid is the worker process's id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// parseStatusMemory reads VmRSS and VmHWM (kB) from /proc/<pid>/status.
func parseStatusMemory(status []byte) (rss, peak float64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, perr := strconv.ParseFloat(fields[1], 64)
		if perr != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, errors.New("no VmRSS or VmHWM in /proc/<pid>/status")
	}
	return rss, peak, nil
}

// heapInUseMB reads go_memstats_heap_inuse_bytes from the worker's
// /metrics, to tell live Go heap from the rest of its resident set.
func (c *child) heapInUseMB() (float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + c.uiAddr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("read worker metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			b, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("read worker metrics: %w", err)
			}
			return b / (1 << 20), nil
		}
	}
	return 0, errors.New("read worker metrics: no go_memstats_heap_inuse_bytes")
}

func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return strings.TrimSpace(string(b))
}

// freeAddr picks a free loopback port for the worker's HTTP server.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}
