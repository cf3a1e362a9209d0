package stack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/portal-domains/portal-domains/internal/harness/issuer"
)

// Gateway is the DEV-ONLY HTTPS endpoint that stands in for the Istio
// ingress gateway: the probe dials it for every domain
// (PORTAL_DOMAIN_PROBE_DIAL_ADDRESS, SNI and Host stay the domain) and trusts
// the dev CA (PORTAL_DOMAIN_PROBE_CA_FILE). For each server name it serves a
// certificate from the dev CA, made on first use, and answers 200, so the
// probe stage runs for real: TLS handshake, name check, chain check, status.
type Gateway struct {
	ca     *issuer.CA
	ln     net.Listener
	srv    *http.Server
	served chan error

	mu    sync.Mutex
	certs map[string]*tls.Certificate

	// lookup, when set, finds each server name's certificate in the API server
	// (IstioSecrets) instead of minting one from ca.
	lookup func(ctx context.Context, name string) (*tls.Certificate, error)
	logger *slog.Logger
}

// StartGateway listens on addr ("127.0.0.1:0" picks a port) and serves
// until Close.
func StartGateway(addr string, ca *issuer.CA, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dev gateway: listen on %s: %w", addr, err)
	}
	g := &Gateway{ca: ca, ln: ln, certs: map[string]*tls.Certificate{}, served: make(chan error, 1), logger: logger}
	g.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "portal-domains dev gateway (DEV-ONLY): %s would be routed to the portal here\n", r.Host)
		}),
		TLSConfig:         &tls.Config{GetCertificate: g.certificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "dev-gateway").Handler(), slog.LevelDebug),
	}
	go func() { g.served <- g.srv.ServeTLS(ln, "", "") }()
	return g, nil
}

// StartSecretGateway is StartGateway serving, for each server name, the certificate Istio's
// ingress gateway would serve from the objects in the API server (IstioSecrets): what
// cert-manager issued, not a dev-CA certificate.
func StartSecretGateway(addr string, secrets IstioSecrets, logger *slog.Logger) (*Gateway, error) {
	g, err := StartGateway(addr, nil, logger)
	if err != nil {
		return nil, err
	}
	g.ServeSecrets(secrets)
	return g, nil
}

// ServeSecrets switches the gateway to serving what Istio would serve from the objects in
// the API server (IstioSecrets), for a gateway started before the API server was up.
func (g *Gateway) ServeSecrets(secrets IstioSecrets) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lookup = secrets.Certificate
}

// Addr is the listening "host:port".
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// certificate serves, per SNI name, a dev-CA certificate for that name.
func (g *Gateway) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return nil, errors.New("dev gateway: no server name (SNI) in the TLS handshake")
	}
	g.mu.Lock()
	lookup := g.lookup
	g.mu.Unlock()
	if lookup != nil {
		c, err := lookup(hello.Context(), name)
		if err != nil {
			g.logger.Info("dev gateway: no certificate to serve", "server_name", name, "reason", err.Error())
		}
		return c, err
	}
	if g.ca == nil {
		return nil, errors.New("dev gateway: no certificates to serve yet")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.certs[name]; ok && time.Now().Before(c.Leaf.NotAfter.Add(-time.Hour)) {
		return c, nil
	}
	c, err := g.ca.TLSCertificate(time.Now(), name)
	if err != nil {
		return nil, err
	}
	g.certs[name] = c
	return c, nil
}

// Close stops serving, waiting up to ctx for requests in flight.
func (g *Gateway) Close(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if serveErr := <-g.served; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("dev gateway: %w", err)
	}
	return nil
}
