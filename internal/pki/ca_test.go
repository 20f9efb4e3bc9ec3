package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func mustCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := EnsureCA(dir)
	if err != nil {
		t.Fatalf("EnsureCA: %v", err)
	}
	return ca, dir
}

func TestEnsureCACreatesOnceAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki") // not yet there
	first, err := EnsureCA(dir)
	if err != nil {
		t.Fatalf("EnsureCA (create): %v", err)
	}
	keyBefore, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsureCA(dir)
	if err != nil {
		t.Fatalf("EnsureCA (load): %v", err)
	}
	if !bytes.Equal(first.CertPEM(), second.CertPEM()) {
		t.Error("reloaded CA certificate differs from the created one")
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Error("CA key file was rewritten on reload")
	}
	if !keyMatches(second.cert, first.key) {
		t.Error("reloaded CA certificate does not match the created key")
	}

	cert := second.Certificate()
	if cert.Subject.CommonName != "skiff-ca" {
		t.Errorf("CN = %q, want skiff-ca", cert.Subject.CommonName)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Error("certificate is not marked as a CA")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA certificate lacks KeyUsageCertSign")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA public key is %T, want ECDSA P-256", cert.PublicKey)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 10*365*24*time.Hour {
		t.Errorf("CA lifetime %s is shorter than 10 years", life)
	}
	if len(cert.SubjectKeyId) == 0 {
		t.Error("CA certificate has no subject key identifier")
	}

	for file, want := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", file, got, want)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("CA directory mode = %o, want 700", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{CACertFile, CAKeyFile}; !slices.Equal(names, want) {
		t.Errorf("CA directory holds %v, want exactly %v (no temporary files)", names, want)
	}
}

func TestEnsureCAPartialOrBadState(t *testing.T) {
	// Material from another, complete CA to plant in the directory.
	other, otherDir := mustCA(t)
	otherKey, err := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	_, third := mustCA(t)
	thirdKey, err := os.ReadFile(filepath.Join(third, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKey, err := other.IssueClient("someone", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    []byte // nil: no ca.crt
		key     []byte // nil: no ca.key
		wantErr bool
		// wantNew: a new CA is created (the key file is replaced).
		wantNew bool
	}{
		{name: "crash after key, before certificate", key: otherKey, wantNew: true},
		{name: "certificate without key", cert: other.CertPEM(), wantErr: true},
		{name: "key does not match certificate", cert: other.CertPEM(), key: thirdKey, wantErr: true},
		{name: "garbage certificate", cert: []byte("not pem"), key: otherKey, wantErr: true},
		{name: "garbage key", cert: other.CertPEM(), key: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), wantErr: true},
		{name: "leaf certificate is not a CA", cert: leafPEM, key: leafKey, wantErr: true},
		{name: "complete", cert: other.CertPEM(), key: otherKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.cert != nil {
				if err := os.WriteFile(filepath.Join(dir, CACertFile), tt.cert, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.key != nil {
				if err := os.WriteFile(filepath.Join(dir, CAKeyFile), tt.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ca, err := EnsureCA(dir)
			if tt.wantErr {
				if err == nil {
					t.Fatal("EnsureCA succeeded, want an error")
				}
				// Nothing may have been replaced.
				if tt.cert != nil {
					got, _ := os.ReadFile(filepath.Join(dir, CACertFile))
					if !bytes.Equal(got, tt.cert) {
						t.Error("ca.crt was changed by a failed EnsureCA")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureCA: %v", err)
			}
			sameAsOther := bytes.Equal(ca.CertPEM(), other.CertPEM())
			if tt.wantNew == sameAsOther {
				t.Errorf("new CA created = %v, want %v", !sameAsOther, tt.wantNew)
			}
			// Whatever was loaded or created must be a working pair.
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)); err != nil {
				t.Errorf("CA files do not form a key pair: %v", err)
			}
		})
	}
}

func TestLoadCAFromPEM(t *testing.T) {
	ca, dir := mustCA(t)
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	certPEM, _, err := loaded.IssueClient("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if user, _, err := ca.VerifyClient(cert, nil); err != nil || user != "alice" {
		t.Errorf("certificate from the loaded CA: user %q, err %v; want alice, nil", user, err)
	}
}

func TestPoolAndCertPEMAreCopies(t *testing.T) {
	ca, _ := mustCA(t)
	pem := ca.CertPEM()
	pem[0] = 'X'
	if ca.CertPEM()[0] == 'X' {
		t.Error("CertPEM returned the CA's own buffer")
	}
	pool := ca.Pool()
	_, foreignDir := mustCA(t)
	foreign, err := EnsureCA(foreignDir)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(foreign.Certificate())
	certPEM, _, err := foreign.IssueClient("mallory", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.VerifyClient(cert, nil); err == nil {
		t.Error("adding to the returned pool changed what the CA trusts")
	}
}

func TestEnsureCAConcurrentCallersAgree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	const n = 8
	cas := make([]*CA, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cas[i], errs[i] = EnsureCA(dir)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !bytes.Equal(cas[i].CertPEM(), cas[0].CertPEM()) {
			t.Errorf("caller %d got a different CA than caller 0", i)
		}
	}
	onDisk, err := EnsureCA(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !bytes.Equal(onDisk.CertPEM(), cas[0].CertPEM()) {
		t.Error("the CA on disk is not the one the callers got")
	}
}
