package scheduler

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// nominator remembers which pending pods a preemption nominated to which
// node, so that other pods do not take the room being freed for them.
type nominator struct {
	mu     sync.RWMutex
	byNode map[string]map[types.UID]*framework.PodInfo
	node   map[types.UID]string
}

func newNominator() *nominator {
	return &nominator{byNode: map[string]map[types.UID]*framework.PodInfo{}, node: map[types.UID]string{}}
}

// set records pod as nominated to node; "" forgets it.
func (n *nominator) set(pod *v1.Pod, node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.node[pod.UID]; ok {
		delete(n.byNode[old], pod.UID)
		if len(n.byNode[old]) == 0 {
			delete(n.byNode, old)
		}
		delete(n.node, pod.UID)
	}
	if node == "" {
		return
	}
	m := n.byNode[node]
	if m == nil {
		m = map[types.UID]*framework.PodInfo{}
		n.byNode[node] = m
	}
	m[pod.UID] = framework.NewPodInfo(pod)
	n.node[pod.UID] = node
}

// forget drops pod's nomination.
func (n *nominator) forget(pod *v1.Pod) { n.set(pod, "") }

// onPending tracks the nomination a pending pod carries in its status; an
// empty status keeps a nomination made locally whose write is in flight.
func (n *nominator) onPending(pod *v1.Pod) {
	if pod.Status.NominatedNodeName != "" {
		n.set(pod, pod.Status.NominatedNodeName)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if node, ok := n.node[pod.UID]; ok {
		n.byNode[node][pod.UID] = framework.NewPodInfo(pod)
	}
}

// pods lists the pods nominated to node; it serves
// framework.Snapshot.Nominated.
func (n *nominator) pods(node string) []*framework.PodInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	m := n.byNode[node]
	if len(m) == 0 {
		return nil
	}
	out := make([]*framework.PodInfo, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out
}
