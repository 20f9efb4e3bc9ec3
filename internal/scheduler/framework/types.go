// Package framework is the scheduler's pure algorithm: the cluster snapshot
// it reads, the plugin interfaces, the cycle that filters and scores nodes in
// parallel, and preemption. It performs no I/O; the caller supplies a
// Snapshot and a pod and receives a node name, a *FitError or victims.
package framework

import (
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Default requests used for scoring when a container requests nothing, as
// upstream does, so that empty pods still spread.
const (
	DefaultMilliCPURequest int64 = 100
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024
)

// MaxNodeScore is the highest score a plugin returns after normalization.
const MaxNodeScore int64 = 100

// Resource is an amount of each schedulable resource.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	AllowedPodNumber int64
	// Scalar holds extended resources such as nvidia.com/gpu and hugepages.
	Scalar map[v1.ResourceName]int64
}

// NewResource converts a ResourceList.
func NewResource(rl v1.ResourceList) Resource {
	var r Resource
	r.AddList(rl)
	return r
}

// AddList adds every quantity of rl to r.
func (r *Resource) AddList(rl v1.ResourceList) {
	for name, q := range rl {
		switch name {
		case v1.ResourceCPU:
			r.MilliCPU += q.MilliValue()
		case v1.ResourceMemory:
			r.Memory += q.Value()
		case v1.ResourceEphemeralStorage:
			r.EphemeralStorage += q.Value()
		case v1.ResourcePods:
			r.AllowedPodNumber += q.Value()
		default:
			if isScalar(name) {
				r.SetScalar(name, r.Scalar[name]+q.Value())
			}
		}
	}
}

// isScalar reports whether name is an extended, hugepages or attachable
// resource, the resources the fit check tracks besides the built-in ones.
func isScalar(name v1.ResourceName) bool {
	s := string(name)
	if len(s) > 10 && s[:10] == "hugepages-" {
		return true
	}
	if len(s) > 11 && s[:11] == "attachable-" {
		return true
	}
	// Extended resources are domain-qualified and not in kubernetes.io/
	// (requests.* are quota names, never container requests).
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return !(len(s) >= 14 && s[:14] == "kubernetes.io/")
		}
	}
	return false
}

// SetScalar sets one extended resource.
func (r *Resource) SetScalar(name v1.ResourceName, v int64) {
	if r.Scalar == nil {
		r.Scalar = make(map[v1.ResourceName]int64, 1)
	}
	r.Scalar[name] = v
}

// Add adds o to r.
func (r *Resource) Add(o *Resource) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	r.AllowedPodNumber += o.AllowedPodNumber
	for k, v := range o.Scalar {
		r.SetScalar(k, r.Scalar[k]+v)
	}
}

// Sub subtracts o from r.
func (r *Resource) Sub(o *Resource) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	r.AllowedPodNumber -= o.AllowedPodNumber
	for k, v := range o.Scalar {
		r.SetScalar(k, r.Scalar[k]-v)
	}
}

// SetMax raises each of r's amounts to o's where o's is larger.
func (r *Resource) SetMax(o *Resource) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	r.AllowedPodNumber = max(r.AllowedPodNumber, o.AllowedPodNumber)
	for k, v := range o.Scalar {
		if v > r.Scalar[k] {
			r.SetScalar(k, v)
		}
	}
}

// Clone returns a deep copy.
func (r *Resource) Clone() Resource {
	c := *r
	if r.Scalar != nil {
		c.Scalar = make(map[v1.ResourceName]int64, len(r.Scalar))
		for k, v := range r.Scalar {
			c.Scalar[k] = v
		}
	}
	return c
}

// Get returns the amount of one resource.
func (r *Resource) Get(name v1.ResourceName) int64 {
	switch name {
	case v1.ResourceCPU:
		return r.MilliCPU
	case v1.ResourceMemory:
		return r.Memory
	case v1.ResourceEphemeralStorage:
		return r.EphemeralStorage
	case v1.ResourcePods:
		return r.AllowedPodNumber
	}
	return r.Scalar[name]
}

// containerRequests returns a container's requests, falling back to its
// limits where a request is missing (what API defaulting does).
func containerRequests(c *v1.Container) Resource {
	r := NewResource(c.Resources.Requests)
	for name, q := range c.Resources.Limits {
		if _, ok := c.Resources.Requests[name]; !ok {
			r.AddList(v1.ResourceList{name: q})
		}
	}
	return r
}

