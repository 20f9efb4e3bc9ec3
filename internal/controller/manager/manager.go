// Package manager runs skiff's controllers on one shared informer factory,
// leader-elected through a coordination.k8s.io Lease: only the holder acts,
// and when it loses the Lease every controller's context is cancelled at
// once (fencing) before it campaigns again.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/skiff-sh/skiff/internal/controller/cronjob"
	"github.com/skiff-sh/skiff/internal/controller/csrapproving"
	"github.com/skiff-sh/skiff/internal/controller/csrsigning"
	"github.com/skiff-sh/skiff/internal/controller/daemonset"
	"github.com/skiff-sh/skiff/internal/controller/deployment"
	"github.com/skiff-sh/skiff/internal/controller/disruption"
	"github.com/skiff-sh/skiff/internal/controller/endpoints"
	"github.com/skiff-sh/skiff/internal/controller/endpointslice"
	"github.com/skiff-sh/skiff/internal/controller/garbagecollector"
	"github.com/skiff-sh/skiff/internal/controller/job"
	"github.com/skiff-sh/skiff/internal/controller/loadbalancer"
	"github.com/skiff-sh/skiff/internal/controller/namespace"
	"github.com/skiff-sh/skiff/internal/controller/nodeipam"
	"github.com/skiff-sh/skiff/internal/controller/nodelifecycle"
	"github.com/skiff-sh/skiff/internal/controller/podautoscaler"
	"github.com/skiff-sh/skiff/internal/controller/replicaset"
	"github.com/skiff-sh/skiff/internal/controller/rootcacert"
	"github.com/skiff-sh/skiff/internal/controller/serviceaccount"
	"github.com/skiff-sh/skiff/internal/controller/statefulset"
	"github.com/skiff-sh/skiff/internal/pki"
)

// Defaults, as upstream's kube-controller-manager.
const (
	DefaultLeaseNamespace = "kube-system"
	DefaultLeaseName      = "skiff-controller-manager"
	DefaultLeaseDuration  = 15 * time.Second
	DefaultRenewDeadline  = 10 * time.Second
	DefaultRetryPeriod    = 2 * time.Second
)

// Controller names for Config.Controllers.
const (
	ReplicaSet       = "replicaset"
	Deployment       = "deployment"
	GarbageCollector = "garbagecollector"
	Namespace        = "namespace"
	Endpoints        = "endpoints"
	EndpointSlice    = "endpointslice"
	ServiceAccount   = "serviceaccount"
	Disruption       = "disruption"
	NodeIPAM         = "nodeipam"
	NodeLifecycle    = "nodelifecycle"
	DaemonSet        = "daemonset"
	StatefulSet      = "statefulset"
	Job              = "job"
	CronJob          = "cronjob"
	// HorizontalPodAutoscaling is the HPA controller (autoscaling/v2).
	HorizontalPodAutoscaling = "horizontalpodautoscaling"
	// LoadBalancer gives LoadBalancer services an IP from LoadBalancerPool.
	LoadBalancer = "loadbalancer"
	// RootCACertPublisher puts the cluster CA in every namespace's
	// kube-root-ca.crt ConfigMap (the CA the manager trusts the API
	// server with).
	RootCACertPublisher = "root-ca-cert-publisher"
	// CSRApproving approves nodes' certificate signing requests.
	CSRApproving = "csrapproving"
	// CSRSigning signs approved requests with the cluster CA (needs
	// ClusterSigningCertFile and ClusterSigningKeyFile; off without them).
	CSRSigning = "csrsigning"
)

// All is every controller the manager runs by default.
var All = []string{ReplicaSet, Deployment, GarbageCollector, Namespace, Endpoints, EndpointSlice, ServiceAccount, Disruption, NodeIPAM, NodeLifecycle, DaemonSet, StatefulSet, Job, CronJob, HorizontalPodAutoscaling, LoadBalancer, RootCACertPublisher, CSRApproving, CSRSigning}

