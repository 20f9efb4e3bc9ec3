package cri_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/containerd/containerdtest"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/image"
)

// podCIDR is the test node's pod range. It lives only on the bridge in the
// test's own network namespace.
const podCIDR = "10.244.77.0/24"

const nodeName = "cri-node"

// TestCRI runs a real node: containerd in the test's network namespace,
// the API server, and the agent on the CRI runtime; the subtests run pods
// on it.
func TestCRI(t *testing.T) {
	dir, err := os.MkdirTemp("", "skiff-cri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctrd, ns := containerdtest.Start(t, dir, containerdtest.Options{})
	_, cs := controllertest.ControlPlane(t)
	h := &harness{cs: cs, cri: containerdtest.RuntimeClient(t, ctrd.Endpoint()), dir: dir, netns: ns, ctrd: ctrd}
	h.resolvConf = setupClusterDNS(t, cs, dir)
	stop := h.startAgent(t)
	t.Cleanup(stop)
	// the node gets its pod CIDR after it registered, as nodeipam gives
	// it; the first subtest's pod waits for it
	go func() {
		select {
		case <-h.ready:
		case <-time.After(60 * time.Second):
			return
		}
		patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, podCIDR, podCIDR)
		_, err := cs.CoreV1().Nodes().Patch(context.Background(), nodeName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		if err != nil {
			t.Errorf("setting the pod CIDR: %v", err)
		}
	}()
	t.Run("BusyboxPodRunsAsContainer", h.busyboxPodRuns)
	t.Run("InitThenExitCodes", h.initThenExitCodes)
	t.Run("OOMKilled", h.oomKilled)
	t.Run("RestartWithBackoff", h.restartWithBackoff)
	t.Run("WaitingReasons", h.waitingReasons)
	t.Run("PodIPAndHostPort", h.podIPAndHostPort)
	t.Run("Volumes", h.volumes)
	t.Run("ServiceAccountToken", h.serviceAccountToken)
	t.Run("Probes", h.probes)
	t.Run("LifecycleHooks", h.lifecycleHooks)
	t.Run("DNSAndHosts", h.dnsAndHosts)
	t.Run("ClusterDNSFromPod", h.clusterDNSFromPod)
	t.Run("PullSecrets", h.pullSecrets)
	t.Run("SandboxRecreated", h.sandboxRecreated)
	t.Run("Stats", h.stats)
	t.Run("AgentRestart", func(t *testing.T) { h.agentRestart(t, stop) })
}

// harness is the node the subtests run pods on.
type harness struct {
	cs    kubernetes.Interface
	cri   runtimeapi.RuntimeServiceClient
	dir   string
	ready <-chan struct{}
	netns string
	ctrd  *containerd.Containerd
	// resolvConf is the node's resolv.conf (dns_cri_test.go)
	resolvConf string
}

// startAgent runs an agent with a new CRI runtime on the node; the
// returned function stops it (and may be called more than once).
func (h *harness) startAgent(t *testing.T) (stop func()) {
	t.Helper()
	recorder, stopEvents := cri.NewRecorder(context.Background(), h.cs, nodeName)
	rt, err := cri.New(cri.Config{Endpoint: h.ctrd.Endpoint(), Recorder: recorder, CNIConfDir: h.ctrd.CNIConfDir(),
		CNIDataDir: filepath.Join(h.dir, "cni"), PodLogDir: filepath.Join(h.dir, "pods"), VolumeDir: filepath.Join(h.dir, "volumes"), HostIPs: []string{"127.0.0.1"}, Client: h.cs, ResolvConf: h.resolvConf, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	capacity, err := agent.Resources("2", "2Gi", "10Gi", 10)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{NodeName: nodeName, Client: h.cs, Runtime: rt, Capacity: capacity, DataDir: h.dir,
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h.ready = a.Ready()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
			rt.Close()
			stopEvents()
		})
	}
}

// agentRestart stops the agent, changes the API behind its back (one pod
// deleted for good) and starts a new agent: it adopts the running pod
// without restarting its container and removes the orphaned one.
func (h *harness) agentRestart(t *testing.T, stopFirst func()) {
	ctx := context.Background()
	keep := h.runPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Spec: corev1.PodSpec{Containers: []corev1.Container{busybox("c", "sleep 3600")}}},
		"keep running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	orphan := h.runPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orphan"}, Spec: corev1.PodSpec{Containers: []corev1.Container{busybox("c", "sleep 3600")}}},
		"orphan running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	stopFirst()
	zero := int64(0)
	if err := h.cs.CoreV1().Pods("default").Delete(ctx, "orphan", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "orphan gone from the API", func() (bool, string) {
		_, err := h.cs.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	stop := h.startAgent(t)
	defer stop()
	controllertest.Eventually(t, "orphan's sandbox removed", func() (bool, string) {
		sbs, err := h.cri.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
			Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelPodUID: string(orphan.UID)}}})
		if err != nil {
			return false, err.Error()
		}
		return len(sbs.Items) == 0, fmt.Sprintf("%d sandboxes", len(sbs.Items))
	})
	// the kept pod's container is the same one, never restarted (the new
	// agent queues its pods right after removing orphans)
	before := keep.Status.ContainerStatuses[0]
	ctrs, err := h.cri.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{cri.LabelPodUID: string(keep.UID)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs.Containers) != 1 || "containerd://"+ctrs.Containers[0].Id != before.ContainerID ||
		ctrs.Containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("kept pod's containers %v, want only %s running", ctrs.Containers, before.ContainerID)
	}
	p, err := h.cs.CoreV1().Pods("default").Get(ctx, "keep", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Status.ContainerStatuses[0]; st.RestartCount != 0 || st.ContainerID != before.ContainerID || st.State.Running == nil {
		t.Errorf("kept container status %+v, want %s running, no restarts", st, before.ContainerID)
	}
}

