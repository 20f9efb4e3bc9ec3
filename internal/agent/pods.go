package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// nodeIndex indexes pods by spec.nodeName.
const nodeIndex = "node"

// PodSourceConfig configures a PodSource.
type PodSourceConfig struct {
	// Client watches pods and writes their status.
	Client kubernetes.Interface
	// NodeName limits the watch to one node's pods; empty watches every
	// pod bound to a node (for many agents in one process).
	NodeName string
	// Workers is the number of pods synced at once; 0 means 4.
	Workers int
	// Logger receives the source's logs.
	Logger *slog.Logger
}

// PodSource watches pods bound to nodes and runs the pod workers of the
// agents registered with it: one watch and one work queue serve every
// agent in the process, however many nodes it hosts.
type PodSource struct {
	cfg      PodSourceConfig
	log      *slog.Logger
	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[podKey]

	mu     sync.RWMutex
	agents map[string]*Agent
}

// podKey is one pod of one node in the work queue.
type podKey struct{ node, key string }

// NewPodSource returns a pod source; call Run to start it.
func NewPodSource(cfg PodSourceConfig) *PodSource {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	selector := fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	if cfg.NodeName != "" {
		selector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}
	pods := cfg.Client.CoreV1().Pods(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	s := &PodSource{cfg: cfg, log: cfg.Logger, agents: map[string]*Agent{},
		informer: cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{nodeIndex: func(obj any) ([]string, error) {
			return []string{obj.(*corev1.Pod).Spec.NodeName}, nil
		}}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[podKey](500*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[podKey]{Name: "agent-pods"}),
	}
	// the agent needs no managed fields: drop them to save memory
	_ = s.informer.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	})
	_, _ = s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueueObj,
		UpdateFunc: func(_, obj any) { s.enqueueObj(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			s.enqueueObj(obj)
		},
	})
	return s
}

func (s *PodSource) enqueueObj(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return
	}
	s.mu.RLock()
	_, mine := s.agents[pod.Spec.NodeName]
	s.mu.RUnlock()
	if mine {
		s.queue.Add(podKey{node: pod.Spec.NodeName, key: pod.Namespace + "/" + pod.Name})
	}
}

// Run watches pods and runs the workers until ctx ends.
func (s *PodSource) Run(ctx context.Context) {
	defer s.queue.ShutDown()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.informer.RunWithContext(ctx) }()
	if cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		for i := 0; i < s.cfg.Workers; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); s.work(ctx) }()
		}
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
}

func (s *PodSource) waitSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced)
}

func (s *PodSource) add(a *Agent) {
	s.mu.Lock()
	s.agents[a.cfg.NodeName] = a
	s.mu.Unlock()
}

func (s *PodSource) remove(a *Agent) {
	s.mu.Lock()
	if s.agents[a.cfg.NodeName] == a {
		delete(s.agents, a.cfg.NodeName)
	}
	s.mu.Unlock()
}

// get returns the pod with key namespace/name from the watch cache.
func (s *PodSource) get(key string) (*corev1.Pod, bool) {
	obj, ok, err := s.informer.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	return obj.(*corev1.Pod), true
}

// podsOn returns the pods bound to node.
func (s *PodSource) podsOn(node string) []*corev1.Pod {
	objs, _ := s.informer.GetIndexer().ByIndex(nodeIndex, node)
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func (s *PodSource) work(ctx context.Context) {
	for {
		item, quit := s.queue.Get()
		if quit {
			return
		}
		s.mu.RLock()
		a := s.agents[item.node]
		s.mu.RUnlock()
		if a == nil {
			s.queue.Forget(item)
			s.queue.Done(item)
			continue
		}
		after, err := a.syncPod(ctx, s, item.key)
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Warn("syncing pod failed; retrying", "pod", item.key, "err", err)
			s.queue.AddRateLimited(item)
		default:
			s.queue.Forget(item)
			if after > 0 {
				s.queue.AddAfter(item, after)
			}
		}
		s.queue.Done(item)
	}
}

// podState is what an agent remembers of its pods.
type podState struct {
	mu   sync.Mutex
	pods map[string]*podRecord
}

// podRecord is one pod the agent has handed to its runtime.
type podRecord struct {
	uid       types.UID
	namespace string
	name      string
	// sent is the status last written and sentRV the resourceVersion
	// the write returned.
	sent   *corev1.PodStatus
	sentRV int64
}

func newPodState() *podState { return &podState{pods: map[string]*podRecord{}} }

func (p *podState) get(key string) *podRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[key]
}

func (p *podState) set(key string, r *podRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r == nil {
		delete(p.pods, key)
		return
	}
	p.pods[key] = r
}

// adopt runs once the watch has synced: it removes what the runtime holds
// for pods the API no longer has and queues every pod of the node.
func (a *Agent) adopt(ctx context.Context, src *PodSource) {
	pods := src.podsOn(a.cfg.NodeName)
	live := map[types.UID]bool{}
	for _, p := range pods {
		live[p.UID] = true
	}
	held, err := a.rt.ListPods(ctx)
	if err != nil {
		a.log.Warn("listing the runtime's pods failed", "err", err)
	}
	for _, ref := range held {
		if live[ref.UID] {
			continue
		}
		a.log.Info("removing an orphaned pod", "pod", ref.Namespace+"/"+ref.Name, "uid", ref.UID)
		orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: ref.UID, Namespace: ref.Namespace, Name: ref.Name}}
		if _, err := a.rt.KillPod(ctx, orphan, 0); err != nil {
			a.log.Warn("killing an orphaned pod failed", "uid", ref.UID, "err", err)
			continue
		}
		_ = a.rt.ForgetPod(ctx, ref.UID)
	}
	for _, p := range pods {
		src.queue.Add(podKey{node: a.cfg.NodeName, key: p.Namespace + "/" + p.Name})
	}
	a.mu.Lock()
	a.adopted = true
	a.mu.Unlock()
}