// nonZero replaces a zero cpu or memory request by the scoring default.
func nonZero(r Resource) Resource {
	if r.MilliCPU == 0 {
		r.MilliCPU = DefaultMilliCPURequest
	}
	if r.Memory == 0 {
		r.Memory = DefaultMemoryRequest
	}
	return r
}

// PodRequests computes what a pod occupies on a node: the larger of the sum
// of its containers (plus restartable init "sidecar" containers) and the
// largest init container running alongside the sidecars started before it,
// plus the pod overhead. Pod-level requests, when set, replace the
// container totals for the resources they name. withDefaults applies the
// scoring defaults to containers that request no cpu or memory.
func PodRequests(pod *v1.Pod, withDefaults bool) Resource {
	var reqs Resource
	for i := range pod.Spec.Containers {
		c := containerRequests(&pod.Spec.Containers[i])
		if withDefaults {
			c = nonZero(c)
		}
		reqs.Add(&c)
	}
	var sidecars, initMax Resource
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		c := containerRequests(ic)
		if withDefaults {
			c = nonZero(c)
		}
		var running Resource
		if ic.RestartPolicy != nil && *ic.RestartPolicy == v1.ContainerRestartPolicyAlways {
			reqs.Add(&c)
			sidecars.Add(&c)
			running = sidecars.Clone()
		} else {
			running = sidecars.Clone()
			running.Add(&c)
		}
		initMax.SetMax(&running)
	}
	reqs.SetMax(&initMax)
	if pr := pod.Spec.Resources; pr != nil {
		if q, ok := pr.Requests[v1.ResourceCPU]; ok {
			reqs.MilliCPU = q.MilliValue()
		}
		if q, ok := pr.Requests[v1.ResourceMemory]; ok {
			reqs.Memory = q.Value()
		}
	}
	if pod.Spec.Overhead != nil {
		o := NewResource(pod.Spec.Overhead)
		reqs.Add(&o)
	}
	return reqs
}

// AffinityTerm is a parsed pod (anti-)affinity term.
type AffinityTerm struct {
	// Namespaces the term selects pods in; with NamespaceSelector nil and
	// this empty, the owning pod's namespace.
	Namespaces map[string]struct{}
	// NamespaceSelector selects namespaces by their labels; nil means none.
	NamespaceSelector labels.Selector
	Selector          labels.Selector
	TopologyKey       string
}

// WeightedAffinityTerm is a preferred term with its weight.
type WeightedAffinityTerm struct {
	AffinityTerm
	Weight int32
}

// Matches reports whether pod is selected by the term. nsLabels looks up a
// namespace's labels; it may be nil when no term uses a namespace selector.
func (t *AffinityTerm) Matches(pod *v1.Pod, nsLabels func(string) labels.Set) bool {
	if _, ok := t.Namespaces[pod.Namespace]; !ok {
		if t.NamespaceSelector == nil {
			return false
		}
		var l labels.Set
		if nsLabels != nil {
			l = nsLabels(pod.Namespace)
		}
		if !t.NamespaceSelector.Matches(l) {
			return false
		}
	}
	return t.Selector.Matches(labels.Set(pod.Labels))
}

func newAffinityTerm(owner *v1.Pod, t *v1.PodAffinityTerm) (AffinityTerm, error) {
	sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
	if err != nil {
		return AffinityTerm{}, err
	}
	if t.LabelSelector == nil {
		sel = labels.Nothing()
	}
	at := AffinityTerm{Selector: sel, TopologyKey: t.TopologyKey, Namespaces: map[string]struct{}{}}
	for _, ns := range t.Namespaces {
		at.Namespaces[ns] = struct{}{}
	}
	if t.NamespaceSelector != nil {
		nsSel, err := metav1.LabelSelectorAsSelector(t.NamespaceSelector)
		if err != nil {
			return AffinityTerm{}, err
		}
		at.NamespaceSelector = nsSel
	} else if len(t.Namespaces) == 0 {
		at.Namespaces[owner.Namespace] = struct{}{}
	}
	return at, nil
}