// Config configures the manager.
type Config struct {
	// Rest reaches the API server; when nil, Kubeconfig is loaded.
	Rest *rest.Config
	// Kubeconfig is a kubeconfig path (skiff controller-manager --kubeconfig).
	Kubeconfig string
	// Controllers to run; empty means All.
	Controllers []string
	// DisableLeaderElection runs the controllers at once, alone (tests,
	// single-server setups that want no Lease traffic).
	DisableLeaderElection bool
	// LeaseNamespace/LeaseName name the Lease (default kube-system/skiff-controller-manager).
	LeaseNamespace, LeaseName string
	// Identity names this instance in the Lease; default hostname_uuid.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election
	// (defaults 15s, 10s, 2s; shorter ones make failover faster).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Workers per controller; 0 means each controller's default.
	Workers int
	// ClusterCIDR is the range node IPAM cuts pod CIDRs from (default
	// 10.42.0.0/16); NodeCIDRMaskSize is each node's prefix length
	// (default 24).
	ClusterCIDR      string
	NodeCIDRMaskSize int
	// NodeMonitorGracePeriod is how long a node may go without renewing
	// its Lease before it is unreachable (default 40s); NodeEvictionRate
	// is how many nodes a second get tainted NoExecute (default 0.1,
	// negative: no limit).
	NodeMonitorGracePeriod time.Duration
	NodeEvictionRate       float64
	// HPASyncPeriod is how often each HorizontalPodAutoscaler is synced
	// (default 15s); HPADownscaleStabilization is the scale-down
	// stabilization window of HPAs whose behavior sets none (default 5m).
	HPASyncPeriod, HPADownscaleStabilization time.Duration
	// LoadBalancerPool is the IPv4 CIDRs and first-last ranges (comma
	// separated) LoadBalancer services get addresses from; empty leaves
	// them pending.
	LoadBalancerPool string
	// ClusterSigningCertFile and ClusterSigningKeyFile are the cluster CA
	// the csrsigning controller signs with (PEM); without them it does
	// not run. ClusterSigningDuration caps the certificates' lifetime
	// (default one year).
	ClusterSigningCertFile, ClusterSigningKeyFile string
	ClusterSigningDuration                        time.Duration
	// Logger receives the manager's and controllers' logs.
	Logger *slog.Logger
}

// Manager runs the controllers while it leads.
type Manager struct {
	cfg     Config
	rest    *rest.Config
	client  kubernetes.Interface
	log     *slog.Logger
	ready   chan struct{}
	once    sync.Once
	leading atomic.Bool
}

