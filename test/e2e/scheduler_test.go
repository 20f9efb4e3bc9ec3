package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// schedulerNodes are plain Node objects (no agent): their status is
// written at create, and the test renews their Leases so that node
// lifecycle keeps them Ready.
//
//	ssd-a     disk=ssd, zone a, 2 CPU
//	hdd-b     disk=hdd, zone b, 2 CPU
//	gpu-c     zone c, 4 CPU, 2 nvidia.com/gpu, tainted dedicated=gpu:NoSchedule
//	small-a   zone a, 500m CPU
//	cordon-b  zone b, 4 CPU, cordoned
const schedulerNodes = `
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: ssd-a, labels: {disk: ssd, kubernetes.io/hostname: ssd-a, topology.kubernetes.io/zone: a}},
   status: {capacity: {cpu: "2", memory: 8Gi, pods: "110"}, allocatable: {cpu: "2", memory: 8Gi, pods: "110"}, conditions: [{type: Ready, status: "True", reason: KubeletReady}]}}
- {apiVersion: v1, kind: Node, metadata: {name: hdd-b, labels: {disk: hdd, kubernetes.io/hostname: hdd-b, topology.kubernetes.io/zone: b}},
   status: {capacity: {cpu: "2", memory: 8Gi, pods: "110"}, allocatable: {cpu: "2", memory: 8Gi, pods: "110"}, conditions: [{type: Ready, status: "True", reason: KubeletReady}]}}
- {apiVersion: v1, kind: Node, metadata: {name: gpu-c, labels: {kubernetes.io/hostname: gpu-c, topology.kubernetes.io/zone: c}},
   spec: {taints: [{key: dedicated, value: gpu, effect: NoSchedule}]},
   status: {capacity: {cpu: "4", memory: 8Gi, pods: "110", nvidia.com/gpu: "2"}, allocatable: {cpu: "4", memory: 8Gi, pods: "110", nvidia.com/gpu: "2"}, conditions: [{type: Ready, status: "True", reason: KubeletReady}]}}
- {apiVersion: v1, kind: Node, metadata: {name: small-a, labels: {kubernetes.io/hostname: small-a, topology.kubernetes.io/zone: a}},
   status: {capacity: {cpu: 500m, memory: 8Gi, pods: "110"}, allocatable: {cpu: 500m, memory: 8Gi, pods: "110"}, conditions: [{type: Ready, status: "True", reason: KubeletReady}]}}
- {apiVersion: v1, kind: Node, metadata: {name: cordon-b, labels: {kubernetes.io/hostname: cordon-b, topology.kubernetes.io/zone: b}},
   spec: {unschedulable: true},
   status: {capacity: {cpu: "4", memory: 8Gi, pods: "110"}, allocatable: {cpu: "4", memory: 8Gi, pods: "110"}, conditions: [{type: Ready, status: "True", reason: KubeletReady}]}}
`

