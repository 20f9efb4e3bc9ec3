// Package apiserver is skiff's Kubernetes API server: it validates and
// stores every request in etcd (through package store), serves list and
// watch from a watch cache, and speaks the wire format, discovery, tables
// and errors that kubectl and client-go expect.
package apiserver

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/satoken"
	"github.com/skiff-sh/skiff/internal/store"
)

// Config configures the API server.
type Config struct {
	// Store holds the cluster state.
	Store *store.Store
	// Listen is the HTTPS address, e.g. 127.0.0.1:6443.
	Listen string
	// Listener, when set, is used instead of listening on Listen.
	Listener net.Listener
	// CertFile and KeyFile are the serving certificate.
	CertFile, KeyFile string
	// ClientCA verifies client certificates.
	ClientCA *x509.CertPool
	// KeyPrefix is the etcd key prefix of all objects (default /registry).
	KeyPrefix string
	// Resources are the resources served.
	Resources []*registry.Resource
	// Version is what /version reports.
	Version version.Info
	// Metrics is where the server's metrics are registered; nil for a new
	// registry served at /metrics.
	Metrics *prometheus.Registry
	// Bootstrap objects are created at start when they do not exist (the
	// system namespaces, priority classes, ...). They need type metadata.
	Bootstrap []runtime.Object
	// WatchHistory is how many recent events each resource's watch cache
	// keeps for watches that resume from an older version (default 10000).
	WatchHistory int
	// ResourceMetricsTTL is how long the metrics API (metrics.k8s.io)
	// serves a usage figure its agent has not renewed (default 2m).
	ResourceMetricsTTL time.Duration
	// ServiceCIDR is the IPv4 range cluster IPs are allocated from; its
	// first address is the default/kubernetes service's. Unset turns
	// cluster IP and node port allocation off.
	ServiceCIDR netip.Prefix
	// ServiceNodePortRange is where node ports come from (default
	// 30000-32767).
	ServiceNodePortRange PortRange
	// AdvertiseAddress is the address the kubernetes service's endpoints
	// name (default: the listening address).
	AdvertiseAddress netip.Addr
	// ServiceAccountSigner signs service-account tokens (the
	// serviceaccounts/token subresource) and its public key verifies them;
	// nil turns service-account tokens off.
	ServiceAccountSigner *satoken.Signer
	// ServiceAccountKeys are further public keys whose tokens are accepted.
	ServiceAccountKeys []crypto.PublicKey
	// ServiceAccountIssuer is the iss of issued tokens and the one
	// accepted (default DefaultIssuer("")).
	ServiceAccountIssuer string
	// APIAudiences are the audiences a token must name one of to
	// authenticate, and what a TokenRequest without audiences gets
	// (default: the issuer).
	APIAudiences []string
	// ServiceAccountMaxTokenExpiration caps the lifetime a TokenRequest
	// gets (zero: no cap below upstream's 2^32 s).
	ServiceAccountMaxTokenExpiration time.Duration
	// KubeletClientCert is the client certificate the server presents to
	// node agents for pods/log, exec, attach and portforward (nil: those
	// answer 503).
	KubeletClientCert *tls.Certificate
	// Logger receives the server's logs.
	Logger *slog.Logger
}

// Server is the API server.
type Server struct {
	cfg      Config
	store    *store.Store
	codecs   *codecs
	log      *slog.Logger
	handlers map[schema.GroupVersionResource]*resourceHandler
	byGR     map[schema.GroupResource]*resourceHandler
	caches   map[schema.GroupResource]*watchCache
	groups   []groupVersion
	metrics  *metrics
	usage    *resourceMetrics
	alloc    *serviceAlloc
	tokens   *serviceAccountTokens
	ready    chan struct{}
	addr     string
	kubelet  *http.Transport
	mu       sync.Mutex
}

// groupVersion lists the resources of one served group version, in order.
type groupVersion struct {
	gv        schema.GroupVersion
	resources []*registry.Resource
}

