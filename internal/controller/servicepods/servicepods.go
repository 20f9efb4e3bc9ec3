// Package servicepods answers what the endpoints and EndpointSlice
// controllers both ask: which Services select a pod, whether a pod backs
// its Services at all, at which address and which port.
package servicepods

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Selects reports whether svc picks pods by selector (others get no
// endpoints from the controllers).
func Selects(svc *corev1.Service) bool {
	return svc.Spec.Selector != nil && svc.Spec.Type != corev1.ServiceTypeExternalName
}

// Services returns the keys of the Services in the pod's namespace whose
// selectors match the pod's labels.
func Services(lister corelisters.ServiceLister, pod *corev1.Pod) []string {
	svcs, err := lister.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range svcs {
		if Selects(s) && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			out = append(out, s.Namespace+"/"+s.Name)
		}
	}
	return out
}

// Pods returns the pods of lister that svc selects.
func Pods(lister corelisters.PodLister, svc *corev1.Service) ([]*corev1.Pod, error) {
	return lister.Pods(svc.Namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
}

// Include reports whether pod backs a Service: it has an IP, has not
// finished, and is not terminating unless includeTerminating.
func Include(pod *corev1.Pod, includeTerminating bool) bool {
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	return includeTerminating || pod.DeletionTimestamp == nil
}

// IP returns the pod's address of the given family (IPv6 when v6), or "".
func IP(pod *corev1.Pod, v6 bool) string {
	ips := make([]string, 0, 1+len(pod.Status.PodIPs))
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	ips = append(ips, pod.Status.PodIP)
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() == v6 && !a.Is4In6() {
			return s
		}
	}
	return ""
}

// Families returns the IP families the Service's endpoints are in:
// spec.ipFamilies, else the family of its cluster IP, else IPv4.
func Families(svc *corev1.Service) []corev1.IPFamily {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies
	}
	if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && a.Is6() {
		return []corev1.IPFamily{corev1.IPv6Protocol}
	}
	return []corev1.IPFamily{corev1.IPv4Protocol}
}

// Port resolves the service port's targetPort on pod: a number as is
// (default: the service port), a name by the pod's container ports of
// the same protocol; ok is false when a named port is not found.
func Port(sp *corev1.ServicePort, pod *corev1.Pod) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				pp := p.Protocol
				if pp == "" {
					pp = corev1.ProtocolTCP
				}
				if p.Name == tp.StrVal && pp == proto {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	default:
		return sp.Port, true
	}
}

// Hostname is the pod's DNS name within the Service: spec.hostname when
// spec.subdomain names the Service, else "".
func Hostname(pod *corev1.Pod, svc *corev1.Service) string {
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
		return pod.Spec.Hostname
	}
	return ""
}

// Labels are the labels the controllers put on a Service's endpoints:
// the Service's own, and service.kubernetes.io/headless for a headless
// Service.
func Labels(svc *corev1.Service) map[string]string {
	out := make(map[string]string, len(svc.Labels)+3)
	for k, v := range svc.Labels {
		out[k] = v
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out[corev1.IsHeadlessService] = ""
	}
	return out
}

// PodHandler is a pod informer handler that calls add with the key of
// every Service selecting the pod, before and after a change.
func PodHandler(lister corelisters.ServiceLister, add func(key string)) cache.ResourceEventHandler {
	on := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			for _, key := range Services(lister, pod) {
				add(key)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    on,
		UpdateFunc: func(old, cur any) { on(old); on(cur) },
		DeleteFunc: on,
	}
}
