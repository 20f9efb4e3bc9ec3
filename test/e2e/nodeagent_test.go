package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/agent/stream/streamtest"
	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/lab"
	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// nodeAgentNS is TestNodeAgent's namespace.
const nodeAgentNS = "nodeagent"

// TestNodeAgent checks the node agent (skiff's kubelet on containerd)
// with stock kubectl in a two-node lab, on pods pinned to node 1 (the node
// that does not run the API server, so every stream crosses the lab
// network): kubectl's streaming commands, a liveness probe that restarts
// its container, readiness flipping Ready, OOMKilled, deletion within the
// grace period (a pod that ignores SIGTERM, a preStop hook), and a busybox
// httpd serving a pod on the other node. All pods are made at the start
// so that they run while the subtests check them one after another.
func TestNodeAgent(t *testing.T) {
	k := framework.LatestKubectl(t)
	var kubectls []framework.Kubectl
	for _, v := range framework.KubectlVersions() {
		if v.Version == "1.27" || v == k {
			kubectls = append(kubectls, v)
		}
	}
	start := time.Now()
	lab := env.StartLab(t, 2)
	lab.BuildImages(t)
	t.Logf("lab of 2 nodes Ready, images imported in %s", time.Since(start).Round(time.Millisecond))
	cs, err := lab.Client()
	if err != nil {
		t.Fatal(err)
	}
	st := lab.State()
	node := st.Nodes[1]
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nodeAgentNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hookDir := t.TempDir()
	start = time.Now()
	for _, p := range nodeAgentPods(hookDir) {
		p.Spec.NodeName = node.Name
		if _, err := cs.CoreV1().Pods(nodeAgentNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"logger", "two", "stdin", "ts"} {
		waitPod(t, cs, name, "Running and Ready", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && podReady(p) })
	}
	t.Logf("streaming pods Ready on %s %s after they were created", node.Name, time.Since(start).Round(time.Millisecond))

	t.Run("Streaming", func(t *testing.T) {
		// logs -f below wants lines beyond the first
		waitPod(t, cs, "logger", "3 s old", func(p *corev1.Pod) bool {
			return p.Status.StartTime != nil && time.Since(p.Status.StartTime.Time) > 3*time.Second
		})
		for _, kc := range kubectls {
			sk := streamtest.Kubectl{Bin: kc.Path, Kubeconfig: lab.Kubeconfig(), Namespace: nodeAgentNS}
			t.Run("kubectl."+kc.Version, func(t *testing.T) {
				t.Run("Logs", func(t *testing.T) { streamtest.CheckLogs(t, sk, "logger") })
				t.Run("MultiContainer", func(t *testing.T) { streamtest.CheckMultiContainer(t, sk, "two") })
				t.Run("Exec", func(t *testing.T) { streamtest.CheckExec(t, sk, "logger") })
				t.Run("ExecTTY", func(t *testing.T) { streamtest.CheckExecTTY(t, sk, "logger") })
				t.Run("Attach", func(t *testing.T) { streamtest.CheckAttach(t, sk, "logger") })
				t.Run("AttachStdin", func(t *testing.T) { streamtest.CheckAttachStdin(t, sk, "stdin") })
				t.Run("PortForward", func(t *testing.T) { streamtest.CheckPortForward(t, sk, "ts", 8080, "/healthz") })
				t.Run("Cp", func(t *testing.T) { streamtest.CheckCp(t, sk, "logger") })
				if kc.Version >= "1.31" {
					t.Run("WebSocket", func(t *testing.T) { streamtest.CheckNoFallback(t, sk, "logger", "ts", 8080) })
				}
			})
		}
		waitPod(t, cs, "restarter", "restarted", func(p *corev1.Pod) bool {
			s := p.Status.ContainerStatuses
			return len(s) == 1 && s[0].RestartCount >= 1 && s[0].LastTerminationState.Terminated != nil
		})
		for _, kc := range kubectls {
			sk := streamtest.Kubectl{Bin: kc.Path, Kubeconfig: lab.Kubeconfig(), Namespace: nodeAgentNS}
			t.Run("kubectl."+kc.Version+"/Previous", func(t *testing.T) { streamtest.CheckPrevious(t, sk, "restarter") })
		}
	})

	t.Run("LivenessRestarts", func(t *testing.T) {
		p := waitPod(t, cs, "liveness", "restarted by its liveness probe", func(p *corev1.Pod) bool {
			s := p.Status.ContainerStatuses
			return len(s) == 1 && s[0].RestartCount >= 1 && s[0].LastTerminationState.Terminated != nil
		})
		t.Logf("liveness: restartCount %d, lastState %+v", p.Status.ContainerStatuses[0].RestartCount, *p.Status.ContainerStatuses[0].LastTerminationState.Terminated)
		// kubectl describe shows the events that say why
		var out string
		poll(t, "kubectl describe pod liveness showing the probe's events", 60*time.Second, func() (bool, string) {
			out = lab.MustKubectl(t, k, "describe", "pod", "-n", nodeAgentNS, "liveness")
			return strings.Contains(out, "Liveness probe failed: HTTP probe failed with statuscode: 500") &&
				strings.Contains(out, "Container liveness failed liveness probe, will be restarted"), out
		})
		events := lab.MustKubectl(t, k, "get", "events", "-n", nodeAgentNS, "--field-selector", "involvedObject.name=liveness")
		t.Logf("events of pod liveness:\n%s", events)
		for _, reason := range []string{"Unhealthy", "Killing", "Started"} {
			if !strings.Contains(events, reason) {
				t.Errorf("no %s event for pod liveness", reason)
			}
		}
		if p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ContainerID == p.Status.ContainerStatuses[0].ContainerID {
			t.Errorf("the restarted container has the ID of the killed one: %s", p.Status.ContainerStatuses[0].ContainerID)
		}
	})

	t.Run("ReadinessFlips", func(t *testing.T) {
		waitPod(t, cs, "ready", "Ready", podReady)
		lab.MustKubectl(t, k, "exec", "-n", nodeAgentNS, "ready", "--", "touch", "/tmp/fail")
		lab.MustKubectl(t, k, "wait", "-n", nodeAgentNS, "--for=condition=Ready=false", "pod/ready", "--timeout=60s")
		p := waitPod(t, cs, "ready", "not Ready", func(p *corev1.Pod) bool { return !podReady(p) })
		if s := p.Status.ContainerStatuses; len(s) != 1 || s[0].Ready || s[0].RestartCount != 0 || s[0].State.Running == nil {
			t.Errorf("failing readiness: container status %+v, want running, not ready, no restart", s)
		}
		if !hasCondition(p, corev1.ContainersReady, corev1.ConditionFalse) {
			t.Errorf("failing readiness: conditions %+v, want ContainersReady False", p.Status.Conditions)
		}
		lab.MustKubectl(t, k, "exec", "-n", nodeAgentNS, "ready", "--", "rm", "/tmp/fail")
		lab.MustKubectl(t, k, "wait", "-n", nodeAgentNS, "--for=condition=Ready", "pod/ready", "--timeout=60s")
		p = waitPod(t, cs, "ready", "Ready again", podReady)
		if s := p.Status.ContainerStatuses; len(s) != 1 || !s[0].Ready || s[0].RestartCount != 0 {
			t.Errorf("recovered readiness: container status %+v, want ready, no restart", s)
		}
	})

	t.Run("OOMKilled", func(t *testing.T) {
		p := waitPod(t, cs, "oom-never", "finished", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
		})
		if term := p.Status.ContainerStatuses[0].State.Terminated; p.Status.Phase != corev1.PodFailed || term == nil || term.Reason != "OOMKilled" {
			t.Errorf("oom-never: phase %s, state %+v; want Failed, terminated with reason OOMKilled", p.Status.Phase, p.Status.ContainerStatuses[0].State)
		}
		if row := rowNamed(tableRows(lab.MustKubectl(t, k, "get", "pod", "-n", nodeAgentNS, "oom-never")), "oom-never"); len(row) < 3 || row[2] != "OOMKilled" {
			t.Errorf("kubectl get pod oom-never: %q, want STATUS OOMKilled", row)
		}
		p = waitPod(t, cs, "oom-always", "restarted after an OOM kill", func(p *corev1.Pod) bool {
			s := p.Status.ContainerStatuses
			return len(s) == 1 && s[0].RestartCount >= 1 && s[0].LastTerminationState.Terminated != nil
		})
		if last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; last.Reason != "OOMKilled" || last.ExitCode != 137 {
			t.Errorf("oom-always: lastState %+v, want terminated with reason OOMKilled, exit code 137", *last)
		}
	})

	t.Run("DeleteIgnoringSIGTERM", func(t *testing.T) {
		p := waitPod(t, cs, "stubborn", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		last := deleteAndWaitGone(t, cs, lab, k, node, p)
		// the agent's last word on the pod: its container was killed
		// (SIGKILL) once the grace period was over
		if s := last.Status.ContainerStatuses; len(s) != 1 || s[0].State.Terminated == nil || s[0].State.Terminated.ExitCode != 137 {
			t.Errorf("stubborn's last status: %+v, want terminated with exit code 137 (SIGKILL)", s)
		}
	})

	t.Run("PreStopHook", func(t *testing.T) {
		p := waitPod(t, cs, "prestop", "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		deleteAndWaitGone(t, cs, lab, k, node, p)
		b, err := os.ReadFile(filepath.Join(hookDir, "log"))
		if err != nil || string(b) != "prestop\nTERM\n" {
			t.Errorf("the hostPath log of pod prestop: %q (%v), want the preStop hook's line, then the SIGTERM trap's", b, err)
		}
	})

	t.Run("BusyboxHTTPAcrossNodes", func(t *testing.T) {
		p := waitPod(t, cs, "httpd", "Ready", podReady)
		client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "httpclient"}, Spec: corev1.PodSpec{
			NodeName: st.Nodes[0].Name, RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{busyboxContainer("client", fmt.Sprintf(
				`r=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 10 %s 8080); echo "$r"; echo "$r" | grep -q '^HTTP/1.[01] 200' && echo "$r" | grep -q '^hello from busybox httpd$'`,
				p.Status.PodIP))}}}
		if _, err := cs.CoreV1().Pods(nodeAgentNS).Create(ctx, client, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		phase := waitPhase(t, lab, k, nodeAgentNS, "httpclient", 120*time.Second)
		logs := lab.Kubectl(k, "logs", "-n", nodeAgentNS, "httpclient")
		if phase != "Succeeded" {
			t.Fatalf("client pod on %s getting http://%s:8080/ from busybox httpd on %s: phase %s, want Succeeded; its log:\n%s",
				st.Nodes[0].Name, p.Status.PodIP, node.Name, phase, logs.Stdout)
		}
		t.Logf("client on %s got from busybox httpd on %s (%s):\n%s", st.Nodes[0].Name, node.Name, p.Status.PodIP, logs.Stdout)
	})
}

