package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// Images of the controllers scenarios: the sim runtime pulls nothing, so
// any reference does.
const (
	imageA = "registry.k8s.io/pause:3.10"
	imageB = "busybox:1.36"
	imageC = "busybox:1.37"
)

// ctrlTimeout bounds each wait of the controllers scenarios.
const ctrlTimeout = 90 * time.Second

// TestControllers drives the controller manager with stock kubectl against
// a server with simulated nodes (`skiff agent --runtime=sim`): rollouts,
// DaemonSets, StatefulSets, Jobs and CronJobs, cascading deletes, a node that
// stops heartbeating, and drain against a PodDisruptionBudget. Each scenario
// has its own namespace; the ones that need nodes of their own start their
// own agents (or server).
func TestControllers(t *testing.T) {
	k := framework.LatestKubectl(t)
	c := startCluster(t, nil)
	c.startNodes(t, framework.AgentOptions{Nodes: 3, NamePrefix: "sim-"}, "sim-0", "sim-1", "sim-2")
	t.Run("all", func(t *testing.T) {
		// The slow waits (a CronJob's schedule, a node's grace period) run
		// beside the serial scenarios.
		t.Run("cronjob", func(t *testing.T) { t.Parallel(); c.cronJob(t, k) })
		t.Run("node-heartbeat-loss", func(t *testing.T) { t.Parallel(); nodeHeartbeatLoss(t, k) })
		t.Run("serial", func(t *testing.T) {
			t.Parallel()
			t.Run("deployment", func(t *testing.T) { c.deployment(t, k) })
			if old, ok := kubectlVersion("1.27"); ok {
				t.Run("deployment-kubectl-1.27", func(t *testing.T) { c.deployment(t, old) })
			}
			t.Run("daemonset", func(t *testing.T) { c.daemonSet(t, k, "sim-0", "sim-1", "sim-2") })
			t.Run("statefulset", func(t *testing.T) { c.statefulSet(t, k) })
			t.Run("job", func(t *testing.T) { c.job(t, k) })
			t.Run("cascading-delete", func(t *testing.T) { c.cascadingDelete(t, k) })
			t.Run("drain-pdb", func(t *testing.T) { c.drain(t, k) })
		})
	})
}

// kubectlVersion returns the installed kubectl of the minor version v.
func kubectlVersion(v string) (framework.Kubectl, bool) {
	for _, k := range framework.KubectlVersions() {
		if k.Version == v {
			return k, true
		}
	}
	return framework.Kubectl{}, false
}

// cluster is a server whose pods run on simulated nodes.
type cluster struct {
	s  *framework.Server
	cs *kubernetes.Clientset
}

func startCluster(t *testing.T, serverArgs []string) *cluster {
	t.Helper()
	s := env.StartServer(t, framework.ServerOptions{ExtraArgs: serverArgs})
	return &cluster{s: s, cs: s.Clientset(t)}
}

