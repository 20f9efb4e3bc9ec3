package agent

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons the kubelet gives in pod conditions and container states.
const (
	reasonContainerCreating  = "ContainerCreating"
	reasonPodInitializing    = "PodInitializing"
	reasonPodCompleted       = "PodCompleted"
	reasonPodFailed          = "PodFailed"
	reasonContainersNotReady = "ContainersNotReady"
	reasonNotInitialized     = "ContainersNotInitialized"
	reasonGatesNotReady      = "ReadinessGatesNotReady"
)

// kubeletConditions are the pod conditions the kubelet owns, in the order
// it reports them.
var kubeletConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady,
	corev1.ContainersReady, corev1.PodScheduled,
}

func ownedByKubelet(t corev1.PodConditionType) bool {
	for _, c := range kubeletConditions {
		if c == t {
			return true
		}
	}
	return t == corev1.PodResizePending || t == corev1.PodResizeInProgress
}

// podStatus computes the API status of pod from what the runtime observed
// (rs, nil when the runtime has nothing for the pod yet), as upstream's
// kubelet does: container statuses, phase, kubelet-owned conditions, IPs,
// start time and QoS class. terminal says the pod is done for good (it is
// being deleted and the runtime has stopped it), which turns a stopped pod
// of any restart policy into Succeeded or Failed. now stamps transitions.
func podStatus(pod *corev1.Pod, rs *PodStatus, hostIPs []string, terminal bool, now time.Time) corev1.PodStatus {
	old := pod.Status
	var s corev1.PodStatus
	if rs == nil {
		rs = &PodStatus{}
	}
	for _, ip := range sortIPs(rs.IPs, hostIPs) {
		s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: ip})
	}
	if pod.Spec.HostNetwork && len(hostIPs) > 0 {
		s.PodIPs = nil
		for _, ip := range hostIPs {
			s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	if len(s.PodIPs) > 0 {
		s.PodIP = s.PodIPs[0].IP
	}
	if len(hostIPs) > 0 {
		s.HostIP = hostIPs[0]
		for _, ip := range hostIPs {
			s.HostIPs = append(s.HostIPs, corev1.HostIP{IP: ip})
		}
	}
	s.QOSClass = old.QOSClass
	if s.QOSClass == "" {
		s.QOSClass = qosClass(pod)
	}
	s.StartTime = old.StartTime
	if s.StartTime == nil {
		t := metav1.NewTime(now)
		s.StartTime = &t
	}
	hasInit := len(pod.Spec.InitContainers) > 0
	s.InitContainerStatuses = containerStatuses(pod.Spec.InitContainers, rs, old.InitContainerStatuses, hasInit, true)
	s.ContainerStatuses = containerStatuses(pod.Spec.Containers, rs, old.ContainerStatuses, hasInit, false)
	sort.Slice(s.ContainerStatuses, func(i, j int) bool { return s.ContainerStatuses[i].Name < s.ContainerStatuses[j].Name })

	s.Phase = podPhase(pod, append(append([]corev1.ContainerStatus{}, s.ContainerStatuses...), s.InitContainerStatuses...), terminal, anyRegularStarted(pod, rs))
	// a pod never leaves a terminal phase
	if old.Phase == corev1.PodSucceeded || old.Phase == corev1.PodFailed {
		s.Phase = old.Phase
	}
	if s.Phase == old.Phase {
		s.Reason, s.Message = old.Reason, old.Message
	}
	s.NominatedNodeName = old.NominatedNodeName
	s.ResourceClaimStatuses = old.ResourceClaimStatuses

	// conditions others own come first, then the kubelet's in its order
	for _, c := range old.Conditions {
		if !ownedByKubelet(c.Type) {
			s.Conditions = append(s.Conditions, c)
		}
	}
	all := append(append([]corev1.ContainerStatus{}, s.InitContainerStatuses...), s.ContainerStatuses...)
	ready, containersReady := readyConditions(pod, s.Conditions, all, s.Phase)
	s.Conditions = append(s.Conditions,
		corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: boolCondition(rs.SandboxReady)},
		initializedCondition(pod, all, s.Phase, rs),
		ready, containersReady,
		corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	)
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if !ownedByKubelet(c.Type) {
			continue
		}
		c.LastTransitionTime = metav1.NewTime(now)
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	normalize(&s)
	return s
}