// busyboxPodRuns runs sh in busybox, checks it really runs in a container
// with an IP of the node's pod CIDR, and deletes it.
func (h *harness) busyboxPodRuns(t *testing.T) {
	ctx, cs, client, dir := context.Background(), h.cs, h.cri, h.dir
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: nodeName, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: image.BusyboxName, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo hello $(POD_NAME); sleep 3600"},
				Env:     []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}}},
	}
	created, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var running *corev1.Pod
	controllertest.Eventually(t, "pod running with an IP", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		running = p
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", fmt.Sprintf("phase %s ip %q statuses %+v", p.Status.Phase, p.Status.PodIP, p.Status.ContainerStatuses)
	})
	ip, err := netip.ParseAddr(running.Status.PodIP)
	if err != nil || !netip.MustParsePrefix(podCIDR).Contains(ip) {
		t.Fatalf("pod IP %q is not in the node's pod CIDR %s", running.Status.PodIP, podCIDR)
	}
	st := running.Status.ContainerStatuses
	if len(st) != 1 || st[0].State.Running == nil || !strings.HasPrefix(st[0].ContainerID, "containerd://") || st[0].ImageID == "" {
		t.Fatalf("container status %+v", st)
	}
	id := strings.TrimPrefix(st[0].ContainerID, "containerd://")

	// the container really runs: ask it for its PID 1's command line (sh
	// execs the last command of -c)
	out, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/1/cmdline"}, Timeout: 10})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Stdout) != "sleep\x003600\x00" || out.ExitCode != 0 {
		t.Errorf("exec cat /proc/1/cmdline: exit %d, stdout %q, stderr %q", out.ExitCode, out.Stdout, out.Stderr)
	}
	// its output reached the pod's log file
	logPath := filepath.Join(dir, "pods", "default_hello_"+string(created.UID), "main", "0.log")
	controllertest.Eventually(t, "hello in the container's log", func() (bool, string) {
		b, err := os.ReadFile(logPath)
		return strings.Contains(string(b), "stdout F hello hello"), fmt.Sprintf("%q %v", b, err)
	})

	if err := cs.CoreV1().Pods("default").Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "pod deleted", func() (bool, string) {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "hello", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	controllertest.Eventually(t, "sandbox and container removed", func() (bool, string) {
		sbs, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return false, err.Error()
		}
		ctrs, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			return false, err.Error()
		}
		return len(sbs.Items) == 0 && len(ctrs.Containers) == 0, fmt.Sprintf("%d sandboxes, %d containers", len(sbs.Items), len(ctrs.Containers))
	})
}

// runPod creates a pod on the node and waits until cond holds for it.
func (h *harness) runPod(t *testing.T, pod *corev1.Pod, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod.Namespace, pod.Spec.NodeName = "default", nodeName
	if _, err := h.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = h.cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	return h.waitPod(t, pod.Name, what, cond)
}

