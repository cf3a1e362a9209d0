package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// CA is the dev stack's certificate authority. DEV-ONLY: a fresh one is
// made for every run and its key never leaves memory, so trusting its
// certificate (ca.pem, which the probe is pointed at) vouches for nothing
// once the run ends. The dev issuer signs Certificates with it and the dev
// gateway serves certificates from it.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// NewCA makes a self-signed CA valid from an hour ago for 30 days.
func NewCA(now time.Time) (*CA, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "portal-domains DEV-ONLY CA", Organization: []string{"portal-domains dev stack"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	der, key, err := sign(tmpl, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse dev CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM is the CA certificate, for a trust bundle (the probe's CA file,
// a Secret's ca.crt, curl --cacert).
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool is a certificate pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// Issue signs a serving certificate for dnsNames (the first is also the
// common name) with a new P-256 key, as PEM, the way cert-manager fills a
// TLS Secret's tls.crt and tls.key.
func (c *CA) Issue(dnsNames []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if len(dnsNames) == 0 {
		return nil, nil, errors.New("issue certificate: no DNS names")
	}
	der, key, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: dnsNames[0]},
		DNSNames:    dnsNames,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, c.cert, c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %v: %w", dnsNames, err)
	}
	return encodePEM(der, key)
}

// SelfSigned makes a self-signed serving certificate for names, valid from
// notBefore to notAfter, as PEM certificate and key: a test's HTTPS server
// serves it and its client trusts the certificate itself.
func SelfSigned(notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("self-signed certificate: no DNS names")
	}
	der, key, err := sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate for %v: %w", names, err)
	}
	return encodePEM(der, key)
}

// TLSCertificate issues a certificate for dnsNames valid for a day, ready
// for a tls.Config.
func (c *CA) TLSCertificate(now time.Time, dnsNames ...string) (*tls.Certificate, error) {
	certPEM, keyPEM, err := c.Issue(dnsNames, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate for %v: %w", dnsNames, err)
	}
	return &pair, nil
}

// sign makes a new P-256 key and a certificate for it from tmpl with a
// random serial, signed by parent's key, or self-signed when parent is nil.
func sign(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (der []byte, key *ecdsa.PrivateKey, err error) {
	if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey); err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

func encodePEM(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode certificate key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// SecretServes reports whether a TLS Secret holds a current certificate
// from ca that covers every one of dnsNames, which is what "issued" means
// for the dev issuer (and what its tests check).
func SecretServes(secret *unstructured.Unstructured, ca *CA, dnsNames []string) bool {
	if secret == nil {
		return false
	}
	raw, _, _ := unstructured.NestedString(secret.Object, "data", "tls.crt")
	certPEM, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return false
	}
	return VerifyPEM(certPEM, ca, dnsNames, time.Now()) == nil
}

// VerifyPEM checks that the first certificate in certPEM chains to ca and
// is valid for each of dnsNames at now.
func VerifyPEM(certPEM []byte, ca *CA, dnsNames []string, now time.Time) error {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	if len(dnsNames) == 0 {
		return fmt.Errorf("no DNS names to verify")
	}
	for _, name := range dnsNames {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool(), CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("verify for %s: %w", name, err)
		}
	}
	if extra := slices.DeleteFunc(slices.Clone(leaf.DNSNames), func(n string) bool { return slices.Contains(dnsNames, n) }); len(extra) > 0 {
		return fmt.Errorf("certificate also covers %v, which were not requested", extra)
	}
	return nil
}