// nodeAgentPods are TestNodeAgent's pods (their node not set yet); the
// preStop hook's pod writes into hookDir.
func nodeAgentPods(hookDir string) []*corev1.Pod {
	pods := []*corev1.Pod{streamtest.LoggerPod("logger", image.BusyboxName), streamtest.RestartingPod("restarter", image.BusyboxName),
		streamtest.TwoContainerPod("two", image.BusyboxName), streamtest.StdinPod("stdin", image.BusyboxName)}
	healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}
	testserver := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: image.TestserverName, ImagePullPolicy: corev1.PullNever,
			Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: healthz, PeriodSeconds: 1, FailureThreshold: 1}}
	}
	grace := func(s int64) *int64 { return &s }
	// liveness fails 4 s after the start: killed and restarted
	live := testserver("liveness")
	live.Env = []corev1.EnvVar{{Name: "FAIL_HEALTHZ_AFTER", Value: "4s"}}
	live.ReadinessProbe = nil
	live.LivenessProbe = &corev1.Probe{ProbeHandler: healthz, PeriodSeconds: 1, FailureThreshold: 2}
	// the shell holds 128 MiB, four times its limit
	hog := busyboxContainer("hog", `x=$(head -c 128m /dev/zero | tr '\0' a); echo survived ${#x}`)
	hog.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
	prestop := busyboxContainer("app", `trap 'echo TERM >> /out/log; exit 0' TERM; while :; do sleep 1; done`)
	prestop.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	prestop.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
		Command: []string{"sh", "-c", "echo prestop >> /out/log"}}}}
	dir := corev1.HostPathDirectory
	httpd := busyboxContainer("httpd", `mkdir -p /www && echo hello from busybox httpd > /www/index.html && exec httpd -f -p 8080 -h /www`)
	httpd.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	return append(pods,
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ts"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{testserver("ts")}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "liveness"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: grace(1),
			Containers: []corev1.Container{live}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ready"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: grace(1),
			Containers: []corev1.Container{testserver("ready")}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oom-never"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{hog}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oom-always"}, Spec: corev1.PodSpec{Containers: []corev1.Container{hog}}},
		// sh as PID 1 ignoring SIGTERM: only the SIGKILL after the grace
		// period stops it
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: grace(5),
			Containers: []corev1.Container{busyboxContainer("stubborn", `trap '' TERM; while :; do sleep 1; done`)}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "prestop"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: grace(10),
			Volumes:    []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hookDir, Type: &dir}}}},
			Containers: []corev1.Container{prestop}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "httpd"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{httpd}}},
	)
}