func busybox(name string, script string) corev1.Container {
	return corev1.Container{Name: name, Image: image.BusyboxName, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"sh", "-c", script}}
}

// initThenExitCodes runs an init container before the app containers and
// reports their exits: a pod whose container fails with restartPolicy
// Never fails.
func (h *harness) initThenExitCodes(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "default"}, Data: map[string]string{"greeting": "hi"}}
	if _, err := h.cs.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mem := busybox("ok", "test \"$MEM_MI\" = 32 && test \"$NODE\" = "+nodeName+" && test \"$GREETING\" = hi")
	mem.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
	mem.Env = []corev1.EnvVar{
		{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "greeting"}}},
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "exits"}, Spec: corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{busybox("init", "test ! -e /tmp/x")},
		Containers:     []corev1.Container{mem, busybox("fails", "exit 3")},
	}}
	p := h.runPod(t, pod, "pod failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	want := map[string]struct {
		code   int32
		reason string
	}{"init": {0, "Completed"}, "ok": {0, "Completed"}, "fails": {3, "Error"}}
	// the finished pod gave back its sandbox (and IP)
	controllertest.Eventually(t, "sandbox stopped", func() (bool, string) {
		sbs, err := h.cri.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{
			Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelPodUID: string(p.UID)}}})
		if err != nil {
			return false, err.Error()
		}
		return len(sbs.Items) == 1 && sbs.Items[0].State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY, fmt.Sprint(sbs.Items)
	})
	for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		term := st.State.Terminated
		w := want[st.Name]
		if term == nil || term.ExitCode != w.code || term.Reason != w.reason || term.ContainerID != st.ContainerID {
			t.Errorf("container %s: state %+v, want exit code %d (%s)", st.Name, st.State, w.code, w.reason)
		}
	}
}

// oomKilled runs a container that outgrows its memory limit.
func (h *harness) oomKilled(t *testing.T) {
	c := busybox("hog", "x=$(head -c 64m /dev/zero | tr '\\0' a); echo survived ${#x}")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oom"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{c}}}
	p := h.runPod(t, pod, "pod done", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
	})
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "OOMKilled" {
		t.Errorf("state %+v, want terminated with reason OOMKilled", p.Status.ContainerStatuses[0].State)
	}
}

// restartWithBackoff restarts a failing container under restartPolicy
// Always and reports the previous attempt as lastState.
func (h *harness) restartWithBackoff(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash"}, Spec: corev1.PodSpec{Containers: []corev1.Container{busybox("crash", "exit 1")}}}
	p := h.runPod(t, pod, "container restarted", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	st := p.Status.ContainerStatuses[0]
	if last := st.LastTerminationState.Terminated; last == nil || last.ExitCode != 1 || last.Reason != "Error" {
		t.Errorf("lastState %+v, want terminated with exit code 1", st.LastTerminationState)
	}
}

// waitingReasons reports why containers cannot run: an image that is not
// there with pull policy Never, a command that does not exist.
func (h *harness) waitingReasons(t *testing.T) {
	missing := corev1.Container{Name: "missing", Image: "skiff.local/none:latest", ImagePullPolicy: corev1.PullNever}
	nocmd := busybox("nocmd", "")
	nocmd.Command = []string{"/nonexistent"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "waiting"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{missing, nocmd}}}
	p := h.runPod(t, pod, "reasons reported", func(p *corev1.Pod) bool {
		var ok int
		for _, st := range p.Status.ContainerStatuses {
			if st.Name == "missing" && st.State.Waiting != nil && st.State.Waiting.Reason == "ErrImageNeverPull" {
				ok++
			}
			if term := st.State.Terminated; st.Name == "nocmd" && term != nil && term.ExitCode == 128 && term.Reason == "StartError" {
				ok++
			}
		}
		return ok == 2
	})
	if p.Status.Phase != corev1.PodPending && p.Status.Phase != corev1.PodFailed {
		t.Errorf("phase %s", p.Status.Phase)
	}
}

// podIPAndHostPort serves HTTP from a pod and fetches it from the node (the
// test's network namespace) through the pod's IP and through its hostPort
// on the bridge's address.
func (h *harness) podIPAndHostPort(t *testing.T) {
	c := busybox("web", "mkdir -p /www && echo hi from $(POD) > /www/index.html && exec httpd -f -p 8080 -h /www")
	c.Env = []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
	c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 18080}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
	p := h.runPod(t, pod, "pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" })
	gateway := netip.MustParsePrefix(podCIDR).Addr().Next().String()
	for _, url := range []string{"http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/", "http://" + net.JoinHostPort(gateway, "18080") + "/"} {
		controllertest.Eventually(t, "GET "+url, func() (bool, string) {
			body, err := getInNetns(h.netns, url)
			return err == nil && strings.TrimSpace(body) == "hi from web", fmt.Sprintf("%v: %q", err, body)
		})
	}
}

