// Package server is the worker's HTTP face for operators: liveness and
// readiness probes, Prometheus metrics and the River UI. It serves nothing a
// tenant uses.
//
// The River UI can cancel, retry and delete jobs, so the server refuses to
// listen beyond loopback unless basic auth is configured, and once it is
// configured every path except the probes requires it.
package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvAddr     = "PORTAL_DOMAIN_UI_ADDR"
	EnvUser     = "PORTAL_DOMAIN_UI_USER"
	EnvPassword = "PORTAL_DOMAIN_UI_PASSWORD"
	// EnvProfiling ("true") mounts /debug/pprof/ next to /metrics.
	EnvProfiling = "PORTAL_DOMAIN_PPROF"
)

// DefaultAddr is loopback so that a server started with no configuration is
// never reachable from the network.
const DefaultAddr = "127.0.0.1:8080"

// RiverUIPrefix is where the River UI is mounted.
const RiverUIPrefix = "/riverui"

// ErrAuthRequired is returned when the server would listen beyond loopback
// without basic-auth credentials.
var ErrAuthRequired = errors.New("basic auth required on a non-loopback address")

// Config is what an operator sets.
type Config struct {
	// Addr is the listen address, host:port. Default DefaultAddr.
	Addr string
	// User and Password enable basic auth when both are set.
	User     string
	Password string
	// ShutdownTimeout bounds the wait for in-flight requests once the
	// context is cancelled. Default 10s.
	ShutdownTimeout time.Duration
	// ReadyTimeout bounds one /readyz check. Default 5s.
	ReadyTimeout time.Duration
	// Profiling mounts Go's /debug/pprof/ handlers (behind the same
	// credentials as /metrics), for profiling a worker under load.
	Profiling bool
}

// ConfigFromEnv reads PORTAL_DOMAIN_UI_ADDR, PORTAL_DOMAIN_UI_USER and
// PORTAL_DOMAIN_UI_PASSWORD through getenv.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		Addr:     cmp.Or(strings.TrimSpace(getenv(EnvAddr)), DefaultAddr),
		User:     getenv(EnvUser),
		Password: getenv(EnvPassword),
	}
	switch v := strings.TrimSpace(getenv(EnvProfiling)); v {
	case "", "0", "false":
	case "1", "true":
		cfg.Profiling = true
	default:
		return Config{}, fmt.Errorf("server config: %s: %q is not true or false", EnvProfiling, v)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c Config) authEnabled() bool { return c.User != "" && c.Password != "" }

func (c Config) validate() error {
	if (c.User == "") != (c.Password == "") {
		return fmt.Errorf("server config: %s and %s must be set together", EnvUser, EnvPassword)
	}
	loopback, err := isLoopback(c.Addr)
	if err != nil {
		return fmt.Errorf("server config: %w", err)
	}
	if !loopback && !c.authEnabled() {
		return refuseError(c.Addr)
	}
	return nil
}

func refuseError(addr string) error {
	return fmt.Errorf("server: refusing to listen on %s: %w; the River UI there could cancel, retry and delete jobs for anyone who reaches it. "+
		"Set %s and %s, or listen on a loopback address such as %s",
		addr, ErrAuthRequired, EnvUser, EnvPassword, DefaultAddr)
}

// isLoopback reports whether addr (host:port) only accepts connections from
// this machine. An empty host or 0.0.0.0 means every interface; a hostname
// other than localhost is not resolved and counts as reachable.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false, nil
	}
	return ip.IsLoopback(), nil
}

// Deps are what the server needs from the rest of the process.
type Deps struct {
	// Logger is required.
	Logger *slog.Logger
	// Registry is what /metrics exposes. Required.
	Registry *prometheus.Registry
	// Ready reports whether the process can do its work (e.g. the database
	// answers and the River client has started). /readyz names only the
	// component that is unavailable (an error with a Component() string
	// method, see Unavailable), never its error, which may hold users and
	// hosts: the error goes to the log and, with credentials, the answer.
	// Required.
	Ready func(ctx context.Context) error
	// RiverClient backs the River UI: the worker's client, or an insert-only
	// client for a standalone UI. Nil leaves the UI out.
	RiverClient *river.Client[pgx.Tx]
}

// Server serves the operator endpoints. Create it with New, then Run it.
type Server struct {
	cfg     Config
	deps    Deps
	riverUI *riverui.Handler
	handler http.Handler
}