// New builds a server; Run serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("apiserver: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "/registry"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	sch, err := newScheme()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, store: cfg.Store, codecs: newCodecs(sch), log: cfg.Logger,
		handlers: map[schema.GroupVersionResource]*resourceHandler{},
		byGR:     map[schema.GroupResource]*resourceHandler{},
		caches:   map[schema.GroupResource]*watchCache{},
		ready:    make(chan struct{}), usage: newResourceMetrics(cfg.ResourceMetricsTTL)}
	s.metrics = newMetrics(cfg.Metrics)
	if cfg.KubeletClientCert != nil {
		s.kubelet = newKubeletTransport(cfg.KubeletClientCert)
	}
	if cfg.ServiceCIDR.IsValid() {
		if s.alloc, err = newServiceAlloc(cfg.KeyPrefix, cfg.ServiceCIDR, cfg.ServiceNodePortRange); err != nil {
			return nil, fmt.Errorf("apiserver: %w", err)
		}
	}
	if s.tokens, err = newServiceAccountTokens(cfg); err != nil {
		return nil, err
	}
	gvIndex := map[schema.GroupVersion]int{}
	// storage resources first, so that converted resources find their cache
	ordered := append([]*registry.Resource(nil), cfg.Resources...)
	for pass := 0; pass < 2; pass++ {
		for _, r := range ordered {
			if (r.Storage == nil) != (pass == 0) {
				continue
			}
			gr := schema.GroupResource{Group: r.GVK.Group, Resource: r.Plural}
			storageGR := gr
			if r.Storage != nil {
				storageGR = r.Storage.Resource
			}
			c := s.caches[storageGR]
			if c == nil {
				if r.Storage != nil {
					return nil, fmt.Errorf("apiserver: %s is stored as %s, which is not served", gr, storageGR)
				}
				gr := storageGR
				c = newWatchCache(storagePrefix(cfg.KeyPrefix, storageGR), cfg.WatchHistory, cfg.Store,
					func(kv store.KV) (runtime.Object, error) { return s.decodeStored(gr, kv) }, cfg.Logger)
				s.caches[storageGR] = c
			}
			h := newResourceHandler(s, r, c)
			s.handlers[r.GVK.GroupVersion().WithResource(r.Plural)] = h
			s.byGR[gr] = h
		}
	}
	for _, r := range cfg.Resources {
		gv := r.GVK.GroupVersion()
		i, ok := gvIndex[gv]
		if !ok {
			i = len(s.groups)
			gvIndex[gv] = i
			s.groups = append(s.groups, groupVersion{gv: gv})
		}
		s.groups[i].resources = append(s.groups[i].resources, r)
	}
	s.groups = append(s.groups, groupVersion{gv: metricsv1beta1.SchemeGroupVersion, resources: metricsResources()})
	s.groups = append(s.groups, authenticationGroups()...)
	return s, nil
}

// storageKinds maps a storage resource to its Go kind for decoding.
func (s *Server) storageGVK(gr schema.GroupResource) (schema.GroupVersionKind, bool) {
	h := s.byGR[gr]
	if h == nil {
		return schema.GroupVersionKind{}, false
	}
	return h.r.GVK, true
}

// decodeStored decodes a stored value of a storage resource, with its
// type metadata and resourceVersion set.
func (s *Server) decodeStored(gr schema.GroupResource, kv store.KV) (runtime.Object, error) {
	gvk, ok := s.storageGVK(gr)
	if !ok {
		return nil, fmt.Errorf("unknown storage resource %s", gr)
	}
	into, err := s.codecs.scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	obj, _, err := s.codecs.protobuf.Decode(kv.Value, &gvk, into)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	registry.Meta(obj).SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
	return obj, nil
}

