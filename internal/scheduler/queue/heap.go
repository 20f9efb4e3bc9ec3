package queue

import (
	"container/heap"

	"k8s.io/apimachinery/pkg/types"
)

// podHeap is a heap of queued pods with lookup by UID.
type podHeap struct {
	items []*QueuedPod
	index map[types.UID]int
	less  func(a, b *QueuedPod) bool
}

func newPodHeap(less func(a, b *QueuedPod) bool) *podHeap {
	return &podHeap{index: map[types.UID]int{}, less: less}
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.index[h.items[i].Pod.UID] = i
	h.index[h.items[j].Pod.UID] = j
}

func (h *podHeap) Push(x any) {
	qp := x.(*QueuedPod)
	h.index[qp.Pod.UID] = len(h.items)
	h.items = append(h.items, qp)
}

func (h *podHeap) Pop() any {
	last := len(h.items) - 1
	qp := h.items[last]
	h.items[last] = nil
	h.items = h.items[:last]
	delete(h.index, qp.Pod.UID)
	return qp
}

func (h *podHeap) add(qp *QueuedPod) {
	if i, ok := h.index[qp.Pod.UID]; ok {
		h.items[i] = qp
		heap.Fix(h, i)
		return
	}
	heap.Push(h, qp)
}

func (h *podHeap) get(uid types.UID) *QueuedPod {
	if i, ok := h.index[uid]; ok {
		return h.items[i]
	}
	return nil
}

func (h *podHeap) remove(uid types.UID) *QueuedPod {
	i, ok := h.index[uid]
	if !ok {
		return nil
	}
	return heap.Remove(h, i).(*QueuedPod)
}

func (h *podHeap) peek() *QueuedPod {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func (h *podHeap) pop() *QueuedPod {
	if len(h.items) == 0 {
		return nil
	}
	return heap.Pop(h).(*QueuedPod)
}