// renewLeases plays the heartbeats of the plain nodes until ctx ends.
func renewLeases(ctx context.Context, t *testing.T, cs kubernetes.Interface, nodes ...string) {
	leases := cs.CoordinationV1().Leases("kube-node-lease")
	for ctx.Err() == nil {
		for _, n := range nodes {
			now := metav1.NewMicroTime(time.Now())
			l, err := leases.Get(ctx, n, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				secs := int32(40)
				_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: n},
					Spec: coordinationv1.LeaseSpec{HolderIdentity: &n, LeaseDurationSeconds: &secs, RenewTime: &now}}, metav1.CreateOptions{})
			case err == nil:
				l.Spec.RenewTime = &now
				_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			}
			if err != nil && ctx.Err() == nil {
				t.Logf("renew lease %s: %v", n, err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// podYAML is a pod of the scheduler scenario with extra spec lines
// (indented by four spaces under spec).
func podYAML(name, labels, cpu string, spec ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {%s}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: skiff.local/busybox:latest
    resources: {requests: {cpu: %s}}
%s
`, name, labels, cpu, strings.Join(spec, "\n"))
}

// TestSchedulerPlacement shows each placement rule through stock kubectl
// against plain Node objects: the NODE column of `get pods -o wide`, and
// `describe` for pods that fit nowhere.
func TestSchedulerPlacement(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	k := framework.LatestKubectl(t)
	cs := s.Clientset(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.MustKubectl(t, k, "apply", "-f", writeFile(t, "nodes.yaml", schedulerNodes, 0o600))
	go renewLeases(ctx, t, cs, "ssd-a", "hdd-b", "gpu-c", "small-a", "cordon-b")
	poll(t, "5 nodes Ready in kubectl get nodes", time.Minute, func() (bool, string) {
		r := s.Kubectl(k, "get", "nodes", "--no-headers")
		n := 0
		for _, row := range tableRows(r.Stdout) {
			if len(row) > 1 && strings.HasPrefix(row[1], "Ready") {
				n++
			}
		}
		return n == 5, r.String()
	})

	ns := nsName("sched")
	s.MustKubectl(t, k, "create", "namespace", ns)
	apply := func(t *testing.T, docs ...string) {
		t.Helper()
		r := s.KubectlWith(k, framework.Cmd{Stdin: strings.Join(docs, "\n---\n")}, "apply", "-n", ns, "-f", "-")
		if r.ExitCode != 0 {
			t.Fatalf("apply: %s", r)
		}
	}
	// nodeOf polls `kubectl get pods -o wide` until the pod has a node.
	nodeOf := func(t *testing.T, pod string) string {
		t.Helper()
		var node string
		poll(t, pod+" bound", time.Minute, func() (bool, string) {
			r := s.Kubectl(k, "get", "pod", pod, "-n", ns, "-o", "wide", "--no-headers")
			row := tableRows(r.Stdout)
			// NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE READINESS-GATES
			if r.ExitCode != 0 || len(row) != 1 || len(row[0]) < 7 {
				return false, r.String()
			}
			node = row[0][6]
			return node != "<none>", r.Stdout
		})
		return node
	}
	expectNode := func(t *testing.T, pod string, want ...string) string {
		t.Helper()
		got := nodeOf(t, pod)
		for _, w := range want {
			if got == w {
				return got
			}
		}
		t.Fatalf("%s on %s, want one of %v", pod, got, want)
		return ""
	}
	// unschedulable waits for FailedScheduling in describe and returns it.
	unschedulable := func(t *testing.T, pod string) string {
		t.Helper()
		var out string
		poll(t, pod+" FailedScheduling", time.Minute, func() (bool, string) {
			r := s.Kubectl(k, "describe", "pod", pod, "-n", ns)
			out = r.Stdout
			return strings.Contains(out, "FailedScheduling") && strings.Contains(out, "nodes are available"), r.String()
		})
		return squash(out)
	}

	t.Run("nodeSelector", func(t *testing.T) {
		apply(t, podYAML("sel-ssd", "app: sel", "100m", "  nodeSelector: {disk: ssd}"))
		expectNode(t, "sel-ssd", "ssd-a")
	})
	t.Run("required node affinity", func(t *testing.T) {
		apply(t, podYAML("aff-hdd", "app: aff", "100m",
			"  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [hdd]}]}]}}}"))
		expectNode(t, "aff-hdd", "hdd-b")
	})
	t.Run("preferred node affinity", func(t *testing.T) {
		apply(t, podYAML("pref-ssd", "app: pref", "100m",
			"  affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}]}}"))
		expectNode(t, "pref-ssd", "ssd-a")
	})
	t.Run("taint tolerated with an extended resource", func(t *testing.T) {
		apply(t, `apiVersion: v1
kind: Pod
metadata: {name: gpu, labels: {app: gpu}}
spec:
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  containers:
  - name: c
    image: skiff.local/busybox:latest
    resources: {requests: {cpu: 100m}, limits: {nvidia.com/gpu: "1"}}`)
		expectNode(t, "gpu", "gpu-c")
	})
	t.Run("untolerated taint and cordon", func(t *testing.T) {
		// Room only on the tainted and the cordoned node.
		apply(t, podYAML("big", "app: big", "3"))
		out := unschedulable(t, "big")
		mustContain(t, "describe big", out,
			"0/5 nodes are available:",
			"1 node(s) had untolerated taint {dedicated: gpu}",
			"1 node(s) were unschedulable",
			"3 Insufficient cpu")
		row := s.MustKubectl(t, k, "get", "pod", "big", "-n", ns, "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}")
		if row != "Unschedulable" {
			t.Errorf("PodScheduled reason %q, want Unschedulable", row)
		}
		// Uncordoning the node makes room: the queue retries the pod.
		s.MustKubectl(t, k, "uncordon", "cordon-b")
		expectNode(t, "big", "cordon-b")
		s.MustKubectl(t, k, "cordon", "cordon-b")
	})
	t.Run("pod anti-affinity", func(t *testing.T) {
		anti := "  affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: anti}}}]}}"
		sel := "  nodeSelector: {topology.kubernetes.io/zone: a}"
		apply(t, podYAML("anti-1", "app: anti", "100m", anti, sel), podYAML("anti-2", "app: anti", "100m", anti, sel))
		n1, n2 := expectNode(t, "anti-1", "ssd-a", "small-a"), expectNode(t, "anti-2", "ssd-a", "small-a")
		if n1 == n2 {
			t.Fatalf("anti-affinity pods share %s", n1)
		}
		apply(t, podYAML("anti-3", "app: anti", "100m", anti, sel))
		mustContain(t, "describe anti-3", unschedulable(t, "anti-3"),
			"0/5 nodes are available:", "2 node(s) didn't match pod anti-affinity rules")
	})
	t.Run("pod affinity", func(t *testing.T) {
		apply(t, podYAML("with-sel", "app: with", "100m",
			"  affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: aff}}}]}}"))
		expectNode(t, "with-sel", "hdd-b") // where aff-hdd runs
	})
	t.Run("topology spread", func(t *testing.T) {
		var docs []string
		for i := range 2 {
			docs = append(docs, podYAML(fmt.Sprintf("spread-%d", i), "app: spread", "100m",
				"  topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}]",
				"  tolerations: [{key: dedicated, operator: Exists}]"))
		}
		apply(t, docs...)
		zone := map[string]string{"ssd-a": "a", "small-a": "a", "hdd-b": "b", "gpu-c": "c"}
		z0, z1 := zone[nodeOf(t, "spread-0")], zone[nodeOf(t, "spread-1")]
		if z0 == z1 {
			t.Fatalf("spread pods both in zone %q", z0)
		}
	})
	t.Run("host port conflict", func(t *testing.T) {
		port := func(name string) string {
			return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `, labels: {app: hp}}
spec:
  nodeSelector: {disk: ssd}
  containers:
  - name: c
    image: skiff.local/busybox:latest
    ports: [{containerPort: 80, hostPort: 8080}]`
		}
		apply(t, port("hp-1"))
		expectNode(t, "hp-1", "ssd-a")
		apply(t, port("hp-2"))
		mustContain(t, "describe hp-2", unschedulable(t, "hp-2"), "1 node(s) didn't have free ports for the requested pod ports")
	})
	t.Run("priority preemption", func(t *testing.T) {
		apply(t, `apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: e2e-high}
value: 1000000`)
		// small-a has 500m: a low pod takes 400m of it.
		apply(t, podYAML("low", "app: low", "400m", "  nodeSelector: {kubernetes.io/hostname: small-a}"))
		expectNode(t, "low", "small-a")
		apply(t, podYAML("high", "app: high", "400m", "  nodeSelector: {kubernetes.io/hostname: small-a}", "  priorityClassName: e2e-high"))
		// The victim is deleted gracefully; no kubelet runs, so the test
		// finishes its deletion as the node's kubelet would.
		poll(t, "low marked for deletion and high nominated", time.Minute, func() (bool, string) {
			low := s.Kubectl(k, "get", "pod", "low", "-n", ns, "-o", "jsonpath={.metadata.deletionTimestamp}")
			nom := s.Kubectl(k, "get", "pod", "high", "-n", ns, "-o", "jsonpath={.status.nominatedNodeName}")
			if low.Stdout != "" && nom.Stdout == "small-a" {
				return true, ""
			}
			return false, low.String() + nom.String() + s.Kubectl(k, "describe", "pod", "high", "-n", ns).Stdout
		})
		mustContain(t, "describe low", squash(s.MustKubectl(t, k, "describe", "pod", "low", "-n", ns)), "Preempted")
		s.MustKubectl(t, k, "delete", "pod", "low", "-n", ns, "--grace-period=0", "--force")
		expectNode(t, "high", "small-a")
	})
}