// New checks the configuration; nothing runs until Run.
func New(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Controllers) == 0 {
		cfg.Controllers = All
	}
	for _, c := range cfg.Controllers {
		if !slices.Contains(All, c) {
			return nil, fmt.Errorf("controller manager: unknown controller %q (have %v)", c, All)
		}
	}
	if cfg.LeaseNamespace == "" {
		cfg.LeaseNamespace = DefaultLeaseNamespace
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = DefaultLeaseName
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if !(cfg.LeaseDuration > cfg.RenewDeadline && cfg.RenewDeadline > cfg.RetryPeriod) {
		return nil, fmt.Errorf("controller manager: need lease duration (%v) > renew deadline (%v) > retry period (%v)",
			cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod)
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = host + "_" + string(uuid.NewUUID())
	}
	rc := cfg.Rest
	if rc == nil {
		if cfg.Kubeconfig == "" {
			return nil, errors.New("controller manager: no rest config or kubeconfig")
		}
		var err error
		if rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
			return nil, fmt.Errorf("controller manager: load kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	}
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 500, 1000
	}
	if rc.UserAgent == "" {
		rc.UserAgent = "skiff-controller-manager"
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controller manager: client: %w", err)
	}
	return &Manager{cfg: cfg, rest: rc, client: client, log: cfg.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed once this instance first leads and its controllers'
// caches have synced.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Leading reports whether this instance holds the Lease and runs the
// controllers now.
func (m *Manager) Leading() bool { return m.leading.Load() }

// Identity is the name this instance holds the Lease under.
func (m *Manager) Identity() string { return m.cfg.Identity }

// Run campaigns for the Lease and runs the controllers while it leads;
// after losing it, it stops them all and campaigns again, until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	if m.cfg.DisableLeaderElection {
		return m.runControllers(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: m.cfg.LeaseNamespace, Name: m.cfg.LeaseName},
		Client:     m.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: m.cfg.Identity},
	}
	for ctx.Err() == nil {
		// The elector runs in the background and hands each term's context
		// over; the controllers run here, so that they have all stopped
		// before Run campaigns again or returns (fencing).
		terms := make(chan context.Context, 1)
		ectx, cancel := context.WithCancel(ctx)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: m.cfg.LeaseName, ReleaseOnCancel: true,
			LeaseDuration: m.cfg.LeaseDuration, RenewDeadline: m.cfg.RenewDeadline, RetryPeriod: m.cfg.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) { terms <- lctx },
				OnStoppedLeading: func() {
					m.log.Info("controller-manager lease lost or released", "identity", m.cfg.Identity)
				},
			},
		})
		if err != nil {
			cancel()
			return fmt.Errorf("controller manager: leader election: %w", err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Run returns when leadership is lost (the term's context is
			// cancelled first) or ectx ends.
			le.Run(ectx)
		}()
		var runErr error
		select {
		case lctx := <-terms:
			m.log.Info("acquired controller-manager lease", "lease", m.cfg.LeaseNamespace+"/"+m.cfg.LeaseName, "identity", m.cfg.Identity)
			if err := m.runControllers(lctx); err != nil && lctx.Err() == nil {
				runErr = err
			}
		case <-done:
		}
		// Controllers that failed while leading give the Lease up.
		cancel()
		<-done
		if runErr != nil {
			return runErr
		}
	}
	return nil
}

// controller is what the manager runs.
type controller interface {
	Run(ctx context.Context) error
}

