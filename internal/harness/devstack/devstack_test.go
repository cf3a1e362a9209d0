package devstack_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/db/dbtest"
	"github.com/portal-domains/portal-domains/domain"
	demofixtures "github.com/portal-domains/portal-domains/fixtures/demo"
	"github.com/portal-domains/portal-domains/internal/harness/devstack"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/k8s"
)

// startTimeout covers the API server's start on a busy 2-core machine;
// activeTimeout the pipeline after it (the DNS fix is 1s here; real issuance takes
// cert-manager's self-check, five passes 2 s apart, per domain).
const (
	startTimeout  = 90 * time.Second
	activeTimeout = 90 * time.Second
)

// run is one devstack.Run in the background.
type run struct {
	cancel context.CancelFunc
	done   chan error
	info   chan devstack.Info
	active chan time.Duration
	out    *syncBuffer
}

func startRun(t *testing.T, env map[string]string, stateDir string) *run {
	t.Helper()
	cwd, err := os.Getwd()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan error, 1), info: make(chan devstack.Info, 1),
		active: make(chan time.Duration, 1), out: &syncBuffer{}}
	go func() {
		r.done <- devstack.Run(ctx, devstack.Options{
			Getenv:          func(k string) string { return env[k] },
			Root:            localapi.FindRoot(cwd),
			StateDir:        stateDir,
			Out:             r.out,
			Logger:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
			FixDNSAfter:     time.Second,
			OnReady:         func(i devstack.Info) { r.info <- i },
			OnAllDemoActive: func(d time.Duration) { r.active <- d },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Error("devstack.Run did not return within a minute of cancel")
		}
	})
	return r
}

// wait returns what ch delivers, failing if Run ends or time runs out first.
func wait[T any](t *testing.T, r *run, ch chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case err := <-r.done:
		t.Fatalf("devstack.Run ended before %s: %v\noutput:\n%s", what, err, r.out.String())
	case <-time.After(timeout):
		t.Fatalf("no %s within %s\noutput:\n%s", what, timeout, r.out.String())
	}
	var zero T
	return zero
}

// stop cancels the run like Ctrl-C and checks that it ends cleanly with no
// kube-apiserver or etcd left.
func (r *run) stop(t *testing.T, info devstack.Info) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("devstack.Run did not return within a minute of cancel")
	}
	r.done <- nil // for the cleanup
	for _, pid := range []int{info.APIServerPID, info.EtcdPID} {
		require.False(t, localapi.Alive(pid), "process %d still runs after Run returned", pid)
	}
	require.Contains(t, r.out.String(), "stopped kube-apiserver")
	// What an operator would run: nothing mentions the state directory.
	out, err := exec.Command("pgrep", "-af", info.StateDir).CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit) && exit.ExitCode() == 1, "pgrep found processes: %s (%v)", out, err)
}

