package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/internal/controller/manager"
)

// FailoverConfig configures the failover benchmark.
type FailoverConfig struct {
	// Binary is the skiff binary the servers run (default: this executable).
	Binary string
	// Servers is the number of `skiff server` processes (at least 2).
	Servers int
	// Rounds is the number of times the leader is killed.
	Rounds int
	// LeaseDuration, RenewDeadline and RetryPeriod are the servers'
	// leader-election timings (default 2s, 1.5s, 250ms).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Timeout bounds each wait (server start, failover).
	Timeout time.Duration
	// Progress receives progress lines.
	Progress io.Writer
}

// Failover timings the benchmark uses unless told otherwise: a dead
// leader's Lease expires 2 s after its last renewal; a live leader that
// cannot renew for 1.5 s stops acting, half a second before anyone else
// may take over.
const (
	FailoverLeaseDuration = 2 * time.Second
	FailoverRenewDeadline = 1500 * time.Millisecond
	FailoverRetryPeriod   = 250 * time.Millisecond
)

const failoverNamespace = "bench-failover"

// failoverServer is one `skiff server` process of the benchmark.
type failoverServer struct {
	identity, dir, listen string
	proc                  *child
	client                kubernetes.Interface
}

func (s *failoverServer) kubeconfig() string { return filepath.Join(s.dir, "admin.kubeconfig") }

// Failover starts an external etcd and several `skiff server` processes
// that share it, then repeatedly kills the controller-manager leader with
// SIGKILL and measures how long it takes until the Lease has a new holder
// (lease_handover_ms) and until a ReplicaSet created right after the kill
// has its pod, created by the new leader's controllers (failover_ms).
func Failover(ctx context.Context, cfg FailoverConfig) (res Result, err error) {
	if cfg.Servers == 0 {
		cfg.Servers = 3
	}
	if cfg.Servers < 2 {
		return Result{}, errors.New("failover: need at least 2 servers")
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = FailoverLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = FailoverRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = FailoverRetryPeriod
	}
	if !(cfg.LeaseDuration > cfg.RenewDeadline && cfg.RenewDeadline > cfg.RetryPeriod) {
		return Result{}, fmt.Errorf("failover: need lease duration (%v) > renew deadline (%v) > retry period (%v)",
			cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	bin, err := selfBinary(cfg.Binary)
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp("", "skiff-bench-failover-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(cfg.Progress, "starting etcd and %d servers (lease %s, renew deadline %s, retry %s)...\n",
		cfg.Servers, cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod)
	etcd, endpoint, err := startEtcd(ctx, dir)
	if err != nil {
		return Result{}, err
	}
	servers := make([]*failoverServer, cfg.Servers)
	defer func() {
		var wg sync.WaitGroup
		for _, s := range servers {
			if s != nil && s.proc != nil {
				wg.Add(1)
				go func() { defer wg.Done(); s.proc.stop(15 * time.Second) }()
			}
		}
		wg.Wait()
		etcd.stop(10 * time.Second)
	}()
	start := func(s *failoverServer) error {
		p, err := startChild(s.identity, filepath.Join(dir, s.identity+".log"), bin, "server",
			"--data-dir", s.dir, "--listen", s.listen, "--etcd-endpoints", endpoint, "--disable-agent", "--cluster-dns-listen", "127.0.0.1:0",
			"--leader-elect-identity", s.identity,
			"--leader-elect-lease-duration", cfg.LeaseDuration.String(),
			"--leader-elect-renew-deadline", cfg.RenewDeadline.String(),
			"--leader-elect-retry-period", cfg.RetryPeriod.String(),
			"--log-level", "info")
		if err != nil {
			return err
		}
		s.proc = p
		return waitReady(ctx, p, s.kubeconfig(), s.listen, cfg.Timeout)
	}
	for i := range servers {
		port, err := freePort()
		if err != nil {
			return Result{}, err
		}
		s := &failoverServer{identity: "bench-server-" + strconv.Itoa(i), dir: filepath.Join(dir, "server-"+strconv.Itoa(i)),
			listen: "127.0.0.1:" + strconv.Itoa(port)}
		servers[i] = s
		// One at a time: the first creates the cluster's bootstrap objects.
		if err := start(s); err != nil {
			return Result{}, err
		}
		// Each server has its own CA; each is reached through its own
		// admin kubeconfig.
		rc, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig())
		if err != nil {
			return Result{}, err
		}
		rc.QPS, rc.Burst = 100, 200
		if s.client, err = kubernetes.NewForConfig(rc); err != nil {
			return Result{}, err
		}
	}
	byIdentity := func(id string) int {
		return slices.IndexFunc(servers, func(s *failoverServer) bool { return s.identity == id })
	}
	if _, err := servers[0].client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: failoverNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return Result{}, fmt.Errorf("create namespace: %w", err)
	}
	// The controllers act before the first kill.
	if err := probeReplicaSet(ctx, servers[0].client, "warmup", cfg.Timeout); err != nil {
		return Result{}, fmt.Errorf("no controller manager acts before the first kill: %w", err)
	}

	var failovers, handovers []time.Duration
	for r := range cfg.Rounds {
		holder, err := leaseHolder(ctx, servers[0].client)
		if err != nil {
			return Result{}, err
		}
		h := byIdentity(holder)
		if h < 0 {
			return Result{}, fmt.Errorf("round %d: the controller-manager Lease is held by %q, none of the benchmark's servers", r+1, holder)
		}
		obs := servers[(h+1)%len(servers)]
		fo, ho, err := failoverRound(ctx, cfg, r, servers[h], obs, byIdentity)
		if err != nil {
			return Result{}, err
		}
		failovers, handovers = append(failovers, fo), append(handovers, ho)
		fmt.Fprintf(cfg.Progress, "round %d/%d: killed %s; lease handed over after %.0f ms, new leader's pod after %.0f ms\n",
			r+1, cfg.Rounds, servers[h].identity, ms(ho), ms(fo))
		// Restart the killed server so that every round has the same
		// number of servers.
		if err := start(servers[h]); err != nil {
			return Result{}, fmt.Errorf("restart %s: %w", servers[h].identity, err)
		}
	}
	slices.Sort(failovers)
	slices.Sort(handovers)
	return Result{Scenario: "failover", Figures: map[string]Figure{
		"failover_ms":           {ms(percentile(failovers, 50)), "ms"},
		"failover_max_ms":       {ms(failovers[len(failovers)-1]), "ms"},
		"lease_handover_ms":     {ms(percentile(handovers, 50)), "ms"},
		"lease_handover_max_ms": {ms(handovers[len(handovers)-1]), "ms"},
		"rounds":                {float64(cfg.Rounds), "rounds"},
		"servers":               {float64(cfg.Servers), "servers"},
		"lease_duration_ms":     {ms(cfg.LeaseDuration), "ms"},
	}, Notes: []string{fmt.Sprintf("%d skiff server processes on one external etcd (lease %s, renew deadline %s, retry period %s); "+
		"each round kills the controller-manager leader with SIGKILL. failover_ms (median of %d rounds): kill to the pod of a "+
		"ReplicaSet created right after the kill (made by the new leader's controllers); lease_handover_ms: kill to a new "+
		"holder of the Lease kube-system/%s.", cfg.Servers, cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod, cfg.Rounds, manager.DefaultLeaseName)}}, nil
}

