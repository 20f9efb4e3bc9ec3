package main

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// config is what the server reads from its environment.
type config struct {
	port            string
	podName         string
	podNamespace    string
	podIP           string
	failHealthAfter time.Duration // 0: never fail on a timer
	failFile        string        // /healthz fails while this file exists
	pageFile        string        // served at /page, read at every request (e.g. a mounted ConfigMap key)
}

// configFromEnv reads the server's configuration with getenv.
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{
		port:         getenv("PORT"),
		podName:      getenv("POD_NAME"),
		podNamespace: getenv("POD_NAMESPACE"),
		podIP:        getenv("POD_IP"),
		pageFile:     getenv("PAGE_FILE"),
		failFile:     "/tmp/fail",
	}
	if cfg.port == "" {
		cfg.port = "8080"
	}
	if v := getenv("FAIL_HEALTHZ_AFTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return config{}, fmt.Errorf("parsing FAIL_HEALTHZ_AFTER: %w", err)
		}
		cfg.failHealthAfter = d
	}
	return cfg, nil
}

// server holds the handlers' state.
type server struct {
	cfg      config
	hostname func() (string, error)
	now      func() time.Time
	exit     func(int)
	started  time.Time

	mu      sync.Mutex
	failing bool     // set by POST /fail, cleared by POST /recover
	held    [][]byte // memory held by /alloc
}

func newServer(cfg config, hostname func() (string, error), now func() time.Time, exit func(int)) *server {
	return &server{cfg: cfg, hostname: hostname, now: now, exit: exit, started: now()}
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.echo)
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/page", s.page)
	mux.HandleFunc("POST /fail", s.setFailing(true))
	mux.HandleFunc("POST /recover", s.setFailing(false))
	mux.HandleFunc("/exit", s.exitHandler)
	mux.HandleFunc("/alloc", s.alloc)
	mux.HandleFunc("/cpu", s.cpu)
	return mux
}

// echoResponse is what / returns.
type echoResponse struct {
	Hostname     string              `json:"hostname"`
	PodName      string              `json:"podName"`
	PodNamespace string              `json:"podNamespace"`
	PodIP        string              `json:"podIP"`
	Method       string              `json:"method"`
	Path         string              `json:"path"`
	Query        string              `json:"query,omitempty"`
	Host         string              `json:"host"`
	RemoteAddr   string              `json:"remoteAddr"`
	Headers      map[string][]string `json:"headers"`
}

func (s *server) echo(w http.ResponseWriter, r *http.Request) {
	host, err := s.hostname()
	if err != nil {
		http.Error(w, fmt.Sprintf("hostname: %v", err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, echoResponse{
		Hostname:     host,
		PodName:      s.cfg.podName,
		PodNamespace: s.cfg.podNamespace,
		PodIP:        s.cfg.podIP,
		Method:       r.Method,
		Path:         r.URL.Path,
		Query:        r.URL.RawQuery,
		Host:         r.Host,
		RemoteAddr:   r.RemoteAddr,
		Headers:      r.Header,
	})
}

// page serves PAGE_FILE as it is now (a ConfigMap volume's update shows
// at the next request), with the pod's name in X-Pod-Name.
func (s *server) page(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.pageFile == "" {
		http.Error(w, "no page: PAGE_FILE is not set", http.StatusNotFound)
		return
	}
	b, err := os.ReadFile(s.cfg.pageFile)
	if err != nil {
		http.Error(w, fmt.Sprintf("page: %v", err), http.StatusInternalServerError)
		return
	}
	ct := mime.TypeByExtension(filepath.Ext(s.cfg.pageFile))
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Pod-Name", s.cfg.podName)
	_, _ = w.Write(b)
}

// unhealthy reports why /healthz should fail, or "" if it should not.
func (s *server) unhealthy() string {
	s.mu.Lock()
	failing := s.failing
	s.mu.Unlock()
	if failing {
		return "failing: set by POST /fail"
	}
	if d := s.cfg.failHealthAfter; d > 0 && s.now().Sub(s.started) >= d {
		return fmt.Sprintf("failing: FAIL_HEALTHZ_AFTER=%s elapsed", d)
	}
	if s.cfg.failFile != "" {
		if _, err := os.Stat(s.cfg.failFile); err == nil {
			return "failing: " + s.cfg.failFile + " exists"
		}
	}
	return ""
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	if why := s.unhealthy(); why != "" {
		http.Error(w, why, http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *server) setFailing(failing bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		s.failing = failing
		s.mu.Unlock()
		fmt.Fprintf(w, "failing=%t\n", failing)
	}
}

func (s *server) exitHandler(w http.ResponseWriter, r *http.Request) {
	code, err := intParam(r, "code", 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "exiting with code %d\n", code)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.exit(code)
}

func (s *server) alloc(w http.ResponseWriter, r *http.Request) {
	mb, err := intParam(r, "mb", 0)
	if err != nil || mb < 0 {
		http.Error(w, fmt.Sprintf("bad mb: %v", err), http.StatusBadRequest)
		return
	}
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 { // touch every page so it counts as resident
		b[i] = 1
	}
	s.mu.Lock()
	s.held = append(s.held, b)
	total := 0
	for _, h := range s.held {
		total += len(h)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]int{"allocatedMiB": mb, "heldMiB": total >> 20})
}

func (s *server) cpu(w http.ResponseWriter, r *http.Request) {
	ms, err := intParam(r, "ms", 100)
	if err != nil || ms < 0 {
		http.Error(w, fmt.Sprintf("bad ms: %v", err), http.StatusBadRequest)
		return
	}
	start := time.Now()
	var x uint64
	for time.Since(start) < time.Duration(ms)*time.Millisecond {
		for i := 0; i < 10000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"burnedMs": ms, "x": x % 10})
}

func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", name, err)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
