package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
)

// PodStartConfig configures the pod startup benchmark.
type PodStartConfig struct {
	// Binary is the skiff binary to run (default: this executable).
	Binary string
	// Pods is the number of pods created one at a time, and again the
	// number created at once.
	Pods int
	// Timeout bounds each wait (node Ready, a pod Running).
	Timeout time.Duration
	// Progress receives progress lines.
	Progress io.Writer
}

const (
	podStartNamespace = "bench-podstart"
	podStartNode      = "bench-podstart"
	// podStartCIDR is the node's pod range; it exists only on the bridge
	// inside the benchmark's own network namespace.
	podStartCIDR = "10.244.0.0/24"
)

// PodStartDeps lists what the pod startup benchmark runs.
var PodStartDeps = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "nsenter", "umount", image.DefaultBusybox,
	filepath.Join(containerd.DefaultCNIBinDir, "bridge"), filepath.Join(containerd.DefaultCNIBinDir, "host-local")}

// PodStartMissing returns why this machine cannot run the pod startup
// benchmark, or "" if it can.
func PodStartMissing() string {
	if os.Geteuid() != 0 {
		return "needs root (to run containerd and create a network namespace)"
	}
	for _, bin := range PodStartDeps {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("needs %s (run 'make deps' or hack/install-deps.sh): %v", bin, err)
		}
	}
	return ""
}

