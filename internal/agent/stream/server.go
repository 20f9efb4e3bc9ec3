// Package stream is the node agent's streaming endpoint, the kubelet's
// port 10250: container logs read from the CRI log files, and exec, attach
// and port-forward handed to the CRI runtime's streaming server (whose
// upgraded connection it proxies). It serves HTTPS with a self-signed
// certificate and answers only the API server, which authenticates with a
// client certificate of the cluster CA bearing a dedicated common name.
package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultPort is the kubelet's port.
const DefaultPort = 10250

// APIServerClientCN is the common name of the client certificate the API
// server presents to agents; no other identity may use the endpoint.
const APIServerClientCN = "skiff-apiserver-kubelet-client"

// Config configures the streaming endpoint of one node.
type Config struct {
	// Listen is the HTTPS address, the node's IP and kubelet port
	// ("10.0.0.5:10250") (required).
	Listen string
	// Listener, when set, is used instead of listening on Listen.
	Listener net.Listener
	// ClientCA verifies client certificates: the cluster CA (required).
	ClientCA *x509.CertPool
	// AllowedCN is the client certificate common name allowed in (default
	// APIServerClientCN).
	AllowedCN string
	// Endpoint is the CRI socket ("unix:///…/containerd.sock") (required).
	Endpoint string
	// PodLogDir holds the pods' log files (NAMESPACE_NAME_UID/CONTAINER/
	// ATTEMPT.log) (required).
	PodLogDir string
	// Hosts are the names and IPs of the self-signed serving certificate
	// (default: Listen's host).
	Hosts []string
	// Dial reaches the CRI runtime's streaming server; nil dials from the
	// agent's network namespace (see DialInNetNS for a containerd that runs
	// in another).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives the endpoint's logs.
	Logger *slog.Logger
}

// Server is a node's streaming endpoint.
type Server struct {
	cfg  Config
	log  *slog.Logger
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient

	mu   sync.Mutex
	addr string
}

// New checks cfg and connects (lazily) to the CRI endpoint.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" && cfg.Listener == nil {
		return nil, errors.New("stream: no listen address")
	}
	if cfg.ClientCA == nil {
		return nil, errors.New("stream: no client CA: the endpoint would accept nobody")
	}
	if cfg.Endpoint == "" {
		return nil, errors.New("stream: no CRI endpoint")
	}
	if cfg.PodLogDir == "" {
		return nil, errors.New("stream: no pod log directory")
	}
	if cfg.AllowedCN == "" {
		cfg.AllowedCN = APIServerClientCN
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		cfg.Dial = d.DialContext
	}
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("stream: connect %s: %w", cfg.Endpoint, err)
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "stream"), conn: conn,
		rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Addr is the address the endpoint listens on (once Run listens).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	defer s.conn.Close()
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("stream: listen on %s (another kubelet or agent there? pick another --kubelet-port): %w", s.cfg.Listen, err)
		}
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	hosts := s.cfg.Hosts
	if len(hosts) == 0 {
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		hosts = []string{host}
	}
	cert, err := SelfSigned(hosts, time.Now())
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("stream: serving certificate: %w", err)
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.cfg.ClientCA,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	srv := &http.Server{Handler: s.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	s.log.Info("streaming endpoint listening", "addr", ln.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("stream: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	// hijacked (exec, attach, port-forward) connections are not tracked
	// by Shutdown; closing the listener is enough for them to end with
	// their clients
	return nil
}

// Handler is the endpoint's HTTP handler; it expects requests that came
// over TLS (r.TLS with the verified client chain).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.containerLogs)
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{container}", s.exec)
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{uid}/{container}", s.exec)
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{container}", s.attach)
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{uid}/{container}", s.attach)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}", s.portForward)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}/{uid}", s.portForward)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, msg := s.authorize(r); code != 0 {
			http.Error(w, msg, code)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authorize refuses everyone but the API server: no verified client
// certificate is 401, another identity 403 (0 means allowed).
func (s *Server) authorize(r *http.Request) (int, string) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return http.StatusUnauthorized, "Unauthorized"
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	if cn != s.cfg.AllowedCN {
		return http.StatusForbidden, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=proxy)", cn, verbOf(r))
	}
	return 0, ""
}

func verbOf(r *http.Request) string {
	if r.Method == http.MethodGet {
		return "get"
	}
	return "create"
}