// inNetns runs fn on an OS thread moved into the network namespace at
// nsPath, which exits with its goroutine: sockets fn makes belong to that
// namespace.
func inNetns(nsPath string, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(nsPath)
		if err != nil {
			ch <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// getInNetns fetches url from inside the network namespace at nsPath.
func getInNetns(nsPath, url string) (string, error) {
	var body string
	err := inNetns(nsPath, func() error {
		u, err := neturl.Parse(url)
		if err != nil {
			return err
		}
		// dialled here, on the thread inside the namespace
		conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		return err
	})
	return body, err
}

// volumes mounts an emptyDir shared by an init and an app container, a
// hostPath, a configMap (whose update reaches the running container), a
// secret and the downward API.
func (h *harness) volumes(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vol-cfg", Namespace: "default"}, Data: map[string]string{"color": "blue"}}
	if _, err := h.cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vol-sec", Namespace: "default"}, Data: map[string][]byte{"token": []byte("t0k")}}
	if _, err := h.cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(h.dir, "host-data")
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vols", Labels: map[string]string{"app": "vols"}}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
			{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &dirOrCreate}}},
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vol-cfg"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-sec"}}},
			{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}},
		},
		InitContainers: []corev1.Container{busybox("init", "echo from-init > /scratch/x && echo on-host > /host/y")},
		Containers:     []corev1.Container{busybox("main", "sleep 3600")},
	}}
	all := []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}, {Name: "mem", MountPath: "/mem"}, {Name: "host", MountPath: "/host"},
		{Name: "cfg", MountPath: "/cfg"}, {Name: "sec", MountPath: "/sec"}, {Name: "info", MountPath: "/info"}}
	pod.Spec.InitContainers[0].VolumeMounts = all[:3]
	pod.Spec.Containers[0].VolumeMounts = all
	p := h.runPod(t, pod, "pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	run := func(script string) string {
		out, err := h.cri.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Timeout: 10})
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out.Stdout)) + strings.TrimSpace(string(out.Stderr))
	}
	for script, want := range map[string]string{
		"cat /scratch/x":   "from-init",
		"cat /host/y":      "on-host",
		"cat /cfg/color":   "blue",
		"cat /sec/token":   "t0k",
		"cat /info/labels": `app="vols"`,
		"grep -c ' /mem tmpfs' /proc/mounts; grep -c ' /sec tmpfs' /proc/mounts": "1\n1",
		"touch /cfg/new 2>/dev/null && echo writable || echo read-only":          "read-only",
	} {
		if got := run(script); got != want {
			t.Errorf("%s: %q, want %q", script, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "y")); err != nil || strings.TrimSpace(string(b)) != "on-host" {
		t.Errorf("host file: %q %v", b, err)
	}
	cm.Data["color"] = "green"
	if _, err := h.cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "configmap update in the volume", func() (bool, string) {
		got := run("cat /cfg/color")
		return got == "green", got
	})
	// deleting the pod removes its volumes (and unmounts the tmpfs ones)
	zero := int64(0)
	if err := h.cs.CoreV1().Pods("default").Delete(ctx, "vols", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "volumes removed", func() (bool, string) {
		_, err := os.Stat(filepath.Join(h.dir, "volumes", string(p.UID)))
		return errors.Is(err, os.ErrNotExist), fmt.Sprint(err)
	})
}