// syncPod brings one pod of the node in line with the API: it runs or
// kills it through the runtime, reports its status and finishes its
// deletion. It returns when to sync the pod again (0: on the next change).
func (a *Agent) syncPod(ctx context.Context, src *PodSource, key string) (time.Duration, error) {
	pod, ok := src.get(key)
	rec := a.pods.get(key)
	if ok && pod.Spec.NodeName != a.cfg.NodeName {
		ok = false
	}
	// a pod that is gone, or replaced by one with the same name
	if rec != nil && (!ok || rec.uid != pod.UID) {
		orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: rec.uid, Namespace: rec.namespace, Name: rec.name}}
		if _, err := a.rt.KillPod(ctx, orphan, 0); err != nil {
			return 0, fmt.Errorf("kill removed pod %s: %w", key, err)
		}
		if err := a.rt.ForgetPod(ctx, rec.uid); err != nil {
			return 0, fmt.Errorf("forget removed pod %s: %w", key, err)
		}
		a.pods.set(key, nil)
		rec = nil
	}
	if !ok {
		return 0, nil
	}
	if rec == nil {
		rec = &podRecord{uid: pod.UID, namespace: pod.Namespace, name: pod.Name}
		a.pods.set(key, rec)
	}
	if pod.DeletionTimestamp != nil {
		return 0, a.finishDeletion(ctx, pod, rec, key)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil // done: nothing runs and the status is final
	}
	rs, syncErr := a.rt.SyncPod(ctx, pod)
	if errors.Is(syncErr, ErrNoPodCIDR) && a.refreshPodCIDR(ctx) {
		rs, syncErr = a.rt.SyncPod(ctx, pod)
	}
	if rs == nil && syncErr != nil {
		return 0, fmt.Errorf("run pod %s: %w", key, syncErr)
	}
	if err := a.writeStatus(ctx, pod, rec, rs, false); err != nil {
		return 0, err
	}
	if syncErr != nil {
		return 0, fmt.Errorf("run pod %s: %w", key, syncErr)
	}
	if rs != nil {
		return rs.RequeueAfter, nil
	}
	return 0, nil
}

// finishDeletion stops a pod that has a deletionTimestamp, reports its
// final status and deletes it for good.
func (a *Agent) finishDeletion(ctx context.Context, pod *corev1.Pod, rec *podRecord, key string) error {
	var grace time.Duration
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	rs, err := a.rt.KillPod(ctx, pod, grace)
	if err != nil {
		return fmt.Errorf("kill pod %s: %w", key, err)
	}
	if err := a.writeStatus(ctx, pod, rec, rs, true); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	zero := int64(0)
	uid := pod.UID
	err = a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", key, err)
	}
	if err := a.rt.ForgetPod(ctx, pod.UID); err != nil {
		return fmt.Errorf("forget pod %s: %w", key, err)
	}
	a.pods.set(key, nil)
	a.log.Debug("pod deleted", "pod", key)
	return nil
}

// writeStatus computes the pod's status and patches pods/status when it
// differs from what the API holds.
func (a *Agent) writeStatus(ctx context.Context, pod *corev1.Pod, rec *podRecord, rs *PodStatus, terminal bool) error {
	// what the API holds: the watch's copy, unless our last write is newer
	base := pod.Status
	if rec.sent != nil && rec.sentRV >= resourceVersion(pod) {
		base = *rec.sent.DeepCopy()
		base.Conditions = nil
		for _, c := range rec.sent.Conditions {
			if ownedByKubelet(c.Type) {
				base.Conditions = append(base.Conditions, c)
			}
		}
		for _, c := range pod.Status.Conditions {
			if !ownedByKubelet(c.Type) {
				base.Conditions = append(base.Conditions, c)
			}
		}
	}
	in := pod.DeepCopy()
	in.Status = base
	want := podStatus(in, rs, a.hostIPs, terminal, a.clock.Now())
	if statusEqual(want, base) {
		return nil
	}
	patch, err := statusPatch(pod.UID, base, want)
	if err != nil {
		return err
	}
	updated, err := a.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patch status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	rec.sent, rec.sentRV = updated.Status.DeepCopy(), resourceVersion(updated)
	return nil
}

func resourceVersion(pod *corev1.Pod) int64 {
	n, _ := strconv.ParseInt(pod.ResourceVersion, 10, 64)
	return n
}

// statusPatch is a strategic merge patch from old to new status, with the
// pod's UID as a precondition (as the kubelet sends it).
func statusPatch(uid types.UID, oldStatus, newStatus corev1.PodStatus) ([]byte, error) {
	oldJS, err := json.Marshal(corev1.Pod{Status: oldStatus})
	if err != nil {
		return nil, fmt.Errorf("encode pod status: %w", err)
	}
	newJS, err := json.Marshal(corev1.Pod{Status: newStatus})
	if err != nil {
		return nil, fmt.Errorf("encode pod status: %w", err)
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJS, newJS, corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("pod status patch: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, fmt.Errorf("pod status patch: %w", err)
	}
	m["metadata"] = map[string]any{"uid": string(uid)}
	return json.Marshal(m)
}
