package agent

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// DefaultGCInterval is how often the agent has its runtime collect garbage
// (the kubelet's container GC period).
const DefaultGCInterval = time.Minute

// GarbageCollector is an optional interface of a Runtime. The agent of a
// runtime that has it calls GarbageCollect every Config.GCInterval once its
// pod watch has synced and it adopted the runtime's pods.
type GarbageCollector interface {
	// GarbageCollect removes what the runtime holds for pods that known
	// says do not exist, dead containers and unused images. The runtime
	// calls known only after it has read its own state, so a pod created
	// while it runs is never taken for an orphan.
	GarbageCollect(ctx context.Context, known func(types.UID) bool) error
}

// garbageCollect runs the runtime's garbage collection: the known pods are
// those bound to the node in the watch cache and those the agent is still
// stopping.
func (a *Agent) garbageCollect(ctx context.Context) error {
	gc, ok := a.rt.(GarbageCollector)
	a.mu.Lock()
	src, adopted := a.src, a.adopted
	a.mu.Unlock()
	if !ok || src == nil || !adopted {
		return nil
	}
	var known map[types.UID]bool
	return gc.GarbageCollect(ctx, func(uid types.UID) bool {
		if known == nil {
			known = map[types.UID]bool{}
			for _, p := range src.podsOn(a.cfg.NodeName) {
				known[p.UID] = true
			}
			a.pods.mu.Lock()
			for _, r := range a.pods.pods {
				known[r.uid] = true
			}
			a.pods.mu.Unlock()
		}
		return known[uid]
	})
}