// probes flips readiness with an exec readiness probe and restarts a
// container whose liveness probe fails.
func (h *harness) probes(t *testing.T) {
	ctx := context.Background()
	execProbe := func(cmd string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", cmd}}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 5}
	}
	// liveness fails once /tmp/dead exists: a probe that needs a file the
	// container makes could run before the container made it
	c := busybox("app", "exec sleep 3600")
	c.ReadinessProbe = execProbe("test -f /tmp/ready")
	c.LivenessProbe = execProbe("test ! -f /tmp/dead")
	grace := int64(1)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probed"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{c}}}
	ready := func(want bool) func(p *corev1.Pod) bool {
		return func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready == want &&
				podCondition(p, corev1.PodReady) == want
		}
	}
	p := h.runPod(t, pod, "running, not ready", ready(false))
	run := func(script string) {
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
		if _, err := h.cri.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Timeout: 10}); err != nil {
			t.Fatal(err)
		}
	}
	run("touch /tmp/ready")
	h.waitPod(t, "probed", "ready", ready(true))
	run("rm /tmp/ready")
	h.waitPod(t, "probed", "not ready again", ready(false))
	run("touch /tmp/dead")
	p = h.waitPod(t, "probed", "restarted after failing its liveness probe", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.ExitCode == 0 {
		t.Errorf("lastState %+v, want the killed attempt", p.Status.ContainerStatuses[0].LastTerminationState)
	}
	// events say why, as the kubelet's
	controllertest.Eventually(t, "events", func() (bool, string) {
		evs, err := h.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=probed"})
		if err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		var all []string
		for _, e := range evs.Items {
			seen[e.Reason] = true
			all = append(all, e.Reason+": "+e.Message)
		}
		return seen["Pulled"] && seen["Created"] && seen["Started"] && seen["Unhealthy"] && seen["Killing"], strings.Join(all, "; ")
	})
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPod waits until cond holds for the pod.
func (h *harness) waitPod(t *testing.T, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	controllertest.Eventually(t, what, func() (bool, string) {
		p, err := h.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got = p
		return cond(p), fmt.Sprintf("phase %s conditions %+v containers %+v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
	})
	return got
}

// lifecycleHooks runs a postStart hook after the container starts and a
// preStop hook before it stops; both leave a file on a hostPath.
func (h *harness) lifecycleHooks(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(h.dir, "hooks")
	c := busybox("app", "exec sleep 3600")
	c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	c.Lifecycle = &corev1.Lifecycle{
		PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo started > /out/poststart"}}},
		PreStop:   &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo stopping > /out/prestop"}}},
	}
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	grace := int64(5)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hooks"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
		Volumes:    []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: out, Type: &dirOrCreate}}}},
		Containers: []corev1.Container{c}}}
	h.runPod(t, pod, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if b, err := os.ReadFile(filepath.Join(out, "poststart")); err != nil || strings.TrimSpace(string(b)) != "started" {
		t.Errorf("postStart: %q %v", b, err)
	}
	if err := h.cs.CoreV1().Pods("default").Delete(ctx, "hooks", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "pod deleted", func() (bool, string) {
		_, err := h.cs.CoreV1().Pods("default").Get(ctx, "hooks", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if b, err := os.ReadFile(filepath.Join(out, "prestop")); err != nil || strings.TrimSpace(string(b)) != "stopping" {
		t.Errorf("preStop: %q %v", b, err)
	}
}

// sandboxRecreated stops a running pod's sandbox behind the agent's back
// (as a node reboot would): the agent makes a new sandbox and the
// container's restart count goes on.
func (h *harness) sandboxRecreated(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "resandbox"}, Spec: corev1.PodSpec{Containers: []corev1.Container{busybox("c", "exec sleep 3600")}}}
	p := h.runPod(t, pod, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	sbs, err := h.cri.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelPodUID: string(p.UID)}}})
	if err != nil || len(sbs.Items) != 1 {
		t.Fatalf("sandboxes %v %v", sbs, err)
	}
	if _, err := h.cri.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sbs.Items[0].Id}); err != nil {
		t.Fatal(err)
	}
	p = h.waitPod(t, "resandbox", "running again in a new sandbox", func(p *corev1.Pod) bool {
		st := p.Status.ContainerStatuses
		return p.Status.Phase == corev1.PodRunning && len(st) == 1 && st[0].State.Running != nil && st[0].RestartCount == 1
	})
	sbs, err = h.cri.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{cri.LabelPodUID: string(p.UID)}}})
	if err != nil {
		t.Fatal(err)
	}
	var ready []*runtimeapi.PodSandbox
	for _, sb := range sbs.Items {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready = append(ready, sb)
		}
	}
	if len(ready) != 1 || ready[0].Metadata.Attempt != 1 {
		t.Errorf("sandboxes %v, want one ready, attempt 1", sbs.Items)
	}
	if last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil {
		t.Errorf("lastState %+v, want the attempt in the old sandbox", p.Status.ContainerStatuses[0].LastTerminationState)
	}
}
