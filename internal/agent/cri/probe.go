package cri

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// prober runs the startup, liveness and readiness probes of running
// containers, one goroutine per probe, keyed by container ID: a restarted
// container gets new probes. A failed liveness or startup probe stops the
// container; the next sync restarts it as the restart policy says.
type prober struct {
	r *Runtime

	mu      sync.Mutex
	workers map[string]*probeState // container ID → its probes
}

// probeState is what the probes of one container found so far.
type probeState struct {
	pod    types.UID
	cancel context.CancelFunc

	mu             sync.Mutex
	started, ready bool
	hasStartup     bool
	hasReadiness   bool
}

func newProber(r *Runtime) *prober {
	return &prober{r: r, workers: map[string]*probeState{}}
}

// sync starts the probes of the pod's running containers and stops those
// of containers that no longer run.
func (pr *prober) sync(p *corev1.Pod, cs []*runtimeapi.ContainerStatus, podIP string) {
	specs := map[string]*corev1.Container{}
	for i := range p.Spec.Containers {
		specs[p.Spec.Containers[i].Name] = &p.Spec.Containers[i]
	}
	running := map[string]bool{}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for _, c := range cs {
		spec := specs[c.Metadata.Name]
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING || spec == nil ||
			spec.StartupProbe == nil && spec.LivenessProbe == nil && spec.ReadinessProbe == nil {
			continue
		}
		running[c.Id] = true
		if pr.workers[c.Id] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		ps := &probeState{pod: p.UID, cancel: cancel, hasStartup: spec.StartupProbe != nil, hasReadiness: spec.ReadinessProbe != nil}
		ps.started = !ps.hasStartup
		seedProbeState(ps, p, c.Metadata.Name, c.Id) // adopt.go
		pr.workers[c.Id] = ps
		for kind, probe := range map[string]*corev1.Probe{"startup": spec.StartupProbe, "liveness": spec.LivenessProbe, "readiness": spec.ReadinessProbe} {
			if probe != nil {
				go pr.run(ctx, p, spec, c.Id, podIP, kind, probe, ps)
			}
		}
	}
	for id, ps := range pr.workers {
		if ps.pod == p.UID && !running[id] {
			ps.cancel()
			delete(pr.workers, id)
		}
	}
}

// forget stops the probes of a pod.
func (pr *prober) forget(uid types.UID) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for id, ps := range pr.workers {
		if ps.pod == uid {
			ps.cancel()
			delete(pr.workers, id)
		}
	}
}

// results are the startup and readiness results of a container; nil when
// it has no such probe.
func (pr *prober) results(id string) (started, ready *bool) {
	pr.mu.Lock()
	ps := pr.workers[id]
	pr.mu.Unlock()
	if ps == nil {
		return nil, nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.hasStartup {
		s := ps.started
		started = &s
	}
	if ps.hasReadiness {
		r := ps.ready && ps.started
		ready = &r
	}
	return started, ready
}

// run runs one probe of a container until ctx ends or it has stopped the
// container.
func (pr *prober) run(ctx context.Context, p *corev1.Pod, c *corev1.Container, id, podIP, kind string, probe *corev1.Probe, ps *probeState) {
	period := seconds(probe.PeriodSeconds, 10)
	failAt := max(int(probe.FailureThreshold), 1)
	if probe.FailureThreshold == 0 {
		failAt = 3
	}
	okAt := max(int(probe.SuccessThreshold), 1)
	wait := seconds(probe.InitialDelaySeconds, 0)
	var fails, oks int
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = period
		ps.mu.Lock()
		started := ps.started
		ps.mu.Unlock()
		if kind == "startup" && started {
			return // startup succeeded once: done
		}
		if kind != "startup" && !started {
			continue // liveness and readiness wait for startup
		}
		err := pr.probe(ctx, p, c, id, podIP, probe)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			oks, fails = oks+1, 0
		} else {
			oks, fails = 0, fails+1
			pr.r.log.Debug("probe failed", "pod", p.Namespace+"/"+p.Name, "container", c.Name, "probe", kind, "err", err)
			pr.r.event(p, corev1.EventTypeWarning, "Unhealthy", "%s", probeFailedMessage(kind, err))
		}
		ps.mu.Lock()
		switch kind {
		case "startup":
			ps.started = oks >= 1
		case "readiness":
			if oks >= okAt {
				ps.ready = true
			} else if fails >= failAt {
				ps.ready = false
			}
		}
		ps.mu.Unlock()
		if kind != "readiness" && fails >= failAt {
			pr.r.log.Info("container failed its probe; stopping it", "pod", p.Namespace+"/"+p.Name,
				"container", c.Name, "probe", kind, "err", err)
			pr.r.event(p, corev1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", c.Name, kind)
			grace := int64(30)
			if p.Spec.TerminationGracePeriodSeconds != nil {
				grace = *p.Spec.TerminationGracePeriodSeconds
			}
			if probe.TerminationGracePeriodSeconds != nil {
				grace = *probe.TerminationGracePeriodSeconds
			}
			if _, err := pr.r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: grace}); err != nil && ctx.Err() == nil {
				pr.r.log.Warn("stopping a container that failed its probe failed", "container", c.Name, "err", err)
			}
			return
		}
	}
}

