// Package probe checks a portal domain the way a tenant's browser would: an
// HTTPS GET to the domain, verifying that the certificate served covers the
// domain, is current and chains to a trusted root, and that the portal
// answers. The pipeline marks a domain active only after a successful probe,
// so a Ready Certificate that the ingress does not (yet) serve is caught.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultPath      = "/"
	DefaultMinStatus = 200
	DefaultMaxStatus = 399
	DefaultTimeout   = 10 * time.Second
)

// Config tunes a probe. The zero value probes https://<host>/ through normal
// DNS and the system roots, accepting any 2xx or 3xx within 10s.
type Config struct {
	// Path is requested on the domain; default "/".
	Path string
	// MinStatus and MaxStatus bound the accepted HTTP status codes,
	// inclusive; default 200-399. Redirects are not followed: a portal that
	// redirects to its login page is up.
	MinStatus, MaxStatus int
	// Timeout bounds the whole probe (connect, handshake, response headers).
	Timeout time.Duration
	// DialAddress, when set, is the host:port connected to instead of
	// resolving the domain, e.g. the ingress gateway's address from inside
	// the cluster or 127.0.0.1:8443 in tests. SNI and the Host header stay
	// the domain, so the check is still of what the domain serves.
	DialAddress string
	// CAFile is a PEM bundle of extra roots added to the system roots, for
	// staging issuers and tests.
	CAFile string
}

func (c Config) withDefaults() Config {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if !strings.HasPrefix(c.Path, "/") {
		c.Path = "/" + c.Path
	}
	if c.MinStatus == 0 && c.MaxStatus == 0 {
		c.MinStatus, c.MaxStatus = DefaultMinStatus, DefaultMaxStatus
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Failure says which step of the probe failed; empty when it succeeded.
type Failure string

const (
	FailureNone                 Failure = ""
	FailureConfig               Failure = "config"
	FailureDNS                  Failure = "dns"
	FailureConnectionRefused    Failure = "connection_refused"
	FailureConnection           Failure = "connection"
	FailureTimeout              Failure = "timeout"
	FailureTLSHandshake         Failure = "tls_handshake"
	FailureCertificateName      Failure = "certificate_name_mismatch"
	FailureCertificateExpired   Failure = "certificate_expired"
	FailureCertificateNotYet    Failure = "certificate_not_yet_valid"
	FailureCertificateUntrusted Failure = "certificate_untrusted"
	FailureStatus               Failure = "unexpected_status"
)

// Result is what a probe saw. Message is written for the tenant and the
// operator: what was observed and, where it helps, what to do.
type Result struct {
	OK      bool
	Failure Failure
	Message string
	URL     string
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// CertificateNames are the DNS names (SANs) of the certificate served,
	// when the handshake got that far.
	CertificateNames    []string
	CertificateNotAfter time.Time
	CertificateIssuer   string
	Duration            time.Duration
	// Err is the underlying error for logs; nil when OK.
	Err error
}

// observed is what the transport saw of one probe.
type observed struct {
	connected bool
	tlsDone   bool
	dialedTo  string
	leaf      *x509.Certificate
}

// probeState guards observed: the transport writes it from its own
// goroutines, which can outlive client.Do when the deadline hits.
type probeState struct {
	mu sync.Mutex
	o  observed
}

func (s *probeState) set(f func(*observed)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.o)
}

func (s *probeState) get() observed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.o
}

// certError carries a certificate check failure out of the TLS handshake.
type certError struct {
	failure Failure
	msg     string
	err     error
}

func (e *certError) Error() string { return e.msg }
func (e *certError) Unwrap() error { return e.err }

// Probe GETs https://<host><cfg.Path> and reports the first thing that is
// wrong. It never returns an error: every failure is a Result, because for
// the pipeline a failed probe is an observation, not a fault.
func Probe(ctx context.Context, cfg Config, host string) Result {
	start := time.Now()
	cfg = cfg.withDefaults()
	host = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	res := Result{URL: "https://" + host + cfg.Path}
	finish := func(r Result) Result {
		r.Duration = time.Since(start)
		return r
	}

	roots, err := loadRoots(cfg.CAFile)
	if err != nil {
		res.Failure, res.Err = FailureConfig, err
		res.Message = fmt.Sprintf("Probe misconfigured: %v.", err)
		return finish(res)
	}
	serverName := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		serverName = h
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	var st probeState
	dialer := &net.Dialer{}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if cfg.DialAddress != "" {
				addr = cfg.DialAddress
			}
			conn, err := dialer.DialContext(ctx, network, addr)
			st.set(func(s *observed) { s.dialedTo, s.connected = addr, err == nil })
			return conn, err
		},
		TLSClientConfig: &tls.Config{
			ServerName: serverName,
			// Verification is done in VerifyConnection instead of by
			// crypto/tls so each failure can be named (wrong name, expired,
			// untrusted) and the served certificate reported either way.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) > 0 {
					st.set(func(s *observed) { s.leaf = cs.PeerCertificates[0] })
				}
				return verifyPeer(cs, serverName, roots, time.Now())
			},
			MinVersion: tls.VersionTLS12,
			// The probe checks what certificate is served, not the secrecy
			// of a session it throws away: classical key exchange spares
			// both ends the post-quantum hybrid's cost on every probe.
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}

	trace := &httptrace.ClientTrace{
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			st.set(func(s *observed) { s.tlsDone = err == nil })
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, res.URL, nil)
	if err != nil {
		res.Failure, res.Err = FailureConfig, err
		res.Message = fmt.Sprintf("Cannot build a request for %s: %v.", res.URL, err)
		return finish(res)
	}
	req.Header.Set("User-Agent", "portal-domains-probe/1")

	resp, err := client.Do(req)
	seen := st.get()
	if seen.leaf != nil {
		res.CertificateNames = seen.leaf.DNSNames
		res.CertificateNotAfter = seen.leaf.NotAfter
		res.CertificateIssuer = seen.leaf.Issuer.String()
	}
	if err != nil {
		res.Err = err
		res.Failure, res.Message = classify(err, host, seen, cfg.Timeout)
		return finish(res)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	res.StatusCode = resp.StatusCode
	if resp.StatusCode < cfg.MinStatus || resp.StatusCode > cfg.MaxStatus {
		res.Failure = FailureStatus
		res.Err = fmt.Errorf("status %d outside %d-%d", resp.StatusCode, cfg.MinStatus, cfg.MaxStatus)
		res.Message = fmt.Sprintf("%s answered HTTP %s; expected a status between %d and %d. The certificate is fine; check the portal service behind the ingress.",
			res.URL, resp.Status, cfg.MinStatus, cfg.MaxStatus)
		return finish(res)
	}
	res.OK = true
	res.Message = fmt.Sprintf("%s answered HTTP %s with a valid certificate for %s (expires %s).",
		res.URL, resp.Status, serverName, res.CertificateNotAfter.UTC().Format(time.DateOnly))
	return finish(res)
}

