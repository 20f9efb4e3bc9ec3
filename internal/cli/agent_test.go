package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		usage   bool
		wantErr string
	}{
		{"cri with a bad kubeconfig", []string{"--runtime=cri", "--kubeconfig", "/nonexistent"}, false, "read kubeconfig"},
		{"cri with many nodes", []string{"--runtime=cri", "--nodes", "3", "--kubeconfig", "KUBECONFIG"}, true, "--nodes is for --runtime=sim"},
		{"cri with a bad cluster DNS", []string{"--runtime=cri", "--kubeconfig", "KUBECONFIG", "--cluster-dns", "10.43.0.10,dns"}, true, "--cluster-dns"},
		{"unknown runtime", []string{"--runtime=docker"}, true, "use cri or sim"},
		{"no server", []string{"--runtime=sim"}, true, "give --server and --token"},
		{"server without CA", []string{"--runtime=sim", "--server", "https://127.0.0.1:6443", "--token", "abcdef.0123456789abcdef"}, true, "--ca-file"},
		{"both kubeconfig and token", []string{"--runtime=sim", "--kubeconfig", "k", "--server", "https://x", "--token", "t"}, true, "not both"},
		{"bad size", []string{"--runtime=sim", "--size", "huge"}, true, "--size"},
		{"bad taint", []string{"--runtime=sim", "--register-with-taints", "a=b"}, true, "--register-with-taints"},
		{"bad label", []string{"--runtime=sim", "--node-labels", "novalue"}, true, "--node-labels"},
		{"no nodes", []string{"--runtime=sim", "--nodes", "0"}, true, "--nodes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "KUBECONFIG" {
					args[i] = writeKubeconfig(t)
				}
			}
			err := runAgent(context.Background(), &env{stdout: &out, stderr: &errOut}, args)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			}
			var ue usageError
			if errors.As(err, &ue) != tc.usage {
				t.Errorf("usage error = %v, want %v (%v)", errors.As(err, &ue), tc.usage, err)
			}
		})
	}
}

func TestAgentCapacity(t *testing.T) {
	f := agentFlags{size: "large", memory: "20Gi", maxPods: 50}
	res, err := f.capacity()
	if err != nil {
		t.Fatal(err)
	}
	if res.Cpu().String() != "8" || res.Memory().String() != "20Gi" || res.StorageEphemeral().String() != "200Gi" || res.Pods().Value() != 50 {
		t.Errorf("capacity %v", res)
	}
	cfg, err := (&agentFlags{server: "https://127.0.0.1:6443", token: "t", insecure: true, nodes: 1000}).restConfig(quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != 300 || cfg.Burst != 600 || !cfg.Insecure || cfg.BearerToken != "t" {
		t.Errorf("rest config qps %v burst %d insecure %v", cfg.QPS, cfg.Burst, cfg.Insecure)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeKubeconfig writes a kubeconfig of a server that is never reached.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	const conf = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