func seconds(n, def int32) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * time.Second
}

// execError is an exec action's non-zero exit.
type execError struct {
	code   int32
	output string // stdout then stderr
}

func (e *execError) Error() string {
	return fmt.Sprintf("exit code %d: %s", e.code, strings.TrimSpace(e.output))
}

// probeFailedMessage is the Unhealthy event's message for a failed probe
// of kind ("liveness", ...), as the kubelet words it: an exec probe's is
// the command's output, as it printed it.
func probeFailedMessage(kind string, err error) string {
	var ee *execError
	if errors.As(err, &ee) {
		return fmt.Sprintf("%s%s probe failed: %s", strings.ToUpper(kind[:1]), kind[1:], ee.output)
	}
	return fmt.Sprintf("%s%s probe failed: %v", strings.ToUpper(kind[:1]), kind[1:], err)
}

// probe runs a probe once: nil means success.
func (pr *prober) probe(ctx context.Context, _ *corev1.Pod, c *corev1.Container, id, podIP string, probe *corev1.Probe) error {
	h := probe.ProbeHandler
	if h.GRPC != nil {
		return grpcProbe(ctx, h.GRPC, podIP, seconds(probe.TimeoutSeconds, 1)) // probe_grpc.go
	}
	return pr.r.action(ctx, c, id, podIP, seconds(probe.TimeoutSeconds, 1), h.Exec, h.HTTPGet, h.TCPSocket)
}

// action runs an exec, httpGet or tcpSocket action of a probe or
// lifecycle hook against container id: nil means success (also when no
// action is given).
func (r *Runtime) action(ctx context.Context, c *corev1.Container, id, podIP string, timeout time.Duration,
	exec *corev1.ExecAction, get *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) error {
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
	defer cancel()
	switch {
	case exec != nil:
		resp, err := r.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: exec.Command, Timeout: int64(timeout.Seconds())})
		if err != nil {
			return err
		}
		if resp.ExitCode != 0 {
			return &execError{code: resp.ExitCode, output: string(resp.Stdout) + string(resp.Stderr)}
		}
		return nil
	case tcp != nil:
		port, err := probePort(tcp.Port, c)
		if err != nil {
			return err
		}
		host := tcp.Host
		if host == "" {
			host = podIP
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), timeout)
		if err != nil {
			return err
		}
		return conn.Close()
	case get != nil:
		return httpProbe(ctx, get, c, podIP, timeout)
	}
	return nil
}

// hook runs a postStart or preStop handler, with at most timeout.
func (r *Runtime) hook(ctx context.Context, c *corev1.Container, id, podIP string, timeout time.Duration, h *corev1.LifecycleHandler) error {
	if h.Sleep != nil {
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(h.Sleep.Seconds)*time.Second, timeout)):
		}
		return nil
	}
	return r.action(ctx, c, id, podIP, timeout, h.Exec, h.HTTPGet, h.TCPSocket)
}

func probePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no container port named %q", port.StrVal)
}

// httpProbe is an httpGet probe: 2xx and 3xx pass, as upstream.
func httpProbe(ctx context.Context, g *corev1.HTTPGetAction, c *corev1.Container, podIP string, timeout time.Duration) error {
	port, err := probePort(g.Port, c)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = podIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	u, err = u.Parse(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.33")
	for _, hd := range g.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // probes do not verify, as upstream's
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}