// verifyPeer checks the served chain for serverName and names the first
// problem in the order a tenant can act on: wrong name, then validity
// dates, then trust.
func verifyPeer(cs tls.ConnectionState, serverName string, roots *x509.CertPool, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return &certError{failure: FailureTLSHandshake, msg: "the server sent no certificate"}
	}
	leaf := cs.PeerCertificates[0]
	if err := leaf.VerifyHostname(serverName); err != nil {
		return &certError{
			failure: FailureCertificateName,
			msg:     fmt.Sprintf("the certificate served does not cover %s; it covers: %s", serverName, describeNames(leaf)),
			err:     err,
		}
	}
	if now.After(leaf.NotAfter) {
		return &certError{
			failure: FailureCertificateExpired,
			msg:     fmt.Sprintf("the certificate served for %s expired on %s", serverName, leaf.NotAfter.UTC().Format(time.RFC3339)),
		}
	}
	if now.Before(leaf.NotBefore) {
		return &certError{
			failure: FailureCertificateNotYet,
			msg:     fmt.Sprintf("the certificate served for %s is not valid until %s (check the clocks)", serverName, leaf.NotBefore.UTC().Format(time.RFC3339)),
		}
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: serverName, CurrentTime: now,
	}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return &certError{failure: FailureCertificateExpired,
				msg: fmt.Sprintf("a certificate in the chain served for %s has expired: %v", serverName, err), err: err}
		}
		return &certError{
			failure: FailureCertificateUntrusted,
			msg:     fmt.Sprintf("the certificate served for %s (issued by %s) is not trusted: %v", serverName, leaf.Issuer, err),
			err:     err,
		}
	}
	return nil
}

func describeNames(leaf *x509.Certificate) string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		if leaf.Subject.CommonName != "" {
			return "no DNS names (common name " + leaf.Subject.CommonName + ")"
		}
		return "no names at all"
	}
	return strings.Join(names, ", ")
}

// classify turns a client error into a Failure and a sentence.
func classify(err error, host string, seen observed, timeout time.Duration) (Failure, string) {
	connected, tlsDone := seen.connected, seen.tlsDone
	where := host
	if seen.dialedTo != "" && !strings.HasPrefix(seen.dialedTo, host+":") {
		where = fmt.Sprintf("%s (via %s)", host, seen.dialedTo)
	}
	var ce *certError
	if errors.As(err, &ce) {
		msg := strings.ToUpper(ce.msg[:1]) + ce.msg[1:] + "."
		switch ce.failure {
		case FailureCertificateName:
			msg += " The ingress is serving another certificate for this host: the Gateway for it is missing, or its Secret is not issued yet."
		case FailureCertificateExpired:
			msg += " cert-manager should have renewed it; check the Certificate's status."
		}
		return ce.failure, msg
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return FailureDNS, fmt.Sprintf("%s does not resolve (%v). Check that its DNS record points at the portal.", host, dnsErr)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return FailureConnectionRefused, fmt.Sprintf("Connection to %s was refused: nothing is listening for HTTPS there. Check the ingress gateway.", where)
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		stage := "connecting"
		switch {
		case tlsDone:
			stage = "waiting for the HTTP response"
		case connected:
			stage = "during the TLS handshake"
		}
		return FailureTimeout, fmt.Sprintf("No answer from %s within %s (%s).", where, timeout, stage)
	}
	if !connected {
		return FailureConnection, fmt.Sprintf("Could not connect to %s: %v.", where, unwrapURL(err))
	}
	if !tlsDone {
		return FailureTLSHandshake, fmt.Sprintf("TLS handshake with %s failed: %v. The ingress has no usable certificate for this host yet.", where, unwrapURL(err))
	}
	return FailureConnection, fmt.Sprintf("%s closed the connection before answering: %v.", where, unwrapURL(err))
}

// unwrapURL drops the *url.Error wrapper, whose text repeats the URL the
// message already names.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// loadRoots returns nil (the system roots) without a CA file, else the system
// roots plus the file's certificates.
func loadRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificates", caFile)
	}
	return pool, nil
}