// runControllers builds fresh informers and controllers for one term of
// leadership and runs them until ctx ends; a term starts from a clean
// slate (caches, queues, expectations).
func (m *Manager) runControllers(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.leading.Store(true)
	defer m.leading.Store(false)

	factory := informers.NewSharedInformerFactory(m.client, 0)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := func(name string) record.EventRecorder {
		return broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: name + "-controller"})
	}
	log := func(name string) *slog.Logger { return m.log.With("controller", name) }

	var ctrls []controller
	var names []string
	for _, name := range m.cfg.Controllers {
		var c controller
		var err error
		switch name {
		case ReplicaSet:
			c, err = replicaset.New(replicaset.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case DaemonSet:
			c, err = daemonset.New(daemonset.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case StatefulSet:
			c, err = statefulset.New(statefulset.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case Job:
			c, err = job.New(job.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case CronJob:
			c, err = cronjob.New(cronjob.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case Deployment:
			c, err = deployment.New(deployment.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case HorizontalPodAutoscaling:
			mc, merr := metricsclient.NewForConfig(m.rest)
			if merr != nil {
				return fmt.Errorf("controller manager: metrics client: %w", merr)
			}
			c, err = podautoscaler.New(podautoscaler.Config{Client: m.client, Metrics: mc, Factory: factory, Recorder: recorder("horizontal-pod-autoscaler"),
				Logger: log(name), Workers: m.cfg.Workers, SyncPeriod: m.cfg.HPASyncPeriod, DownscaleStabilization: m.cfg.HPADownscaleStabilization})
		case LoadBalancer:
			c, err = loadbalancer.New(loadbalancer.Config{Client: m.client, Factory: factory, Recorder: recorder("service-lb"), Logger: log(name),
				Pool: m.cfg.LoadBalancerPool, Workers: m.cfg.Workers})
		case GarbageCollector:
			md, merr := metadata.NewForConfig(m.rest)
			if merr != nil {
				return fmt.Errorf("controller manager: metadata client: %w", merr)
			}
			c = garbagecollector.New(garbagecollector.Config{Metadata: md, Discovery: m.client.Discovery(), Logger: log(name), Workers: m.cfg.Workers})
		case Namespace:
			c, err = namespace.New(namespace.Config{Rest: m.rest, Logger: log(name), Workers: m.cfg.Workers})
		case Endpoints:
			c, err = endpoints.New(endpoints.Config{Client: m.client, Factory: factory, Logger: log(name), Workers: m.cfg.Workers})
		case EndpointSlice:
			c, err = endpointslice.New(endpointslice.Config{Client: m.client, Factory: factory, Logger: log(name), Workers: m.cfg.Workers})
		case ServiceAccount:
			c, err = serviceaccount.New(serviceaccount.Config{Client: m.client, Factory: factory, Logger: log(name), Workers: m.cfg.Workers})
		case RootCACertPublisher:
			ca := m.rest.CAData
			if len(ca) == 0 && m.rest.CAFile != "" {
				if ca, err = os.ReadFile(m.rest.CAFile); err != nil {
					return fmt.Errorf("controller manager: %s: %w", name, err)
				}
			}
			if len(ca) == 0 {
				m.log.Info("root-ca-cert-publisher off: the API server's CA is not configured")
				continue
			}
			c, err = rootcacert.New(rootcacert.Config{Client: m.client, Factory: factory, RootCA: ca, Logger: log(name), Workers: m.cfg.Workers})
		case Disruption:
			c, err = disruption.New(disruption.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name), Workers: m.cfg.Workers})
		case NodeIPAM:
			c, err = nodeipam.New(nodeipam.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name),
				ClusterCIDR: m.cfg.ClusterCIDR, NodeMaskSize: m.cfg.NodeCIDRMaskSize})
		case CSRApproving:
			c, err = csrapproving.New(csrapproving.Config{Client: m.client, Factory: factory, Logger: log(name), Workers: m.cfg.Workers})
		case CSRSigning:
			if m.cfg.ClusterSigningCertFile == "" || m.cfg.ClusterSigningKeyFile == "" {
				m.log.Info("csrsigning controller off: no cluster signing certificate and key")
				continue
			}
			ca, cerr := loadCA(m.cfg.ClusterSigningCertFile, m.cfg.ClusterSigningKeyFile)
			if cerr != nil {
				return fmt.Errorf("controller manager: %w", cerr)
			}
			c, err = csrsigning.New(csrsigning.Config{Client: m.client, Factory: factory, CA: ca, Duration: m.cfg.ClusterSigningDuration,
				Logger: log(name), Workers: m.cfg.Workers})
		case NodeLifecycle:
			c, err = nodelifecycle.New(nodelifecycle.Config{Client: m.client, Factory: factory, Recorder: recorder(name), Logger: log(name),
				GracePeriod: m.cfg.NodeMonitorGracePeriod, EvictionRate: m.cfg.NodeEvictionRate, Workers: m.cfg.Workers})
		}
		if err != nil {
			return fmt.Errorf("controller manager: %s: %w", name, err)
		}
		ctrls = append(ctrls, c)
		names = append(names, name)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	errc := make(chan error, len(ctrls))
	var wg sync.WaitGroup
	for i, c := range ctrls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s controller: %w", names[i], err)
			}
		}()
	}
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok && ctx.Err() == nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("controller manager: cache of %v did not sync", typ)
		}
	}
	if ctx.Err() == nil {
		m.once.Do(func() { close(m.ready) })
		m.log.Info("controllers running", "controllers", names)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	return err
}

// loadCA reads the cluster signing certificate and key.
func loadCA(certFile, keyFile string) (*pki.CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("cluster signing certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster signing key: %w", err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster signing CA %s: %w", certFile, err)
	}
	return ca, nil
}
