package framework

import (
	"fmt"
	"maps"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is a node with the pods placed on it and their totals.
// A NodeInfo inside a Snapshot is never changed; the cache clones before
// it mutates.
type NodeInfo struct {
	node *v1.Node
	// Pods are the pods on the node, including assumed ones.
	Pods []*PodInfo
	// PodsWithAffinity have any pod (anti-)affinity term.
	PodsWithAffinity []*PodInfo
	// PodsWithRequiredAntiAffinity have a required anti-affinity term.
	PodsWithRequiredAntiAffinity []*PodInfo
	// UsedPorts are the host ports the pods hold.
	UsedPorts []HostPort
	// Requested sums the pods' requests.
	Requested Resource
	// NonZeroRequested sums the pods' scoring requests (cpu and memory only).
	NonZeroRequested Resource
	// Allocatable is the node's allocatable resources.
	Allocatable Resource
	// Images maps each image name the node holds to its size in bytes.
	Images map[string]int64
	// ControllerPods counts the pods not being deleted by the UID of
	// their controller (PodInfo.ControllerUID), for spreading.
	ControllerPods map[types.UID]int32
	// Generation is set by the cache each time the NodeInfo changes.
	Generation int64
}

// NewNodeInfo builds a NodeInfo for node (which may be nil while only its
// pods are known) holding pods.
func NewNodeInfo(node *v1.Node, pods ...*PodInfo) *NodeInfo {
	ni := &NodeInfo{}
	if node != nil {
		ni.SetNode(node)
	}
	for _, p := range pods {
		ni.AddPod(p)
	}
	return ni
}

// Node returns the node object, nil if unknown.
func (n *NodeInfo) Node() *v1.Node { return n.node }

// Name returns the node's name, "" if unknown.
func (n *NodeInfo) Name() string {
	if n.node == nil {
		return ""
	}
	return n.node.Name
}

// SetNode sets the node object and derives allocatable and images.
func (n *NodeInfo) SetNode(node *v1.Node) {
	n.node = node
	n.Allocatable = NewResource(node.Status.Allocatable)
	n.Images = make(map[string]int64, len(node.Status.Images))
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			n.Images[NormalizeImageName(name)] = img.SizeBytes
		}
	}
}

// NormalizeImageName adds the ":latest" tag to an image without tag or digest.
func NormalizeImageName(name string) string {
	if strings.Contains(name, "@") {
		return name
	}
	slash := strings.LastIndex(name, "/")
	if !strings.Contains(name[slash+1:], ":") {
		return name + ":latest"
	}
	return name
}

// AddPod adds a pod and its usage.
func (n *NodeInfo) AddPod(p *PodInfo) {
	n.Pods = append(n.Pods, p)
	if p.HasAffinity() {
		n.PodsWithAffinity = append(n.PodsWithAffinity, p)
	}
	if len(p.RequiredAntiAffinity) > 0 {
		n.PodsWithRequiredAntiAffinity = append(n.PodsWithRequiredAntiAffinity, p)
	}
	n.update(p, 1)
}

// countController adds sign to the pod's controller's count.
func (n *NodeInfo) countController(p *PodInfo, sign int32) {
	if p.ControllerUID == "" || p.Pod.DeletionTimestamp != nil {
		return
	}
	if n.ControllerPods == nil {
		n.ControllerPods = map[types.UID]int32{}
	}
	if c := n.ControllerPods[p.ControllerUID] + sign; c > 0 {
		n.ControllerPods[p.ControllerUID] = c
	} else {
		delete(n.ControllerPods, p.ControllerUID)
	}
}

func (n *NodeInfo) update(p *PodInfo, sign int64) {
	n.countController(p, int32(sign))
	if sign > 0 {
		n.Requested.Add(&p.Requests)
		n.UsedPorts = append(n.UsedPorts, PodHostPorts(p.Pod)...)
	} else {
		n.Requested.Sub(&p.Requests)
		for _, hp := range PodHostPorts(p.Pod) {
			for i, u := range n.UsedPorts {
				if u == hp {
					n.UsedPorts = append(n.UsedPorts[:i:i], n.UsedPorts[i+1:]...)
					break
				}
			}
		}
	}
	n.NonZeroRequested.MilliCPU += sign * p.NonZeroCPU
	n.NonZeroRequested.Memory += sign * p.NonZeroMemory
}

func removeFrom(list []*PodInfo, uid types.UID) ([]*PodInfo, *PodInfo) {
	for i, p := range list {
		if p.Pod.UID == uid {
			out := make([]*PodInfo, 0, len(list)-1)
			out = append(out, list[:i]...)
			return append(out, list[i+1:]...), p
		}
	}
	return list, nil
}

// RemovePod removes the pod with pod's UID. The slices are copied, never
// edited in place, so that clones sharing them stay intact.
func (n *NodeInfo) RemovePod(pod *v1.Pod) error {
	var p *PodInfo
	n.Pods, p = removeFrom(n.Pods, pod.UID)
	if p == nil {
		return fmt.Errorf("pod %s/%s not found on node %q", pod.Namespace, pod.Name, n.Name())
	}
	n.PodsWithAffinity, _ = removeFrom(n.PodsWithAffinity, pod.UID)
	n.PodsWithRequiredAntiAffinity, _ = removeFrom(n.PodsWithRequiredAntiAffinity, pod.UID)
	n.update(p, -1)
	return nil
}

// Clone returns a copy that can be changed without affecting n.
func (n *NodeInfo) Clone() *NodeInfo {
	c := &NodeInfo{
		node:                         n.node,
		Pods:                         append([]*PodInfo(nil), n.Pods...),
		PodsWithAffinity:             append([]*PodInfo(nil), n.PodsWithAffinity...),
		PodsWithRequiredAntiAffinity: append([]*PodInfo(nil), n.PodsWithRequiredAntiAffinity...),
		UsedPorts:                    append([]HostPort(nil), n.UsedPorts...),
		Requested:                    n.Requested.Clone(),
		NonZeroRequested:             n.NonZeroRequested.Clone(),
		Allocatable:                  n.Allocatable.Clone(),
		Images:                       n.Images,
		ControllerPods:               maps.Clone(n.ControllerPods),
		Generation:                   n.Generation,
	}
	return c
}