// PodStart measures pod startup on one real node: it creates a network
// namespace, runs containerd in it (the pods' bridge and veths live
// there), imports the busybox image, starts `skiff server` and
// `skiff agent --runtime=cri` (on that containerd) as child processes and
// measures the time from each pod's create until a watch sees it Running,
// first for pods created one at a time, then for cfg.Pods created at once.
func PodStart(ctx context.Context, cfg PodStartConfig) (Result, error) {
	if cfg.Pods <= 0 {
		cfg.Pods = 30
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if why := PodStartMissing(); why != "" {
		return Result{}, errors.New("bench podstart " + why)
	}
	bin, err := selfBinary(cfg.Binary)
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp("", "skiff-bench-podstart-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	defer unmountUnder(dir)

	ns, delNS, err := newNetns(fmt.Sprintf("skiff-bench-%d", os.Getpid()))
	if err != nil {
		return Result{}, err
	}
	defer delNS()

	fmt.Fprintf(cfg.Progress, "starting containerd in network namespace %s...\n", ns)
	endpoint, cniConfDir, stopCtrd, err := startContainerd(ctx, dir, ns)
	if err != nil {
		return Result{}, err
	}
	defer stopCtrd()

	fmt.Fprintf(cfg.Progress, "starting skiff server...\n")
	srv, kubeconfig, err := startServerChild(ctx, bin, dir, "--cluster-cidr", "10.244.0.0/16", "--node-cidr-mask-size", "24")
	if err != nil {
		return Result{}, err
	}
	defer srv.stop(15 * time.Second)
	fmt.Fprintf(cfg.Progress, "starting skiff agent --runtime=cri...\n")
	agent, err := startChild("agent", filepath.Join(dir, "agent.log"), bin, "agent", "--runtime=cri", "--kubeconfig", kubeconfig,
		"--node-name", podStartNode, "--data-dir", filepath.Join(dir, "agent"), "--container-runtime-endpoint", endpoint,
		"--cni-conf-dir", cniConfDir, "--pod-cidr", podStartCIDR, "--log-level", "warn",
		"--proxy=false", "--pod-network=none", // the agent runs in the host's network namespace: leave its nftables and routes alone
		"--kubelet-port=0") // nor listen on the host's address
	if err != nil {
		return Result{}, err
	}
	defer agent.stop(30 * time.Second)

	client, err := benchClient(kubeconfig, false)
	if err != nil {
		return Result{}, err
	}
	if err := waitNodesReady(ctx, client, ControllersConfig{Nodes: 1, Timeout: cfg.Timeout, Progress: cfg.Progress}, agent); err != nil {
		return Result{}, err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podStartNamespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return Result{}, fmt.Errorf("create namespace: %w", err)
	}
	// Pods go before the agent stops, so it removes their containers.
	defer deletePods(client, endpoint, cfg.Progress)

	w, stopWatch, err := watchRunning(ctx, client)
	if err != nil {
		return Result{}, err
	}
	defer stopWatch()

	cpu0, err := cpuSeconds(agent.pid())
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(cfg.Progress, "creating %d pods one at a time...\n", cfg.Pods)
	seq := make([]time.Duration, cfg.Pods)
	for i := range seq {
		name := fmt.Sprintf("seq-%03d", i)
		start := time.Now()
		if _, err := client.CoreV1().Pods(podStartNamespace).Create(ctx, podStartPod(name), metav1.CreateOptions{}); err != nil {
			return Result{}, fmt.Errorf("create pod %s: %w", name, err)
		}
		at, err := w.wait(ctx, name, cfg.Timeout, agent)
		if err != nil {
			return Result{}, err
		}
		seq[i] = at.Sub(start)
	}
	fmt.Fprintf(cfg.Progress, "creating %d pods at once...\n", cfg.Pods)
	burst := make([]time.Duration, cfg.Pods)
	starts := make([]time.Time, cfg.Pods)
	var wg sync.WaitGroup
	errs := make([]error, cfg.Pods)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("burst-%03d", i)
			starts[i] = time.Now()
			if _, err := client.CoreV1().Pods(podStartNamespace).Create(ctx, podStartPod(name), metav1.CreateOptions{}); err != nil {
				errs[i] = fmt.Errorf("create pod %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	for i := range burst {
		at, err := w.wait(ctx, fmt.Sprintf("burst-%03d", i), cfg.Timeout, agent)
		if err != nil {
			return Result{}, err
		}
		burst[i] = at.Sub(starts[i])
	}
	cpu1, err := cpuSeconds(agent.pid())
	if err != nil {
		return Result{}, err
	}
	agentRSS, err := rssMiB(agent.pid())
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(cfg.Progress, "all %d pods Running\n", 2*cfg.Pods)
	sort.Slice(seq, func(i, j int) bool { return seq[i] < seq[j] })
	sort.Slice(burst, func(i, j int) bool { return burst[i] < burst[j] })
	return Result{Scenario: "podstart", Figures: map[string]Figure{
		"p50_ms":              {ms(percentile(seq, 50)), "ms"},
		"p99_ms":              {ms(percentile(seq, 99)), "ms"},
		"burst_p50_ms":        {ms(percentile(burst, 50)), "ms"},
		"burst_p99_ms":        {ms(percentile(burst, 99)), "ms"},
		"agent_rss_mib":       {agentRSS, "MiB"},
		"agent_cpu_s_per_pod": {(cpu1 - cpu0) / float64(2*cfg.Pods), "s"},
		"pods":                {float64(cfg.Pods), "pods"},
		"burst_max_ms":        {ms(burst[len(burst)-1]), "ms"},
		"sequential_max_ms":   {ms(seq[len(seq)-1]), "ms"},
	}, Notes: []string{fmt.Sprintf("One node: skiff server (scheduler, controllers) and skiff agent --runtime=cri as child processes, "+
		"containerd in the benchmark's network namespace, busybox imported (imagePullPolicy Never, sleep 3600). "+
		"p50/p99_ms: pod create to Running as a watch sees it, %d pods created one at a time; burst_*: %d more created at once. "+
		"agent_rss_mib: the agent's VmRSS with all pods running; agent_cpu_s_per_pod: its CPU (utime+stime) over both phases per pod.",
		cfg.Pods, cfg.Pods)}}, nil
}

func podStartPod(name string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podStartNamespace},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{Name: "c", Image: image.BusyboxName, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"}}}}}
}

// runningWatch records when a watch first sees each pod Running.
type runningWatch struct {
	mu      sync.Mutex
	running map[string]time.Time
	changed chan struct{} // closed and replaced on every new Running pod
}

func watchRunning(ctx context.Context, client kubernetes.Interface) (*runningWatch, func(), error) {
	w := &runningWatch{running: map[string]time.Time{}, changed: make(chan struct{})}
	see := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Status.Phase != corev1.PodRunning {
			return
		}
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.running[p.Name]; !ok {
			w.running[p.Name] = now
			close(w.changed)
			w.changed = make(chan struct{})
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(podStartNamespace))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: see, UpdateFunc: func(_, cur any) { see(cur) }}); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, nil, errors.New("pod informer did not sync")
	}
	return w, func() { cancel(); factory.Shutdown() }, nil
}

