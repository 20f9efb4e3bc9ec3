package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// defaultKubeletPort is the port of a node that advertises none.
const defaultKubeletPort = 10250

// newKubeletTransport is how the API server reaches node agents: with its
// kubelet client certificate, not verifying the agents' self-signed
// serving certificates (upstream's default without
// --kubelet-certificate-authority), HTTP/1.1 so that upgrades work.
func newKubeletTransport(cert *tls.Certificate) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12,
			InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}, //nolint:gosec // agents serve self-signed certificates, as kubelets do by default
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
}

// servePodStream serves pods/log, pods/exec, pods/attach and
// pods/portforward by proxying to the pod's node agent.
func (s *Server) servePodStream(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo) {
	if s.kubelet == nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf(
			"%s of %s %q: this API server has no client certificate for node agents", ri.subresource, h.gr.Resource, ri.name)))
		return
	}
	if ri.subresource == "log" {
		if ri.verb != "get" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods/log"}, ri.verb))
			return
		}
		s.servePodLog(h, w, r, ri)
		return
	}
	if ri.verb != "get" && ri.verb != "create" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods/" + ri.subresource}, ri.verb))
		return
	}
	obj, err := h.get(r.Context(), ri, queryParams{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pod := obj.(*corev1.Pod)
	q := r.URL.Query()
	params := url.Values{}
	var path string
	switch ri.subresource {
	case "exec", "attach":
		container, err := streamContainer(pod, q.Get("container"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if ri.subresource == "exec" && len(q["command"]) == 0 {
			s.writeError(w, r, apierrors.NewBadRequest("you must specify at least 1 command"))
			return
		}
		stdin, stdout, stderr, tty := queryBool(q, "stdin"), queryBool(q, "stdout"), queryBool(q, "stderr"), queryBool(q, "tty")
		if !stdin && !stdout && !stderr {
			s.writeError(w, r, apierrors.NewBadRequest("you must specify at least 1 of stdin, stdout, stderr"))
			return
		}
		for k, on := range map[string]bool{"input": stdin, "output": stdout, "error": stderr, "tty": tty} {
			if on {
				params.Set(k, "1")
			}
		}
		params["command"] = q["command"]
		path = "/" + ri.subresource + "/" + pod.Namespace + "/" + pod.Name + "/" + container
	case "portforward":
		for _, p := range q["ports"] {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("port %q: must be between 1 and 65535, inclusive", p)))
				return
			}
			params.Add("port", p)
		}
		path = "/portForward/" + pod.Namespace + "/" + pod.Name
	}
	if pod.Spec.NodeName == "" {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name)))
		return
	}
	if !isUpgrade(r) {
		s.writeError(w, r, apierrors.NewBadRequest("Upgrade request required"))
		return
	}
	loc, err := s.kubeletURL(r.Context(), pod.Spec.NodeName, path, params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		// agents speak SPDY: translate kubectl 1.30+'s WebSocket (as
		// upstream's API server does); other WebSocket protocols are
		// refused, and kubectl falls back to SPDY on a refused upgrade
		switch {
		case ri.subresource != "portforward" && offers(r, wsProtocolV5):
			s.translateExec(w, r, loc, streamOpts{stdin: params.Get("input") != "", stdout: params.Get("output") != "",
				stderr: params.Get("error") != "", tty: params.Get("tty") != ""})
		case ri.subresource == "portforward" && offers(r, wsProtocolPortForward):
			s.tunnelPortForward(w, r, loc)
		default:
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf(
				"%s over WebSocket supports only %s; use it or SPDY/3.1", ri.subresource, map[bool]string{true: wsProtocolPortForward, false: wsProtocolV5}[ri.subresource == "portforward"])))
		}
		return
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = loc
			pr.Out.Host = loc.Host
			pr.Out.Header.Del("Authorization")
		},
		Transport:     s.kubelet,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("error dialing backend: %w", err)))
		},
	}
	p.ServeHTTP(w, r)
}

// isUpgrade says whether r asks for a connection upgrade.
func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return r.Header.Get("Upgrade") != ""
			}
		}
	}
	return false
}

func queryBool(q url.Values, key string) bool {
	b, _ := strconv.ParseBool(q.Get(key))
	return b
}

// streamContainer is the container exec and attach address: the named one,
// or the pod's only container.
func streamContainer(pod *corev1.Pod, container string) (string, error) {
	if container == "" {
		return defaultContainer(pod)
	}
	if !podHasContainer(pod, container) {
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, pod.Name))
	}
	return container, nil
}

func defaultContainer(pod *corev1.Pod) (string, error) {
	switch len(pod.Spec.Containers) {
	case 1:
		return pod.Spec.Containers[0].Name, nil
	case 0:
		return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s", pod.Name))
	}
	names := func(cs []corev1.Container) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return strings.Join(out, " ")
	}
	msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, names(pod.Spec.Containers))
	if len(pod.Spec.InitContainers) > 0 {
		msg += fmt.Sprintf(" or one of the init containers: [%s]", names(pod.Spec.InitContainers))
	}
	return "", apierrors.NewBadRequest(msg)
}

func podHasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// kubeletURL is the node agent's URL for path: the node's InternalIP (then
// ExternalIP, then Hostname) and its advertised kubelet port.
func (s *Server) kubeletURL(ctx context.Context, nodeName, path string, params url.Values) (*url.URL, error) {
	nh := s.byGR[schema.GroupResource{Resource: "nodes"}]
	if nh == nil {
		return nil, apierrors.NewInternalError(errors.New("nodes are not served"))
	}
	obj, err := nh.get(ctx, requestInfo{name: nodeName}, queryParams{})
	if err != nil {
		return nil, err
	}
	node := obj.(*corev1.Node)
	var host string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("node %s has no address", nodeName))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port <= 0 {
		port = defaultKubeletPort
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: path, RawQuery: params.Encode()}, nil
}

