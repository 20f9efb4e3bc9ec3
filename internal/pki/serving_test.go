package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestIssueServingVerifiesForEverySAN(t *testing.T) {
	ca, _ := mustCA(t)
	dir := t.TempDir()
	hosts := []string{"10.0.0.5", "node1.example.test", "fd00::10", "api.skiff.test"}
	certFile, keyFile, err := ca.IssueServing(dir, "apiserver", hosts)
	if err != nil {
		t.Fatalf("IssueServing: %v", err)
	}
	if certFile != filepath.Join(dir, "apiserver.crt") || keyFile != filepath.Join(dir, "apiserver.key") {
		t.Errorf("files = %s, %s", certFile, keyFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load pair: %v", err)
	}
	cert := pair.Leaf
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v, want 0600", fi.Mode(), err)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want server auth only", cert.ExtKeyUsage)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 365*24*time.Hour || life > 366*24*time.Hour {
		t.Errorf("lifetime = %s, want one year", life)
	}

	want := append(slices.Clone(hosts), "127.0.0.1", "::1", "localhost", "kubernetes",
		"kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
	for _, san := range want {
		t.Run(san, func(t *testing.T) {
			_, err := cert.Verify(x509.VerifyOptions{
				Roots:     ca.Pool(),
				DNSName:   san,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("verify for %s: %v", san, err)
			}
		})
	}
	if got := len(cert.IPAddresses) + len(cert.DNSNames); got != len(want) {
		t.Errorf("certificate has %d SANs (%v %v), want %d", got, cert.IPAddresses, cert.DNSNames, len(want))
	}
	for _, other := range []string{"10.0.0.6", "evil.example.test", "kubernetes.default.svc.other"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: other}); err == nil {
			t.Errorf("certificate verifies for %s, which was not requested", other)
		}
	}
	foreign, _ := mustCA(t)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: foreign.Pool(), DNSName: "localhost"}); err == nil {
		t.Error("certificate verifies against a foreign CA")
	}
}

// TestIssueServingTLSHandshake serves on loopback with the issued pair and
// connects with the CA pool, by IP and by name.
func TestIssueServingTLSHandshake(t *testing.T) {
	ca, _ := mustCA(t)
	certFile, keyFile, err := ca.IssueServing(t.TempDir(), "apiserver", nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	for _, name := range []string{"127.0.0.1", "localhost", "kubernetes.default.svc"} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: name, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Errorf("handshake as %s: %v", name, err)
			continue
		}
		_ = conn.Close()
	}
}

func TestIssueServingReissue(t *testing.T) {
	ca, caDir := mustCA(t)
	caKey, err := os.ReadFile(filepath.Join(caDir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	atAge := func(age time.Duration) *CA {
		c, err := newCA(ca.CertPEM(), caKey, func() time.Time { return time.Now().Add(-age) })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	foreign, _ := mustCA(t)
	day := 24 * time.Hour
	hosts := []string{"10.0.0.5", "node1.example.test"}

	tests := []struct {
		name    string
		issuer  *CA // issues the first pair; nil: ca
		mutate  func(t *testing.T, certFile, keyFile string)
		hosts   []string // second request
		reissue bool
	}{
		{name: "unchanged", hosts: hosts},
		{name: "same set, other order, duplicates, case, defaults spelled out",
			hosts: []string{"NODE1.example.test.", "localhost", "10.0.0.5", "::1", "node1.example.test", " 10.0.0.5 "}},
		{name: "IPv4 written as IPv4-mapped IPv6", hosts: []string{"::ffff:10.0.0.5", "node1.example.test"}},
		{name: "host added", hosts: append(slices.Clone(hosts), "10.0.0.6"), reissue: true},
		{name: "host removed", hosts: hosts[:1], reissue: true},
		{name: "expires in 25 days", issuer: atAge(340 * day), hosts: hosts, reissue: true},
		{name: "expires in 65 days", issuer: atAge(300 * day), hosts: hosts},
		{name: "expired", issuer: atAge(400 * day), hosts: hosts, reissue: true},
		{name: "from a foreign CA", issuer: foreign, hosts: hosts, reissue: true},
		{name: "key missing", hosts: hosts, reissue: true,
			mutate: func(t *testing.T, _, keyFile string) { mustRemove(t, keyFile) }},
		{name: "certificate missing", hosts: hosts, reissue: true,
			mutate: func(t *testing.T, certFile, _ string) { mustRemove(t, certFile) }},
		{name: "key replaced (crash between renames)", hosts: hosts, reissue: true,
			mutate: func(t *testing.T, _, keyFile string) {
				_, otherKey, err := ca.IssueClient("x", nil, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				mustWrite(t, keyFile, otherKey)
			}},
		{name: "certificate garbage", hosts: hosts, reissue: true,
			mutate: func(t *testing.T, certFile, _ string) { mustWrite(t, certFile, []byte("garbage")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			issuer := tt.issuer
			if issuer == nil {
				issuer = ca
			}
			certFile, keyFile, err := issuer.IssueServing(dir, "apiserver", hosts)
			if err != nil {
				t.Fatalf("first IssueServing: %v", err)
			}
			if tt.mutate != nil {
				tt.mutate(t, certFile, keyFile)
			}
			before, _ := os.ReadFile(certFile)

			if _, _, err := ca.IssueServing(dir, "apiserver", tt.hosts); err != nil {
				t.Fatalf("second IssueServing: %v", err)
			}
			after, err := os.ReadFile(certFile)
			if err != nil {
				t.Fatal(err)
			}
			if reissued := !bytes.Equal(before, after); reissued != tt.reissue {
				t.Errorf("reissued = %v, want %v", reissued, tt.reissue)
			}

			// Whatever is on disk now is a good pair for the requested names.
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatalf("files do not form a pair: %v", err)
			}
			for _, h := range tt.hosts {
				if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: trimHost(h)}); err != nil {
					t.Errorf("does not verify for %q: %v", h, err)
				}
			}
			if left := time.Until(pair.Leaf.NotAfter); left < 30*day {
				t.Errorf("certificate left with %s of validity", left)
			}
		})
	}
}

func TestIssueServingRejectsBadInput(t *testing.T) {
	ca, _ := mustCA(t)
	tests := []struct {
		name, file string
		hosts      []string
	}{
		{name: "empty name", file: "", hosts: nil},
		{name: "name with a slash", file: "a/b", hosts: nil},
		{name: "URL as host", file: "apiserver", hosts: []string{"https://x"}},
		{name: "host with a port", file: "apiserver", hosts: []string{"example.test:6443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ca.IssueServing(t.TempDir(), tt.file, tt.hosts); err == nil {
				t.Error("IssueServing succeeded, want an error")
			}
		})
	}
}

func trimHost(h string) string {
	ips, names, err := splitHosts([]string{h})
	if err != nil {
		panic(err)
	}
	if len(ips) == 1 {
		return ips[0].String()
	}
	return names[0]
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestIssueServingConcurrentCallers(t *testing.T) {
	ca, _ := mustCA(t)
	dir := t.TempDir()
	hostSets := [][]string{{"10.0.0.1"}, {"10.0.0.2"}, {"a.test"}, {"b.test"}, {"10.0.0.1"}, {"a.test"}}
	var wg sync.WaitGroup
	errs := make([]error, len(hostSets))
	for i, hosts := range hostSets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = ca.IssueServing(dir, "apiserver", hosts)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key")); err != nil {
		t.Errorf("after concurrent issuing the files do not form a pair: %v", err)
	}
}