func newAffinityTerms(owner *v1.Pod, terms []v1.PodAffinityTerm) ([]AffinityTerm, error) {
	out := make([]AffinityTerm, 0, len(terms))
	for i := range terms {
		t, err := newAffinityTerm(owner, &terms[i])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func newWeightedTerms(owner *v1.Pod, terms []v1.WeightedPodAffinityTerm) ([]WeightedAffinityTerm, error) {
	out := make([]WeightedAffinityTerm, 0, len(terms))
	for i := range terms {
		t, err := newAffinityTerm(owner, &terms[i].PodAffinityTerm)
		if err != nil {
			return nil, err
		}
		out = append(out, WeightedAffinityTerm{AffinityTerm: t, Weight: terms[i].Weight})
	}
	return out, nil
}

// PodInfo is a pod with everything the plugins derive from it computed once.
// It is immutable once built.
type PodInfo struct {
	Pod *v1.Pod
	// Requests is what the pod occupies (PodRequests without defaults).
	Requests Resource
	// NonZeroCPU and NonZeroMemory are the requests used for scoring.
	NonZeroCPU, NonZeroMemory int64
	// Priority is spec.priority, or 0.
	Priority int32
	// ControllerUID is the UID of the pod's controller owner reference,
	// "" if it has none (kept so that spreading need not look it up for
	// every pod of every node it scores).
	ControllerUID types.UID

	RequiredAffinity      []AffinityTerm
	RequiredAntiAffinity  []AffinityTerm
	PreferredAffinity     []WeightedAffinityTerm
	PreferredAntiAffinity []WeightedAffinityTerm
	// ParseErr records an invalid label selector in an affinity term.
	ParseErr error
}

// NewPodInfo derives a PodInfo from pod.
func NewPodInfo(pod *v1.Pod) *PodInfo {
	pi := &PodInfo{Pod: pod, Requests: PodRequests(pod, false)}
	nz := PodRequests(pod, true)
	pi.NonZeroCPU, pi.NonZeroMemory = nz.MilliCPU, nz.Memory
	if pod.Spec.Priority != nil {
		pi.Priority = *pod.Spec.Priority
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		pi.ControllerUID = ref.UID
	}
	if a := pod.Spec.Affinity; a != nil {
		var err error
		if pa := a.PodAffinity; pa != nil {
			if pi.RequiredAffinity, err = newAffinityTerms(pod, pa.RequiredDuringSchedulingIgnoredDuringExecution); err != nil {
				pi.ParseErr = err
			}
			if pi.PreferredAffinity, err = newWeightedTerms(pod, pa.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
				pi.ParseErr = err
			}
		}
		if pa := a.PodAntiAffinity; pa != nil {
			if pi.RequiredAntiAffinity, err = newAffinityTerms(pod, pa.RequiredDuringSchedulingIgnoredDuringExecution); err != nil {
				pi.ParseErr = err
			}
			if pi.PreferredAntiAffinity, err = newWeightedTerms(pod, pa.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
				pi.ParseErr = err
			}
		}
	}
	return pi
}

// HasAffinity reports whether the pod has any pod (anti-)affinity term.
func (pi *PodInfo) HasAffinity() bool {
	return len(pi.RequiredAffinity)+len(pi.RequiredAntiAffinity)+len(pi.PreferredAffinity)+len(pi.PreferredAntiAffinity) > 0
}

// HostPort is one host port a pod uses.
type HostPort struct {
	IP       string
	Protocol v1.Protocol
	Port     int32
}

// PodHostPorts lists the host ports of pod's containers.
func PodHostPorts(pod *v1.Pod) []HostPort {
	var out []HostPort
	add := func(cs []v1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				if p.HostPort <= 0 {
					continue
				}
				hp := HostPort{IP: p.HostIP, Protocol: p.Protocol, Port: p.HostPort}
				if hp.IP == "" {
					hp.IP = "0.0.0.0"
				}
				if hp.Protocol == "" {
					hp.Protocol = v1.ProtocolTCP
				}
				out = append(out, hp)
			}
		}
	}
	add(pod.Spec.Containers)
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		if ic.RestartPolicy != nil && *ic.RestartPolicy == v1.ContainerRestartPolicyAlways {
			add(pod.Spec.InitContainers[i : i+1])
		}
	}
	return out
}

// Conflicts reports whether two host ports cannot both be bound.
func (h HostPort) Conflicts(o HostPort) bool {
	if h.Port != o.Port || h.Protocol != o.Protocol {
		return false
	}
	return h.IP == o.IP || h.IP == "0.0.0.0" || o.IP == "0.0.0.0"
}
