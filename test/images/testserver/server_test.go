package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	srv   *server
	clock *fakeClock
	exits []int
}

func newHarness(t *testing.T, cfg config) *harness {
	t.Helper()
	if cfg.failFile == "" {
		cfg.failFile = filepath.Join(t.TempDir(), "fail")
	}
	h := &harness{clock: &fakeClock{t: time.Unix(1000, 0)}}
	h.srv = newServer(cfg, func() (string, error) { return "host-1", nil }, h.clock.now, func(c int) { h.exits = append(h.exits, c) })
	return h
}

func (h *harness) do(method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.srv.handler().ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    config
		wantErr bool
	}{
		{"defaults", nil, config{port: "8080", failFile: "/tmp/fail"}, false},
		{"all set", map[string]string{"PORT": "9000", "POD_NAME": "p", "POD_NAMESPACE": "ns", "POD_IP": "10.0.0.1", "FAIL_HEALTHZ_AFTER": "10s", "PAGE_FILE": "/etc/page/index.html"},
			config{port: "9000", podName: "p", podNamespace: "ns", podIP: "10.0.0.1", failHealthAfter: 10 * time.Second, failFile: "/tmp/fail", pageFile: "/etc/page/index.html"}, false},
		{"bad duration", map[string]string{"FAIL_HEALTHZ_AFTER": "soon"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := configFromEnv(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %t", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEcho(t *testing.T) {
	h := newHarness(t, config{podName: "web-0", podNamespace: "default", podIP: "10.1.2.3"})
	rec := h.do(http.MethodGet, "/some/path?x=1")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got echoResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body.String(), err)
	}
	want := echoResponse{Hostname: "host-1", PodName: "web-0", PodNamespace: "default", PodIP: "10.1.2.3",
		Method: "GET", Path: "/some/path", Query: "x=1", Host: "example.com", RemoteAddr: "192.0.2.1:1234"}
	if got.Headers["User-Agent"] != nil {
		t.Errorf("headers = %v, want the request's (none)", got.Headers)
	}
	got.Headers = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("echo = %+v, want %+v", got, want)
	}
}

func TestPage(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "index.html")
	h := newHarness(t, config{podName: "web-0", pageFile: page})
	tests := []struct {
		name     string
		content  string // "" leaves the file missing
		wantCode int
		wantBody string
	}{
		{"missing file", "", http.StatusInternalServerError, ""},
		{"served", "<h1>hello</h1>\n", http.StatusOK, "<h1>hello</h1>\n"},
		{"read again after a change", "<h1>changed</h1>\n", http.StatusOK, "<h1>changed</h1>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.content != "" {
				if err := os.WriteFile(page, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rec := h.do(http.MethodGet, "/page")
			if rec.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantBody == "" {
				return
			}
			if rec.Body.String() != tt.wantBody || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") ||
				rec.Header().Get("X-Pod-Name") != "web-0" {
				t.Errorf("page = %q, headers %v", rec.Body, rec.Header())
			}
		})
	}
	if rec := newHarness(t, config{}).do(http.MethodGet, "/page"); rec.Code != http.StatusNotFound {
		t.Errorf("without PAGE_FILE: status %d, want 404", rec.Code)
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name     string
		cfg      config
		setup    func(t *testing.T, h *harness)
		wantCode int
		wantBody string
	}{
		{"healthy", config{}, nil, http.StatusOK, "ok"},
		{"POST /fail", config{}, func(t *testing.T, h *harness) {
			if rec := h.do(http.MethodPost, "/fail"); rec.Code != http.StatusOK {
				t.Fatalf("POST /fail = %d", rec.Code)
			}
		}, http.StatusInternalServerError, "POST /fail"},
		{"POST /fail then /recover", config{}, func(t *testing.T, h *harness) {
			h.do(http.MethodPost, "/fail")
			h.do(http.MethodPost, "/recover")
		}, http.StatusOK, "ok"},
		{"GET /fail does not fail", config{}, func(t *testing.T, h *harness) {
			h.do(http.MethodGet, "/fail")
		}, http.StatusOK, "ok"},
		{"before FAIL_HEALTHZ_AFTER", config{failHealthAfter: 10 * time.Second}, func(t *testing.T, h *harness) {
			h.clock.add(9 * time.Second)
		}, http.StatusOK, "ok"},
		{"after FAIL_HEALTHZ_AFTER", config{failHealthAfter: 10 * time.Second}, func(t *testing.T, h *harness) {
			h.clock.add(10 * time.Second)
		}, http.StatusInternalServerError, "FAIL_HEALTHZ_AFTER=10s"},
		{"fail file exists", config{}, func(t *testing.T, h *harness) {
			if err := os.WriteFile(h.srv.cfg.failFile, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, http.StatusInternalServerError, "exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			if tt.setup != nil {
				tt.setup(t, h)
			}
			rec := h.do(http.MethodGet, "/healthz")
			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d (body %q)", rec.Code, tt.wantCode, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}

func TestExit(t *testing.T) {
	tests := []struct {
		target    string
		wantCode  int
		wantExits []int
	}{
		{"/exit", http.StatusOK, []int{0}},
		{"/exit?code=3", http.StatusOK, []int{3}},
		{"/exit?code=x", http.StatusBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			h := newHarness(t, config{})
			rec := h.do(http.MethodGet, tt.target)
			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if len(h.exits) != len(tt.wantExits) || (len(h.exits) > 0 && h.exits[0] != tt.wantExits[0]) {
				t.Errorf("exits = %v, want %v", h.exits, tt.wantExits)
			}
		})
	}
}

func TestAlloc(t *testing.T) {
	h := newHarness(t, config{})
	for i, want := range []int{2, 5} {
		mb := []string{"2", "3"}[i]
		rec := h.do(http.MethodGet, "/alloc?mb="+mb)
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d", rec.Code)
		}
		var got map[string]int
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got["heldMiB"] != want {
			t.Errorf("after /alloc?mb=%s heldMiB = %d, want %d", mb, got["heldMiB"], want)
		}
	}
	for _, bad := range []string{"/alloc?mb=-1", "/alloc?mb=lots"} {
		if rec := h.do(http.MethodGet, bad); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status = %d, want 400", bad, rec.Code)
		}
	}
}

func TestCPU(t *testing.T) {
	h := newHarness(t, config{})
	start := time.Now()
	rec := h.do(http.MethodGet, "/cpu?ms=20")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("/cpu?ms=20 returned after %s, want at least 20ms", el)
	}
	if rec := h.do(http.MethodGet, "/cpu?ms=x"); rec.Code != http.StatusBadRequest {
		t.Errorf("bad ms: status = %d, want 400", rec.Code)
	}
}
