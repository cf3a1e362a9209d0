package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/server"
)

// testJobArgs lets each test insert jobs of its own kind, so tests sharing
// the binary's database can tell their jobs apart.
type testJobArgs struct {
	kind     string
	DomainID string `json:"domain_id"`
}

func (a testJobArgs) Kind() string { return a.kind }

type testBundle struct {
	baseURL     string
	riverClient *river.Client[pgx.Tx]
}

type setupOpts struct {
	cfg       server.Config
	ready     func(context.Context) error
	withRiver bool
}

// setup starts a server on a free loopback port and stops it at cleanup,
// requiring a clean graceful shutdown.
func setup(t *testing.T, opts setupOpts) *testBundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())

	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	probe := prometheus.NewCounter(prometheus.CounterOpts{Name: "server_test_probe_total", Help: "test"})
	reg.MustRegister(probe)
	probe.Inc()

	deps := server.Deps{
		Logger:   logger,
		Registry: reg,
		Ready:    opts.ready,
	}
	if deps.Ready == nil {
		deps.Ready = func(context.Context) error { return nil }
	}
	bundle := &testBundle{}
	if opts.withRiver {
		client, err := river.NewClient(riverpgxv5.New(testPool(t)), &river.Config{Logger: logger})
		require.NoError(t, err)
		deps.RiverClient = client
		bundle.riverClient = client
	}

	opts.cfg.Addr = "127.0.0.1:0"
	srv, err := server.New(opts.cfg, deps)
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done, "graceful shutdown")
	})

	bundle.baseURL = "http://" + ln.Addr().String()
	return bundle
}

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, url string, creds ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	if len(creds) == 2 {
		req.SetBasicAuth(creds[0], creds[1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()

	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	t.Run("DefaultsToLoopbackWithoutAuth", func(t *testing.T) {
		t.Parallel()
		cfg, err := server.ConfigFromEnv(env(nil))
		require.NoError(t, err)
		require.Equal(t, server.Config{Addr: "127.0.0.1:8080"}, cfg)
	})

	t.Run("ReadsAddressAndCredentials", func(t *testing.T) {
		t.Parallel()
		cfg, err := server.ConfigFromEnv(env(map[string]string{
			"PORTAL_DOMAIN_UI_ADDR":     "0.0.0.0:9090",
			"PORTAL_DOMAIN_UI_USER":     "ops",
			"PORTAL_DOMAIN_UI_PASSWORD": "s3cret",
		}))
		require.NoError(t, err)
		require.Equal(t, server.Config{Addr: "0.0.0.0:9090", User: "ops", Password: "s3cret"}, cfg)
	})

	t.Run("RefusesNonLoopbackWithoutCredentials", func(t *testing.T) {
		t.Parallel()
		_, err := server.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_UI_ADDR": ":8080"}))
		require.ErrorIs(t, err, server.ErrAuthRequired)
		require.ErrorContains(t, err, "PORTAL_DOMAIN_UI_USER and PORTAL_DOMAIN_UI_PASSWORD")
	})

	t.Run("RequiresBothCredentials", func(t *testing.T) {
		t.Parallel()
		_, err := server.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_UI_USER": "ops"}))
		require.ErrorContains(t, err, "must be set together")
	})

	t.Run("Profiling", func(t *testing.T) {
		t.Parallel()
		cfg, err := server.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_PPROF": "true"}))
		require.NoError(t, err)
		require.True(t, cfg.Profiling)
		_, err = server.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_PPROF": "yes please"}))
		require.ErrorContains(t, err, "PORTAL_DOMAIN_PPROF")
	})

	t.Run("RejectsMalformedAddress", func(t *testing.T) {
		t.Parallel()
		_, err := server.ConfigFromEnv(env(map[string]string{"PORTAL_DOMAIN_UI_ADDR": "8080"}))
		require.ErrorContains(t, err, `listen address "8080"`)
	})
}

func TestNewLoopbackRule(t *testing.T) {
	t.Parallel()

	deps := server.Deps{
		Logger:   slog.New(slog.DiscardHandler),
		Registry: prometheus.NewRegistry(),
		Ready:    func(context.Context) error { return nil },
	}

	t.Run("NonLoopbackWithoutCredentialsRefusesToStart", func(t *testing.T) {
		t.Parallel()
		for _, addr := range []string{"0.0.0.0:8080", ":8080", "[::]:8080", "10.1.2.3:8080", "portal.example.com:8080", "127.0.0.1.nip.io:8080"} {
			_, err := server.New(server.Config{Addr: addr}, deps)
			require.ErrorIs(t, err, server.ErrAuthRequired, addr)
			require.ErrorContains(t, err, "refusing to listen on "+addr, addr)
			require.ErrorContains(t, err, "PORTAL_DOMAIN_UI_USER", addr)
		}
	})

	t.Run("RunRefusesBeforeListening", func(t *testing.T) {
		t.Parallel()
		_, err := server.New(server.Config{Addr: "0.0.0.0:0"}, deps)
		require.ErrorIs(t, err, server.ErrAuthRequired)
	})

	t.Run("LoopbackWithoutCredentialsIsAllowed", func(t *testing.T) {
		t.Parallel()
		for _, addr := range []string{"127.0.0.1:8080", "127.9.8.7:8080", "[::1]:8080", "localhost:8080", "LOCALHOST:8080", ""} {
			_, err := server.New(server.Config{Addr: addr}, deps)
			require.NoError(t, err, addr)
		}
	})

	t.Run("NonLoopbackWithCredentialsIsAllowed", func(t *testing.T) {
		t.Parallel()
		_, err := server.New(server.Config{Addr: "0.0.0.0:8080", User: "ops", Password: "pw"}, deps)
		require.NoError(t, err)
	})

	t.Run("DepsAreChecked", func(t *testing.T) {
		t.Parallel()
		_, err := server.New(server.Config{}, server.Deps{})
		require.ErrorContains(t, err, "Logger is required")
	})
}

func TestServer(t *testing.T) {
	t.Parallel()

	t.Run("LoopbackWithoutCredentialsServes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})

		resp := get(t, b.baseURL+"/healthz")
		require.Equal(t, http.StatusOK, resp.status)
		require.Equal(t, "ok\n", resp.body)

		resp = get(t, b.baseURL+"/readyz")
		require.Equal(t, http.StatusOK, resp.status)

		resp = get(t, b.baseURL+"/metrics")
		require.Equal(t, http.StatusOK, resp.status)
		require.Contains(t, resp.body, "server_test_probe_total 1")
	})

	t.Run("ProfilingOnlyWhenAskedAndBehindCredentials", func(t *testing.T) {
		t.Parallel()
		off := setup(t, setupOpts{})
		require.Equal(t, http.StatusNotFound, get(t, off.baseURL+"/debug/pprof/").status, "off by default")

		on := setup(t, setupOpts{cfg: server.Config{User: "ops", Password: "s3cret", Profiling: true}})
		require.Equal(t, http.StatusUnauthorized, get(t, on.baseURL+"/debug/pprof/").status)
		resp := get(t, on.baseURL+"/debug/pprof/goroutine?debug=1", "ops", "s3cret")
		require.Equal(t, http.StatusOK, resp.status)
		require.Contains(t, resp.body, "goroutine profile")
	})

	t.Run("ReadyzNamesOnlyTheUnavailableComponent", func(t *testing.T) {
		t.Parallel()
		detail := `failed to connect to user=app database=portal: 10.0.3.7:5432 (db.internal): password authentication failed`
		ready := func(context.Context) error {
			return server.Unavailable{Name: "database", Err: errors.New(detail)}
		}
		b := setup(t, setupOpts{ready: ready})
		resp := get(t, b.baseURL+"/readyz")
		require.Equal(t, http.StatusServiceUnavailable, resp.status)
		require.Equal(t, "not ready: database unavailable\n", resp.body)

		resp = get(t, b.baseURL+"/healthz")
		require.Equal(t, http.StatusOK, resp.status, "alive even when not ready")

		authed := setup(t, setupOpts{ready: ready, cfg: server.Config{User: "ops", Password: "s3cret"}})
		resp = get(t, authed.baseURL+"/readyz")
		require.Equal(t, "not ready: database unavailable\n", resp.body, "without credentials")
		resp = get(t, authed.baseURL+"/readyz", "ops", "wrong")
		require.Equal(t, "not ready: database unavailable\n", resp.body, "with wrong credentials")
		resp = get(t, authed.baseURL+"/readyz", "ops", "s3cret")
		require.Equal(t, http.StatusServiceUnavailable, resp.status)
		require.Contains(t, resp.body, detail, "an operator with credentials reads the error")

		plain := setup(t, setupOpts{ready: func(context.Context) error { return errors.New("dial 10.0.3.7:5432") }})
		resp = get(t, plain.baseURL+"/readyz")
		require.Equal(t, "not ready: a component unavailable\n", resp.body, "an error naming no component says nothing more")
	})

	t.Run("ReadyGetsABoundedContext", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{ready: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			return nil
		}})
		require.Equal(t, http.StatusOK, get(t, b.baseURL+"/readyz").status)
	})

	t.Run("CredentialsRequiredExceptProbes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{cfg: server.Config{User: "ops", Password: "s3cret"}, withRiver: true})

		for _, path := range []string{"/metrics", "/riverui/", "/riverui/api/jobs?state=available", "/", "/nope"} {
			resp := get(t, b.baseURL+path)
			require.Equal(t, http.StatusUnauthorized, resp.status, path)
			require.Equal(t, `Basic realm="portal-domains", charset="UTF-8"`, resp.header.Get("WWW-Authenticate"), path)

			require.Equal(t, http.StatusUnauthorized, get(t, b.baseURL+path, "ops", "wrong").status, path)
			require.Equal(t, http.StatusUnauthorized, get(t, b.baseURL+path, "OPS", "s3cret").status, path)
			require.Equal(t, http.StatusUnauthorized, get(t, b.baseURL+path, "ops", "s3cret ").status, path)
		}

		resp := get(t, b.baseURL+"/metrics", "ops", "s3cret")
		require.Equal(t, http.StatusOK, resp.status)
		require.Contains(t, resp.body, "server_test_probe_total 1")

		resp = get(t, b.baseURL+"/riverui/api/jobs?state=available", "ops", "s3cret")
		require.Equal(t, http.StatusOK, resp.status, resp.body)

		for _, path := range []string{"/healthz", "/readyz"} {
			require.Equal(t, http.StatusOK, get(t, b.baseURL+path).status, path)
		}
	})

	t.Run("RiverUIAPIListsInsertedJob", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{withRiver: true})

		res, err := b.riverClient.Insert(t.Context(), testJobArgs{kind: "apply_server_api_test", DomainID: "3f1c9a52-0000-4000-8000-000000000001"},
			&river.InsertOpts{Queue: "kubernetes"})
		require.NoError(t, err)

		resp := get(t, b.baseURL+"/riverui/api/jobs?state=available&kinds=apply_server_api_test")
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		var list struct {
			Data []struct {
				ID    int64  `json:"id"`
				Kind  string `json:"kind"`
				Queue string `json:"queue"`
				State string `json:"state"`
				Args  string `json:"args"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(resp.body), &list), resp.body)
		require.Len(t, list.Data, 1)
		require.Equal(t, res.Job.ID, list.Data[0].ID)
		require.Equal(t, "apply_server_api_test", list.Data[0].Kind)
		require.Equal(t, "kubernetes", list.Data[0].Queue)
		require.Equal(t, "available", list.Data[0].State)

		// The SPA itself is served under the prefix, and / leads there.
		resp = get(t, b.baseURL+"/riverui/")
		require.Equal(t, http.StatusOK, resp.status)
		require.Contains(t, resp.body, "/riverui/assets/")
		resp = get(t, b.baseURL+"/")
		require.Equal(t, http.StatusOK, resp.status, "redirected to the UI")
		require.Contains(t, resp.body, "/riverui/assets/")
	})

	t.Run("CrossOriginWritesAreRejected", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{cfg: server.Config{User: "ops", Password: "s3cret"}, withRiver: true})

		res, err := b.riverClient.Insert(t.Context(), testJobArgs{kind: "apply_server_csrf_test", DomainID: "3f1c9a52-0000-4000-8000-000000000002"}, nil)
		require.NoError(t, err)
		body := fmt.Sprintf(`{"ids":["%d"]}`, res.Job.ID)

		post := func(headers map[string]string) response {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.baseURL+"/riverui/api/jobs/cancel", strings.NewReader(body))
			require.NoError(t, err)
			req.SetBasicAuth("ops", "s3cret")
			req.Header.Set("Content-Type", "application/json")
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			out, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return response{status: resp.StatusCode, body: string(out)}
		}

		// What a browser sends for a request from another site's page.
		resp := post(map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		require.Equal(t, http.StatusForbidden, resp.status, resp.body)
		job, err := b.riverClient.JobGet(t.Context(), res.Job.ID)
		require.NoError(t, err)
		require.Equal(t, "available", string(job.State), "the cross-site request changed nothing")

		// The UI's own same-origin request goes through.
		resp = post(map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": b.baseURL})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		job, err = b.riverClient.JobGet(t.Context(), res.Job.ID)
		require.NoError(t, err)
		require.Equal(t, "cancelled", string(job.State))
	})

	t.Run("WithoutRiverClientTheUIIsAbsent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		require.Equal(t, http.StatusNotFound, get(t, b.baseURL+"/riverui/").status)
	})

	t.Run("ShutdownDrainsInFlightRequests", func(t *testing.T) {
		t.Parallel()
		entered := make(chan struct{})
		release := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		srv, err := server.New(server.Config{}, server.Deps{
			Logger:   slog.New(slog.DiscardHandler),
			Registry: prometheus.NewRegistry(),
			Ready: func(context.Context) error {
				close(entered)
				<-release
				return nil
			},
		})
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()

		type result struct {
			resp response
		}
		got := make(chan result, 1)
		go func() {
			resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
			if err != nil {
				got <- result{resp: response{status: -1, body: err.Error()}}
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			got <- result{resp: response{status: resp.StatusCode, body: string(body)}}
		}()

		<-entered
		cancel() // shutdown starts while /readyz is in flight
		close(release)

		r := <-got
		require.Equal(t, http.StatusOK, r.resp.status, r.resp.body)
		require.NoError(t, <-done)
	})

	t.Run("RunListensOnConfiguredAddressAndStopsOnCancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := server.New(server.Config{Addr: "127.0.0.1:0"}, server.Deps{
			Logger:   slog.New(slog.DiscardHandler),
			Registry: prometheus.NewRegistry(),
			Ready:    func(context.Context) error { return nil },
		})
		require.NoError(t, err)
		cancel()
		require.NoError(t, srv.Run(ctx))
	})

	t.Run("RunReportsListenErrors", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		srv, err := server.New(server.Config{Addr: ln.Addr().String()}, server.Deps{
			Logger:   slog.New(slog.DiscardHandler),
			Registry: prometheus.NewRegistry(),
			Ready:    func(context.Context) error { return nil },
		})
		require.NoError(t, err)
		err = srv.Run(context.Background())
		require.ErrorContains(t, err, "listen on "+ln.Addr().String())
		require.True(t, strings.Contains(err.Error(), "address already in use"), err.Error())
	})
}
