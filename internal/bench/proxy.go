package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-sh/skiff/internal/proxy"
	"github.com/skiff-sh/skiff/internal/proxy/netns"
)

// ProxyConfig sizes the proxy scenario.
type ProxyConfig struct {
	// Services is how many ClusterIP services (at most 60000), each with
	// Endpoints endpoints (default 4).
	Services, Endpoints int
	// Connects is how many connections are timed through ClusterIPs
	// (default 200).
	Connects int
	// Progress receives progress lines (nil: none).
	Progress io.Writer
}

// Proxy programs the proxy's table for cfg.Services services inside a
// private network namespace and measures a full sync (a fresh table), a
// restart's reconcile of the same table, an incremental sync (one
// service's endpoints change) and connection latency through
// ClusterIPs to a listener in the namespace.
func Proxy(ctx context.Context, cfg ProxyConfig) (Result, error) {
	if cfg.Endpoints <= 0 {
		cfg.Endpoints = 4
	}
	if cfg.Connects <= 0 {
		cfg.Connects = 200
	}
	if cfg.Services <= 0 || cfg.Services > 60000 {
		return Result{}, fmt.Errorf("bench proxy: --services must be 1..60000")
	}
	if os.Geteuid() != 0 {
		return Result{}, errors.New("bench proxy: needs root (it creates a network namespace)")
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	name := "skiff-bench-proxy-" + strconv.Itoa(os.Getpid())
	path, err := netns.Create(name)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = netns.Delete(name) }()
	// ClusterIPs 10.43.0.0/16 route to a veth device; every endpoint
	// address in 10.64.0.0/10 is local (one listener on 0.0.0.0 answers
	// for all of them).
	for _, args := range [][]string{
		{"-n", name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"},
		{"-n", name, "link", "set", "veth0", "up"},
		{"-n", name, "link", "set", "veth1", "up"},
		{"-n", name, "route", "add", "10.43.0.0/16", "dev", "veth0"},
		{"-n", name, "route", "add", "local", "10.64.0.0/10", "dev", "lo"},
	} {
		if err := netns.IP(args...); err != nil {
			return Result{}, err
		}
	}
	ln, err := netns.Listen(path, "tcp", "0.0.0.0:8080")
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()

	svcs := make([]*corev1.Service, cfg.Services)
	sls := make([]*discoveryv1.EndpointSlice, cfg.Services)
	for i := range svcs {
		svcs[i], sls[i] = benchService(i, cfg.Endpoints, 0)
	}
	start := time.Now()
	model := proxy.Build(svcs, sls, "bench-node")
	build := time.Since(start)
	progress("built the model of %d services × %d endpoints in %v", cfg.Services, cfg.Endpoints, build)

	a := proxy.NewApplier(int(f.Fd()))
	defer func() { _ = a.Cleanup() }()
	start = time.Now()
	if err := a.Apply(model); err != nil {
		return Result{}, err
	}
	full := time.Since(start)
	progress("full sync: %v", full)

	// a restarted proxy reconciles the table it finds
	start = time.Now()
	if err := proxy.NewApplier(int(f.Fd())).Apply(model); err != nil {
		return Result{}, err
	}
	resync := time.Since(start)
	progress("restart reconcile: %v", resync)

	// incremental: one service's endpoints change, ten times
	var incs []time.Duration
	for round := 1; round <= 10 && ctx.Err() == nil; round++ {
		i := rand.IntN(cfg.Services)
		svc, sl := benchService(i, cfg.Endpoints, round)
		model[svc.Namespace+"/"+svc.Name] = proxy.BuildService(svc, []*discoveryv1.EndpointSlice{sl}, "bench-node")
		start = time.Now()
		if err := a.Apply(model); err != nil {
			return Result{}, err
		}
		incs = append(incs, time.Since(start))
	}
	slices.Sort(incs)
	progress("incremental syncs: %v", incs)

	// connects through random ClusterIPs
	dial := netns.Dialer(path, &net.Dialer{Timeout: 5 * time.Second})
	var lat []time.Duration
	for range cfg.Connects {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		ip := clusterIP(rand.IntN(cfg.Services))
		start := time.Now()
		c, err := dial(ctx, "tcp", net.JoinHostPort(ip.String(), "80"))
		if err != nil {
			return Result{}, fmt.Errorf("bench proxy: connect through %s: %w", ip, err)
		}
		lat = append(lat, time.Since(start))
		_ = c.Close()
	}
	slices.Sort(lat)
	return Result{Scenario: "proxy", Figures: map[string]Figure{
		"services":            {Value: float64(cfg.Services), Unit: "count"},
		"endpoints":           {Value: float64(cfg.Services * cfg.Endpoints), Unit: "count"},
		"model_build_ms":      {Value: ms(build), Unit: "ms"},
		"full_sync_ms":        {Value: ms(full), Unit: "ms"},
		"restart_resync_ms":   {Value: ms(resync), Unit: "ms"},
		"incremental_sync_ms": {Value: ms(percentile(incs, 50)), Unit: "ms"},
		"incremental_max_ms":  {Value: ms(incs[len(incs)-1]), Unit: "ms"},
		"connect_p50_ms":      {Value: ms(percentile(lat, 50)), Unit: "ms"},
		"connect_p99_ms":      {Value: ms(percentile(lat, 99)), Unit: "ms"},
	}, Notes: []string{fmt.Sprintf("incremental_sync_ms is the median of %d one-service endpoint changes; connects include entering the namespace", len(incs))}}, nil
}

// clusterIP of service i: 10.43.0.0/16 from .1.
func clusterIP(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{10, 43, byte(n >> 8), byte(n)})
}

// benchService is service i with n endpoints in 10.64.0.0/10; version
// shifts the endpoint addresses (an endpoint change).
func benchService(i, n, version int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	name := "svc-" + strconv.Itoa(i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP(i).String(),
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
	}
	for j := range n {
		k := uint32(i*n+j) + uint32(version)*1_000_000 // distinct addresses per version
		ip := netip.AddrFrom4([4]byte{10, 64 + byte(k>>16&0x3f), byte(k >> 8), byte(k)})
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip.String()}, NodeName: ptr("bench-node"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	return svc, sl
}