// startNodes starts a sim agent and waits until its nodes are Ready.
func (c *cluster) startNodes(t *testing.T, opts framework.AgentOptions, names ...string) *framework.Agent {
	t.Helper()
	a := c.s.StartSimAgent(t, opts)
	poll(t, "nodes "+strings.Join(names, ",")+" Ready", ctrlTimeout, func() (bool, string) {
		for _, n := range names {
			node, err := c.cs.CoreV1().Nodes().Get(ctxT(t, 10*time.Second), n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if !nodeReady(node) {
				return false, n + " not Ready"
			}
		}
		return true, ""
	})
	return a
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kubectl runs kubectl k in namespace ns and returns stdout.
func (c *cluster) kubectl(t *testing.T, k framework.Kubectl, ns string, args ...string) string {
	t.Helper()
	return c.s.MustKubectl(t, k, append(args, "-n", ns)...)
}

// apply applies manifest in namespace ns.
func (c *cluster) apply(t *testing.T, k framework.Kubectl, ns, manifest string) {
	t.Helper()
	r := c.s.KubectlWith(k, framework.Cmd{Stdin: manifest}, "apply", "-n", ns, "-f", "-")
	if r.ExitCode != 0 {
		t.Fatalf("kubectl apply:\n%s\n%s", manifest, r)
	}
}

// namespace creates a namespace for one scenario.
func (c *cluster) namespace(t *testing.T, k framework.Kubectl, prefix string) string {
	t.Helper()
	ns := nsName(prefix)
	c.s.MustKubectl(t, k, "create", "namespace", ns)
	return ns
}

// pods lists the pods of namespace ns matching selector.
func (c *cluster) pods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := c.cs.CoreV1().Pods(ns).List(ctxT(t, 10*time.Second), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	return l.Items
}

// readyPods returns the names and nodes of the pods of ns matching selector
// that are Ready and not being deleted.
func (c *cluster) readyPods(t *testing.T, ns, selector string) (names, nodes []string) {
	t.Helper()
	for _, p := range c.pods(t, ns, selector) {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
			names = append(names, p.Name)
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	return names, nodes
}

// deploymentManifest is a Deployment of replicas pods of image, labelled
// app=name, rolled with maxSurge 1 and maxUnavailable 0; extra is
// appended to the pod spec (indented by 6).
func deploymentManifest(name string, replicas int, image, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: %[3]s
%[4]s`, name, replicas, image, extra)
}

// followPods lists the pods of ns matching selector, then watches them from
// the list's resourceVersion. It calls fn, on one goroutine, with the state
// of all pods after the list and after each event, in order, until stop is
// called; stop reports whether the watch failed.
func followPods(t *testing.T, cs kubernetes.Interface, ns, selector string, fn func(watch.EventType, *corev1.Pod, map[types.UID]*corev1.Pod)) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		cancel()
		t.Fatalf("list pods: %v", err)
	}
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		cancel()
		t.Fatalf("watch pods: %v", err)
	}
	pods := map[types.UID]*corev1.Pod{}
	for i := range list.Items {
		pods[list.Items[i].UID] = &list.Items[i]
	}
	for i := range list.Items {
		fn(watch.Added, &list.Items[i], pods)
	}
	done := make(chan struct{})
	var werr error
	go func() {
		defer close(done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					if ctx.Err() == nil {
						werr = fmt.Errorf("the pod watch ended early")
					}
					return
				}
				p, isPod := ev.Object.(*corev1.Pod)
				if !isPod {
					werr = fmt.Errorf("unexpected watch event %s %T", ev.Type, ev.Object)
					return
				}
				if ev.Type == watch.Deleted {
					delete(pods, p.UID)
				} else {
					pods[p.UID] = p
				}
				fn(ev.Type, p, pods)
			}
		}
	}()
	var once sync.Once
	stop = func() error {
		once.Do(func() { cancel(); <-done })
		return werr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// surgeWatch records the fewest ready and the most existing pods of a
// Deployment at any point of a rollout.
type surgeWatch struct {
	minReady, maxTotal int
	seen               map[types.UID]bool
}

// observe records the counts of one state: pods being deleted no longer
// count (as upstream's rolling update counts them).
func (sw *surgeWatch) observe(_ watch.EventType, _ *corev1.Pod, pods map[types.UID]*corev1.Pod) {
	ready, total := 0, 0
	for uid, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		sw.seen[uid] = true
		total++
		if podReady(p) {
			ready++
		}
	}
	sw.minReady = min(sw.minReady, ready)
	sw.maxTotal = max(sw.maxTotal, total)
}

// deployment rolls a Deployment out, updates it within its surge and
// unavailability bounds, and drives `kubectl rollout` through history,
// undo, pause, resume and restart.
func (c *cluster) deployment(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "deploy")
	const replicas = 3
	c.apply(t, k, ns, deploymentManifest("web", replicas, imageA, ""))
	status := func() {
		t.Helper()
		out := c.kubectl(t, k, ns, "rollout", "status", "deploy/web", "--timeout=90s")
		mustContain(t, "rollout status", out, `deployment "web" successfully rolled out`)
	}
	image := func() string {
		t.Helper()
		return c.kubectl(t, k, ns, "get", "deploy/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
	}
	status()

	// set image: watch the pods while the rollout runs.
	sw := &surgeWatch{minReady: 1 << 30, seen: map[types.UID]bool{}}
	stop := followPods(t, c.cs, ns, "app=web", sw.observe)
	c.kubectl(t, k, ns, "set", "image", "deploy/web", "app="+imageB)
	status()
	poll(t, "old pods gone", ctrlTimeout, func() (bool, string) {
		names, _ := c.readyPods(t, ns, "app=web")
		n := len(c.pods(t, ns, "app=web"))
		return n == replicas && len(names) == replicas, fmt.Sprintf("%d pods, %d ready", n, len(names))
	})
	werr := stop()
	minReady, maxTotal, seen := sw.minReady, sw.maxTotal, len(sw.seen)
	t.Logf("during the update: at least %d ready, at most %d pods, %d pods seen", minReady, maxTotal, seen)
	if werr != nil {
		t.Fatal(werr)
	}
	if seen < 2*replicas {
		t.Errorf("the watch saw %d pods, want at least %d (old and new)", seen, 2*replicas)
	}
	if minReady < replicas {
		t.Errorf("ready pods dropped to %d during the update; maxUnavailable 0 allows none below %d", minReady, replicas)
	}
	if maxTotal > replicas+1 {
		t.Errorf("%d pods existed during the update; maxSurge 1 allows %d", maxTotal, replicas+1)
	}
	for _, p := range c.pods(t, ns, "app=web") {
		if got := p.Spec.Containers[0].Image; got != imageB {
			t.Errorf("pod %s runs %s after set image, want %s", p.Name, got, imageB)
		}
	}

	hist := c.kubectl(t, k, ns, "rollout", "history", "deploy/web")
	revs := revisions(hist)
	if !slices.Equal(revs, []string{"1", "2"}) {
		t.Fatalf("rollout history: revisions %v, want [1 2]:\n%s", revs, hist)
	}
	rev1 := c.kubectl(t, k, ns, "rollout", "history", "deploy/web", "--revision=1")
	mustContain(t, "rollout history --revision=1", rev1, imageA)

	// undo goes back to revision 1's template, which becomes revision 3.
	c.kubectl(t, k, ns, "rollout", "undo", "deploy/web")
	status()
	if got := image(); got != imageA {
		t.Fatalf("after rollout undo the image is %s, want %s", got, imageA)
	}
	if revs := revisions(c.kubectl(t, k, ns, "rollout", "history", "deploy/web")); !slices.Equal(revs, []string{"2", "3"}) {
		t.Fatalf("rollout history after undo: revisions %v, want [2 3]", revs)
	}

	// pause: a template change makes no new ReplicaSet until resume.
	c.kubectl(t, k, ns, "rollout", "pause", "deploy/web")
	c.kubectl(t, k, ns, "set", "image", "deploy/web", "app="+imageC)
	poll(t, "paused update observed", ctrlTimeout, func() (bool, string) {
		out := c.kubectl(t, k, ns, "get", "deploy/web", "-o",
			`jsonpath={.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Progressing")].reason}`)
		f := strings.Fields(out)
		return len(f) == 3 && f[0] == f[1] && f[2] == "DeploymentPaused", out
	})
	rsImages := c.kubectl(t, k, ns, "get", "rs", "-l", "app=web", "-o", "jsonpath={.items[*].spec.template.spec.containers[0].image}")
	if strings.Contains(rsImages, imageC) {
		t.Fatalf("a paused Deployment made a ReplicaSet of the new template: %s", rsImages)
	}
	c.kubectl(t, k, ns, "rollout", "resume", "deploy/web")
	status()
	for _, p := range c.pods(t, ns, "app=web") {
		if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image != imageC {
			t.Errorf("pod %s runs %s after resume, want %s", p.Name, p.Spec.Containers[0].Image, imageC)
		}
	}

	// restart: a new revision of the same template, every pod replaced.
	before := map[string]bool{}
	for _, p := range c.pods(t, ns, "app=web") {
		before[p.Name] = true
	}
	c.kubectl(t, k, ns, "rollout", "restart", "deploy/web")
	status()
	poll(t, "pods replaced by restart", ctrlTimeout, func() (bool, string) {
		names, _ := c.readyPods(t, ns, "app=web")
		fresh := 0
		for _, n := range names {
			if !before[n] {
				fresh++
			}
		}
		return fresh == replicas, fmt.Sprintf("ready %v, before %v", names, before)
	})
	for _, p := range c.pods(t, ns, "app=web") {
		if p.DeletionTimestamp == nil && p.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Errorf("pod %s has no restartedAt annotation after rollout restart", p.Name)
		}
	}
}

// revisions returns the REVISION column of `kubectl rollout history`.
func revisions(hist string) []string {
	var out []string
	for _, r := range tableRows(hist) {
		if len(r) > 0 && r[0] != "REVISION" && !strings.HasSuffix(r[0], ":") && !strings.Contains(r[0], "/") {
			out = append(out, r[0])
		}
	}
	sort.Strings(out)
	return out
}

// daemonSet checks that a DaemonSet runs one pod on each of nodes.
func (c *cluster) daemonSet(t *testing.T, k framework.Kubectl, nodes ...string) {
	ns := c.namespace(t, k, "ds")
	c.apply(t, k, ns, fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: %s
`, imageA))
	out := c.kubectl(t, k, ns, "rollout", "status", "ds/agent", "--timeout=90s")
	mustContain(t, "rollout status ds", out, `daemon set "agent" successfully rolled out`)
	poll(t, "one Running pod per node", ctrlTimeout, func() (bool, string) {
		wide := c.kubectl(t, k, ns, "get", "pods", "-o", "wide", "--no-headers")
		var onNodes []string
		for _, r := range tableRows(wide) {
			// NAME READY STATUS RESTARTS AGE IP NODE ...
			if len(r) >= 7 && r[2] == "Running" {
				onNodes = append(onNodes, r[6])
			}
		}
		sort.Strings(onNodes)
		return slices.Equal(onNodes, nodes), wide
	})
}

// statefulSet scales a StatefulSet up and down and checks the order.
func (c *cluster) statefulSet(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "sts")
	c.apply(t, k, ns, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %s
`, imageA))
	order := &podOrder{deleting: map[string]bool{}}
	stop := followPods(t, c.cs, ns, "app=web", order.observe)
	c.kubectl(t, k, ns, "scale", "sts", "web", "--replicas=3")
	c.kubectl(t, k, ns, "rollout", "status", "sts/web", "--timeout=90s")
	poll(t, "web-0, web-1 and web-2 Ready", ctrlTimeout, func() (bool, string) {
		names, _ := c.readyPods(t, ns, "app=web")
		sort.Strings(names)
		return slices.Equal(names, []string{"web-0", "web-1", "web-2"}), fmt.Sprint(names)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order.created, []string{"web-0", "web-1", "web-2"}) {
		t.Fatalf("pods created in the order %v, want web-0, web-1, web-2", order.created)
	}
	order = &podOrder{deleting: map[string]bool{}}
	stop = followPods(t, c.cs, ns, "app=web", order.observe)
	c.kubectl(t, k, ns, "scale", "sts", "web", "--replicas=1")
	poll(t, "web-1 and web-2 gone", ctrlTimeout, func() (bool, string) {
		var names []string
		for _, p := range c.pods(t, ns, "app=web") {
			names = append(names, p.Name)
		}
		return slices.Equal(names, []string{"web-0"}), fmt.Sprint(names)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order.deleted, []string{"web-2", "web-1"}) {
		t.Fatalf("pods deleted in the order %v, want web-2, web-1", order.deleted)
	}
}

// podOrder is the order in which pods appeared and began deletion.
type podOrder struct {
	created, deleted []string
	deleting         map[string]bool
}

func (o *podOrder) observe(ev watch.EventType, p *corev1.Pod, _ map[types.UID]*corev1.Pod) {
	if ev == watch.Added {
		o.created = append(o.created, p.Name)
	}
	if (ev == watch.Deleted || p.DeletionTimestamp != nil) && !o.deleting[p.Name] {
		o.deleting[p.Name] = true
		o.deleted = append(o.deleted, p.Name)
	}
}

// simExit makes the sim runtime's containers exit 0 after a second.
const simExit = `      annotations: {sim.skiff.dev/exit-after: 1s}
`

func jobManifest(name string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
spec:
  completions: 2
  parallelism: 2
  template:
    metadata:
%s    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: %s
`, name, simExit, imageB)
}

// job runs a Job whose containers exit 0 to completion.
func (c *cluster) job(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "job")
	c.apply(t, k, ns, jobManifest("x"))
	out := c.kubectl(t, k, ns, "wait", "--for=condition=complete", "job/x", "--timeout=90s")
	mustContain(t, "kubectl wait", out, "job.batch/x condition met")
	if got := c.kubectl(t, k, ns, "get", "job/x", "-o", "jsonpath={.status.succeeded}"); got != "2" {
		t.Fatalf("job x: succeeded %q, want 2", got)
	}
}

// cronJob checks `kubectl create job --from=cronjob` and that the schedule
// fires (within a minute and a bit).
func (c *cluster) cronJob(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "cron")
	c.apply(t, k, ns, fmt.Sprintf(`apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {sim.skiff.dev/exit-after: 1s}
        spec:
          restartPolicy: Never
          containers:
          - name: work
            image: %s
`, imageB))
	c.kubectl(t, k, ns, "create", "job", "manual", "--from=cronjob/tick")
	c.kubectl(t, k, ns, "wait", "--for=condition=complete", "job/manual", "--timeout=90s")
	poll(t, "a scheduled Job of the CronJob", 100*time.Second, func() (bool, string) {
		jobs, err := c.cs.BatchV1().Jobs(ns).List(ctxT(t, 10*time.Second), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, j := range jobs.Items {
			names = append(names, j.Name)
			if j.Name != "manual" && strings.HasPrefix(j.Name, "tick-") && metav1.GetControllerOf(&j) != nil {
				return true, ""
			}
		}
		return false, fmt.Sprint(names)
	})
	if got := c.kubectl(t, k, ns, "get", "cronjob/tick", "-o", "jsonpath={.status.lastScheduleTime}"); got == "" {
		t.Errorf("the CronJob fired but has no lastScheduleTime")
	}
}

// cascadingDelete deletes Deployments with each --cascade mode.
func (c *cluster) cascadingDelete(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "gc")
	for _, name := range []string{"bg", "fg", "orphan"} {
		c.kubectl(t, k, ns, "create", "deployment", name, "--image="+imageA, "--replicas=2")
	}
	for _, name := range []string{"bg", "fg", "orphan"} {
		c.kubectl(t, k, ns, "rollout", "status", "deploy/"+name, "--timeout=90s")
	}
	rsAndPods := func(app string) (rs, pods []metav1.Object) {
		t.Helper()
		l, err := c.cs.AppsV1().ReplicaSets(ns).List(ctxT(t, 10*time.Second), metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			rs = append(rs, &l.Items[i])
		}
		ps := c.pods(t, ns, "app="+app)
		for i := range ps {
			pods = append(pods, &ps[i])
		}
		return rs, pods
	}

	t.Run("background", func(t *testing.T) {
		c.kubectl(t, k, ns, "delete", "deploy", "bg", "--cascade=background")
		poll(t, "ReplicaSet and pods of bg gone", ctrlTimeout, func() (bool, string) {
			rs, pods := rsAndPods("bg")
			return len(rs) == 0 && len(pods) == 0, fmt.Sprintf("%d ReplicaSets, %d pods", len(rs), len(pods))
		})
	})
	t.Run("foreground", func(t *testing.T) {
		// kubectl waits until the Deployment is gone, which foreground
		// deletion allows only once its dependents (and theirs) are.
		c.kubectl(t, k, ns, "delete", "deploy", "fg", "--cascade=foreground", "--timeout=90s")
		rs, pods := rsAndPods("fg")
		if len(rs) != 0 || len(pods) != 0 {
			t.Fatalf("after a foreground delete returned: %d ReplicaSets, %d pods left", len(rs), len(pods))
		}
	})
	t.Run("orphan", func(t *testing.T) {
		rsBefore, podsBefore := rsAndPods("orphan")
		if len(rsBefore) != 1 || len(podsBefore) != 2 {
			t.Fatalf("before: %d ReplicaSets, %d pods; want 1 and 2", len(rsBefore), len(podsBefore))
		}
		c.kubectl(t, k, ns, "delete", "deploy", "orphan", "--cascade=orphan")
		poll(t, "ReplicaSet of orphan without owner", ctrlTimeout, func() (bool, string) {
			rs, _ := rsAndPods("orphan")
			return len(rs) == 1 && len(rs[0].GetOwnerReferences()) == 0, fmt.Sprintf("%d ReplicaSets", len(rs))
		})
		rs, pods := rsAndPods("orphan")
		if rs[0].GetUID() != rsBefore[0].GetUID() {
			t.Fatalf("the orphaned ReplicaSet was replaced")
		}
		if len(pods) != 2 {
			t.Fatalf("%d pods after orphaning, want the 2 from before", len(pods))
		}
		for _, p := range pods {
			if ref := metav1.GetControllerOfNoCopy(p); ref == nil || ref.UID != rs[0].GetUID() {
				t.Errorf("pod %s lost its ReplicaSet owner: %v", p.GetName(), p.GetOwnerReferences())
			}
		}
	})
}

// dedicated is the pod spec addition that pins pods to the nodes with the
// label and taint skiff.test/pool=<pool>.
func dedicated(pool string) string {
	return fmt.Sprintf(`      nodeSelector: {skiff.test/pool: %[1]s}
      tolerations:
      - {key: skiff.test/pool, operator: Equal, value: %[1]s, effect: NoSchedule}
`, pool)
}

// poolAgent is the options of sim nodes labelled and tainted
// skiff.test/pool=<pool>, so that only the pods of dedicated(pool) run there.
func poolAgent(pool, prefix string) framework.AgentOptions {
	return framework.AgentOptions{Nodes: 1, NamePrefix: prefix, ExtraArgs: []string{
		"--node-labels", "skiff.test/pool=" + pool, "--register-with-taints", "skiff.test/pool=" + pool + ":NoSchedule"}}
}

// drain drains a node whose pods a PodDisruptionBudget protects.
func (c *cluster) drain(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "drain")
	c.startNodes(t, poolAgent("drain", "drain-"), "drain-0")
	c.apply(t, k, ns, deploymentManifest("db", 2, imageA, dedicated("drain")))
	c.apply(t, k, ns, `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: db
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: db}
`)
	c.kubectl(t, k, ns, "rollout", "status", "deploy/db", "--timeout=90s")
	poll(t, "PDB db observed", ctrlTimeout, func() (bool, string) {
		out := c.kubectl(t, k, ns, "get", "pdb", "db", "-o", "jsonpath={.status.observedGeneration} {.status.currentHealthy} {.status.disruptionsAllowed}")
		return out == "1 2 0", out
	})

	r := c.s.Kubectl(k, "drain", "drain-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=10s")
	if r.ExitCode == 0 {
		t.Fatalf("drain succeeded although the PDB allows no disruption:\n%s", r)
	}
	mustContain(t, "drain blocked by the PDB", r.Stdout+r.Stderr, "Cannot evict pod as it would violate the pod's disruption budget")
	if names, nodes := c.readyPods(t, ns, "app=db"); len(names) != 2 || nodes[0] != "drain-0" || nodes[1] != "drain-0" {
		t.Fatalf("after the blocked drain: ready pods %v on %v, want 2 on drain-0", names, nodes)
	}

	// With room for one disruption, and a node to move to, drain finishes.
	c.startNodes(t, poolAgent("drain", "drain-spare-"), "drain-spare-0")
	c.kubectl(t, k, ns, "patch", "pdb", "db", "--type=merge", "-p", `{"spec":{"minAvailable":1}}`)
	poll(t, "PDB db allows one disruption", ctrlTimeout, func() (bool, string) {
		out := c.kubectl(t, k, ns, "get", "pdb", "db", "-o", "jsonpath={.status.disruptionsAllowed}")
		return out == "1", out
	})
	out := c.s.MustKubectl(t, k, "drain", "drain-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s")
	mustContain(t, "drain", out, "node/drain-0 drained")
	poll(t, "both pods Ready on drain-spare-0", ctrlTimeout, func() (bool, string) {
		names, nodes := c.readyPods(t, ns, "app=db")
		return len(names) == 2 && nodes[0] == "drain-spare-0" && nodes[1] == "drain-spare-0", fmt.Sprint(names, nodes)
	})
}

// nodeHeartbeatLoss kills the agent of a node that runs a Deployment's pods
// and waits until the pods run elsewhere. It has its own server, with a
// short node-monitor grace period and default tolerations.
func nodeHeartbeatLoss(t *testing.T, k framework.Kubectl) {
	const grace = 20 * time.Second // the sim nodes renew their Leases every 10s
	c := startCluster(t, []string{"--node-monitor-grace-period=" + grace.String(),
		"--default-not-ready-toleration-seconds=2", "--default-unreachable-toleration-seconds=2"})
	lost := c.startNodes(t, framework.AgentOptions{Nodes: 1, NamePrefix: "lost-"}, "lost-0")
	ns := c.namespace(t, k, "heartbeat")
	c.apply(t, k, ns, deploymentManifest("app", 3, imageA, ""))
	c.kubectl(t, k, ns, "rollout", "status", "deploy/app", "--timeout=90s")
	if _, nodes := c.readyPods(t, ns, "app=app"); len(nodes) != 3 || slices.ContainsFunc(nodes, func(n string) bool { return n != "lost-0" }) {
		t.Fatalf("pods on %v, want all 3 on lost-0", nodes)
	}
	for _, p := range c.pods(t, ns, "app=app") {
		if !slices.ContainsFunc(p.Spec.Tolerations, func(tol corev1.Toleration) bool {
			return tol.Key == corev1.TaintNodeUnreachable && tol.TolerationSeconds != nil && *tol.TolerationSeconds == 2
		}) {
			t.Fatalf("pod %s lacks the configured default unreachable toleration: %+v", p.Name, p.Spec.Tolerations)
		}
	}
	c.startNodes(t, framework.AgentOptions{Nodes: 2, NamePrefix: "spare-"}, "spare-0", "spare-1")

	lost.Kill()
	killed := time.Now()
	poll(t, "3 pods Running and Ready on the spare nodes", grace+ctrlTimeout, func() (bool, string) {
		names, nodes := c.readyPods(t, ns, "app=app")
		spare := 0
		for _, n := range nodes {
			if strings.HasPrefix(n, "spare-") {
				spare++
			}
		}
		return spare == 3, fmt.Sprint(names, nodes)
	})
	t.Logf("heartbeat loss (kill -9 of lost-0's agent) to 3 replacements Running on spare nodes: %s (node-monitor grace period %s, toleration 2s)",
		time.Since(killed).Round(100*time.Millisecond), grace)
	for _, p := range c.pods(t, ns, "app=app") {
		if p.Spec.NodeName == "lost-0" && p.DeletionTimestamp == nil {
			t.Errorf("pod %s on lost-0 was not evicted", p.Name)
		}
	}
	node, err := c.cs.CoreV1().Nodes().Get(ctxT(t, 10*time.Second), "lost-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nodeReady(node) {
		t.Errorf("lost-0 is still Ready")
	}
	if !slices.ContainsFunc(node.Spec.Taints, func(tt corev1.Taint) bool {
		return tt.Key == corev1.TaintNodeUnreachable && tt.Effect == corev1.TaintEffectNoExecute
	}) {
		t.Errorf("lost-0 lacks the unreachable NoExecute taint: %+v", node.Spec.Taints)
	}
}
