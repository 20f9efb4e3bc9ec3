package stream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels the CRI runtime puts on sandboxes and containers (as the
// kubelet's; see package cri).
const (
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
)

// httpError is an error with the status the endpoint answers it with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// writeErr answers err as plain text, as the kubelet does.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		http.Error(w, he.msg, he.code)
		return
	}
	s.log.Warn("streaming request failed", "err", err)
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// sandbox finds the pod's newest sandbox; uid, when set, must match.
func (s *Server) sandbox(ctx context.Context, ns, pod, uid string) (*runtimeapi.PodSandbox, error) {
	sel := map[string]string{labelPodNamespace: ns, labelPodName: pod}
	if uid != "" {
		sel[labelPodUID] = uid
	}
	resp, err := s.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var best *runtimeapi.PodSandbox
	for _, sb := range resp.Items {
		if best == nil || sb.CreatedAt > best.CreatedAt {
			best = sb
		}
	}
	if best == nil {
		return nil, notFound("pod %q not found", ns+"/"+pod)
	}
	return best, nil
}

// containers are the attempts of one container of a sandbox, latest first.
func (s *Server) containers(ctx context.Context, sandboxID, name string) ([]*runtimeapi.Container, error) {
	resp, err := s.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: sandboxID, LabelSelector: map[string]string{labelContainerName: name}}})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := resp.Containers
	sort.Slice(out, func(i, j int) bool {
		return attempt(out[i]) > attempt(out[j]) || attempt(out[i]) == attempt(out[j]) && out[i].CreatedAt > out[j].CreatedAt
	})
	return out, nil
}

func attempt(c *runtimeapi.Container) uint32 {
	if c.Metadata == nil {
		return 0
	}
	return c.Metadata.Attempt
}

// runningContainer is the container's running attempt, as exec and
// attach need.
func (s *Server) runningContainer(ctx context.Context, r *http.Request) (*runtimeapi.Container, error) {
	ns, pod, name := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	sb, err := s.sandbox(ctx, ns, pod, r.PathValue("uid"))
	if err != nil {
		return nil, err
	}
	cs, err := s.containers(ctx, sb.Id, name)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, notFound("container not found (%q)", name)
	}
	if cs[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, badRequest("container %q in pod %q is not running", name, pod)
	}
	return cs[0], nil
}

// flag reads a kubelet boolean parameter ("1" or "true").
func flag(q url.Values, key string) bool {
	v := q.Get(key)
	return v == "1" || v == "true"
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	s.containerStream(w, r, "exec in", func(ctx context.Context, id string, q url.Values) (string, error) {
		resp, err := s.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: q["command"], Tty: flag(q, "tty"),
			Stdin: flag(q, "input"), Stdout: flag(q, "output"), Stderr: flag(q, "error")})
		return resp.GetUrl(), err
	})
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	s.containerStream(w, r, "attach to", func(ctx context.Context, id string, q url.Values) (string, error) {
		resp, err := s.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Tty: flag(q, "tty"),
			Stdin: flag(q, "input"), Stdout: flag(q, "output"), Stderr: flag(q, "error")})
		return resp.GetUrl(), err
	})
}

// containerStream asks the runtime for a streaming URL of the running
// container (streamURL) and proxies the request to it.
func (s *Server) containerStream(w http.ResponseWriter, r *http.Request, what string,
	streamURL func(ctx context.Context, id string, q url.Values) (string, error)) {
	ctx := r.Context()
	c, err := s.runningContainer(ctx, r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	u, err := streamURL(ctx, c.Id, r.URL.Query())
	if err != nil {
		s.writeErr(w, badRequest("%s container %q: %v", what, r.PathValue("container"), err))
		return
	}
	s.proxyTo(w, r, u)
}

func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sb, err := s.sandbox(ctx, r.PathValue("ns"), r.PathValue("pod"), r.PathValue("uid"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		s.writeErr(w, badRequest("pod %q is not running", r.PathValue("pod")))
		return
	}
	var ports []int32
	for _, p := range r.URL.Query()["port"] {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			s.writeErr(w, badRequest("invalid port %q", p))
			return
		}
		ports = append(ports, int32(n))
	}
	resp, err := s.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: sb.Id, Port: ports})
	if err != nil {
		s.writeErr(w, badRequest("port-forward to pod %q: %v", r.PathValue("pod"), err))
		return
	}
	s.proxyTo(w, r, resp.Url)
}

// proxyTo hands the request, with its connection upgrade, to the runtime's
// streaming server at target and copies the upgraded connection both ways.
func (s *Server) proxyTo(w http.ResponseWriter, r *http.Request, target string) {
	u, err := url.Parse(target)
	if err != nil {
		s.writeErr(w, fmt.Errorf("streaming URL %q from the runtime: %w", target, err))
		return
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = u
			pr.Out.Host = u.Host
		},
		Transport:     &http.Transport{DialContext: s.cfg.Dial, DisableKeepAlives: true},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			s.writeErr(w, fmt.Errorf("proxy to the runtime's streaming server: %w", err))
		},
	}
	p.ServeHTTP(w, r)
}

