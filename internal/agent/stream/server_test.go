package stream_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/agent/stream"
	"github.com/skiff-sh/skiff/internal/pki"
)

// TestAuthentication: only a client certificate of the cluster CA with the
// API server's common name gets in.
func TestAuthentication(t *testing.T) {
	ca, err := pki.EnsureCA(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.EnsureCA(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := stream.New(stream.Config{Listener: ln, ClientCA: ca.Pool(), Endpoint: "unix:///nonexistent.sock",
		PodLogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	cert := func(c *pki.CA, cn string) []tls.Certificate {
		certPEM, keyPEM, err := c.IssueClient(cn, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{kp}
	}
	for _, tc := range []struct {
		name     string
		certs    []tls.Certificate
		path     string
		wantCode int // 0: the TLS handshake fails
	}{
		{"no certificate", nil, "/healthz", http.StatusUnauthorized},
		{"no certificate, logs", nil, "/containerLogs/default/p/c", http.StatusUnauthorized},
		{"another identity of the cluster CA", cert(ca, "skiff-admin"), "/containerLogs/default/p/c", http.StatusForbidden},
		{"a node's certificate", cert(ca, "system:node:n1"), "/exec/default/p/c?command=sh", http.StatusForbidden},
		{"another CA", cert(other, stream.APIServerClientCN), "/healthz", 0},
		{"the API server", cert(ca, stream.APIServerClientCN), "/healthz", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, //nolint:gosec // self-signed
				Certificates: tc.certs}}, Timeout: 30 * time.Second}
			resp, err := c.Get("https://" + ln.Addr().String() + tc.path)
			if tc.wantCode == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %s, want a failed handshake", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode {
				t.Errorf("got %s (%s), want %d", resp.Status, body, tc.wantCode)
			}
		})
	}
}
