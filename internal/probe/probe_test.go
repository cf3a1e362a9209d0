package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a throwaway CA; the probe trusts it through Config.CAFile.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "probe test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	return &testCA{cert: cert, key: key, caFile: caFile}
}

func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve starts a real TLS server on loopback with cert and returns its
// address, which the probe dials in place of resolving the domain.
func serve(t *testing.T, cert tls.Certificate, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func ok(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

func TestProbe(t *testing.T) {
	t.Parallel()

	const host = "portal.acme.com"
	now := time.Now()

	t.Run("Success", func(t *testing.T) {
		t.Parallel()
		ca := newTestCA(t)
		var gotHost, gotSNI, gotPath string
		addr := serve(t, ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), host), func(w http.ResponseWriter, r *http.Request) {
			gotHost, gotSNI, gotPath = r.Host, r.TLS.ServerName, r.URL.Path
			http.Redirect(w, r, "/login", http.StatusFound)
		})
		res := Probe(t.Context(), Config{DialAddress: addr, CAFile: ca.caFile, Path: "healthz"}, host)
		require.True(t, res.OK, res.Message)
		require.Equal(t, FailureNone, res.Failure)
		require.NoError(t, res.Err)
		require.Equal(t, http.StatusFound, res.StatusCode, "redirects are answers, not followed")
		require.Equal(t, host, gotHost)
		require.Equal(t, host, gotSNI)
		require.Equal(t, "/healthz", gotPath)
		require.Equal(t, []string{host}, res.CertificateNames)
		require.Equal(t, "https://portal.acme.com/healthz", res.URL)
		require.Contains(t, res.Message, "valid certificate for portal.acme.com")
	})

	t.Run("WrongSAN", func(t *testing.T) {
		t.Parallel()
		ca := newTestCA(t)
		addr := serve(t, ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), "ingress.default.local", "other.example.com"), ok)
		res := Probe(t.Context(), Config{DialAddress: addr, CAFile: ca.caFile}, host)
		require.False(t, res.OK)
		require.Equal(t, FailureCertificateName, res.Failure)
		require.Contains(t, res.Message, "does not cover portal.acme.com; it covers: ingress.default.local, other.example.com")
		require.Equal(t, []string{"ingress.default.local", "other.example.com"}, res.CertificateNames)
		require.Zero(t, res.StatusCode)
	})

	t.Run("Expired", func(t *testing.T) {
		t.Parallel()
		ca := newTestCA(t)
		notAfter := now.Add(-time.Minute).Truncate(time.Second)
		addr := serve(t, ca.leaf(t, now.Add(-48*time.Hour), notAfter, host), ok)
		res := Probe(t.Context(), Config{DialAddress: addr, CAFile: ca.caFile}, host)
		require.Equal(t, FailureCertificateExpired, res.Failure, res.Message)
		require.Contains(t, res.Message, "expired on "+notAfter.UTC().Format(time.RFC3339))
		require.True(t, res.CertificateNotAfter.Equal(notAfter))
	})

	t.Run("Untrusted", func(t *testing.T) {
		t.Parallel()
		ca, other := newTestCA(t), newTestCA(t)
		addr := serve(t, ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), host), ok)
		res := Probe(t.Context(), Config{DialAddress: addr, CAFile: other.caFile}, host)
		require.Equal(t, FailureCertificateUntrusted, res.Failure, res.Message)
		require.Contains(t, res.Message, "issued by CN=probe test CA")
		require.Contains(t, res.Message, "not trusted")
	})

	t.Run("BadStatus", func(t *testing.T) {
		t.Parallel()
		ca := newTestCA(t)
		addr := serve(t, ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), host), func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
		})
		res := Probe(t.Context(), Config{DialAddress: addr, CAFile: ca.caFile}, host)
		require.Equal(t, FailureStatus, res.Failure)
		require.Equal(t, http.StatusBadGateway, res.StatusCode)
		require.Contains(t, res.Message, "answered HTTP 502 Bad Gateway; expected a status between 200 and 399")

		res = Probe(t.Context(), Config{DialAddress: addr, CAFile: ca.caFile, MinStatus: 500, MaxStatus: 502}, host)
		require.True(t, res.OK, "accepted statuses are configurable")
	})

	t.Run("NothingListening", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		res := Probe(t.Context(), Config{DialAddress: addr}, host)
		require.Equal(t, FailureConnectionRefused, res.Failure, res.Message)
		require.Contains(t, res.Message, "Connection to portal.acme.com (via "+addr+") was refused")
	})

	t.Run("HandshakeFailure", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewUnstartedServer(http.HandlerFunc(ok))
		srv.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("no certificate for this SNI")
		}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		res := Probe(t.Context(), Config{DialAddress: srv.Listener.Addr().String()}, host)
		require.Equal(t, FailureTLSHandshake, res.Failure, res.Message)
		require.Contains(t, res.Message, "TLS handshake with portal.acme.com")
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		// Accepts the TCP connection and never speaks TLS.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		res := Probe(t.Context(), Config{DialAddress: l.Addr().String(), Timeout: 200 * time.Millisecond}, host)
		require.Equal(t, FailureTimeout, res.Failure, res.Message)
		require.Contains(t, res.Message, "during the TLS handshake")
	})

	t.Run("CallerCancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		res := Probe(ctx, Config{DialAddress: "127.0.0.1:1"}, host)
		require.False(t, res.OK)
		require.Error(t, res.Err)
	})

	t.Run("BadCAFile", func(t *testing.T) {
		t.Parallel()
		f := filepath.Join(t.TempDir(), "empty.pem")
		require.NoError(t, os.WriteFile(f, []byte("not pem"), 0o644))
		res := Probe(t.Context(), Config{CAFile: f}, host)
		require.Equal(t, FailureConfig, res.Failure)
		require.Contains(t, res.Message, "holds no PEM certificates")
	})
}
