package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestSchedulerFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		usage   bool
		wantErr string
	}{
		{"no kubeconfig", nil, true, "--kubeconfig is required"},
		{"bad log level", []string{"--kubeconfig", "k", "--log-level", "loud"}, true, "--log-level"},
		{"unreadable kubeconfig", []string{"--kubeconfig", "/nonexistent/kubeconfig"}, false, "/nonexistent/kubeconfig"},
		{"unknown flag", []string{"--nodes", "3"}, true, "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runScheduler(context.Background(), &env{stdout: &out, stderr: &errOut}, tc.args)
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

func TestBenchSchedulerRejectsBadWorkload(t *testing.T) {
	var out, errOut bytes.Buffer
	_, err := benchScheduler(context.Background(), &env{stdout: &out, stderr: &errOut}, []string{"--workload", "chaos"})
	if err == nil || !strings.Contains(err.Error(), `unknown workload "chaos"`) {
		t.Fatalf("got %v, want an unknown-workload error", err)
	}
}