// wait returns when the watch saw pod name Running.
func (w *runningWatch) wait(ctx context.Context, name string, timeout time.Duration, agent *child) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		at, ok := w.running[name]
		changed := w.changed
		w.mu.Unlock()
		if ok {
			return at, nil
		}
		select {
		case <-changed:
		case <-agent.done:
			return time.Time{}, fmt.Errorf("the agent exited:\n%s", agent.tail())
		case <-deadline:
			return time.Time{}, fmt.Errorf("pod %s not Running after %s; see the agent's log %s", name, timeout, agent.log)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// newNetns creates network namespace name with lo up and returns its path
// and a function that deletes it.
func newNetns(name string) (string, func(), error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	del := func() { _ = exec.Command("ip", "netns", "del", name).Run() }
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		del()
		return "", nil, fmt.Errorf("lo up in %s: %w: %s", name, err, out)
	}
	return "/run/netns/" + name, del, nil
}

// startContainerd runs containerd in the network namespace ns (entered
// with nsenter, as runc needs) and imports the pause and busybox images.
// It returns the CRI endpoint, the CNI config dir and a stop function.
func startContainerd(ctx context.Context, dir, ns string) (string, string, func(), error) {
	logf, err := os.Create(filepath.Join(dir, "containerd-supervisor.log"))
	if err != nil {
		return "", "", nil, err
	}
	c, err := containerd.New(containerd.Config{Dir: filepath.Join(dir, "containerd"), SandboxImage: image.PauseName, NetNS: ns,
		Logger: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		logf.Close()
		return "", "", nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
		}
		logf.Close()
		// containerd's parent cgroups: removed when empty, kept while
		// another containerd uses them
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
	select {
	case <-c.Ready():
	case err := <-done:
		stop()
		return "", "", nil, fmt.Errorf("containerd: %w", err)
	case <-time.After(60 * time.Second):
		stop()
		return "", "", nil, errors.New("containerd not ready after 60s")
	case <-ctx.Done():
		stop()
		return "", "", nil, ctx.Err()
	}
	files, err := image.BusyboxFiles(ctx, image.DefaultBusybox)
	if err != nil {
		stop()
		return "", "", nil, err
	}
	pause, err := image.PauseSpec(files)
	if err != nil {
		stop()
		return "", "", nil, err
	}
	im := containerd.Importer{Address: c.Endpoint()}
	for _, spec := range []image.Spec{pause, image.BusyboxSpec(files)} {
		img, err := image.Build(spec)
		if err == nil {
			archive := filepath.Join(dir, image.ArchiveFileName(spec.Name))
			if err = img.WriteArchiveFile(archive); err == nil {
				err = im.Import(ctx, spec.Name, archive)
			}
		}
		if err != nil {
			stop()
			return "", "", nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
	}
	return c.Endpoint(), c.CNIConfDir(), stop, nil
}

// deletePods deletes the benchmark's pods (grace 0), waits until the
// agent removed their sandboxes and removes what is left itself, so no
// container outlives the benchmark.
func deletePods(client kubernetes.Interface, endpoint string, progress io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fmt.Fprintf(progress, "deleting the pods...\n")
	zero := int64(0)
	_ = client.CoreV1().Pods(podStartNamespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err == nil && len(sbs.Items) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, sb := range sbs.Items {
		_, _ = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id})
		_, _ = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id})
	}
}

// unmountUnder lazily unmounts what containerd left mounted below dir.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			_ = exec.Command("umount", "-l", f[1]).Run()
		}
	}
}
