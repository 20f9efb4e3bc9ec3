package sim_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/sim"
	"github.com/skiff-sh/skiff/internal/server"
)

// startCluster runs a control plane and three simulated nodes.
func startCluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// not t.TempDir: see the cleanup below
	dir, err := os.MkdirTemp("", "skiff-sim-test-")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: log.With("side", "server")})
	if err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-srvDone:
		t.Fatalf("server stopped: %v", err)
	}
	cfg := srv.RestConfig()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client := kubernetes.NewForConfigOrDie(cfg)
	capacity, err := agent.Resources("4", "8Gi", "100Gi", 110)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := sim.New(sim.Config{Client: client, Nodes: 3, Capacity: capacity,
		Labels: map[string]string{"pool": "sim"}, InstanceType: "medium", Logger: log.With("side", "sim")})
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- nodes.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-simDone; err != nil {
			t.Errorf("sim nodes: %v", err)
		}
		// The control plane's shutdown can hang in the embedded etcd
		// client's watch (reported to the API server's owner); do not let
		// that hang this test, and keep the data dir if it is still in use.
		select {
		case <-srvDone:
			_ = os.RemoveAll(dir)
		case <-time.After(20 * time.Second):
			t.Logf("the control plane did not stop within 20s; leaving %s", dir)
		}
	})
	select {
	case <-nodes.Ready():
	case err := <-simDone:
		t.Fatalf("sim nodes stopped: %v", err)
	}
	return client
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// waitPod polls the pod until ok says yes.
func waitPod(t *testing.T, c kubernetes.Interface, name string, what string, ok func(*corev1.Pod, error) bool) *corev1.Pod {
	t.Helper()
	for i := 0; i < 600; i++ {
		p, err := c.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if ok(p, err) {
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	p, err := c.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	t.Fatalf("pod %s never %s: last seen %+v, %v", name, what, p.Status, err)
	return nil
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func TestSimNodesRunPods(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()

	// the nodes: registered, Ready, labelled, with leases
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("got %d nodes, want 3", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready = cond.Status == corev1.ConditionTrue && cond.Reason == "KubeletReady"
			}
		}
		if !ready {
			t.Errorf("node %s is not Ready: %+v", n.Name, n.Status.Conditions)
		}
		for k, v := range map[string]string{agent.LabelHostname: n.Name, "pool": "sim", agent.LabelInstanceType: "medium", agent.LabelOS: "linux"} {
			if n.Labels[k] != v {
				t.Errorf("node %s label %s = %q, want %q", n.Name, k, n.Labels[k], v)
			}
		}
		if got := n.Status.Allocatable.Memory().String(); got != "8Gi" {
			t.Errorf("node %s allocatable memory %s, want 8Gi", n.Name, got)
		}
		if n.Status.NodeInfo.KubeletVersion != agent.KubeletVersion {
			t.Errorf("node %s kubelet version %q", n.Name, n.Status.NodeInfo.KubeletVersion)
		}
		l, err := c.CoordinationV1().Leases(agent.NodeLeaseNamespace).Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("lease of %s: %v", n.Name, err)
		} else if *l.Spec.HolderIdentity != n.Name || *l.Spec.LeaseDurationSeconds != 40 || len(l.OwnerReferences) != 1 {
			t.Errorf("lease of %s: %+v", n.Name, l.Spec)
		}
	}

	// what kubectl get nodes prints: STATUS Ready and the kubelet version
	raw, err := c.CoreV1().RESTClient().Get().Resource("nodes").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, d := range table.ColumnDefinitions {
		col[d.Name] = i
	}
	if len(table.Rows) != 3 {
		t.Fatalf("table rows %d", len(table.Rows))
	}
	for _, r := range table.Rows {
		if r.Cells[col["Status"]] != "Ready" || r.Cells[col["Version"]] != agent.KubeletVersion {
			t.Errorf("kubectl get nodes row %v (columns %v)", r.Cells, col)
		}
	}

	// a pod bound to sim-1 runs with an IP from sim-1's range
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "sim-1", Containers: []corev1.Container{{Name: "web", Image: "skiff.local/busybox:latest",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := waitPod(t, c, "web", "Running and Ready", func(p *corev1.Pod, err error) bool {
		if err != nil || p.Status.Phase != corev1.PodRunning {
			return false
		}
		r := condition(p, corev1.PodReady)
		return r != nil && r.Status == corev1.ConditionTrue
	})
	if js, err := json.MarshalIndent(running.Status, "", "  "); err == nil {
		t.Logf("status of a running pod:\n%s", js)
	}
	ip, err := netip.ParseAddr(running.Status.PodIP)
	if err != nil || !netip.MustParsePrefix("10.244.1.0/24").Contains(ip) {
		t.Errorf("pod IP %q is not in sim-1's range 10.244.1.0/24", running.Status.PodIP)
	}
	if len(running.Status.PodIPs) != 1 || running.Status.PodIPs[0].IP != running.Status.PodIP {
		t.Errorf("podIPs %v", running.Status.PodIPs)
	}
	if running.Status.HostIP != sim.NodeIP(1).String() || running.Status.StartTime == nil || running.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("hostIP %q startTime %v qos %q", running.Status.HostIP, running.Status.StartTime, running.Status.QOSClass)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		if cond := condition(running, ct); cond == nil || cond.Status != corev1.ConditionTrue || cond.LastTransitionTime.IsZero() {
			t.Errorf("condition %s: %+v", ct, cond)
		}
	}
	if len(running.Status.ContainerStatuses) != 1 {
		t.Fatalf("container statuses %+v", running.Status.ContainerStatuses)
	}
	cs := running.Status.ContainerStatuses[0]
	if !cs.Ready || cs.Started == nil || !*cs.Started || cs.State.Running == nil || cs.RestartCount != 0 ||
		len(cs.ContainerID) < len("sim://")+64 || cs.ContainerID[:6] != "sim://" || cs.ImageID == "" || cs.Image != "skiff.local/busybox:latest" {
		t.Errorf("container status %+v", cs)
	}

	// graceful deletion: the agent stops the pod and deletes it for good
	if err := c.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, c, "web", "deleted", func(_ *corev1.Pod, err error) bool { return apierrors.IsNotFound(err) })

	// a pod whose container exits with 0 and restartPolicy Never succeeds
	job := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "default",
			Annotations: map[string]string{sim.AnnotationExitAfter: "1s"}},
		Spec: corev1.PodSpec{NodeName: "sim-2", RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "work", Image: "skiff.local/busybox:latest"}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := waitPod(t, c, "job", "Succeeded", func(p *corev1.Pod, err error) bool { return err == nil && p.Status.Phase == corev1.PodSucceeded })
	if term := done.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 0 || term.Reason != "Completed" {
		t.Errorf("terminated state %+v", done.Status.ContainerStatuses[0].State)
	}
	if r := condition(done, corev1.PodReady); r == nil || r.Status != corev1.ConditionFalse || r.Reason != "PodCompleted" {
		t.Errorf("Ready condition of a completed pod: %+v", r)
	}
}
