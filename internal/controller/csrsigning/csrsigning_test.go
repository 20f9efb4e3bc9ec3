package csrsigning

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-sh/skiff/internal/pki"
)

func request(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ptr[T any](v T) *T { return &v }

func TestSign(t *testing.T) {
	ca, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	nodeSubject := pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}
	client := request(t, &x509.CertificateRequest{Subject: nodeSubject})
	serving := request(t, &x509.CertificateRequest{Subject: nodeSubject, DNSNames: []string{"n1"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}})
	alice := request(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice", Organization: []string{"devs"}}})
	clientUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	servingUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}

	tests := []struct {
		name        string
		signer      string
		req         []byte
		usages      []certificatesv1.KeyUsage
		exp         *int32
		wantFailure bool
		wantNothing bool
		wantExt     x509.ExtKeyUsage
		wantLife    time.Duration
	}{
		{name: "node client", signer: certificatesv1.KubeAPIServerClientKubeletSignerName, req: client, usages: clientUsages, wantExt: x509.ExtKeyUsageClientAuth, wantLife: time.Hour},
		{name: "node client, shorter expiration", signer: certificatesv1.KubeAPIServerClientKubeletSignerName, req: client, usages: clientUsages, exp: ptr(int32(900)), wantExt: x509.ExtKeyUsageClientAuth, wantLife: 15 * time.Minute},
		{name: "node client, longer expiration capped", signer: certificatesv1.KubeAPIServerClientKubeletSignerName, req: client, usages: clientUsages, exp: ptr(int32(7200)), wantExt: x509.ExtKeyUsageClientAuth, wantLife: time.Hour},
		{name: "node client breaking the rules", signer: certificatesv1.KubeAPIServerClientKubeletSignerName, req: alice, usages: clientUsages, wantFailure: true},
		{name: "serving", signer: certificatesv1.KubeletServingSignerName, req: serving, usages: servingUsages, wantExt: x509.ExtKeyUsageServerAuth, wantLife: time.Hour},
		{name: "serving without names", signer: certificatesv1.KubeletServingSignerName, req: client, usages: servingUsages, wantFailure: true},
		{name: "apiserver client", signer: certificatesv1.KubeAPIServerClientSignerName, req: alice, usages: clientUsages, wantExt: x509.ExtKeyUsageClientAuth, wantLife: time.Hour},
		{name: "apiserver client asking server auth", signer: certificatesv1.KubeAPIServerClientSignerName, req: alice, usages: append(clientUsages, certificatesv1.UsageServerAuth), wantFailure: true},
		{name: "unparsable", signer: certificatesv1.KubeAPIServerClientSignerName, req: []byte("junk"), usages: clientUsages, wantFailure: true},
		{name: "other signer", signer: "example.com/mine", req: alice, usages: clientUsages, wantNothing: true},
	}
	cs := fake.NewClientset()
	c, err := New(Config{Client: cs, Factory: informers.NewSharedInformerFactory(cs, 0), CA: ca, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: tt.signer, Request: tt.req, Usages: tt.usages, ExpirationSeconds: tt.exp}}
			certPEM, failure, err := c.Sign(r)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantNothing:
				if certPEM != nil || failure != "" {
					t.Errorf("signed or failed another signer's request: %q", failure)
				}
				return
			case tt.wantFailure:
				if failure == "" || certPEM != nil {
					t.Errorf("no failure")
				}
				return
			}
			if failure != "" {
				t.Fatalf("failure %q", failure)
			}
			block, _ := pem.Decode(certPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{tt.wantExt}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{tt.wantExt}) || cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("usages %v %v", cert.KeyUsage, cert.ExtKeyUsage)
			}
			if life := time.Until(cert.NotAfter); life > tt.wantLife || life < tt.wantLife-time.Minute {
				t.Errorf("lifetime %s, want %s", life, tt.wantLife)
			}
		})
	}
}

func TestDue(t *testing.T) {
	cond := func(typ certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: corev1.ConditionTrue}
	}
	tests := []struct {
		name  string
		conds []certificatesv1.CertificateSigningRequestCondition
		cert  []byte
		want  bool
	}{
		{"pending", nil, nil, false},
		{"approved", []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved)}, nil, true},
		{"approved and issued", []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved)}, []byte("x"), false},
		{"approved and failed", []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateApproved), cond(certificatesv1.CertificateFailed)}, nil, false},
		{"denied", []certificatesv1.CertificateSigningRequestCondition{cond(certificatesv1.CertificateDenied)}, nil, false},
	}
	for _, tt := range tests {
		r := &certificatesv1.CertificateSigningRequest{Status: certificatesv1.CertificateSigningRequestStatus{Conditions: tt.conds, Certificate: tt.cert}}
		if got := due(r); got != tt.want {
			t.Errorf("%s: due = %v, want %v", tt.name, got, tt.want)
		}
	}
}