// New checks the configuration, including the loopback rule, and builds the
// routes. Nothing listens until Run.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.Addr = cmp.Or(cfg.Addr, DefaultAddr)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 10*time.Second)
	cfg.ReadyTimeout = cmp.Or(cfg.ReadyTimeout, 5*time.Second)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		return nil, errors.New("server: Deps.Logger is required")
	}
	if deps.Registry == nil {
		return nil, errors.New("server: Deps.Registry is required")
	}
	if deps.Ready == nil {
		return nil, errors.New("server: Deps.Ready is required")
	}

	s := &Server{cfg: cfg, deps: deps}

	// Routes behind auth (when auth is on).
	private := http.NewServeMux()
	private.Handle("GET /metrics", promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(deps.Logger.Handler(), slog.LevelError),
		// A failing collector must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      deps.Registry,
	}))
	if cfg.Profiling {
		private.HandleFunc("GET /debug/pprof/", pprof.Index)
		private.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		private.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		private.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		private.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if deps.RiverClient != nil {
		h, err := riverui.NewHandler(&riverui.HandlerOpts{
			Endpoints: riverui.NewEndpoints(deps.RiverClient, nil),
			Logger:    deps.Logger.With("component", "riverui"),
			Prefix:    RiverUIPrefix,
		})
		if err != nil {
			return nil, fmt.Errorf("server: create River UI handler: %w", err)
		}
		s.riverUI = h
		private.Handle(RiverUIPrefix+"/", h)
		private.Handle("GET /{$}", http.RedirectHandler(RiverUIPrefix+"/", http.StatusFound))
	}

	// Browsers replay cached basic-auth credentials on cross-site requests,
	// so a page elsewhere could otherwise POST to the UI's cancel, retry and
	// delete endpoints on an operator's behalf. Reject cross-origin unsafe
	// requests (by Sec-Fetch-Site / Origin) before any handler runs.
	var protected http.Handler = http.NewCrossOriginProtection().Handler(private)
	if cfg.authEnabled() {
		protected = s.requireAuth(protected)
	}

	// Probes stay open: kubelet and load balancers do not send credentials,
	// and they reveal nothing but up/down and the readiness reason.
	public := http.NewServeMux()
	public.HandleFunc("GET /healthz", s.healthz)
	public.HandleFunc("GET /readyz", s.readyz)
	public.Handle("/", protected)
	s.handler = public
	return s, nil
}

// Run listens on the configured address and serves until ctx is cancelled,
// then drains in-flight requests (up to ShutdownTimeout) and returns nil.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests use port 0). The
// loopback rule is checked again against the listener's real address. Serve
// closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	if loopback, err := isLoopback(ln.Addr().String()); err != nil || (!loopback && !s.cfg.authEnabled()) {
		return refuseError(ln.Addr().String())
	}

	if s.riverUI != nil {
		// The UI's background services stop when uiCtx ends: on ctx's
		// cancellation or when Serve returns for any other reason.
		uiCtx, cancelUI := context.WithCancel(ctx)
		defer cancelUI()
		if err := s.riverUI.Start(uiCtx); err != nil {
			return fmt.Errorf("server: start River UI: %w", err)
		}
	}

	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.deps.Logger.Handler(), slog.LevelWarn),
		// Requests must outlive ctx so Shutdown can drain them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.deps.Logger.InfoContext(ctx, "http server listening",
		"addr", ln.Addr().String(), "basic_auth", s.cfg.authEnabled(), "river_ui", s.riverUI != nil)

	select {
	case err := <-serveErr:
		return fmt.Errorf("server: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: graceful shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: serve on %s: %w", ln.Addr(), err)
	}
	s.deps.Logger.InfoContext(ctx, "http server stopped")
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.deps.Ready(ctx); err != nil {
		component := "a component"
		var c interface{ Component() string }
		if errors.As(err, &c) {
			component = c.Component()
		}
		s.deps.Logger.Warn("not ready", "component", component, "error", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %s unavailable\n", component)
		if s.cfg.authEnabled() && s.authorized(r) {
			_, _ = fmt.Fprintf(w, "%v\n", err)
		}
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Unavailable is an error naming the component that is not ready, for
// Deps.Ready: /readyz shows the component to anyone and Err only with
// credentials.
type Unavailable struct {
	Name string
	Err  error
}

func (u Unavailable) Error() string     { return u.Name + ": " + u.Err.Error() }
func (u Unavailable) Unwrap() error     { return u.Err }
func (u Unavailable) Component() string { return u.Name }

// authorized checks r's basic-auth credentials against the configured
// ones. Both fields are compared as SHA-256 digests in constant time, so
// neither their content nor their length leaks through response timing.
func (s *Server) authorized(r *http.Request) bool {
	wantUser := sha256.Sum256([]byte(s.cfg.User))
	wantPass := sha256.Sum256([]byte(s.cfg.Password))
	user, pass, ok := r.BasicAuth()
	gotUser := sha256.Sum256([]byte(user))
	gotPass := sha256.Sum256([]byte(pass))
	userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
	passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
	return ok && userOK&passOK == 1
}

// requireAuth answers 401 to a request that is not authorized.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="portal-domains", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
