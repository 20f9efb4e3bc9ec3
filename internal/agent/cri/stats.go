package cri

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent"
)

// cpuSample is a cumulative CPU counter read at one time.
type cpuSample struct {
	at    time.Time
	total uint64 // core-nanoseconds used since the counter started
}

// cpuRate is the CPU usage between two samples of one cumulative counter,
// in nano-cores, as metrics-server computes it from the kubelet's
// usageCoreNanoSeconds. It is false when the samples give no rate: prev is
// not earlier than cur, or the counter went backwards (it restarted).
func cpuRate(prev, cur cpuSample) (uint64, bool) {
	dt := cur.at.Sub(prev.at)
	if dt <= 0 || cur.total < prev.total {
		return 0, false
	}
	return uint64(float64(cur.total-prev.total) / dt.Seconds()), true
}

// statsCache holds the previous CPU sample of every container and of the
// node, so that each report's CPU is the rate since the report before.
type statsCache struct {
	mu         sync.Mutex
	containers map[string]cpuSample // container ID → last sample
	node       cpuSample
}

// rate returns the rate of the counter key since its last sample, or,
// for a counter seen for the first time, since first (its start); it
// then remembers cur.
func (c *statsCache) rate(key string, first, cur cpuSample) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.containers == nil {
		c.containers = map[string]cpuSample{}
	}
	prev, ok := c.containers[key]
	if !ok {
		prev = first
	}
	c.containers[key] = cur
	return cpuRate(prev, cur)
}

// nodeRate is rate for the node's counter.
func (c *statsCache) nodeRate(first, cur cpuSample) (uint64, time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.node
	if prev.at.IsZero() {
		prev = first
	}
	c.node = cur
	r, ok := cpuRate(prev, cur)
	return r, cur.at.Sub(prev.at), ok
}

// keep forgets the samples of containers not in live.
func (c *statsCache) keep(live map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.containers {
		if !live[id] {
			delete(c.containers, id)
		}
	}
}

// Stats implements agent.StatsProvider from CRI ListContainerStats: each
// running app container's CPU is the rate of its usageCoreNanoSeconds since
// the previous call (since the container was created on the first call
// that sees it) and its memory the working set (usage minus inactive file
// pages, as the kubelet's). The node's figures are the whole machine's
// from /proc, as the kubelet reports its root cgroup: CPU busy time from
// /proc/stat and memory working set MemTotal - MemFree - Inactive(file).
func (r *Runtime) Stats(ctx context.Context, pods []*corev1.Pod) (*agent.NodeStats, error) {
	running, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil {
		return nil, fmt.Errorf("list running containers: %w", err)
	}
	created := map[string]int64{}
	for _, c := range running.Containers {
		created[c.Id] = c.CreatedAt
	}
	resp, err := r.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list container stats: %w", err)
	}
	byUID := map[types.UID]*corev1.Pod{}
	for _, p := range pods {
		byUID[p.UID] = p
	}
	now := time.Now()
	perPod := map[types.UID][]agent.ContainerStats{}
	live := map[string]bool{}
	for _, s := range resp.Stats {
		a := s.GetAttributes()
		createdAt, ok := created[a.GetId()]
		p := byUID[types.UID(a.GetLabels()[LabelPodUID])]
		if !ok || p == nil || a.GetMetadata() == nil {
			continue
		}
		live[a.Id] = true
		cpu, ok := containerCPU(&r.stats, a.Id, createdAt, s.GetCpu())
		if !ok {
			continue
		}
		var mem int64
		if m := s.GetMemory(); m != nil && m.WorkingSetBytes != nil {
			mem = int64(m.WorkingSetBytes.Value)
		}
		perPod[p.UID] = append(perPod[p.UID], agent.ContainerStats{Name: a.Metadata.Name, Usage: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(cpu), resource.Nano),
			corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI)}})
	}
	r.stats.keep(live)
	st := &agent.NodeStats{Time: now, Window: agent.DefaultMetricsInterval}
	for uid, cs := range perPod {
		p := byUID[uid]
		sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
		st.Pods = append(st.Pods, agent.PodStats{Namespace: p.Namespace, Name: p.Name, UID: uid, Containers: cs})
	}
	sort.Slice(st.Pods, func(i, j int) bool {
		a, b := st.Pods[i], st.Pods[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	cpu, window, err := r.nodeCPU(now)
	if err != nil {
		return nil, err
	}
	if window > 0 && window < time.Hour {
		st.Window = window
	}
	mem, err := nodeMemoryWorkingSet("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	st.Usage = corev1.ResourceList{corev1.ResourceCPU: *resource.NewScaledQuantity(int64(cpu), resource.Nano),
		corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI)}
	return st, nil
}

// containerCPU is a container's CPU rate from its CRI sample.
func containerCPU(c *statsCache, id string, createdAt int64, u *runtimeapi.CpuUsage) (uint64, bool) {
	if u == nil || u.UsageCoreNanoSeconds == nil || u.Timestamp == 0 {
		return 0, false
	}
	cur := cpuSample{at: time.Unix(0, u.Timestamp), total: u.UsageCoreNanoSeconds.Value}
	return c.rate(id, cpuSample{at: time.Unix(0, createdAt)}, cur)
}

// nodeCPU is the machine's CPU rate since the previous call (since boot on
// the first) and the window it covers.
func (r *Runtime) nodeCPU(now time.Time) (uint64, time.Duration, error) {
	busy, boot, err := procStatCPU("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	rate, window, _ := r.stats.nodeRate(cpuSample{at: boot}, cpuSample{at: now, total: busy})
	return rate, window, nil
}

// userHZ is the unit of /proc/stat's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// procStatCPU reads the machine's busy CPU time (user, nice, system, irq,
// softirq and steal; not idle and iowait) in core-nanoseconds and the boot
// time from a /proc/stat file.
func procStatCPU(path string) (busy uint64, boot time.Time, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("node cpu: %w", err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) > 8 && fields[0] == "cpu":
			for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
				n, err := strconv.ParseUint(fields[i], 10, 64)
				if err != nil {
					return 0, time.Time{}, fmt.Errorf("node cpu: %s: %w", path, err)
				}
				busy += n
			}
			found = true
		case len(fields) == 2 && fields[0] == "btime":
			s, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, time.Time{}, fmt.Errorf("node cpu: %s: %w", path, err)
			}
			boot = time.Unix(s, 0)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, time.Time{}, fmt.Errorf("node cpu: %w", err)
	}
	if !found {
		return 0, time.Time{}, fmt.Errorf("node cpu: no cpu line in %s", path)
	}
	return busy * (uint64(time.Second) / userHZ), boot, nil
}

// nodeMemoryWorkingSet is the machine's memory working set from a
// /proc/meminfo file: what is in use (MemTotal - MemFree) minus the
// inactive file pages the kernel can drop, as the kubelet computes it for
// its root cgroup (usage - total_inactive_file).
func nodeMemoryWorkingSet(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("node memory: %w", err)
	}
	kb := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			kb[name] = n
		}
	}
	total, ok := kb["MemTotal"]
	if !ok {
		return 0, fmt.Errorf("node memory: no MemTotal in %s", path)
	}
	ws := total - kb["MemFree"] - kb["Inactive(file)"]
	return max(ws, 0) * 1024, nil
}
