package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/server"
)

// APIConfig configures the API benchmark.
type APIConfig struct {
	// Pods is how many pods are created, read and listed.
	Pods int
	// Workers is the number of concurrent clients.
	Workers int
	// Protobuf selects the protobuf wire format instead of JSON.
	Protobuf bool
	// Progress receives progress lines.
	Progress io.Writer
}

// startServer runs a control plane in a temporary directory on a free
// loopback port and returns its admin client config and a stop function.
// Options adjust the control plane's configuration.
func startServer(ctx context.Context, opts ...func(*server.Config)) (*rest.Config, func(), error) {
	dir, err := os.MkdirTemp("", "skiff-bench-")
	if err != nil {
		return nil, nil, err
	}
	cfg := server.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SkiffVersion: "bench"}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		cancel()
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("start control plane: %w", err)
	}
	stop := func() {
		cancel()
		if err := <-errc; err != nil {
			fmt.Fprintf(os.Stderr, "control plane stopped with an error: %v\n", err)
		}
		_ = os.RemoveAll(dir)
	}
	return srv.RestConfig(), stop, nil
}

func benchPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%06d", i), Labels: map[string]string{"app": "bench", "shard": fmt.Sprint(i % 10)}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "skiff.local/busybox:latest",
			Command: []string{"sleep", "3600"}}}},
	}
}

// API measures create, get, list and watch against an embedded-etcd
// control plane.
func API(ctx context.Context, cfg APIConfig) (Result, error) {
	if cfg.Pods <= 0 {
		cfg.Pods = 10000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	rc, stop, err := startServer(ctx, withoutScheduler) // a scheduler would write an event and a status for each pod
	if err != nil {
		return Result{}, err
	}
	defer stop()
	rc.QPS, rc.Burst = -1, 0
	rc.ContentType = "application/json"
	if cfg.Protobuf {
		rc.ContentType = "application/vnd.kubernetes.protobuf"
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return Result{}, err
	}
	pods := cs.CoreV1().Pods("default")

	// a watcher counts the events of the creates
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := pods.Watch(wctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return Result{}, fmt.Errorf("watch: %w", err)
	}
	var watched atomic.Int64
	allSeen := make(chan time.Time, 1)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added && watched.Add(1) == int64(cfg.Pods) {
				allSeen <- time.Now()
			}
		}
	}()

	fmt.Fprintf(cfg.Progress, "creating %d pods with %d clients...\n", cfg.Pods, cfg.Workers)
	createLat, createDur, err := parallel(cfg.Pods, cfg.Workers, func(i int) error {
		_, err := pods.Create(ctx, benchPod(i), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("create: %w", err)
	}
	createStart := time.Now().Add(-createDur)
	var watchDur time.Duration
	select {
	case t := <-allSeen:
		watchDur = t.Sub(createStart)
	case <-time.After(60 * time.Second):
		return Result{}, fmt.Errorf("watch saw %d of %d creations", watched.Load(), cfg.Pods)
	}

	fmt.Fprintf(cfg.Progress, "reading %d pods...\n", cfg.Pods)
	getLat, getDur, err := parallel(cfg.Pods, cfg.Workers, func(i int) error {
		_, err := pods.Get(ctx, benchPod(i).Name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("get: %w", err)
	}

	fmt.Fprintf(cfg.Progress, "listing %d pods...\n", cfg.Pods)
	var lists []time.Duration
	for i := 0; i < 5; i++ {
		t := time.Now()
		l, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return Result{}, fmt.Errorf("list: %w", err)
		}
		if len(l.Items) != cfg.Pods {
			return Result{}, fmt.Errorf("list returned %d pods, want %d", len(l.Items), cfg.Pods)
		}
		lists = append(lists, time.Since(t))
	}
	sort.Slice(lists, func(i, j int) bool { return lists[i] < lists[j] })
	t := time.Now()
	l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "shard=3"})
	if err != nil {
		return Result{}, fmt.Errorf("list with selector: %w", err)
	}
	selDur := time.Since(t)
	if len(l.Items) != cfg.Pods/10 {
		return Result{}, fmt.Errorf("selector list returned %d pods, want %d", len(l.Items), cfg.Pods/10)
	}

	format := "json"
	if cfg.Protobuf {
		format = "protobuf"
	}
	n := float64(cfg.Pods)
	return Result{Scenario: "api", Figures: map[string]Figure{
		"create_per_s":       {n / createDur.Seconds(), "ops/s"},
		"create_p50_ms":      {ms(percentile(createLat, 50)), "ms"},
		"create_p99_ms":      {ms(percentile(createLat, 99)), "ms"},
		"get_per_s":          {n / getDur.Seconds(), "ops/s"},
		"get_p50_ms":         {ms(percentile(getLat, 50)), "ms"},
		"get_p99_ms":         {ms(percentile(getLat, 99)), "ms"},
		"list_10k_ms":        {ms(lists[len(lists)/2]) * 10000 / n, "ms"},
		"list_ms":            {ms(lists[len(lists)/2]), "ms"},
		"list_selector_ms":   {ms(selDur), "ms"},
		"watch_events_per_s": {n / watchDur.Seconds(), "events/s"},
		"pods":               {n, "count"},
		"clients":            {float64(cfg.Workers), "count"},
	}, Notes: []string{fmt.Sprintf("%d pods, %d concurrent clients, %s, embedded etcd; list_10k_ms is the median of 5 full lists scaled to 10,000 pods", cfg.Pods, cfg.Workers, format)}}, nil
}

// parallel runs op(0..n-1) on workers goroutines and returns each call's
// latency (sorted) and the wall time.
func parallel(n, workers int, op func(i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				if err := op(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	if firstErr != nil {
		return nil, 0, firstErr
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, total, nil
}
