package apiserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/satoken"
)

// queryParams are the query parameters resource requests use.
type queryParams struct {
	raw                  url.Values
	resourceVersion      string
	resourceVersionMatch string
	labelSelector        string
	fieldSelector        string
	limit                int64
	continueToken        string
	dryRun               bool
	fieldValidation      string
	timeoutSeconds       int64
	allowBookmarks       bool
	sendInitialEvents    *bool
	includeObject        string
}

func parseQuery(r *http.Request) (queryParams, error) {
	v := r.URL.Query()
	q := queryParams{raw: v,
		resourceVersion:      v.Get("resourceVersion"),
		resourceVersionMatch: v.Get("resourceVersionMatch"),
		labelSelector:        v.Get("labelSelector"),
		fieldSelector:        v.Get("fieldSelector"),
		continueToken:        v.Get("continue"),
		fieldValidation:      v.Get("fieldValidation"),
		allowBookmarks:       v.Get("allowWatchBookmarks") == "true",
		includeObject:        v.Get("includeObject"),
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, apierrors.NewBadRequest(fmt.Sprintf("invalid limit %q: must be a non-negative integer", s))
		}
		q.limit = n
	}
	if s := v.Get("timeoutSeconds"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, apierrors.NewBadRequest(fmt.Sprintf("invalid timeoutSeconds %q", s))
		}
		q.timeoutSeconds = n
	}
	if s := v.Get("sendInitialEvents"); s != "" {
		b := s == "true"
		q.sendInitialEvents = &b
	}
	for _, d := range v["dryRun"] {
		if d != metav1.DryRunAll {
			return q, apierrors.NewBadRequest(fmt.Sprintf("unsupported dryRun value %q: only %q is supported", d, metav1.DryRunAll))
		}
		q.dryRun = true
	}
	switch q.fieldValidation {
	case "", metav1.FieldValidationIgnore, metav1.FieldValidationWarn, metav1.FieldValidationStrict:
	default:
		return q, apierrors.NewBadRequest(fmt.Sprintf("fieldValidation %q is not supported: use Ignore, Warn or Strict", q.fieldValidation))
	}
	if q.resourceVersion != "" && q.resourceVersion != "0" {
		if _, err := strconv.ParseInt(q.resourceVersion, 10, 64); err != nil {
			return q, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", q.resourceVersion))
		}
	}
	return q, nil
}

// user is an authenticated identity.
type user struct {
	name   string
	uid    string
	groups []string
	extra  map[string][]string
}

type ctxKey int

const userKey ctxKey = 0

// authenticate returns the request's user from its client certificate or
// bearer token.
func (s *Server) authenticate(r *http.Request) (user, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		c := r.TLS.PeerCertificates[0]
		return user{name: c.Subject.CommonName, groups: append(c.Subject.Organization, "system:authenticated")}, nil
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		return s.authenticateBearer(r.Context(), strings.TrimSpace(strings.TrimPrefix(auth, "Bearer ")))
	}
	return user{}, errors.New("no credentials")
}

// authenticateBearer checks a service-account JWT or a bootstrap token.
func (s *Server) authenticateBearer(ctx context.Context, tok string) (user, error) {
	if satoken.LooksLikeJWT(tok) {
		return s.authenticateServiceAccount(ctx, tok)
	}
	return s.authenticateToken(tok)
}

// authenticateToken checks a bootstrap token "<id>.<secret>" against the
// Secret kube-system/bootstrap-token-<id>, as upstream does.
func (s *Server) authenticateToken(tok string) (user, error) {
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || len(id) != 6 || len(secret) != 16 {
		return user{}, errors.New("malformed token")
	}
	h := s.byGR[schema.GroupResource{Resource: "secrets"}]
	if h == nil {
		return user{}, errors.New("no secrets")
	}
	obj, _, found := h.cache.get(h.key("kube-system", "bootstrap-token-"+id))
	if !found {
		return user{}, errors.New("unknown token")
	}
	sec, ok := obj.(*corev1.Secret)
	if !ok || sec.Type != "bootstrap.kubernetes.io/token" || sec.DeletionTimestamp != nil {
		return user{}, errors.New("unknown token")
	}
	if subtle.ConstantTimeCompare(sec.Data["token-secret"], []byte(secret)) != 1 ||
		string(sec.Data["token-id"]) != id || string(sec.Data["usage-bootstrap-authentication"]) != "true" {
		return user{}, errors.New("invalid token")
	}
	if exp := string(sec.Data["expiration"]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil || time.Now().After(t) {
			return user{}, errors.New("expired token")
		}
	}
	u := user{name: "system:bootstrap:" + id, groups: []string{"system:bootstrappers", "system:authenticated"}}
	for _, g := range strings.Split(string(sec.Data["auth-extra-groups"]), ",") {
		if g = strings.TrimSpace(g); g != "" {
			u.groups = append(u.groups, g)
		}
	}
	return u, nil
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.health)
	mux.HandleFunc("/livez", s.health)
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/version", s.version)
	mux.Handle("/metrics", s.metrics.handler())
	mux.HandleFunc("/api", s.discoveryLegacy)
	mux.HandleFunc("/apis", s.discoveryGroups)
	mux.HandleFunc("/openapi/", s.openapi)
	mux.HandleFunc("/", s.serveResource)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), userKey, u))
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.ready:
	default:
		http.Error(w, "[-]caches not synced\nreadyz check failed", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.store.Revision(ctx); err != nil {
		http.Error(w, "[-]etcd failed: "+err.Error()+"\nreadyz check failed", http.StatusServiceUnavailable)
		return
	}
	s.health(w, r)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, s.cfg.Version)
}

