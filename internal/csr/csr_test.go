package csr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"reflect"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
)

func TestX509Usages(t *testing.T) {
	tests := []struct {
		name    string
		in      []certificatesv1.KeyUsage
		ku      x509.KeyUsage
		eku     []x509.ExtKeyUsage
		wantErr bool
	}{
		{"client", ClientUsages, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
		{"serving with key encipherment", []certificatesv1.KeyUsage{"digital signature", "key encipherment", "server auth"},
			x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false},
		{"signing is digital signature", []certificatesv1.KeyUsage{"signing", "digital signature"}, x509.KeyUsageDigitalSignature, nil, false},
		{"s/mime and email protection are one", []certificatesv1.KeyUsage{"s/mime", "email protection"}, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, false},
		{"unknown", []certificatesv1.KeyUsage{"teleport"}, 0, nil, true},
	}
	for _, tt := range tests {
		ku, eku, err := X509Usages(tt.in)
		if (err != nil) != tt.wantErr || ku != tt.ku || !reflect.DeepEqual(eku, tt.eku) {
			t.Errorf("%s: %v %v %v, want %v %v err=%v", tt.name, ku, eku, err, tt.ku, tt.eku, tt.wantErr)
		}
	}
}

func TestNodeRequests(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewNodeClientRequest(key, "n1")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := NewNodeServingRequest(key, "n1", []string{"n1"}, []net.IP{net.ParseIP("10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	creq, err := Parse(client)
	if err != nil {
		t.Fatal(err)
	}
	sreq, err := Parse(serving)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		check func() error
		ok    bool
	}{
		{"client request is a node client request", func() error { return ValidateNodeClient(creq, ClientUsages) }, true},
		{"serving request is not a client request", func() error { return ValidateNodeClient(sreq, ClientUsages) }, false},
		{"serving request is a node serving request", func() error { return ValidateNodeServing(sreq, ServingUsages) }, true},
		{"client request has no names to serve", func() error { return ValidateNodeServing(creq, ServingUsages) }, false},
		{"serving request with client usages", func() error { return ValidateNodeServing(sreq, ClientUsages) }, false},
		{"apiserver client usages", func() error { return ValidateAPIServerClient(ClientUsages) }, true},
		{"apiserver client without client auth", func() error { return ValidateAPIServerClient(ServingUsages) }, false},
	}
	for _, tt := range tests {
		if err := tt.check(); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if name, ok := NodeName(creq.Subject.CommonName); !ok || name != "n1" {
		t.Errorf("NodeName = %q %v", name, ok)
	}
	if _, ok := NodeName("system:node:"); ok {
		t.Error("empty node name accepted")
	}
	if _, err := Parse([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("a certificate parsed as a request")
	}
}