// statusEqual reports whether two statuses say the same, ignoring the
// precision of timestamps.
func statusEqual(a, b corev1.PodStatus) bool {
	normalize(&a)
	normalize(&b)
	return equality.Semantic.DeepEqual(a, b)
}

// normalize truncates timestamps to seconds, as the API stores them.
func normalize(s *corev1.PodStatus) {
	trunc := func(t *metav1.Time) { *t = t.Rfc3339Copy() }
	if s.StartTime != nil {
		t := s.StartTime.Rfc3339Copy()
		s.StartTime = &t
	}
	for i := range s.Conditions {
		trunc(&s.Conditions[i].LastProbeTime)
		trunc(&s.Conditions[i].LastTransitionTime)
	}
	state := func(c *corev1.ContainerState) {
		if c.Running != nil {
			trunc(&c.Running.StartedAt)
		}
		if c.Terminated != nil {
			trunc(&c.Terminated.StartedAt)
			trunc(&c.Terminated.FinishedAt)
		}
	}
	for _, list := range [][]corev1.ContainerStatus{s.InitContainerStatuses, s.ContainerStatuses, s.EphemeralContainerStatuses} {
		for i := range list {
			state(&list[i].State)
			state(&list[i].LastTerminationState)
		}
	}
}

func boolCondition(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// sortIPs keeps the first IP of the node's family and then the first of the
// other family, as the kubelet does.
func sortIPs(ips, hostIPs []string) []string {
	v6First := false
	if len(hostIPs) > 0 {
		if a, err := netip.ParseAddr(hostIPs[0]); err == nil && a.Is6() && !a.Is4In6() {
			v6First = true
		}
	}
	var primary, secondary string
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			continue
		}
		is6 := a.Is6() && !a.Is4In6()
		if is6 == v6First && primary == "" {
			primary = a.Unmap().String()
		} else if is6 != v6First && secondary == "" {
			secondary = a.Unmap().String()
		}
	}
	var out []string
	for _, ip := range []string{primary, secondary} {
		if ip != "" {
			out = append(out, ip)
		}
	}
	return out
}

func isRestartableInit(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func runtimeContainer(rs *PodStatus, name string) *ContainerStatus {
	for i := range rs.Containers {
		if rs.Containers[i].Name == name {
			return &rs.Containers[i]
		}
	}
	return nil
}

// anyRegularStarted says whether an app container has ever started, which
// means the pod was initialized before.
func anyRegularStarted(pod *corev1.Pod, rs *PodStatus) bool {
	for _, c := range pod.Spec.Containers {
		if r := runtimeContainer(rs, c.Name); r != nil && (r.State == ContainerRunning || r.State == ContainerExited) {
			return true
		}
	}
	return false
}

// containerStatuses converts the runtime's view of containers into their
// API statuses, starting from the defaults for containers the runtime has
// not created yet.
func containerStatuses(containers []corev1.Container, rs *PodStatus, previous []corev1.ContainerStatus, hasInit, isInit bool) []corev1.ContainerStatus {
	if len(containers) == 0 {
		return nil
	}
	waiting := reasonContainerCreating
	if hasInit {
		waiting = reasonPodInitializing
	}
	out := make([]corev1.ContainerStatus, 0, len(containers))
	for i := range containers {
		c := &containers[i]
		st := corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}}
		for _, m := range c.VolumeMounts {
			vm := corev1.VolumeMountStatus{Name: m.Name, MountPath: m.MountPath, ReadOnly: m.ReadOnly}
			if m.ReadOnly {
				mode := corev1.RecursiveReadOnlyDisabled
				if m.RecursiveReadOnly != nil && *m.RecursiveReadOnly == corev1.RecursiveReadOnlyEnabled {
					mode = corev1.RecursiveReadOnlyEnabled
				}
				vm.RecursiveReadOnly = &mode
			}
			st.VolumeMounts = append(st.VolumeMounts, vm)
		}
		for _, p := range previous {
			if p.Name != c.Name {
				continue
			}
			if p.State.Terminated != nil {
				st = *p.DeepCopy()
			} else {
				st.RestartCount = p.RestartCount
				st.LastTerminationState = p.LastTerminationState
			}
		}
		if r := runtimeContainer(rs, c.Name); r != nil {
			st.Image, st.ImageID, st.ContainerID, st.RestartCount = r.Image, r.ImageID, r.ID, r.RestartCount
			if st.Image == "" {
				st.Image = c.Image
			}
			st.State = apiState(r)
			st.LastTerminationState = corev1.ContainerState{}
			if r.Previous != nil {
				st.LastTerminationState = apiState(r.Previous)
			}
			if r.Waiting != nil {
				if st.State.Terminated != nil {
					st.LastTerminationState = st.State
				}
				st.State = corev1.ContainerState{Waiting: r.Waiting.DeepCopy()}
			}
			st.Resources = c.Resources.DeepCopy()
			st.AllocatedResources = c.Resources.Requests.DeepCopy()
			st.User = r.User.DeepCopy()
		}
		// a running container has started and is ready unless its
		// startup or readiness probe says otherwise
		started := st.State.Running != nil
		ready := started
		if r := runtimeContainer(rs, c.Name); r != nil && started {
			if r.Started != nil {
				started = *r.Started
			}
			ready = started && (r.Ready == nil || *r.Ready)
		}
		st.Started = &started
		switch {
		case isInit && !isRestartableInit(c):
			st.Ready = st.State.Terminated != nil && st.State.Terminated.ExitCode == 0
		default:
			st.Ready = ready
		}
		out = append(out, st)
	}
	return out
}