// decodeObject decodes a request body into a typed object of kind gvk,
// applying the field validation directive. It returns warnings for unknown
// or duplicate fields under "Warn".
func (s *Server) decodeObject(body []byte, contentType, directive string, into runtime.Object, gvk schema.GroupVersionKind) (runtime.Object, []string, error) {
	strict := directive == metav1.FieldValidationStrict || directive == metav1.FieldValidationWarn || directive == ""
	dec, mt, err := s.codecs.decoderFor(contentType, strict)
	if err != nil {
		return nil, nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", err.Error(), 0, false)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, nil, apierrors.NewBadRequest("the request body is empty: send the object as JSON or YAML")
	}
	obj, actual, err := dec.Decode(body, &gvk, into)
	var warnings []string
	if err != nil {
		if runtime.IsStrictDecodingError(err) && obj != nil {
			if directive == metav1.FieldValidationStrict {
				return nil, nil, apierrors.NewBadRequest(err.Error())
			}
			var se interface{ Errors() []error }
			if errors.As(err, &se) {
				for _, e := range se.Errors() {
					warnings = append(warnings, e.Error())
				}
			}
		} else {
			what := "JSON"
			if mt == mediaYAML {
				what = "YAML"
			}
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the body of the request was in an unknown format or is not valid %s: %v", what, err))
		}
	}
	if actual == nil || *actual != gvk || obj != into {
		got := "<unknown>"
		if actual != nil {
			got = actual.GroupVersion().String() + ", Kind=" + actual.Kind
		}
		if actual != nil && actual.GroupVersion() != gvk.GroupVersion() && actual.Kind == gvk.Kind {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", actual.GroupVersion(), gvk.GroupVersion()))
		}
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized (must be of type %s): %s", gvk.Kind, got))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, warnings, nil
}

// checkNamespace rejects writes into a namespace that does not exist or is
// being deleted.
func (s *Server) checkNamespace(ns string, gr schema.GroupResource, name string) error {
	h := s.byGR[schema.GroupResource{Resource: "namespaces"}]
	if h == nil {
		return nil
	}
	obj, _, ok := h.cache.get(h.key("", ns))
	if !ok {
		// the cache may lag a namespace created a moment ago
		kv, err := s.store.Get(context.Background(), h.key("", ns))
		if err != nil {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, ns)
		}
		o, err := h.fromStore(kv)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		obj = o
	}
	if n, ok := obj.(*corev1.Namespace); ok && (n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating) {
		return apierrors.NewForbidden(gr, name,
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

func podOf(obj runtime.Object) (*corev1.Pod, bool) {
	p, ok := obj.(*corev1.Pod)
	return p, ok
}

func (h *resourceHandler) isNamespaceWithFinalizers(obj runtime.Object) bool {
	n, ok := obj.(*corev1.Namespace)
	return ok && len(n.Spec.Finalizers) > 0
}

func setNamespaceTerminating(obj runtime.Object) {
	if n, ok := obj.(*corev1.Namespace); ok {
		n.Status.Phase = corev1.NamespaceTerminating
	}
}

// Ready is closed once the server serves and its caches are filled.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on (valid after Ready).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range s.caches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(cctx)
		}()
	}
	defer wg.Wait()
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s (is another server running there? pick another --listen): %w", s.cfg.Listen, err)
		}
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("load serving certificate: %w", err)
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.cfg.ClientCA,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	srv := &http.Server{
		Handler:           s.handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	go func() {
		for _, c := range s.caches {
			if err := c.waitFor(cctx, 0); err != nil {
				return
			}
		}
		if err := s.bootstrap(cctx); err != nil {
			s.log.Error("create bootstrap objects", "err", err)
		}
		close(s.ready)
	}()
	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		return fmt.Errorf("serve: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// bootstrap creates the configured objects that do not exist yet.
func (s *Server) bootstrap(ctx context.Context) error {
	kubernetes := s.kubernetesService()
	for _, obj := range append(append([]runtime.Object(nil), s.cfg.Bootstrap...), kubernetes...) {
		gvk := obj.GetObjectKind().GroupVersionKind()
		var h *resourceHandler
		for _, c := range s.handlers {
			if c.r.GVK == gvk {
				h = c
			}
		}
		if h == nil {
			return fmt.Errorf("bootstrap object of kind %s is not served", gvk)
		}
		obj = obj.DeepCopyObject()
		m := registry.Meta(obj)
		prepareCreateMeta(m, h.hasSpec)
		h.r.Strategy.Default(obj)
		h.r.Strategy.PrepareForCreate(obj)
		if errs := append(h.validateMeta(obj), h.r.Strategy.ValidateCreate(obj)...); len(errs) > 0 {
			return fmt.Errorf("bootstrap %s %s: %w", gvk.Kind, m.GetName(), errs.ToAggregate())
		}
		if _, err := h.write(ctx, store.OpCreate, h.key(m.GetNamespace(), m.GetName()), 0, nil, obj); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return s.updateKubernetesEndpoints(ctx, kubernetes)
}
