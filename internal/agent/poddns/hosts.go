package poddns

import (
	"bytes"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// HostnameAndDomain are the pod's hostname (spec.hostname or its name,
// cut to 63 characters without a trailing '-' or '.') and, with
// spec.subdomain, its domain <subdomain>.<namespace>.svc.<clusterDomain>.
func HostnameAndDomain(p *corev1.Pod, clusterDomain string) (hostname, domain string, err error) {
	hostname = p.Name
	if p.Spec.Hostname != "" {
		hostname = p.Spec.Hostname
	}
	if len(hostname) > maxHostnameLen {
		cut := strings.TrimRight(hostname[:maxHostnameLen], "-.")
		if cut == "" {
			return "", "", fmt.Errorf("hostname for pod %q was invalid: %q", p.Name, hostname)
		}
		hostname = cut
	}
	if p.Spec.Subdomain != "" {
		domain = p.Spec.Subdomain + "." + p.Namespace + ".svc." + clusterDomain
	}
	return hostname, domain, nil
}

// SandboxHostname is the kernel hostname of the pod's sandbox: empty on
// the host network (the node's), else the hostname, or with
// setHostnameAsFQDN and a domain hostname.domain (at most 64 characters).
func SandboxHostname(p *corev1.Pod, clusterDomain string) (string, error) {
	if p.Spec.HostNetwork {
		return "", nil
	}
	host, domain, err := HostnameAndDomain(p, clusterDomain)
	if err != nil || domain == "" || p.Spec.SetHostnameAsFQDN == nil || !*p.Spec.SetHostnameAsFQDN {
		return host, err
	}
	fqdn := host + "." + domain
	if len(fqdn) > maxFQDNHostname {
		return "", fmt.Errorf("failed to construct FQDN from pod hostname and cluster domain, FQDN %s is too long (%d characters is the max, %d characters requested)",
			fqdn, maxFQDNHostname, len(fqdn))
	}
	return fqdn, nil
}

// HostsFile is the /etc/hosts the kubelet writes for a pod on the pod
// network: localhost entries, the pod's IPs with its hostname (and
// hostname.domain), then spec.hostAliases.
func HostsFile(p *corev1.Pod, podIPs []string, hostname, domain string) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range podIPs {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, hostname, domain, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	b.Write(hostAliases(p))
	return b.Bytes()
}

// HostNetworkHostsFile is the /etc/hosts of a pod on the host network:
// the node's, then spec.hostAliases.
func HostNetworkHostsFile(p *corev1.Pod, nodeHosts []byte) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file (host network).\n")
	b.Write(nodeHosts)
	b.Write(hostAliases(p))
	return b.Bytes()
}

func hostAliases(p *corev1.Pod) []byte {
	if len(p.Spec.HostAliases) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("\n# Entries added by HostAliases.\n")
	for _, a := range p.Spec.HostAliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	return b.Bytes()
}
