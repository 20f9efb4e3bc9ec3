// Package scheduler is skiff's scheduler component: it watches pods that
// name one of its profiles and have no node, picks a node for each with the
// pure algorithm in framework and plugins, assumes the pod there in its
// cache and binds it through the pods/binding subresource asynchronously.
// Unschedulable pods get a FailedScheduling event and a PodScheduled=False
// condition, may preempt lower-priority pods, and wait in the queue for a
// cluster event that may help them.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	schedlisters "k8s.io/client-go/listers/scheduling/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	schedcache "github.com/skiff-sh/skiff/internal/scheduler/cache"
	"github.com/skiff-sh/skiff/internal/scheduler/framework"
	"github.com/skiff-sh/skiff/internal/scheduler/plugins"
	"github.com/skiff-sh/skiff/internal/scheduler/queue"
)

// Scheduler is the component. Create it with New and start it with Run.
type Scheduler struct {
	cfg      Config
	log      *slog.Logger
	client   kubernetes.Interface
	clock    clock.WithTicker
	file     File
	profiles map[string]*framework.Framework
	queue    *queue.Queue
	cache    *schedcache.Cache
	metrics  *metrics
	nominees *nominator
	ready    chan struct{}
	readyOne sync.Once

	// Set up by run.
	factory     informers.SharedInformerFactory
	podLister   corelisters.PodLister
	pcLister    schedlisters.PriorityClassLister
	pdbLister   policylisters.PodDisruptionBudgetLister
	nsLister    corelisters.NamespaceLister
	svcLister   corelisters.ServiceLister
	broadcaster record.EventBroadcaster
	recorders   map[string]record.EventRecorder
	bindSem     chan struct{}
	async       sync.WaitGroup
}

// New checks the configuration and builds the scheduler; nothing runs
// until Run.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.LeaseNamespace == "" {
		cfg.LeaseNamespace = DefaultLeaseNamespace
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = DefaultLeaseName
	}
	for p, d := range map[*time.Duration]time.Duration{&cfg.LeaseDuration: 15 * time.Second,
		&cfg.RenewDeadline: 10 * time.Second, &cfg.RetryPeriod: 2 * time.Second} {
		if *p == 0 {
			*p = d
		}
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = host + "_" + string(uuid.NewUUID())
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	file := cfg.File
	if file == nil && cfg.ConfigFile != "" {
		if file, err = LoadFile(cfg.ConfigFile); err != nil {
			return nil, err
		}
	}
	if file == nil {
		file = &File{}
	}
	if len(file.Profiles) == 0 {
		file.Profiles = []plugins.ProfileConfig{{SchedulerName: plugins.DefaultSchedulerName, PercentageOfNodesToScore: file.PercentageOfNodesToScore}}
	}
	if file.BindWorkers == 0 {
		file.BindWorkers = defaultBindWorkers
	}
	s := &Scheduler{
		cfg: cfg, log: cfg.Logger, client: client, clock: cfg.Clock, file: *file,
		profiles: map[string]*framework.Framework{},
		cache:    schedcache.New(cfg.Clock, defaultAssumeTTL),
		nominees: newNominator(),
		ready:    make(chan struct{}),
	}
	for _, pc := range file.Profiles {
		p, err := plugins.NewProfile(pc, file.Parallelism)
		if err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
		if _, dup := s.profiles[p.SchedulerName]; dup {
			return nil, fmt.Errorf("scheduler: two profiles named %q", p.SchedulerName)
		}
		s.profiles[p.SchedulerName] = framework.New(p)
	}
	s.queue = queue.New(queue.Options{
		Clock:          cfg.Clock,
		InitialBackoff: time.Duration(file.PodInitialBackoffSeconds) * time.Second,
		MaxBackoff:     time.Duration(file.PodMaxBackoffSeconds) * time.Second,
	})
	if s.metrics, err = newMetrics(cfg.Metrics, s.queue); err != nil {
		return nil, err
	}
	return s, nil
}

func newClient(cfg Config) (kubernetes.Interface, error) {
	if cfg.Client != nil {
		return cfg.Client, nil
	}
	rc := cfg.RestConfig
	if rc == nil {
		if cfg.Kubeconfig == "" {
			return nil, errors.New("scheduler: no client, rest config or kubeconfig")
		}
		var err error
		if rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
			return nil, fmt.Errorf("scheduler: load kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	}
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 {
		rc.QPS = cfg.QPS
		if rc.QPS == 0 {
			rc.QPS = defaultQPS
		}
	}
	if rc.Burst == 0 {
		rc.Burst = cfg.Burst
		if rc.Burst == 0 {
			rc.Burst = defaultBurst
		}
	}
	if rc.UserAgent == "" {
		rc.UserAgent = "skiff-scheduler"
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("scheduler: client: %w", err)
	}
	return client, nil
}

// Ready is closed once this instance leads (when leader-elected), its
// informers have synced and it is scheduling.
func (s *Scheduler) Ready() <-chan struct{} { return s.ready }

// Run schedules until ctx ends. With leader election it first waits to
// acquire the Lease and returns an error if it loses it.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.cfg.LeaderElect {
		return s.run(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: s.cfg.LeaseNamespace, Name: s.cfg.LeaseName},
		Client:     s.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: s.cfg.Identity},
	}
	var runErr error
	done := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: s.cfg.LeaseName, ReleaseOnCancel: true,
		LeaseDuration: s.cfg.LeaseDuration, RenewDeadline: s.cfg.RenewDeadline, RetryPeriod: s.cfg.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				defer close(done)
				s.log.Info("acquired scheduler lease", "lease", s.cfg.LeaseNamespace+"/"+s.cfg.LeaseName, "identity", s.cfg.Identity)
				runErr = s.run(ctx)
			},
			OnStoppedLeading: func() { s.log.Info("scheduler lease released or lost", "identity", s.cfg.Identity) },
		},
	})
	if err != nil {
		return fmt.Errorf("scheduler: leader election: %w", err)
	}
	le.Run(ctx)
	select {
	case <-done:
	default:
		// Never led: ctx ended while waiting.
		return ctx.Err()
	}
	if ctx.Err() != nil {
		return runErr
	}
	if runErr != nil {
		return runErr
	}
	return errors.New("scheduler: lost leader election")
}

