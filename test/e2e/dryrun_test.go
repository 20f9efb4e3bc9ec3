package e2e

import (
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestServerDryRun checks that --dry-run=server validates and answers but
// stores nothing.
func TestServerDryRun(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	k := framework.LatestKubectl(t)
	const ns = "dry-run"
	s.MustKubectl(t, k, "create", "namespace", ns)
	empty := func(t *testing.T, what string) {
		t.Helper()
		out := s.MustKubectl(t, k, "get", "deploy,cm,svc", "-n", ns, "-o", "name")
		for _, l := range lines(out) {
			if l != "configmap/kube-root-ca.crt" {
				t.Errorf("%s: %s was stored", what, l)
			}
		}
	}

	out := s.MustKubectl(t, k, "create", "--dry-run=server", "-f", testdata("app.yaml"), "-n", ns)
	sameLines(t, "create --dry-run=server", out,
		"deployment.apps/web created (server dry run)", "configmap/web-config created (server dry run)", "service/web created (server dry run)")
	empty(t, "create --dry-run=server")

	// dry run still validates
	r := s.Kubectl(k, "create", "--dry-run=server", "-f", testdata("negative-replicas.yaml"), "-n", ns)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "spec.replicas: Invalid value: -1") {
		t.Errorf("invalid object with --dry-run=server: %s", r)
	}

	out = s.MustKubectl(t, k, "apply", "--dry-run=server", "-f", testdata("apply-v1.yaml"), "-n", ns)
	sameLines(t, "apply --dry-run=server", out, "deployment.apps/api created (server dry run)", "configmap/api-config created (server dry run)")
	empty(t, "apply --dry-run=server")

	// a dry-run change of an existing object leaves it as it was (its
	// generation, not its resourceVersion: the deployment controller may
	// write the status in between)
	s.MustKubectl(t, k, "apply", "-f", testdata("apply-v1.yaml"), "-n", ns)
	gen := s.MustKubectl(t, k, "get", "deploy", "api", "-n", ns, "-o", "jsonpath={.metadata.generation}")
	out = s.MustKubectl(t, k, "apply", "--dry-run=server", "-f", testdata("apply-v2.yaml"), "-n", ns)
	sameLines(t, "apply --dry-run=server of a change", out,
		"deployment.apps/api configured (server dry run)", "configmap/api-config configured (server dry run)")
	got := s.MustKubectl(t, k, "get", "deploy", "api", "-n", ns, "-o", "jsonpath={.metadata.generation} {.spec.replicas}")
	if got != gen+" 1" {
		t.Errorf("after a dry-run apply: %q, want %q", got, gen+" 1")
	}
	if mode := s.MustKubectl(t, k, "get", "cm", "api-config", "-n", ns, "-o", "jsonpath={.data.mode}"); mode != "blue" {
		t.Errorf("after a dry-run apply: mode %q, want blue", mode)
	}
	// dry-run delete keeps it
	out = s.MustKubectl(t, k, "delete", "--dry-run=server", "deploy", "api", "-n", ns)
	mustContain(t, "delete --dry-run=server", out, `deployment.apps "api" deleted (server dry run)`)
	s.MustKubectl(t, k, "get", "deploy", "api", "-n", ns)
}
