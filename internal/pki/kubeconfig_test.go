package pki

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// whoamiServer is an HTTPS server on loopback with a serving certificate
// from ca. It answers with the identity it authenticated: "cert:<user>" for
// a client certificate that ca accepts, "token:<token>" for a bearer token.
func whoamiServer(t *testing.T, ca *CA) *httptest.Server {
	t.Helper()
	certFile, keyFile, err := ca.IssueServing(t.TempDir(), "apiserver", nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			user, groups, err := ca.VerifyClient(r.TLS.PeerCertificates[0], nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, "cert:"+user+":"+strings.Join(groups, ","))
			return
		}
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			_, _ = io.WriteString(w, "token:"+token)
			return
		}
		http.Error(w, "anonymous", http.StatusUnauthorized)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected in some tests
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequestClientCert, // VerifyClient does the checking
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func restConfigFrom(t *testing.T, path string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("build rest.Config from %s: %v", path, err)
	}
	return cfg
}

func get(t *testing.T, cfg *rest.Config) (int, string) {
	t.Helper()
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatalf("HTTPClientFor: %v", err)
	}
	resp, err := client.Get(cfg.Host + "/whoami")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestWriteKubeconfig(t *testing.T) {
	ca, _ := mustCA(t)
	srv := whoamiServer(t, ca)
	certPEM, keyPEM, err := ca.IssueClient("skiff-admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "admin.kubeconfig")
	// An older file at the path is replaced.
	if err := WriteTokenKubeconfig(path, "https://old.example.test:6443", ca.CertPEM(), "old"); err != nil {
		t.Fatal(err)
	}
	if err := WriteKubeconfig(path, srv.URL, ca.CertPEM(), certPEM, keyPEM, "skiff-admin"); err != nil {
		t.Fatalf("WriteKubeconfig: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %o, want 600", fi.Mode().Perm())
	}

	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("clientcmd.LoadFromFile: %v", err)
	}
	if kc.CurrentContext != "skiff" {
		t.Errorf("current-context = %q, want skiff", kc.CurrentContext)
	}
	ctx := kc.Contexts["skiff"]
	if ctx == nil || ctx.Cluster != "skiff" || ctx.AuthInfo != "skiff-admin" {
		t.Fatalf("context skiff = %+v, want cluster skiff, user skiff-admin", ctx)
	}
	if len(kc.Clusters) != 1 || len(kc.AuthInfos) != 1 || len(kc.Contexts) != 1 {
		t.Errorf("kubeconfig has %d clusters, %d users, %d contexts; want one each", len(kc.Clusters), len(kc.AuthInfos), len(kc.Contexts))
	}
	if err := clientcmd.Validate(*kc); err != nil {
		t.Errorf("clientcmd.Validate: %v", err)
	}

	cfg := restConfigFrom(t, path)
	if cfg.Host != srv.URL {
		t.Errorf("Host = %q, want %q", cfg.Host, srv.URL)
	}
	if cfg.Insecure {
		t.Error("Insecure is set")
	}
	if !bytes.Equal(cfg.CAData, ca.CertPEM()) {
		t.Error("CAData is not the CA certificate")
	}
	if !bytes.Equal(cfg.CertData, certPEM) || !bytes.Equal(cfg.KeyData, keyPEM) {
		t.Error("CertData/KeyData are not the client pair")
	}
	if cfg.BearerToken != "" || cfg.CAFile != "" || cfg.CertFile != "" {
		t.Errorf("unexpected token or file references: %q %q %q", cfg.BearerToken, cfg.CAFile, cfg.CertFile)
	}

	code, body := get(t, cfg)
	if code != http.StatusOK || body != "cert:skiff-admin:system:masters" {
		t.Errorf("whoami = %d %q, want 200 cert:skiff-admin:system:masters", code, body)
	}

	// The same client trusting another CA must fail the handshake.
	foreign, _ := mustCA(t)
	bad := rest.CopyConfig(cfg)
	bad.CAData = foreign.CertPEM()
	client, err := rest.HTTPClientFor(bad)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := client.Get(bad.Host + "/whoami"); err == nil {
		_ = resp.Body.Close()
		t.Error("request trusting a foreign CA succeeded")
	}
}

func TestWriteKubeconfigForeignClientCertRejected(t *testing.T) {
	ca, _ := mustCA(t)
	foreign, _ := mustCA(t)
	srv := whoamiServer(t, ca)
	certPEM, keyPEM, err := foreign.IssueClient("mallory", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := WriteKubeconfig(path, srv.URL, ca.CertPEM(), certPEM, keyPEM, "mallory"); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, restConfigFrom(t, path)); code != http.StatusUnauthorized {
		t.Errorf("whoami with a foreign client certificate = %d %q, want 401", code, body)
	}
}

func TestWriteTokenKubeconfig(t *testing.T) {
	ca, _ := mustCA(t)
	srv := whoamiServer(t, ca)
	path := filepath.Join(t.TempDir(), "node.kubeconfig")
	if err := WriteTokenKubeconfig(path, srv.URL, ca.CertPEM(), "abc.0123456789abcdef"); err != nil {
		t.Fatalf("WriteTokenKubeconfig: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %o, want 600", fi.Mode().Perm())
	}
	cfg := restConfigFrom(t, path)
	if cfg.BearerToken != "abc.0123456789abcdef" {
		t.Errorf("BearerToken = %q", cfg.BearerToken)
	}
	if len(cfg.CertData) != 0 || len(cfg.KeyData) != 0 {
		t.Error("token kubeconfig carries a client certificate")
	}
	if !bytes.Equal(cfg.CAData, ca.CertPEM()) {
		t.Error("CAData is not the CA certificate")
	}
	if code, body := get(t, cfg); code != http.StatusOK || body != "token:abc.0123456789abcdef" {
		t.Errorf("whoami = %d %q", code, body)
	}
}

func TestWriteKubeconfigRejectsBadInput(t *testing.T) {
	ca, _ := mustCA(t)
	certPEM, keyPEM, err := ca.IssueClient("a", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := ca.CertPEM()
	tests := []struct {
		name  string
		write func(path string) error
	}{
		{"plain http server", func(p string) error { return WriteKubeconfig(p, "http://127.0.0.1:6443", caPEM, certPEM, keyPEM, "a") }},
		{"server without host", func(p string) error { return WriteKubeconfig(p, "https://", caPEM, certPEM, keyPEM, "a") }},
		{"no CA", func(p string) error { return WriteKubeconfig(p, "https://127.0.0.1:6443", nil, certPEM, keyPEM, "a") }},
		{"no user", func(p string) error { return WriteKubeconfig(p, "https://127.0.0.1:6443", caPEM, certPEM, keyPEM, "") }},
		{"no key", func(p string) error { return WriteKubeconfig(p, "https://127.0.0.1:6443", caPEM, certPEM, nil, "a") }},
		{"no token", func(p string) error { return WriteTokenKubeconfig(p, "https://127.0.0.1:6443", caPEM, "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kubeconfig")
			if err := tt.write(path); err == nil {
				t.Fatal("write succeeded, want an error")
			}
			if _, err := os.Stat(path); err == nil {
				t.Error("a file was written despite the error")
			}
		})
	}
}
