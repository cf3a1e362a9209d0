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
	g := &Gateway{ca: ca, ln: ln, certs: map[string]*tls.Certificate{}, served: make(chan error, 1)}
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

// Addr is the listening "host:port".
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// certificate serves, per SNI name, a dev-CA certificate for that name.
func (g *Gateway) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return nil, errors.New("dev gateway: no server name (SNI) in the TLS handshake")
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
