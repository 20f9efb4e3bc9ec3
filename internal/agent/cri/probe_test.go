package cri

import (
	"context"
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
