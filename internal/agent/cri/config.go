package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cniConfigName is the file the runtime writes the pod network to.
const cniConfigName = "10-skiff.conflist"

// cniConfig is the pod network: a bridge with the node's pod CIDR (the
// bridge holds the gateway, .1), host-local IPAM, and portmap for
// hostPort. The CRI plugin adds loopback itself. Nothing is masqueraded
// and no route leaves the node: pod traffic stays on the bridge.
func cniConfig(bridge, cidr, dataDir string) ([]byte, error) {
	ipam := map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": cidr}}},
		"routes": []map[string]string{{"dst": "0.0.0.0/0"}}}
	if dataDir != "" {
		ipam["dataDir"] = dataDir
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "skiff",
		"plugins": []map[string]any{
			{"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true, "ipam": ipam},
			{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// writeCNIConfig writes the conflist atomically, for the CRI plugin to
// pick up.
func writeCNIConfig(dir, bridge, cidr, dataDir string) error {
	b, err := cniConfig(bridge, cidr, dataDir)
	if err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	tmp := filepath.Join(dir, "."+cniConfigName+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil { //nolint:gosec // CNI config is not secret
		return fmt.Errorf("cni config: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, cniConfigName)); err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	return nil
}

// podLabels are the labels of the pod's sandbox and containers that tie
// them to the pod.
func podLabels(p *corev1.Pod) map[string]string {
	return map[string]string{LabelPodUID: string(p.UID), LabelPodName: p.Name, LabelPodNamespace: p.Namespace}
}

func namespaceOptions(p *corev1.Pod) *runtimeapi.NamespaceOption {
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	if p.Spec.HostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	if p.Spec.HostPID {
		ns.Pid = runtimeapi.NamespaceMode_NODE
	} else if p.Spec.ShareProcessNamespace != nil && *p.Spec.ShareProcessNamespace {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	if p.Spec.HostIPC {
		ns.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return ns
}

// sandboxConfig is the CRI sandbox of the pod.
func sandboxConfig(p *corev1.Pod, attempt uint32, logDir string) *runtimeapi.PodSandboxConfig {
	labels := podLabels(p)
	for k, v := range p.Labels {
		if _, ours := labels[k]; !ours {
			labels[k] = v
		}
	}
	hostname := p.Name
	if p.Spec.Hostname != "" {
		hostname = p.Spec.Hostname
	}
	if p.Spec.HostNetwork {
		hostname = ""
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: string(p.UID), Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: filepath.Join(logDir, logDirName(p.Namespace, p.Name, string(p.UID))),
		Labels:       labels,
		Annotations:  p.Annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions(p)},
		},
	}
	if sc := p.Spec.SecurityContext; sc != nil {
		for _, s := range sc.Sysctls {
			if cfg.Linux.Sysctls == nil {
				cfg.Linux.Sysctls = map[string]string{}
			}
			cfg.Linux.Sysctls[s.Name] = s.Value
		}
	}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.HostPort == 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch port.Protocol {
			case corev1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case corev1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{Protocol: proto,
				ContainerPort: port.ContainerPort, HostPort: port.HostPort, HostIp: port.HostIP})
		}
	}
	return cfg
}

// containerConfig is the CRI container of one attempt of c.
func containerConfig(ctx context.Context, refs refs, p *corev1.Pod, c *corev1.Container, attempt uint32, podIPs, hostIPs []string) (*runtimeapi.ContainerConfig, error) {
	env, err := containerEnv(ctx, refs, p, c, podIPs, hostIPs)
	if err != nil {
		return nil, err
	}
	lookup := map[string]string{}
	for _, e := range env {
		lookup[e.Key] = string(e.Value)
	}
	expand := func(in []string) []string {
		var out []string
		for _, s := range in {
			out = append(out, expandVars(s, lookup))
		}
		return out
	}
	labels := podLabels(p)
	labels[LabelContainerName] = c.Name
	cfg := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:      &runtimeapi.ImageSpec{Image: c.Image},
		Command:    expand(c.Command),
		Args:       expand(c.Args),
		WorkingDir: c.WorkingDir,
		Envs:       env,
		Labels:     labels,
		Annotations: map[string]string{"io.kubernetes.container.restartCount": strconv.Itoa(int(attempt)),
			"io.kubernetes.container.terminationMessagePath": c.TerminationMessagePath},
		LogPath:   filepath.Join(c.Name, strconv.Itoa(int(attempt))+".log"),
		Stdin:     c.Stdin,
		StdinOnce: c.StdinOnce,
		Tty:       c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       resources(p, c),
			SecurityContext: securityContext(p, c),
		},
	}
	return cfg, nil
}

// resources maps the container's requests and limits to cgroup settings
// as the kubelet does: CPU shares from the request, a CFS quota from the
// limit, the memory limit, and an OOM score by QoS class.
func resources(p *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerResources {
	res := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 2}
	req, lim := c.Resources.Requests, c.Resources.Limits
	cpuReq, ok := req[corev1.ResourceCPU]
	if !ok {
		cpuReq, ok = lim[corev1.ResourceCPU]
	}
	if ok {
		res.CpuShares = max(2, cpuReq.MilliValue()*1024/1000)
	}
	if q, ok := lim[corev1.ResourceCPU]; ok {
		res.CpuQuota = max(1000, q.MilliValue()*100000/1000)
	}
	if q, ok := lim[corev1.ResourceMemory]; ok {
		res.MemoryLimitInBytes = q.Value()
	}
	switch qos := p.Status.QOSClass; qos {
	case corev1.PodQOSGuaranteed:
		res.OomScoreAdj = -997
	case corev1.PodQOSBestEffort:
		res.OomScoreAdj = 1000
	default:
		res.OomScoreAdj = 999
	}
	return res
}

func securityContext(p *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(p)}
	if psc := p.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
	}
	csc := c.SecurityContext
	if csc == nil {
		return sc
	}
	if csc.RunAsUser != nil {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: *csc.RunAsUser}
	}
	if csc.RunAsGroup != nil {
		sc.RunAsGroup = &runtimeapi.Int64Value{Value: *csc.RunAsGroup}
	}
	if csc.Privileged != nil {
		sc.Privileged = *csc.Privileged
	}
	if csc.ReadOnlyRootFilesystem != nil {
		sc.ReadonlyRootfs = *csc.ReadOnlyRootFilesystem
	}
	if csc.AllowPrivilegeEscalation != nil {
		sc.NoNewPrivs = !*csc.AllowPrivilegeEscalation
	}
	if caps := csc.Capabilities; caps != nil {
		sc.Capabilities = &runtimeapi.Capability{}
		for _, a := range caps.Add {
			sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(a))
		}
		for _, d := range caps.Drop {
			sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(d))
		}
	}
	return sc
}
