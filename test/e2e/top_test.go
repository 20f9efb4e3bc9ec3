package e2e

import (
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestKubectlTop checks `kubectl top nodes|pods` of every installed
// kubectl against the metrics API, fed by `skiff agent --runtime=sim`
// from its pods' usage annotations.
func TestKubectlTop(t *testing.T) {
	c := startCluster(t, nil)
	c.startNodes(t, framework.AgentOptions{Nodes: 1, NamePrefix: "top-"}, "top-0")
	k := framework.LatestKubectl(t)
	c.apply(t, k, "default", `apiVersion: v1
kind: Pod
metadata:
  name: busy
  labels: {app: busy}
  annotations: {sim.skiff.dev/cpu-usage: 250m, sim.skiff.dev/memory-usage: 64Mi}
spec:
  nodeName: top-0
  containers: [{name: c, image: `+imageA+`}]
`)
	// agents report every 15s
	poll(t, "kubectl top pods lists busy", ctrlTimeout, func() (bool, string) {
		r := c.s.Kubectl(k, "top", "pods", "-n", "default")
		row := rowNamed(tableRows(r.Stdout), "busy")
		return r.ExitCode == 0 && len(row) >= 3 && row[1] == "250m" && row[2] == "64Mi", r.String()
	})
	for _, kv := range framework.KubectlVersions() {
		t.Run("kubectl-"+kv.Version, func(t *testing.T) {
			out := c.s.MustKubectl(t, kv, "top", "pods", "-n", "default", "-l", "app=busy", "--containers")
			if !strings.Contains(out, "busy") || !strings.Contains(out, "250m") {
				t.Errorf("kubectl top pods --containers:\n%s", out)
			}
			rows := tableRows(c.s.MustKubectl(t, kv, "top", "nodes"))
			// NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
			if row := rowNamed(rows, "top-0"); len(row) < 5 || row[1] != "250m" || row[3] != "64Mi" {
				t.Errorf("kubectl top nodes: %v", rows)
			}
		})
	}
}
