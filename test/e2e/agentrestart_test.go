package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/image"
)

// TestAgentSurvivesKill9 kills a real node's `skiff agent` (its own
// containerd, in a one-node lab) with SIGKILL ten times in a row while two
// pods run, one with readiness and liveness probes. Every new agent starts
// over: it stops the containerd the killed one left, starts its own,
// registers and adopts the running containers. No container may restart
// (restartCount stays 0, same container IDs, as the API and containerd
// see them) and the pods stay Ready throughout, as a watch on them shows.
func TestAgentSurvivesKill9(t *testing.T) {
	lab := env.StartLab(t, 1)
	lab.BuildImages(t)
	cs, err := lab.Client()
	if err != nil {
		t.Fatal(err)
	}
	node := lab.State().Nodes[0]
	ctx := context.Background()
	const ns = "kill9"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grace := int64(1)
	healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "sleeper"}, Spec: corev1.PodSpec{NodeName: node.Name, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "sleep", Image: image.BusyboxName, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "exec sleep 3600"}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{NodeName: node.Name, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "web", Image: image.TestserverName, ImagePullPolicy: corev1.PullNever,
				Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: healthz, PeriodSeconds: 1, FailureThreshold: 1},
				LivenessProbe:  &corev1.Probe{ProbeHandler: healthz, PeriodSeconds: 1, FailureThreshold: 3}}}}},
	}
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// the containers as they first ran: name → container ID
	ids := map[string]string{}
	var rv string
	poll(t, "both pods Running and Ready", 2*time.Minute, func() (bool, string) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		rv = list.ResourceVersion
		var why []string
		for i := range list.Items {
			p := &list.Items[i]
			if !podReady(p) || p.Status.Phase != corev1.PodRunning {
				why = append(why, fmt.Sprintf("%s: %s %+v", p.Name, p.Status.Phase, p.Status.Conditions))
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				ids[p.Name+"/"+c.Name] = c.ContainerID
			}
		}
		return len(why) == 0 && len(ids) == 2, strings.Join(why, "; ")
	})

	// from here on every change the API sees of the pods is checked
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var problems []string
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Bookmark {
				continue
			}
			if why := unchanged(p, ids); why != "" {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s %s: %s", ev.Type, time.Now().Format("15:04:05.000"), why))
				mu.Unlock()
			}
		}
	}()

	for i := range 10 {
		killed := time.Now()
		if err := lab.KillAgent(0); err != nil {
			t.Fatal(err)
		}
		if err := lab.StartAgent(0); err != nil {
			t.Fatal(err)
		}
		// the new agent got as far as renewing the node's lease (it
		// replaced containerd and registered); the next kill comes at
		// a different point of its start
		waitLeaseAfter(t, cs, node.Name, killed)
		time.Sleep(time.Duration(i%4) * 700 * time.Millisecond)
	}
	// the last agent runs on: it adopts the pods, probes them and syncs
	// them every few seconds; what it does is seen by the watch
	waitLeaseAfter(t, cs, node.Name, time.Now())
	time.Sleep(15 * time.Second)
	w.Stop()
	<-watched

	for _, name := range []string{"sleeper", "web"} {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if why := unchanged(p, ids); why != "" {
			t.Errorf("at the end: %s", why)
		}
	}
	mu.Lock()
	for _, p := range problems {
		t.Errorf("while the agent was killed and restarted: %s", p)
	}
	mu.Unlock()
	// containerd holds exactly the containers that first ran, running
	ctrs, err := nodeCRI(t, node).ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[strings.TrimPrefix(id, "containerd://")] = true
	}
	for _, c := range ctrs.Containers {
		if !want[c.Id] || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("containerd has container %s (%s/%s attempt %d) %s; want only %v running", c.Id,
				c.Labels["io.kubernetes.pod.name"], c.Metadata.Name, c.Metadata.Attempt, c.State, ids)
		}
		delete(want, c.Id)
	}
	if len(want) > 0 {
		t.Errorf("containers %v are gone from containerd", want)
	}
}

// unchanged says why a pod is not as it first ran ("" if it is): Running
// and Ready, every container running with its first container ID and no
// restarts.
func unchanged(p *corev1.Pod, ids map[string]string) string {
	var why []string
	if p.Status.Phase != corev1.PodRunning {
		why = append(why, "phase "+string(p.Status.Phase))
	}
	if !podReady(p) {
		why = append(why, "not Ready")
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.RestartCount != 0 || c.ContainerID != ids[p.Name+"/"+c.Name] || c.State.Running == nil || !c.Ready {
			why = append(why, fmt.Sprintf("container %s: id %s (first %s), restarts %d, ready %t, state %+v",
				c.Name, c.ContainerID, ids[p.Name+"/"+c.Name], c.RestartCount, c.Ready, c.State))
		}
	}
	if len(why) == 0 {
		return ""
	}
	return "pod " + p.Name + ": " + strings.Join(why, "; ")
}

// waitLeaseAfter waits until the node's lease was renewed after t.
func waitLeaseAfter(t *testing.T, cs kubernetes.Interface, node string, after time.Time) {
	t.Helper()
	poll(t, "node "+node+"'s lease renewed", 2*time.Minute, func() (bool, string) {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if l.Spec.RenewTime == nil {
			return false, "no renew time"
		}
		return l.Spec.RenewTime.After(after), l.Spec.RenewTime.String()
	})
}
