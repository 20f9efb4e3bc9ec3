package cri

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestHTTPProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if r.Header.Get("X-Check") != "yes" || r.Host != "example.test" {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/moved":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	headers := []corev1.HTTPHeader{{Name: "X-Check", Value: "yes"}, {Name: "Host", Value: "example.test"}}
	tests := []struct {
		name string
		get  corev1.HTTPGetAction
		ok   bool
	}{
		{"named port, headers", corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), HTTPHeaders: headers}, true},
		{"missing headers", corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(int32(port))}, false},
		{"3xx passes", corev1.HTTPGetAction{Path: "moved", Port: intstr.FromInt32(int32(port))}, true},
		{"5xx fails", corev1.HTTPGetAction{Path: "/broken", Port: intstr.FromInt32(int32(port))}, false},
		{"unknown port name", corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("nope")}, false},
	}
	for _, tt := range tests {
		err := httpProbe(context.Background(), &tt.get, c, host, 2*time.Second)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestProbeFailedMessage(t *testing.T) {
	cases := []struct {
		name, kind string
		err        error
		want       string
	}{
		{"exec: the output as printed", "liveness", &execError{code: 1, output: "cat: can't open '/tmp/healthy': No such file or directory\n"},
			"Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n"},
		{"exec without output", "startup", &execError{code: 1}, "Startup probe failed: "},
		{"stdout then stderr", "readiness", &execError{code: 2, output: "out\nerr\n"}, "Readiness probe failed: out\nerr\n"},
		{"http", "liveness", errors.New("HTTP probe failed with statuscode: 500"), "Liveness probe failed: HTTP probe failed with statuscode: 500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := probeFailedMessage(tc.kind, tc.err); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