// writeObject encodes obj for the request's Accept header.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	enc, ok := s.codecs.negotiate(r)
	if !ok {
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf", 0, false))
		return
	}
	s.writeEncoded(w, code, obj, enc)
}

func (s *Server) writeEncoded(w http.ResponseWriter, code int, obj runtime.Object, enc encoder) {
	data, err := runtime.Encode(enc.enc, obj)
	if err != nil {
		s.log.Error("encode response", "err", err)
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", enc.media)
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := jsonMarshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// writeError writes err as a Kubernetes Status.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var st metav1.Status
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st = se.Status()
	} else {
		st = apierrors.NewInternalError(err).ErrStatus
	}
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code >= 500 {
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", st.Code, "err", st.Message)
	}
	enc, ok := s.codecs.negotiate(r)
	if !ok {
		enc = encoder{media: mediaJSON, enc: s.codecs.json}
	}
	s.writeEncoded(w, int(st.Code), &st, enc)
}

// serveResource handles every /api/... and /apis/... resource request.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ri, ok := parseResourcePath(r)
	if !ok {
		if s.discoveryPath(w, r) {
			return
		}
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
		return
	}
	if ri.name == "" && ri.resource == "" {
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
		return
	}
	if ri.group == metricsv1beta1.GroupName {
		s.serveResourceMetrics(w, r, ri)
		return
	}
	if ri.group == authenticationv1.GroupName {
		s.serveAuthentication(w, r, ri)
		return
	}
	h := s.handlers[schema.GroupVersionResource{Group: ri.group, Version: ri.version, Resource: ri.resource}]
	if h == nil {
		if ri.name == "" && ri.namespace == "" && r.Method == http.MethodGet && s.discoveryPath(w, r) {
			return
		}
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{Group: ri.group, Resource: ri.resource}, ri.name))
		return
	}
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		s.metrics.observe(ri.verb, h.gr, ri.subresource, rec.code, time.Since(start))
	}()
	s.serveWith(h, rec, r, ri)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (hijacked by
// exec, attach and port-forward).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) serveWith(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if h.r.Namespaced && ri.namespace == "" && ri.verb != "list" && ri.verb != "watch" {
		s.writeError(w, r, apierrors.NewNotFound(h.gr, ri.name))
		return
	}
	if !h.r.Namespaced && ri.namespace != "" {
		s.writeError(w, r, apierrors.NewNotFound(h.gr, ri.name))
		return
	}
	if !h.allows(ri.verb) && ri.subresource == "" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(h.gr, ri.verb))
		return
	}
	if ri.subresource == "token" && h.gr == serviceAccountsGR {
		s.serveToken(h, w, r, ri, q)
		return
	}
	if ri.subresource != "" {
		s.serveSubresource(h, w, r, ri, q)
		return
	}
	ctx := r.Context()
	switch ri.verb {
	case "get":
		obj, err := h.get(ctx, ri, q)
		s.respond(w, r, h, http.StatusOK, obj, nil, err)
	case "list":
		obj, err := h.list(ctx, ri, q)
		s.respond(w, r, h, http.StatusOK, obj, nil, err)
	case "watch":
		s.serveWatch(h, w, r, ri, q)
	case "create":
		if ri.name != "" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(h.gr, "create on a named resource"))
			return
		}
		obj, warn, err := h.create(ctx, r, ri, q)
		s.respond(w, r, h, http.StatusCreated, obj, warn, err)
	case "update":
		obj, warn, err := h.update(ctx, r, ri, q)
		s.respond(w, r, h, http.StatusOK, obj, warn, err)
	case "patch":
		obj, warn, err := h.patch(ctx, r, ri, q)
		s.respond(w, r, h, http.StatusOK, obj, warn, err)
	case "delete":
		opts, err := h.deleteOptions(r, q)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		obj, gone, err := h.delete(ctx, ri.namespace, ri.name, opts)
		code := http.StatusOK
		if !gone {
			code = http.StatusAccepted
		}
		s.respond(w, r, h, code, obj, nil, err)
	case "deletecollection":
		opts, err := h.deleteOptions(r, q)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		obj, err := h.deleteCollection(ctx, ri, q, opts)
		s.respond(w, r, h, http.StatusOK, obj, nil, err)
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(h.gr, ri.verb))
	}
}

func (h *resourceHandler) allows(verb string) bool {
	if h.r.Verbs == nil {
		return true
	}
	for _, v := range h.r.Verbs {
		if v == verb {
			return true
		}
	}
	return false
}

// respond writes obj (or err), converting to a Table or metadata when the
// client asked for it.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, h *resourceHandler, code int, obj runtime.Object, warnings []string, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, wmsg := range warnings {
		w.Header().Add("Warning", `299 - "`+strings.ReplaceAll(wmsg, `"`, `\"`)+`"`)
	}
	enc, ok := s.codecs.negotiate(r, "Table", "PartialObjectMetadata", "PartialObjectMetadataList")
	if !ok {
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", "the requested media type is not supported", 0, false))
		return
	}
	out, err := s.transform(h, obj, enc, r.URL.Query().Get("includeObject"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeEncoded(w, code, out, enc)
}

// metaOf returns metadata of the served object for responses.
func metaOf(obj runtime.Object) metav1.Object { return registry.Meta(obj) }
