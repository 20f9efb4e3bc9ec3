// Package cache keeps the scheduler's view of nodes and of the pods placed
// on them, fed by informer events, including pods the scheduler has
// "assumed" on a node before their binding is confirmed, and maintains the
// framework.Snapshot that each scheduling cycle reads.
package cache

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

type podState struct {
	pod      *v1.Pod
	assumed  bool
	finished bool
	deadline time.Time
}

// Cache is safe for concurrent use. Snapshot must be called by one
// goroutine at a time (the scheduling loop).
type Cache struct {
	mu    sync.Mutex
	clock clock.Clock
	ttl   time.Duration
	nodes map[string]*framework.NodeInfo
	pods  map[types.UID]*podState
	dirty map[string]struct{}
	snap  *framework.Snapshot
}

// New returns an empty cache. ttl is how long an assumed pod whose binding
// finished stays without the informer confirming it.
func New(clk clock.Clock, ttl time.Duration) *Cache {
	return &Cache{
		clock: clk, ttl: ttl,
		nodes: map[string]*framework.NodeInfo{},
		pods:  map[types.UID]*podState{},
		dirty: map[string]struct{}{},
		snap:  framework.NewSnapshot(nil),
	}
}

func (c *Cache) nodeInfo(name string) *framework.NodeInfo {
	ni, ok := c.nodes[name]
	if !ok {
		ni = framework.NewNodeInfo(nil)
		c.nodes[name] = ni
	}
	return ni
}

func (c *Cache) touch(name string) {
	c.dirty[name] = struct{}{}
}

// AddNode adds or replaces a node.
func (c *Cache) AddNode(node *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeInfo(node.Name).SetNode(node)
	c.touch(node.Name)
}

// UpdateNode is AddNode.
func (c *Cache) UpdateNode(node *v1.Node) { c.AddNode(node) }

// RemoveNode drops a node; its pods are kept until they are deleted.
func (c *Cache) RemoveNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni, ok := c.nodes[name]
	if !ok {
		return
	}
	if len(ni.Pods) == 0 {
		delete(c.nodes, name)
	} else {
		c.nodes[name] = framework.NewNodeInfo(nil, ni.Pods...)
	}
	c.touch(name)
}

func (c *Cache) addLocked(pod *v1.Pod) {
	c.nodeInfo(pod.Spec.NodeName).AddPod(framework.NewPodInfo(pod))
	c.touch(pod.Spec.NodeName)
}

func (c *Cache) removeLocked(pod *v1.Pod) {
	ni, ok := c.nodes[pod.Spec.NodeName]
	if !ok {
		return
	}
	_ = ni.RemovePod(pod) // absent pods are fine: nothing to release
	if ni.Node() == nil && len(ni.Pods) == 0 {
		delete(c.nodes, pod.Spec.NodeName)
	}
	c.touch(pod.Spec.NodeName)
}

// AddPod records an assigned pod seen by the informer, confirming it if
// it was assumed.
func (c *Cache) AddPod(pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps, ok := c.pods[pod.UID]; ok {
		c.removeLocked(ps.pod)
	}
	c.addLocked(pod)
	c.pods[pod.UID] = &podState{pod: pod}
}

// UpdatePod replaces an assigned pod.
func (c *Cache) UpdatePod(pod *v1.Pod) { c.AddPod(pod) }

// RemovePod forgets an assigned pod.
func (c *Cache) RemovePod(pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[pod.UID]
	if !ok {
		return
	}
	c.removeLocked(ps.pod)
	delete(c.pods, pod.UID)
}

// AssumePod places pod (with spec.nodeName set) on its node before the
// binding is written.
func (c *Cache) AssumePod(pod *v1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pods[pod.UID]; ok {
		return fmt.Errorf("pod %s/%s is already in the cache", pod.Namespace, pod.Name)
	}
	c.addLocked(pod)
	c.pods[pod.UID] = &podState{pod: pod, assumed: true}
	return nil
}

// FinishBinding starts the expiry clock of an assumed pod.
func (c *Cache) FinishBinding(pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps, ok := c.pods[pod.UID]; ok && ps.assumed {
		ps.finished = true
		ps.deadline = c.clock.Now().Add(c.ttl)
	}
}

// ForgetPod drops an assumed pod whose binding failed.
func (c *Cache) ForgetPod(pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps, ok := c.pods[pod.UID]; ok && ps.assumed {
		c.removeLocked(ps.pod)
		delete(c.pods, pod.UID)
	}
}

// IsAssumed reports whether the pod is assumed and not yet confirmed.
func (c *Cache) IsAssumed(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[uid]
	return ok && ps.assumed
}

// Contains reports whether the pod is in the cache, assumed or confirmed.
func (c *Cache) Contains(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pods[uid]
	return ok
}

// CleanupExpired drops assumed pods whose binding finished more than ttl
// ago without the informer confirming them, and returns how many.
func (c *Cache) CleanupExpired() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	n := 0
	for uid, ps := range c.pods {
		if ps.assumed && ps.finished && now.After(ps.deadline) {
			c.removeLocked(ps.pod)
			delete(c.pods, uid)
			n++
		}
	}
	return n
}

// NodeCount returns the number of nodes known.
func (c *Cache) NodeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ni := range c.nodes {
		if ni.Node() != nil {
			n++
		}
	}
	return n
}

// Snapshot brings the snapshot up to date with the changes since the last
// call, copying only the nodes that changed, and returns it. The snapshot
// stays unchanged until the next call.
func (c *Cache) Snapshot() *framework.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.dirty {
		ni, ok := c.nodes[name]
		if !ok || ni.Node() == nil {
			c.snap.Remove(name)
			continue
		}
		c.snap.Set(ni.Clone())
	}
	clear(c.dirty)
	c.snap.Refresh()
	return c.snap
}
