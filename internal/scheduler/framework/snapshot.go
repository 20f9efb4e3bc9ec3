package framework

import (
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Snapshot is the consistent view of the cluster one scheduling cycle reads.
// Nothing in it changes while a cycle runs.
type Snapshot struct {
	nodes                    []*NodeInfo
	byName                   map[string]*NodeInfo
	withAffinity             []*NodeInfo
	withRequiredAntiAffinity []*NodeInfo

	// NamespaceLabels returns a namespace's labels, for namespaceSelector
	// in pod affinity terms. Nil means no namespace has labels.
	NamespaceLabels func(namespace string) labels.Set
	// ServiceSelectors returns the selectors of the services that select
	// pod, for default spreading. Nil means none.
	ServiceSelectors func(pod *v1.Pod) []labels.Selector
	// PDBs are the disruption budgets preemption tries to honor.
	PDBs []*policyv1.PodDisruptionBudget
}

// NewSnapshot builds a snapshot over nodes; NodeInfos without a node object
// are left out.
func NewSnapshot(nodes []*NodeInfo) *Snapshot {
	s := &Snapshot{nodes: make([]*NodeInfo, 0, len(nodes)), byName: make(map[string]*NodeInfo, len(nodes))}
	for _, n := range nodes {
		if n.Node() == nil {
			continue
		}
		s.nodes = append(s.nodes, n)
		s.byName[n.Name()] = n
		if len(n.PodsWithAffinity) > 0 {
			s.withAffinity = append(s.withAffinity, n)
		}
		if len(n.PodsWithRequiredAntiAffinity) > 0 {
			s.withRequiredAntiAffinity = append(s.withRequiredAntiAffinity, n)
		}
	}
	return s
}

// Nodes lists every node.
func (s *Snapshot) Nodes() []*NodeInfo { return s.nodes }

// Get returns one node, nil if absent.
func (s *Snapshot) Get(name string) *NodeInfo { return s.byName[name] }

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
