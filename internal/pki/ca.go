package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

const (
	// CACertFile is the CA certificate's file name inside its directory.
	CACertFile = "ca.crt"
	// CAKeyFile is the CA key's file name inside its directory.
	CAKeyFile = "ca.key"

	// CACommonName is the subject common name of a CA made by EnsureCA.
	CACommonName = "skiff-ca"

	caValidity = 10 * 365 * 24 * time.Hour
	// backdate is subtracted from NotBefore so that a peer whose clock is a
	// little behind accepts a certificate issued a moment ago.
	backdate = 5 * time.Minute
)

// CA is the cluster's certificate authority: it issues serving and client
// certificates and verifies client certificates presented to the API server.
// A CA is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool
	// now is the clock; tests replace it before sharing the CA.
	now func() time.Time
}

// EnsureCA loads the CA from dir/ca.crt and dir/ca.key, or creates a new one
// (ECDSA P-256, valid for 10 years, CN "skiff-ca") when dir holds no CA yet.
//
// The key is written before the certificate and each file is replaced
// atomically, so ca.crt marks a complete CA: a crash before it is written
// leaves no CA, and the next call starts over. A ca.crt without its key, or
// with a key that does not match, is an error: such a CA may already be
// trusted by clients and is never replaced silently. An advisory lock on dir
// keeps concurrent callers, in this process or another, from interleaving.
func EnsureCA(dir string) (*CA, error) {
	return ensureCA(dir, time.Now)
}

func ensureCA(dir string, now func() time.Time) (*CA, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ensure CA: %w", err)
	}
	defer unlock()

	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)

	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return createCA(dir, now)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read CA key (the CA certificate %s exists): %w", certPath, err)
	}
	ca, err := newCA(certPEM, keyPEM, now)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	return ca, nil
}

// LoadCA builds a CA from PEM-encoded certificate and key, for a CA that is
// kept somewhere other than files made by EnsureCA.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	return newCA(certPEM, keyPEM, time.Now)
}

func newCA(certPEM, keyPEM []byte, now func() time.Time) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !keyMatches(cert, key) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		cert:    cert,
		certPEM: encodeCert(cert.Raw),
		key:     key,
		pool:    pool,
		now:     now,
	}, nil
}

func createCA(dir string, now func() time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             t.Add(-backdate),
		NotAfter:              t.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// SubjectKeyId is filled in by x509.CreateCertificate for a CA.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	certPEM := encodeCert(der)
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA certificate: %w", err)
	}
	return newCA(certPEM, keyPEM, now)
}

// Pool returns a new certificate pool that holds the CA certificate.
func (c *CA) Pool() *x509.CertPool {
	return c.pool.Clone()
}

// CertPEM returns the PEM-encoded CA certificate.
func (c *CA) CertPEM() []byte {
	return bytes.Clone(c.certPEM)
}

// Certificate returns the parsed CA certificate. The caller must not modify it.
func (c *CA) Certificate() *x509.Certificate {
	return c.cert
}

// IssueClient issues a client certificate (ExtKeyUsageClientAuth) whose
// subject carries the user name as common name and the groups as
// organizations, as Kubernetes reads them (DER encodes the organizations as
// a set, so they come back sorted by their encoding). The certificate is valid for ttl,
// but never past the CA's own expiry. It returns PEM-encoded certificate and
// key.
func (c *CA) IssueClient(commonName string, orgs []string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("issue client certificate: empty common name")
	}
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("issue client certificate for %q: ttl %s is not positive", commonName, ttl)
	}
	t := c.now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: append([]string(nil), orgs...)},
		NotBefore:   t.Add(-backdate),
		NotAfter:    t.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = c.issue(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", commonName, err)
	}
	return certPEM, keyPEM, nil
}

// issue fills in the serial number and validity bounds, signs tmpl with
// a fresh ECDSA P-256 key and returns the PEM-encoded certificate and key.
func (c *CA) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	tmpl.BasicConstraintsValid = true
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// VerifyClient checks that cert chains to this CA (through intermediates,
// which may be nil), is within its validity period and allows client
// authentication. It returns the user name (subject common name) and groups
// (subject organizations).
func (c *CA) VerifyClient(cert *x509.Certificate, intermediates *x509.CertPool) (user string, groups []string, err error) {
	if cert == nil {
		return "", nil, errors.New("verify client certificate: no certificate")
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:         c.pool,
		Intermediates: intermediates,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", nil, fmt.Errorf("verify client certificate %q: %w", cert.Subject.CommonName, err)
	}
	if cert.Subject.CommonName == "" {
		return "", nil, errors.New("verify client certificate: empty common name")
	}
	return cert.Subject.CommonName, append([]string(nil), cert.Subject.Organization...), nil
}

// newSerial returns a random 128-bit certificate serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial, nil
}
