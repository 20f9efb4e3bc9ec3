package agent

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels the agent sets on its node.
const (
	LabelHostname     = "kubernetes.io/hostname"
	LabelOS           = "kubernetes.io/os"
	LabelArch         = "kubernetes.io/arch"
	LabelInstanceType = "node.kubernetes.io/instance-type"
)

// KubeletVersion is the version the agent reports in nodeInfo.
const KubeletVersion = "v1.33.0-skiff"

// DefaultMaxPods is the pod capacity of a node when none is given.
const DefaultMaxPods = 110

// Size is a named node shape (what a node pool's machine size gives).
type Size struct {
	CPU, Memory, EphemeralStorage string
}

// Sizes are the node shapes --size accepts.
var Sizes = map[string]Size{
	"small":  {CPU: "2", Memory: "4Gi", EphemeralStorage: "50Gi"},
	"medium": {CPU: "4", Memory: "8Gi", EphemeralStorage: "100Gi"},
	"large":  {CPU: "8", Memory: "16Gi", EphemeralStorage: "200Gi"},
	"xlarge": {CPU: "16", Memory: "32Gi", EphemeralStorage: "400Gi"},
}

// Resources builds a node's resource list.
func Resources(cpu, memory, storage string, pods int) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: cpu, corev1.ResourceMemory: memory,
		corev1.ResourceEphemeralStorage: storage} {
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", name, v, err)
		}
		if q.Sign() <= 0 {
			return nil, fmt.Errorf("%s %q: must be positive", name, v)
		}
		out[name] = q
	}
	if pods > 0 {
		out[corev1.ResourcePods] = *resource.NewQuantity(int64(pods), resource.DecimalSI)
	}
	return out, nil
}

// Machine returns this machine's capacity and allocatable resources: its
// CPUs, memory, the size of the file system holding dir, and pods. Like the
// kubelet's default hard eviction thresholds, allocatable keeps back 100Mi
// of memory and 10% of the disk.
func Machine(dir string, pods int) (capacity, allocatable corev1.ResourceList, err error) {
	memBytes, err := memTotal()
	if err != nil {
		return nil, nil, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil, nil, fmt.Errorf("size of the file system of %s: %w", dir, err)
	}
	disk := int64(st.Blocks) * int64(st.Bsize)
	if pods <= 0 {
		pods = DefaultMaxPods
	}
	capacity = corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(memBytes, resource.BinarySI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(disk, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	allocatable = capacity.DeepCopy()
	allocatable[corev1.ResourceMemory] = *resource.NewQuantity(max(memBytes-100<<20, 0), resource.BinarySI)
	allocatable[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(disk/10*9, resource.BinarySI)
	return capacity, allocatable, nil
}

func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read memory size: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// SystemInfo describes this machine for a node's status.nodeInfo; the
// runtime version is filled in by the agent.
func SystemInfo() corev1.NodeSystemInfo {
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}
	osImage := "Linux"
	for _, line := range strings.Split(read("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			osImage = strings.Trim(v, `"`)
		}
	}
	return corev1.NodeSystemInfo{
		MachineID: read("/etc/machine-id"), SystemUUID: read("/sys/class/dmi/id/product_uuid"),
		BootID: read("/proc/sys/kernel/random/boot_id"), KernelVersion: read("/proc/sys/kernel/osrelease"),
		OSImage: osImage, OperatingSystem: runtime.GOOS, Architecture: runtime.GOARCH,
		KubeletVersion: KubeletVersion,
	}
}

// ParseLabels parses "k=v,k2=v2" as --node-labels takes it.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("label %q value %q: %s", k, v, strings.Join(errs, "; "))
		}
		out[k] = v
	}
	return out, nil
}

// ParseTaints parses "k=v:Effect,k2:Effect" as --register-with-taints
// takes it.
func ParseTaints(s string) ([]corev1.Taint, error) {
	var out []corev1.Taint
	for _, spec := range strings.Split(s, ",") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		kv, effect, ok := strings.Cut(spec, ":")
		if !ok {
			return nil, fmt.Errorf("taint %q: want key[=value]:Effect", spec)
		}
		t := corev1.Taint{Effect: corev1.TaintEffect(effect)}
		t.Key, t.Value, _ = strings.Cut(kv, "=")
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			return nil, fmt.Errorf("taint %q: effect must be NoSchedule, PreferNoSchedule or NoExecute", spec)
		}
		if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
			return nil, fmt.Errorf("taint key %q: %s", t.Key, strings.Join(errs, "; "))
		}
		if t.Value != "" {
			if errs := validation.IsValidLabelValue(t.Value); len(errs) > 0 {
				return nil, fmt.Errorf("taint %q value %q: %s", t.Key, t.Value, strings.Join(errs, "; "))
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// nodeConditions are the node's conditions as the kubelet reports them
// when it is healthy, in the kubelet's order. Timestamps are left to the
// caller.
func nodeConditions(p Pressure) []corev1.NodeCondition {
	cond := func(t corev1.NodeConditionType, pressure bool, okReason, okMsg, badReason, badMsg string) corev1.NodeCondition {
		if pressure {
			return corev1.NodeCondition{Type: t, Status: corev1.ConditionTrue, Reason: badReason, Message: badMsg}
		}
		return corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: okReason, Message: okMsg}
	}
	return []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, p.Memory, "KubeletHasSufficientMemory", "kubelet has sufficient memory available",
			"KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
		cond(corev1.NodeDiskPressure, p.Disk, "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
			"KubeletHasDiskPressure", "kubelet has disk pressure"),
		cond(corev1.NodePIDPressure, p.PID, "KubeletHasSufficientPID", "kubelet has sufficient PID available",
			"KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	}
}

// Pressure says which resources of the node run short.
type Pressure struct{ Memory, Disk, PID bool }

// stampConditions sets heartbeat times to now and keeps the transition
// times of conditions whose status did not change.
func stampConditions(conds, old []corev1.NodeCondition, now metav1.Time) []corev1.NodeCondition {
	out := make([]corev1.NodeCondition, len(conds))
	for i, c := range conds {
		c.LastHeartbeatTime = now
		c.LastTransitionTime = now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		out[i] = c
	}
	return out
}

// conditionsChanged reports whether the conditions differ in anything but
// their timestamps.
func conditionsChanged(a, b []corev1.NodeCondition) bool {
	key := func(cs []corev1.NodeCondition) []string {
		var out []string
		for _, c := range cs {
			out = append(out, string(c.Type)+"\x00"+string(c.Status)+"\x00"+c.Reason+"\x00"+c.Message)
		}
		sort.Strings(out)
		return out
	}
	ka, kb := key(a), key(b)
	if len(ka) != len(kb) {
		return true
	}
	for i := range ka {
		if ka[i] != kb[i] {
			return true
		}
	}
	return false
}