// busyboxContainer runs script with sh in the busybox image.
func busyboxContainer(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: image.BusyboxName, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", script}}
}

// waitPod polls pod name of TestNodeAgent's namespace until ok (at most
// two minutes) and returns it.
func waitPod(t *testing.T, cs kubernetes.Interface, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	poll(t, "pod "+name+" "+what, 2*time.Minute, func() (bool, string) {
		var err error
		p, err = cs.CoreV1().Pods(nodeAgentNS).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ok(p), fmt.Sprintf("phase %s, conditions %+v, containers %+v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
	})
	return p
}

func hasCondition(p *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == status
		}
	}
	return false
}

// deleteAndWaitGone deletes pod p with kubectl (its own grace period) and
// waits until it is gone from the API and its sandbox and containers from
// the node's containerd, logging how long each took; it returns the pod as
// the API last had it (the DELETED event's object).
func deleteAndWaitGone(t *testing.T, cs kubernetes.Interface, l *framework.Lab, k framework.Kubectl, node lab.Node, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := cs.CoreV1().Pods(nodeAgentNS).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name, ResourceVersion: p.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	l.MustKubectl(t, k, "delete", "pod", "-n", nodeAgentNS, p.Name, "--wait=false")
	var last *corev1.Pod
	for last == nil {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("pod %s not deleted within 2 minutes", p.Name)
			}
			if ev.Type == watch.Deleted {
				last = ev.Object.(*corev1.Pod)
			}
		case <-ctx.Done():
			t.Fatalf("pod %s not deleted within 2 minutes", p.Name)
		}
	}
	gone := time.Since(start)
	if _, err := cs.CoreV1().Pods(nodeAgentNS).Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s after its DELETED event: %v, want not found", p.Name, err)
	}
	rt := nodeCRI(t, node)
	sel := map[string]string{cri.LabelPodUID: string(p.UID)}
	poll(t, "pod "+p.Name+"'s sandbox and containers removed from "+node.Name+"'s containerd", time.Minute, func() (bool, string) {
		sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
		if err != nil {
			return false, err.Error()
		}
		cs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: sel}})
		if err != nil {
			return false, err.Error()
		}
		return len(sbs.Items) == 0 && len(cs.Containers) == 0, fmt.Sprintf("sandboxes %v, containers %v", sbs.Items, cs.Containers)
	})
	t.Logf("pod %s (terminationGracePeriodSeconds %d): gone from the API %s after kubectl delete, from containerd %s after",
		p.Name, *p.Spec.TerminationGracePeriodSeconds, gone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return last
}

// nodeCRI is a CRI runtime client of a lab node's containerd.
func nodeCRI(t *testing.T, node lab.Node) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(node.DataDir, "containerd", "containerd.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}
