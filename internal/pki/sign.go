package pki

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// SignRequest issues a certificate for the public key of a certificate
// request (whose signature the caller has checked), with the request's
// subject, DNS names and IP addresses, the given key usages, valid from a
// few minutes ago for ttl but never past the CA's own expiry. It returns
// the PEM-encoded certificate. Other extensions of the request (URIs,
// email addresses, anything it asks for itself) are not copied.
func (c *CA) SignRequest(req *x509.CertificateRequest, usage x509.KeyUsage, extUsage []x509.ExtKeyUsage, ttl time.Duration) ([]byte, error) {
	if req == nil {
		return nil, errors.New("sign request: no request")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("sign request for %q: ttl %s is not positive", req.Subject.CommonName, ttl)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		NotBefore:             t.Add(-backdate),
		NotAfter:              t.Add(ttl),
		KeyUsage:              usage,
		ExtKeyUsage:           extUsage,
		BasicConstraintsValid: true,
	}
	tmpl.Subject.ExtraNames = nil
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, req.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("sign request for %q: %w", req.Subject.CommonName, err)
	}
	return encodeCert(der), nil
}

// WriteFile writes data to path atomically (a temporary file in the same
// directory, fsynced and renamed over path), creating the directory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm)
}