// run is the leader's work: informers, queue, scheduling loop.
func (s *Scheduler) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.bindSem = make(chan struct{}, s.file.BindWorkers)
	s.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
	s.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	defer s.broadcaster.Shutdown()
	s.recorders = map[string]record.EventRecorder{}
	for name := range s.profiles {
		s.recorders[name] = s.broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: name})
	}

	if err := s.startInformers(ctx); err != nil {
		return err
	}
	go s.queue.Run(ctx)
	go s.cleanupLoop(ctx)
	s.readyOne.Do(func() { close(s.ready) })
	s.log.Info("scheduler started", "profiles", len(s.profiles), "nodes", s.cache.NodeCount())
	for ctx.Err() == nil {
		if err := s.scheduleOne(ctx); err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				break
			}
			s.log.Error("scheduling", "err", err)
		}
	}
	s.async.Wait()
	s.factory.Shutdown()
	return nil
}

// cleanupLoop expires assumed pods that the informer never confirmed.
func (s *Scheduler) cleanupLoop(ctx context.Context) {
	t := s.clock.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if n := s.cache.CleanupExpired(); n > 0 {
				s.log.Warn("expired assumed pods never confirmed by the API server", "pods", n)
				s.queue.MoveAllToActiveOrBackoff(nil)
			}
		}
	}
}

// startInformers starts the shared informers and waits for their caches.
// Optional resources (services, namespaces, PDBs, priority classes) are
// watched only when the API server serves them.
func (s *Scheduler) startInformers(ctx context.Context) error {
	s.factory = informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithTransform(stripManagedFields))
	served := s.servedResources()
	podInf := s.factory.Core().V1().Pods()
	nodeInf := s.factory.Core().V1().Nodes()
	s.podLister = podInf.Lister()
	syncs := []cache.InformerSynced{}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: s.onPodAdd, UpdateFunc: s.onPodUpdate, DeleteFunc: s.onPodDelete,
	}); err != nil {
		return fmt.Errorf("scheduler: pod handler: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: s.onNodeAdd, UpdateFunc: s.onNodeUpdate, DeleteFunc: s.onNodeDelete,
	}); err != nil {
		return fmt.Errorf("scheduler: node handler: %w", err)
	}
	syncs = append(syncs, podInf.Informer().HasSynced, nodeInf.Informer().HasSynced)
	if served["scheduling.k8s.io/v1/priorityclasses"] {
		inf := s.factory.Scheduling().V1().PriorityClasses()
		s.pcLister = inf.Lister()
		syncs = append(syncs, inf.Informer().HasSynced)
	}
	if served["policy/v1/poddisruptionbudgets"] {
		inf := s.factory.Policy().V1().PodDisruptionBudgets()
		s.pdbLister = inf.Lister()
		syncs = append(syncs, inf.Informer().HasSynced)
	}
	if served["v1/namespaces"] {
		inf := s.factory.Core().V1().Namespaces()
		s.nsLister = inf.Lister()
		syncs = append(syncs, inf.Informer().HasSynced)
	}
	if served["v1/services"] {
		inf := s.factory.Core().V1().Services()
		s.svcLister = inf.Lister()
		syncs = append(syncs, inf.Informer().HasSynced)
	}
	s.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("scheduler: informer caches did not sync: %w", context.Cause(ctx))
	}
	return nil
}

// servedResources asks discovery which optional resources exist; when
// discovery fails, all are assumed served.
func (s *Scheduler) servedResources() map[string]bool {
	out := map[string]bool{}
	all := []string{"scheduling.k8s.io/v1/priorityclasses", "policy/v1/poddisruptionbudgets", "v1/namespaces", "v1/services"}
	for _, gv := range []string{"v1", "policy/v1", "scheduling.k8s.io/v1"} {
		list, err := s.client.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil {
			if list == nil && !isNotFound(err) {
				s.log.Warn("discovery failed; assuming optional resources are served", "groupVersion", gv, "err", err)
				for _, r := range all {
					out[r] = true
				}
			}
			continue
		}
		for _, r := range list.APIResources {
			out[gv+"/"+r.Name] = true
		}
	}
	return out
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// namespaceLabels serves framework.Snapshot.NamespaceLabels.
func (s *Scheduler) namespaceLabels(ns string) labels.Set {
	if s.nsLister == nil {
		return nil
	}
	n, err := s.nsLister.Get(ns)
	if err != nil {
		return nil
	}
	return n.Labels
}

// serviceSelectors serves framework.Snapshot.ServiceSelectors.
func (s *Scheduler) serviceSelectors(pod *v1.Pod) []labels.Selector {
	if s.svcLister == nil {
		return nil
	}
	svcs, err := s.svcLister.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []labels.Selector
	for _, svc := range svcs {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		if sel.Matches(labels.Set(pod.Labels)) {
			out = append(out, sel)
		}
	}
	return out
}