// containerLogs serves /containerLogs/{ns}/{pod}/{container} from the CRI
// log files.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ns, pod, name := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	q := r.URL.Query()
	opts, err := logOptions(q, time.Now())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	previous := flag(q, "previous")
	sb, err := s.sandbox(ctx, ns, pod, "")
	var dir string
	switch {
	case err == nil:
		dir = filepath.Join(s.cfg.PodLogDir, ns+"_"+pod+"_"+sb.Metadata.GetUid(), name)
	case errors.As(err, new(*httpError)):
		// no sandbox (removed): the newest log directory of the pod
		if dir, err = s.newestLogDir(ns, pod, name); err != nil {
			s.writeErr(w, err)
			return
		}
	default:
		s.writeErr(w, err)
		return
	}
	attempts, err := logAttempts(dir)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	idx := 0
	if previous {
		idx = 1
	}
	if len(attempts) <= idx {
		if previous {
			s.writeErr(w, badRequest("previous terminated container %q in pod %q not found", name, pod))
		} else {
			s.writeErr(w, badRequest("container %q in pod %q is waiting to start - no logs yet", name, pod))
		}
		return
	}
	att := attempts[idx]
	if opts.Follow && !previous && sb != nil {
		sandboxID := sb.Id
		opts.Running = func() bool { return s.attemptRunning(ctx, sandboxID, name, att) }
	} else {
		opts.Follow = false
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	flush := func() { _ = http.NewResponseController(w).Flush() }
	path := filepath.Join(dir, strconv.Itoa(att)+".log")
	if err := ReadLogs(ctx, path, opts, w, flush); err != nil {
		if os.IsNotExist(err) {
			s.writeErr(w, notFound("log file of container %q in pod %q not found", name, pod))
			return
		}
		s.log.Debug("serving container logs ended", "pod", ns+"/"+pod, "container", name, "err", err)
	}
}

// attemptRunning says whether attempt att of the container still runs.
func (s *Server) attemptRunning(ctx context.Context, sandboxID, name string, att int) bool {
	cs, err := s.containers(ctx, sandboxID, name)
	if err != nil {
		return ctx.Err() == nil // keep following through a CRI hiccup
	}
	return len(cs) > 0 && int(attempt(cs[0])) == att && cs[0].State == runtimeapi.ContainerState_CONTAINER_RUNNING
}

// newestLogDir is the container's log directory of the newest pod
// NAMESPACE_NAME_* under the log dir.
func (s *Server) newestLogDir(ns, pod, name string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(s.cfg.PodLogDir, ns+"_"+pod+"_*"))
	var best string
	var bestTime time.Time
	for _, d := range dirs {
		// pod names have no '_': the rest is the UID
		if strings.Count(strings.TrimPrefix(filepath.Base(d), ns+"_"+pod+"_"), "_") != 0 {
			continue
		}
		st, err := os.Stat(d)
		if err == nil && (best == "" || st.ModTime().After(bestTime)) {
			best, bestTime = d, st.ModTime()
		}
	}
	if best == "" {
		return "", notFound("pod %q not found", ns+"/"+pod)
	}
	return filepath.Join(best, name), nil
}

// logAttempts are the attempts with a log file in dir, latest first.
func logAttempts(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		if a, err := strconv.Atoi(n); err == nil && a >= 0 {
			out = append(out, a)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out, nil
}

// logOptions parses the kubelet's containerLogs parameters.
func logOptions(q url.Values, now time.Time) (LogOptions, error) {
	opts := LogOptions{TailLines: -1, Follow: flag(q, "follow"), Timestamps: flag(q, "timestamps")}
	var sinceSeconds int64
	for _, p := range []struct {
		key, msg string
		min      int64
		dst      *int64
	}{
		{"tailLines", "must be greater than or equal to 0", 0, &opts.TailLines},
		{"limitBytes", "must be greater than 0", 1, &opts.LimitBytes},
		{"sinceSeconds", "must be greater than 0", 1, &sinceSeconds},
	} {
		v := q.Get(p.key)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return opts, badRequest("%s %q: not an integer", p.key, v)
		}
		if n < p.min {
			return opts, badRequest("%s: %s", p.key, p.msg)
		}
		*p.dst = n
	}
	if sinceSeconds > 0 {
		opts.Since = now.Add(-time.Duration(sinceSeconds) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		if !opts.Since.IsZero() {
			return opts, badRequest("at most one of `sinceTime` or `sinceSeconds` may be specified")
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return opts, badRequest("sinceTime %q: %v", v, err)
		}
		opts.Since = t
	}
	return opts, nil
}
