package cri

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceEnv is the environment the kubelet gives a pod in namespace for
// the services with a cluster IP: those of its namespace when
// enableServiceLinks is on, and default/kubernetes always (a service of
// the pod's own namespace named kubernetes wins over it). Each service
// gives <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT (the first port),
// <NAME>_SERVICE_PORT_<PORTNAME> per named port, and Docker's link
// variables <NAME>_PORT and <NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
func serviceEnv(namespace string, enableServiceLinks bool, services []*corev1.Service) map[string]string {
	chosen := map[string]*corev1.Service{}
	for _, svc := range services {
		if !hasClusterIP(svc) {
			continue
		}
		switch {
		case svc.Namespace == namespace && enableServiceLinks:
			chosen[svc.Name] = svc
		case svc.Namespace == metav1.NamespaceDefault && svc.Name == "kubernetes":
			if _, ok := chosen[svc.Name]; !ok {
				chosen[svc.Name] = svc
			}
		}
	}
	env := map[string]string{}
	for _, svc := range chosen {
		if len(svc.Spec.Ports) == 0 {
			continue
		}
		prefix := envName(svc.Name)
		ip := svc.Spec.ClusterIP
		env[prefix+"_SERVICE_HOST"] = ip
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(svc.Spec.Ports[0].Port))
		for i, sp := range svc.Spec.Ports {
			port := strconv.Itoa(int(sp.Port))
			if sp.Name != "" {
				env[prefix+"_SERVICE_PORT_"+envName(sp.Name)] = port
			}
			proto := string(sp.Protocol)
			if proto == "" {
				proto = string(corev1.ProtocolTCP)
			}
			url := strings.ToLower(proto) + "://" + net.JoinHostPort(ip, port)
			if i == 0 {
				env[prefix+"_PORT"] = url
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, sp.Port, strings.ToUpper(proto))
			env[pp] = url
			env[pp+"_PROTO"] = strings.ToLower(proto)
			env[pp+"_PORT"] = port
			env[pp+"_ADDR"] = ip
		}
	}
	return env
}

func hasClusterIP(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

// envName is a service or port name as a variable name: upper case, '-'
// as '_'.
func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}
