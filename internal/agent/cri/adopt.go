package cri

import corev1 "k8s.io/api/core/v1"

// seedProbeState starts the probe results of a container the runtime has
// not probed before from what the pod's status in the API says of that
// same container (by ID): a container this agent's previous run had found
// started and ready stays so until its probes say otherwise, so that an
// agent restart does not flip running pods to not Ready (and out of their
// Services' endpoints) while the first probes are due. A container the
// status does not name with this ID (a new one) starts unready.
func seedProbeState(ps *probeState, p *corev1.Pod, name, id string) {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name != name || st.ContainerID != "containerd://"+id || st.State.Running == nil {
			continue
		}
		if st.Started != nil && *st.Started {
			ps.started = true
		}
		if st.Ready && ps.started {
			ps.ready = true
		}
	}
}