func TestRun(t *testing.T) {
	t.Parallel()
	schema := dbtest.New(t) // not migrated: Run migrates
	env := map[string]string{"DATABASE_URL": schema.URL, "PORTAL_DOMAIN_UI_ADDR": "127.0.0.1:0"}
	stateDir := t.TempDir()
	demo, err := devstack.LoadDemo(demofixtures.FS())
	require.NoError(t, err)

	r := startRun(t, env, stateDir)
	info := wait(t, r, r.info, startTimeout, "start")
	require.Positive(t, info.APIServerPID)
	require.Positive(t, info.EtcdPID)
	require.True(t, localapi.Alive(info.APIServerPID))
	require.True(t, localapi.Alive(info.EtcdPID))
	require.True(t, info.ACME, "real issuance by default: %s", info.IssuerNote)
	require.False(t, info.DevIssuer)
	require.Equal(t, []string{info.DNSAddr}, info.DNSServers)
	took := wait(t, r, r.active, activeTimeout, "all demo domains active")
	t.Logf("all demo domains active %s after Run started", took.Round(100*time.Millisecond))

	out := r.out.String()
	for _, want := range []string{"kube-apiserver pid", info.Kubeconfig, info.DNSAddr, info.GatewayAddr, info.RiverUI,
		"Pebble at " + info.ACMEDirectory, "answers from the solver Pod's spec", "Detected CNAME www.initech.test", "fixed their DNS",
		"all 4 demo domains are active"} {
		require.Contains(t, out, want)
	}

	t.Run("every demo domain went through the whole pipeline to active", func(t *testing.T) {
		for _, tenant := range demo.Tenants {
			rec, err := db.GetDomainByName(t.Context(), schema.Pool, tenant.Domain)
			require.NoError(t, err)
			require.Equal(t, domain.StatusActive, rec.Status)
			events, err := db.ListEvents(t.Context(), schema.Pool, rec.ID)
			require.NoError(t, err)
			var seen []domain.Status
			for _, e := range events {
				if len(seen) == 0 || seen[len(seen)-1] != e.To {
					seen = append(seen, e.To)
				}
			}
			want := []domain.Status{domain.StatusPendingDNS, domain.StatusPendingCertificate,
				domain.StatusCertificateIssuing, domain.StatusDeploying, domain.StatusActive}
			if tenant.Fix != nil {
				// Wrong DNS first: verifying_dns shows what is wrong until fixed.
				want = slices.Insert(want, 1, domain.StatusVerifyingDNS)
			}
			require.Equal(t, want, seen, tenant.Domain)
		}
	})

	t.Run("cert-manager issued each certificate from Pebble, and the worker copied it to the gateway's namespace where Istio reads it", func(t *testing.T) {
		rootPEM, err := os.ReadFile(info.CAFile)
		require.NoError(t, err)
		cfg, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig) // the file we print for operators
		require.NoError(t, err)
		cs, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		// The default layout: cert-manager writes the Secret beside the Certificate (msp);
		// the gateway reads its copy in istio-system.
		secrets, err := cs.CoreV1().Secrets("msp").List(t.Context(), metav1.ListOptions{LabelSelector: "controller.cert-manager.io/fao=true"})
		require.NoError(t, err)
		require.Len(t, secrets.Items, len(demo.Tenants))
		for _, s := range secrets.Items {
			dnsNames := strings.Split(s.Annotations["cert-manager.io/alt-names"], ",")
			require.Contains(t, demo.Domains(), dnsNames[0])
			require.Equal(t, devstack.ACMEIssuerName, s.Annotations["cert-manager.io/issuer-name"])
			require.NoError(t, verifyAgainst(s.Data["tls.crt"], rootPEM, dnsNames), s.Name)
			copied, err := cs.CoreV1().Secrets("istio-system").Get(t.Context(), s.Name, metav1.GetOptions{})
			require.NoError(t, err, "the copy the gateway reads")
			require.Equal(t, s.Data["tls.crt"], copied.Data["tls.crt"])
			require.Equal(t, "msp", copied.Labels[k8s.LabelOriginSecretNamespace])
		}
		require.Contains(t, r.out.String(), "Pebble validated "+demo.Tenants[0].Domain+" over HTTP-01")
	})

	t.Run("the River UI and health endpoints answer", func(t *testing.T) {
		for _, path := range []string{"healthz", "riverui/"} {
			url := strings.TrimSuffix(info.RiverUI, "riverui/") + path
			res, err := http.Get(url)
			require.NoError(t, err)
			res.Body.Close()
			require.Equal(t, http.StatusOK, res.StatusCode, url)
		}
	})

	r.stop(t, info)

	t.Run("a second run on the same state and database starts clean and gets there again, with the DEV-ONLY issuer when asked", func(t *testing.T) {
		before, err := db.GetDomainByName(t.Context(), schema.Pool, demo.Tenants[0].Domain)
		require.NoError(t, err)
		env2 := map[string]string{"PORTAL_DOMAIN_DEV_ISSUER": "1"}
		for k, v := range env {
			env2[k] = v
		}
		r2 := startRun(t, env2, stateDir)
		info2 := wait(t, r2, r2.info, startTimeout, "second start")
		require.NotEqual(t, info.APIServerPID, info2.APIServerPID)
		require.True(t, info2.DevIssuer)
		require.False(t, info2.ACME)
		wait(t, r2, r2.active, activeTimeout, "all demo domains active again")
		require.Contains(t, r2.out.String(), "DEV-ONLY issuer signed")
		after, err := db.GetDomainByName(t.Context(), schema.Pool, demo.Tenants[0].Domain)
		require.NoError(t, err)
		require.NotEqual(t, before.ID, after.ID, "the demo rows were registered afresh")
		r2.stop(t, info2)
	})
}

func TestRunRefusesASecondStackOnTheSameState(t *testing.T) {
	t.Parallel()
	stateDir := t.TempDir()
	require.NoError(t, os.WriteFile(stateDir+"/lock", nil, 0o644))
	held, err := os.Open(stateDir + "/lock")
	require.NoError(t, err)
	defer held.Close()
	require.NoError(t, syscall.Flock(int(held.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	err = devstack.Run(t.Context(), devstack.Options{Getenv: func(string) string { return "" }, Root: "/nonexistent", StateDir: stateDir})
	require.ErrorContains(t, err, "another `portal-domains-dev dev`")
}

// verifyAgainst checks that the chain in certPEM (leaf first) leads to the root in caPEM for
// every name, as a TLS client trusting only that root would.
func verifyAgainst(certPEM, caPEM []byte, names []string) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return errors.New("no CA certificate in the CA file")
	}
	var chain []*x509.Certificate
	for rest := certPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return err
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return errors.New("no PEM certificate in tls.crt")
	}
	leaf, inter := chain[0], x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, name := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name}); err != nil {
			return err
		}
	}
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