func apiState(r *ContainerStatus) corev1.ContainerState {
	switch r.State {
	case ContainerRunning:
		return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(r.StartedAt)}}
	case ContainerExited:
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: r.ExitCode, Reason: r.Reason, Message: r.Message, ContainerID: r.ID,
			StartedAt: metav1.NewTime(r.StartedAt), FinishedAt: metav1.NewTime(r.FinishedAt)}}
	default:
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}
	}
}

func findStatus(list []corev1.ContainerStatus, name string) (corev1.ContainerStatus, bool) {
	for _, s := range list {
		if s.Name == name {
			return s, true
		}
	}
	return corev1.ContainerStatus{}, false
}

// podPhase is the kubelet's phase rule: init containers first, then the
// counts of running, waiting and stopped app containers, then the restart
// policy.
func podPhase(pod *corev1.Pod, statuses []corev1.ContainerStatus, terminal, initialized bool) corev1.PodPhase {
	spec := &pod.Spec
	pendingInit, pendingRestartable, failedInit := 0, 0, 0
	var unknown, running, waiting, stopped, succeeded int
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		st, ok := findStatus(statuses, c.Name)
		if isRestartableInit(c) {
			switch {
			case !ok:
				unknown++
			case st.State.Running != nil:
				if st.Started == nil || !*st.Started {
					pendingRestartable++
				}
				running++
			case st.State.Terminated != nil:
			case st.State.Waiting != nil && st.LastTerminationState.Terminated != nil:
			default:
				pendingRestartable++
				waiting++
			}
			continue
		}
		switch {
		case !ok, st.State.Running != nil:
			pendingInit++
		case st.State.Terminated != nil:
			if st.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case st.State.Waiting != nil && st.LastTerminationState.Terminated != nil:
			if st.LastTerminationState.Terminated.ExitCode != 0 {
				failedInit++
			}
		default:
			pendingInit++
		}
	}
	for _, c := range spec.Containers {
		st, ok := findStatus(statuses, c.Name)
		switch {
		case !ok:
			unknown++
		case st.State.Running != nil:
			running++
		case st.State.Terminated != nil:
			stopped++
			if st.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case st.State.Waiting != nil && st.LastTerminationState.Terminated != nil:
			stopped++
		case st.State.Waiting != nil:
			waiting++
		default:
			unknown++
		}
	}
	if failedInit > 0 && spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	switch {
	case pendingInit > 0 || (pendingRestartable > 0 && !initialized), waiting > 0:
		return corev1.PodPending
	case running > 0 && unknown == 0:
		return corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if terminal || spec.RestartPolicy != corev1.RestartPolicyAlways {
			if stopped == succeeded {
				return corev1.PodSucceeded
			}
			if terminal || spec.RestartPolicy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
		}
		return corev1.PodRunning
	default:
		return corev1.PodPending
	}
}

