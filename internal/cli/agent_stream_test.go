package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-sh/skiff/internal/pki"
)

func TestAgentClusterCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.EnsureCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := pki.WriteTokenKubeconfig(kubeconfig, "https://127.0.0.1:6443", ca.CertPEM(), "abcdef.0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	noCA := filepath.Join(dir, "noca")
	insecure := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}\n" +
		"users:\n- name: u\n  user: {token: abcdef.0123456789abcdef}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
	if err := os.WriteFile(noCA, []byte(insecure), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		f     agentFlags
		usage bool // a usage error (no CA given)
	}{
		{"--ca-file", agentFlags{caFile: caFile}, false},
		{"kubeconfig", agentFlags{kubeconfig: kubeconfig}, false},
		{"kubeconfig without a CA", agentFlags{kubeconfig: noCA}, true},
		{"--insecure-skip-tls-verify", agentFlags{insecure: true}, true},
	} {
		pool, err := tc.f.clusterCA()
		var ue usageError
		if tc.usage {
			if !errors.As(err, &ue) {
				t.Errorf("%s: %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil || pool == nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
