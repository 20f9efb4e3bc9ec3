package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestIssueClientRoundTrip(t *testing.T) {
	ca, _ := mustCA(t)
	tests := []struct {
		name   string
		cn     string
		orgs   []string
		ttl    time.Duration
		groups []string
	}{
		{name: "admin", cn: "skiff-admin", orgs: []string{"system:masters"}, ttl: time.Hour, groups: []string{"system:masters"}},
		{name: "node with two groups", cn: "system:node:n1", orgs: []string{"system:nodes", "skiff:agents"}, ttl: 24 * time.Hour, groups: []string{"system:nodes", "skiff:agents"}},
		{name: "no groups", cn: "bob", ttl: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.IssueClient(tt.cn, tt.orgs, tt.ttl)
			if err != nil {
				t.Fatalf("IssueClient: %v", err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("certificate and key do not form a pair: %v", err)
			}
			cert := pair.Leaf
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage = %v, want client auth only", cert.ExtKeyUsage)
			}
			if cert.IsCA {
				t.Error("client certificate is a CA")
			}
			if got := time.Until(cert.NotAfter); got > tt.ttl || got < tt.ttl-time.Minute {
				t.Errorf("certificate expires in %s, want about %s", got, tt.ttl)
			}
			user, groups, err := ca.VerifyClient(cert, nil)
			if err != nil {
				t.Fatalf("VerifyClient: %v", err)
			}
			if user != tt.cn {
				t.Errorf("user = %q, want %q", user, tt.cn)
			}
			// A subject's organizations are a DER SET: their order is not kept.
			slices.Sort(groups)
			slices.Sort(tt.groups)
			if !slices.Equal(groups, tt.groups) {
				t.Errorf("groups = %q, want %q", groups, tt.groups)
			}
		})
	}
}

func TestIssueClientCappedAtCAExpiry(t *testing.T) {
	ca, _ := mustCA(t)
	certPEM, _, err := ca.IssueClient("long", nil, 100*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.NotAfter.After(ca.Certificate().NotAfter) {
		t.Errorf("client certificate outlives its CA: %s > %s", cert.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestIssueClientRejectsBadInput(t *testing.T) {
	ca, _ := mustCA(t)
	tests := []struct {
		name string
		cn   string
		ttl  time.Duration
	}{
		{name: "empty common name", cn: "", ttl: time.Hour},
		{name: "zero ttl", cn: "a", ttl: 0},
		{name: "negative ttl", cn: "a", ttl: -time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ca.IssueClient(tt.cn, nil, tt.ttl); err == nil {
				t.Error("IssueClient succeeded, want an error")
			}
		})
	}
}

func TestVerifyClientRejects(t *testing.T) {
	ca, dir := mustCA(t)
	foreign, _ := mustCA(t)

	// Expired: issued with the clock two days back, valid for one hour.
	caKey, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	past, err := newCA(ca.CertPEM(), caKey, func() time.Time { return time.Now().Add(-48 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	expiredPEM, _, err := past.IssueClient("old", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Not yet valid: issued with the clock two days ahead.
	future, err := newCA(ca.CertPEM(), caKey, func() time.Time { return time.Now().Add(48 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	futurePEM, _, err := future.IssueClient("early", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, _, err := foreign.IssueClient("mallory", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A serving certificate from the right CA lacks client auth.
	servingFile, _, err := ca.IssueServing(t.TempDir(), "apiserver", nil)
	if err != nil {
		t.Fatal(err)
	}
	servingPEM, err := os.ReadFile(servingFile)
	if err != nil {
		t.Fatal(err)
	}
	goodPEM, _, err := ca.IssueClient("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		pem     []byte
		wantErr bool
	}{
		{name: "valid", pem: goodPEM},
		{name: "expired", pem: expiredPEM, wantErr: true},
		{name: "not yet valid", pem: futurePEM, wantErr: true},
		{name: "foreign CA", pem: foreignPEM, wantErr: true},
		{name: "serving certificate", pem: servingPEM, wantErr: true},
		{name: "the CA certificate itself", pem: foreign.CertPEM(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := parseCert(tt.pem)
			if err != nil {
				t.Fatal(err)
			}
			user, groups, err := ca.VerifyClient(cert, nil)
			if tt.wantErr {
				if err == nil {
					t.Errorf("VerifyClient accepted it as user %q groups %q", user, groups)
				}
				return
			}
			if err != nil {
				t.Errorf("VerifyClient: %v", err)
			}
		})
	}
	t.Run("nil certificate", func(t *testing.T) {
		if _, _, err := ca.VerifyClient(nil, nil); err == nil {
			t.Error("VerifyClient(nil) succeeded")
		}
	})
}