// failoverRound kills the leader, creates a probe ReplicaSet through the
// observer server and returns the time from the kill to the probe's pod
// and to the Lease's new holder.
func failoverRound(ctx context.Context, cfg FailoverConfig, r int, leader, obs *failoverServer, byIdentity func(string) int) (failover, handover time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	name := "probe-" + strconv.Itoa(r)
	leases, err := obs.client.CoordinationV1().Leases(manager.DefaultLeaseNamespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, fmt.Errorf("watch leases: %w", err)
	}
	defer leases.Stop()
	pods, err := obs.client.CoreV1().Pods(failoverNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: "probe=" + name})
	if err != nil {
		return 0, 0, fmt.Errorf("watch pods: %w", err)
	}
	defer pods.Stop()

	killed := time.Now()
	leader.proc.kill()
	if _, err := obs.client.AppsV1().ReplicaSets(failoverNamespace).Create(ctx, probeRS(name), metav1.CreateOptions{}); err != nil {
		return 0, 0, fmt.Errorf("create probe ReplicaSet: %w", err)
	}
	for failover == 0 || handover == 0 {
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("round %d: no new leader acted within %s after %s was killed (lease handed over: %v)",
				r+1, cfg.Timeout, leader.identity, handover > 0)
		case ev, ok := <-leases.ResultChan():
			if !ok {
				return 0, 0, errors.New("lease watch closed")
			}
			l, isLease := ev.Object.(*coordinationv1.Lease)
			if !isLease || l.Name != manager.DefaultLeaseName || l.Spec.HolderIdentity == nil || handover != 0 {
				continue
			}
			if id := *l.Spec.HolderIdentity; id != "" && id != leader.identity {
				handover = time.Since(killed)
				if byIdentity(id) < 0 {
					return 0, 0, fmt.Errorf("the Lease went to %q, none of the benchmark's servers", id)
				}
			}
		case ev, ok := <-pods.ResultChan():
			if !ok {
				return 0, 0, errors.New("pod watch closed")
			}
			if ev.Type == watch.Added && failover == 0 {
				failover = time.Since(killed)
			}
		}
	}
	return failover, handover, nil
}

// probeReplicaSet creates a one-pod ReplicaSet and waits until its pod
// exists.
func probeReplicaSet(ctx context.Context, client kubernetes.Interface, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w, err := client.CoreV1().Pods(failoverNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: "probe=" + name})
	if err != nil {
		return err
	}
	defer w.Stop()
	if _, err := client.AppsV1().ReplicaSets(failoverNamespace).Create(ctx, probeRS(name), metav1.CreateOptions{}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("ReplicaSet %s has no pod after %s", name, timeout)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errors.New("pod watch closed")
			}
			if ev.Type == watch.Added {
				return nil
			}
		}
	}
}

func probeRS(name string) *appsv1.ReplicaSet {
	labels := map[string]string{"probe": name}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "skiff.local/busybox:latest"}}}}},
	}
}

// leaseHolder returns the controller-manager Lease's holder, waiting
// until it has one.
func leaseHolder(ctx context.Context, client kubernetes.Interface) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, err := client.CoordinationV1().Leases(manager.DefaultLeaseNamespace).Get(ctx, manager.DefaultLeaseName, metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			return *l.Spec.HolderIdentity, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the controller-manager Lease has no holder after 60s (last error: %v)", err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