// podLogOptions parses and validates pods/log's query, as upstream's
// PodLogOptions.
func podLogOptions(q url.Values, name string) (*corev1.PodLogOptions, error) {
	opts := &corev1.PodLogOptions{Container: q.Get("container"), Follow: queryBool(q, "follow"),
		Previous: queryBool(q, "previous"), Timestamps: queryBool(q, "timestamps")}
	ints := []struct {
		key string
		dst **int64
	}{{"sinceSeconds", &opts.SinceSeconds}, {"tailLines", &opts.TailLines}, {"limitBytes", &opts.LimitBytes}}
	for _, p := range ints {
		if v := q.Get(p.key); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("%s: invalid value %q: %v", p.key, v, err))
			}
			*p.dst = &n
		}
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("sinceTime: invalid value %q: %v", v, err))
		}
		st := metav1.NewTime(t)
		opts.SinceTime = &st
	}
	var errs field.ErrorList
	if opts.TailLines != nil && *opts.TailLines < 0 {
		errs = append(errs, field.Invalid(field.NewPath("tailLines"), *opts.TailLines, "must be greater than or equal to 0"))
	}
	if opts.LimitBytes != nil && *opts.LimitBytes < 1 {
		errs = append(errs, field.Invalid(field.NewPath("limitBytes"), *opts.LimitBytes, "must be greater than 0"))
	}
	switch {
	case opts.SinceSeconds != nil && opts.SinceTime != nil:
		errs = append(errs, field.Forbidden(field.NewPath("sinceSeconds"), "at most one of `sinceTime` or `sinceSeconds` may be specified"))
	case opts.SinceSeconds != nil && *opts.SinceSeconds < 1:
		errs = append(errs, field.Invalid(field.NewPath("sinceSeconds"), *opts.SinceSeconds, "must be greater than 0"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Kind: "PodLogOptions"}, name, errs)
	}
	return opts, nil
}

// servePodLog serves pods/log: the container's log from its node agent.
func (s *Server) servePodLog(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo) {
	ctx := r.Context()
	opts, err := podLogOptions(r.URL.Query(), ri.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := h.get(ctx, ri, queryParams{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pod := obj.(*corev1.Pod)
	container, err := streamContainer(pod, opts.Container)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pod.Spec.NodeName == "" {
		// upstream serves an unscheduled pod's log as empty
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := containerLogStatus(pod, container, opts.Previous); err != nil {
		s.writeError(w, r, apierrors.NewBadRequest(err.Error()))
		return
	}
	params := url.Values{}
	for k, on := range map[string]bool{"follow": opts.Follow, "previous": opts.Previous, "timestamps": opts.Timestamps} {
		if on {
			params.Set(k, "true")
		}
	}
	for k, v := range map[string]*int64{"sinceSeconds": opts.SinceSeconds, "tailLines": opts.TailLines, "limitBytes": opts.LimitBytes} {
		if v != nil {
			params.Set(k, strconv.FormatInt(*v, 10))
		}
	}
	if opts.SinceTime != nil {
		params.Set("sinceTime", opts.SinceTime.Format(time.RFC3339))
	}
	loc, err := s.kubeletURL(ctx, pod.Spec.NodeName, "/containerLogs/"+pod.Namespace+"/"+pod.Name+"/"+container, params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	resp, err := s.kubelet.RoundTrip(req)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("error dialing backend: %w", err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 206 {
		// as upstream's GenericHttpResponseChecker
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 50<<10))
		msg := strings.TrimSpace(string(body))
		switch resp.StatusCode {
		case http.StatusInternalServerError:
			s.writeError(w, r, apierrors.NewInternalError(errors.New(msg)))
		case http.StatusBadRequest:
			s.writeError(w, r, apierrors.NewBadRequest(msg))
		default:
			s.writeError(w, r, apierrors.NewGenericServerResponse(resp.StatusCode, "", schema.GroupResource{Resource: "pods/log"}, ri.name, msg, 0, false))
		}
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// containerLogStatus refuses logs of a container that has none to show,
// with the kubelet's wording.
func containerLogStatus(pod *corev1.Pod, name string, previous bool) error {
	var st *corev1.ContainerStatus
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				st = &list[i]
			}
		}
	}
	if st == nil {
		return fmt.Errorf("container %q in pod %q is not available", name, pod.Name)
	}
	last := st.LastTerminationState.Terminated
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return fmt.Errorf("previous terminated container %q in pod %q not found", name, pod.Name)
		}
	case st.State.Running != nil:
	case st.State.Terminated != nil:
		if st.State.Terminated.ContainerID == "" && (last == nil || last.ContainerID == "") {
			return fmt.Errorf("container %q in pod %q is terminated", name, pod.Name)
		}
	case last != nil:
		if last.ContainerID == "" {
			return fmt.Errorf("container %q in pod %q is terminated", name, pod.Name)
		}
	case st.State.Waiting != nil:
		switch st.State.Waiting.Reason {
		case "ErrImagePull":
			return fmt.Errorf("container %q in pod %q is waiting to start: image can't be pulled", name, pod.Name)
		case "ImagePullBackOff":
			return fmt.Errorf("container %q in pod %q is waiting to start: trying and failing to pull image", name, pod.Name)
		default:
			return fmt.Errorf("container %q in pod %q is waiting to start: %s", name, pod.Name, st.State.Waiting.Reason)
		}
	default:
		return fmt.Errorf("container %q in pod %q is waiting to start - no logs yet", name, pod.Name)
	}
	return nil
}
