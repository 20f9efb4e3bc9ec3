package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestAgainstAPIServer drives the scheduler against a running API server
// when SKIFF_TEST_KUBECONFIG names its kubeconfig (skipped otherwise):
// it creates SKIFF_TEST_NODES plain Node objects (default 100) and
// SKIFF_TEST_PODS pods (default 1000) through the API, waits until all are
// bound, checks the failure reporting of an unschedulable pod, and logs
// pods/s and p50/p99 latency. It is the shape `skiff bench scheduler` takes.
func TestAgainstAPIServer(t *testing.T) {
	kc := os.Getenv("SKIFF_TEST_KUBECONFIG")
	if kc == "" {
		t.Skip("SKIFF_TEST_KUBECONFIG not set")
	}
	nNodes, nPods := envInt("SKIFF_TEST_NODES", 100), envInt("SKIFF_TEST_PODS", 1000)
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 5000, 10000
	client := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	run := rand.String(5)
	ns := "sched-" + run
	if _, err := client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// pods are admitted only with their ServiceAccount, which no
	// controller may create on this control plane
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	var nodeNames []string
	t.Cleanup(func() {
		// No kubelet finishes graceful deletions of the simulated nodes' pods.
		zero := int64(0)
		_ = client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		_ = client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		for _, n := range nodeNames {
			_ = client.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
		}
	})
	parallel(t, nNodes, func(i int) error {
		name := fmt.Sprintf("sim-%s-%05d", run, i)
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			v1.LabelHostname: name, v1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%10), "skiff.test/run": run}}}
		created, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = v1.NodeStatus{
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("64Gi"), v1.ResourcePods: resource.MustParse("110")},
			Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("64Gi"), v1.ResourcePods: resource.MustParse("110")},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady"}},
		}
		_, err = client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	for i := 0; i < nNodes; i++ {
		nodeNames = append(nodeNames, fmt.Sprintf("sim-%s-%05d", run, i))
	}

	var mu sync.Mutex
	var lat []time.Duration
	all := make(chan struct{})
	s, err := New(Config{RestConfig: rc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnBound: func(namespace, _, _ string, d time.Duration) {
			if namespace != ns {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, d)
			if len(lat) == nPods {
				close(all)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(sctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-s.Ready()

	start := time.Now()
	parallel(t, nPods, func(i int) error {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%06d", i), Namespace: ns},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("500Mi")}}}}}}
		_, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	<-all
	elapsed := time.Since(start)
	slices.Sort(lat)
	t.Logf("%d nodes, %d pods: %.0f pods/s, p50 %v, p99 %v (queue to binding)", nNodes, nPods,
		float64(nPods)/elapsed.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100])

	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.Spec.NodeName == "" {
			t.Errorf("pod %s not bound according to the API server", p.Name)
		}
	}

	// A pod that fits nowhere is reported like upstream does.
	huge := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "huge", Namespace: ns},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "x",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("64")}}}}}}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, huge, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0/%d nodes are available: %d Insufficient cpu. preemption: 0/%d nodes are available: %d No preemption victims found for incoming pod.",
		nNodes, nNodes, nNodes, nNodes)
	var cond *v1.PodCondition
	for cond == nil {
		time.Sleep(20 * time.Millisecond)
		p, err := client.CoreV1().Pods(ns).Get(ctx, "huge", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == v1.PodScheduled {
				cond = &p.Status.Conditions[i]
			}
		}
	}
	if cond.Status != v1.ConditionFalse || cond.Reason != "Unschedulable" || cond.Message != want {
		t.Errorf("condition %+v\nwant %q", cond, want)
	}
	for found := false; !found; time.Sleep(20 * time.Millisecond) {
		evs, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=huge"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedScheduling" && e.Message == want && e.Type == v1.EventTypeWarning {
				found = true
			}
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// parallel runs fn for 0..n-1 on 32 goroutines and fails on the first error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	next := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}