// readyConditions returns the Ready and ContainersReady conditions.
func readyConditions(pod *corev1.Pod, conditions []corev1.PodCondition, all []corev1.ContainerStatus, phase corev1.PodPhase) (ready, containersReady corev1.PodCondition) {
	containersReady = corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}
	var unknown, unready []string
	check := func(name string) {
		st, ok := findStatus(all, name)
		switch {
		case !ok:
			unknown = append(unknown, name)
		case !st.Ready:
			unready = append(unready, name)
		}
	}
	for i := range pod.Spec.InitContainers {
		if isRestartableInit(&pod.Spec.InitContainers[i]) {
			check(pod.Spec.InitContainers[i].Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		check(c.Name)
	}
	switch {
	case phase == corev1.PodSucceeded && len(unknown) == 0:
		containersReady.Status, containersReady.Reason = corev1.ConditionFalse, reasonPodCompleted
	case phase == corev1.PodFailed:
		containersReady.Status, containersReady.Reason = corev1.ConditionFalse, reasonPodFailed
	case len(unknown) > 0 || len(unready) > 0:
		var msgs []string
		if len(unknown) > 0 {
			msgs = append(msgs, fmt.Sprintf("containers with unknown status: %v", unknown))
		}
		if len(unready) > 0 {
			msgs = append(msgs, fmt.Sprintf("containers with unready status: %v", unready))
		}
		containersReady.Status, containersReady.Reason = corev1.ConditionFalse, reasonContainersNotReady
		containersReady.Message = strings.Join(msgs, ", ")
	}
	ready = corev1.PodCondition{Type: corev1.PodReady, Status: containersReady.Status,
		Reason: containersReady.Reason, Message: containersReady.Message}
	if ready.Status != corev1.ConditionTrue {
		return ready, containersReady
	}
	var msgs []string
	for _, g := range pod.Spec.ReadinessGates {
		var found *corev1.PodCondition
		for i := range conditions {
			if conditions[i].Type == g.ConditionType {
				found = &conditions[i]
			}
		}
		if found == nil {
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(g.ConditionType)))
		} else if found.Status != corev1.ConditionTrue {
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(g.ConditionType), found.Status))
		}
	}
	if len(msgs) > 0 {
		ready = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse,
			Reason: reasonGatesNotReady, Message: strings.Join(msgs, ", ")}
	}
	return ready, containersReady
}

// initializedCondition is True once every init container has completed (or
// a regular container has started).
func initializedCondition(pod *corev1.Pod, all []corev1.ContainerStatus, phase corev1.PodPhase, rs *PodStatus) corev1.PodCondition {
	cond := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	var unknown, incomplete []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st, ok := findStatus(all, c.Name)
		if !ok {
			unknown = append(unknown, c.Name)
			continue
		}
		done := st.Ready
		if isRestartableInit(c) {
			done = st.Started != nil && *st.Started
		}
		if !done {
			incomplete = append(incomplete, c.Name)
		}
	}
	if phase == corev1.PodSucceeded && len(unknown) == 0 {
		cond.Reason = reasonPodCompleted
		return cond
	}
	if anyRegularStarted(pod, rs) {
		return cond
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %v", unknown))
	}
	if len(incomplete) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with incomplete status: %v", incomplete))
	}
	if len(msgs) > 0 {
		cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, reasonNotInitialized, strings.Join(msgs, ", ")
	}
	return cond
}

// qosClass classifies a pod as upstream does: Guaranteed when every
// container sets equal cpu and memory requests and limits, BestEffort when
// none sets any, Burstable otherwise.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[name]
			lim, hasLim := c.Resources.Limits[name]
			if hasReq && !req.IsZero() {
				requests[name] = req
			}
			if hasLim && !lim.IsZero() {
				limits[name] = lim
			}
			if !hasLim || lim.IsZero() || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed && len(limits) == 2 {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
