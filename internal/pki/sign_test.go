package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"slices"
	"testing"
	"time"
)

func TestSignRequest(t *testing.T) {
	ca, _ := mustCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}},
		DNSNames:    []string{"n1"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.1")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ttl     time.Duration
		wantErr bool
		// wantLife bounds NotAfter-now from above.
		wantLife time.Duration
	}{
		{name: "one hour", ttl: time.Hour, wantLife: time.Hour},
		{name: "capped at the CA", ttl: 100 * 365 * 24 * time.Hour, wantLife: caValidity},
		{name: "zero", ttl: 0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, err := ca.SignRequest(req, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, tt.ttl)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cert, err := parseCert(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			user, groups, err := ca.VerifyClient(cert, nil)
			if err != nil || user != "system:node:n1" || !slices.Equal(groups, []string{"system:nodes"}) {
				t.Errorf("verify: %q %v %v", user, groups, err)
			}
			if !keyMatches(cert, key) {
				t.Error("certificate is not for the request's key")
			}
			if life := time.Until(cert.NotAfter); life > tt.wantLife || life < tt.wantLife-time.Minute {
				t.Errorf("lifetime %s, want about %s", life, tt.wantLife)
			}
			if !slices.Equal(cert.DNSNames, []string{"n1"}) || len(cert.IPAddresses) != 1 || cert.IsCA {
				t.Errorf("names %v %v, CA %v", cert.DNSNames, cert.IPAddresses, cert.IsCA)
			}
		})
	}
}
