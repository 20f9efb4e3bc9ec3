package framework

import (
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Snapshot is the consistent view of the cluster one scheduling cycle reads.
// Nothing in it changes while a cycle runs; between cycles its owner (the
// cache) updates it in place with Set and Remove, then calls Refresh.
type Snapshot struct {
	nodes                    []*NodeInfo
	index                    map[string]int
	withAffinity             []*NodeInfo
	withRequiredAntiAffinity []*NodeInfo
	stale                    bool

	// NamespaceLabels returns a namespace's labels, for namespaceSelector
	// in pod affinity terms. Nil means no namespace has labels.
	NamespaceLabels func(namespace string) labels.Set
	// ServiceSelectors returns the selectors of the services that select
	// pod, for default spreading. Nil means none.
	ServiceSelectors func(pod *v1.Pod) []labels.Selector
	// PDBs are the disruption budgets preemption tries to honor.
	PDBs []*policyv1.PodDisruptionBudget
	// Nominated returns the pending pods nominated to a node by an earlier
	// preemption; filtering reserves room for those at least as important
	// as the pod being scheduled. Nil means none.
	Nominated func(node string) []*PodInfo
}

// NewSnapshot builds a snapshot over nodes; NodeInfos without a node object
// are left out.
func NewSnapshot(nodes []*NodeInfo) *Snapshot {
	s := &Snapshot{nodes: make([]*NodeInfo, 0, len(nodes)), index: make(map[string]int, len(nodes))}
	for _, n := range nodes {
		s.Set(n)
	}
	s.Refresh()
	return s
}

// Set adds or replaces the node named like n; a NodeInfo without a node
// object removes nothing and is ignored.
func (s *Snapshot) Set(n *NodeInfo) {
	if n.Node() == nil {
		return
	}
	name := n.Name()
	if i, ok := s.index[name]; ok {
		old := s.nodes[i]
		s.nodes[i] = n
		if len(old.PodsWithAffinity) > 0 || len(n.PodsWithAffinity) > 0 {
			s.stale = true
		}
		return
	}
	s.index[name] = len(s.nodes)
	s.nodes = append(s.nodes, n)
	s.stale = true
}

// Remove drops a node.
func (s *Snapshot) Remove(name string) {
	i, ok := s.index[name]
	if !ok {
		return
	}
	last := len(s.nodes) - 1
	s.nodes[i] = s.nodes[last]
	s.index[s.nodes[i].Name()] = i
	s.nodes[last] = nil
	s.nodes = s.nodes[:last]
	delete(s.index, name)
	s.stale = true
}

// Refresh rebuilds the lists of nodes holding pods with affinity terms
// after Set or Remove.
func (s *Snapshot) Refresh() {
	if !s.stale {
		return
	}
	s.withAffinity, s.withRequiredAntiAffinity = s.withAffinity[:0], s.withRequiredAntiAffinity[:0]
	for _, n := range s.nodes {
		if len(n.PodsWithAffinity) > 0 {
			s.withAffinity = append(s.withAffinity, n)
		}
		if len(n.PodsWithRequiredAntiAffinity) > 0 {
			s.withRequiredAntiAffinity = append(s.withRequiredAntiAffinity, n)
		}
	}
	s.stale = false
}

// Nodes lists every node.
func (s *Snapshot) Nodes() []*NodeInfo { return s.nodes }

// Get returns one node, nil if absent.
func (s *Snapshot) Get(name string) *NodeInfo {
	if i, ok := s.index[name]; ok {
		return s.nodes[i]
	}
	return nil
}

// NodesWithAffinityPods lists nodes holding pods with affinity terms.
func (s *Snapshot) NodesWithAffinityPods() []*NodeInfo { return s.withAffinity }

// NodesWithRequiredAntiAffinityPods lists nodes holding pods with required
// anti-affinity terms.
func (s *Snapshot) NodesWithRequiredAntiAffinityPods() []*NodeInfo {
	return s.withRequiredAntiAffinity
}

// NamespaceLabelsOf is NamespaceLabels, safe when unset.
func (s *Snapshot) NamespaceLabelsOf(ns string) labels.Set {
	if s.NamespaceLabels == nil {
		return nil
	}
	return s.NamespaceLabels(ns)
}
