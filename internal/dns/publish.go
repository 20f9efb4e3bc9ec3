package dns

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// The cluster DNS service, as CoreDNS's kube-dns Service is named.
const (
	ServiceNamespace = metav1.NamespaceSystem
	ServiceName      = "kube-dns"
	// ManagedBy marks the EndpointSlices the servers publish (the
	// endpointslice controller leaves them alone).
	ManagedBy = "skiff-server"
	// LabelPublisher marks the Leases of the servers that publish an
	// endpoint; its value is the slice's name.
	LabelPublisher = "dns.skiff.sh/endpoint-slice"
	// DefaultPublishLease is how long a server's endpoint outlives its
	// last renewal before another server removes it.
	DefaultPublishLease = 40 * time.Second
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Client writes the Service, its endpoints and this server's Lease.
	Client kubernetes.Interface
	// ServiceIP is the cluster IP kube-dns asks for (empty: one is
	// allocated). When it is taken, kube-dns gets another.
	ServiceIP string
	// Endpoint is this server's DNS address as pods reach it; an invalid,
	// unspecified or loopback address publishes no endpoint (pods could
	// not reach it).
	Endpoint netip.AddrPort
	// Identity names this server among several (empty: hostname and a
	// random suffix, new at each start).
	Identity string
	// LeaseDuration is how long this server's endpoint stays after its
	// last renewal when the server dies (default DefaultPublishLease);
	// it is renewed every third of that.
	LeaseDuration time.Duration
	// Logger receives the publisher's logs.
	Logger *slog.Logger
}

// Publisher keeps the kube-system/kube-dns Service and, for every server
// whose DNS listener pods can reach, an endpoint at that listener: each
// server has its own EndpointSlice and a Lease it renews; a server whose
// Lease has expired (it died) loses its slice to the others, and one that
// stops removes its own. The Endpoints object is the union of the slices.
type Publisher struct {
	cfg  PublisherConfig
	log  *slog.Logger
	name string // this server's slice and Lease
}

// NewPublisher checks the configuration.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Client == nil {
		return nil, errors.New("dns: publisher without a client")
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultPublishLease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = host + "_" + rand.Text()
	}
	sum := sha256.Sum256([]byte(cfg.Identity))
	return &Publisher{cfg: cfg, log: cfg.Logger, name: ServiceName + "-" + hex.EncodeToString(sum[:5])}, nil
}

// Reachable says whether pods can reach a DNS listener at ep.
func Reachable(ep netip.AddrPort) bool {
	a := ep.Addr()
	return ep.IsValid() && ep.Port() != 0 && !a.IsUnspecified() && !a.IsLoopback()
}

// Run keeps the Service and this server's endpoint until ctx ends, then
// removes the endpoint.
func (p *Publisher) Run(ctx context.Context) error {
	for {
		err := p.ensureService(ctx)
		if err == nil {
			break
		}
		p.log.Warn("creating the cluster DNS service; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p.cfg.LeaseDuration / 3):
		}
	}
	if !Reachable(p.cfg.Endpoint) {
		p.log.Warn("cluster DNS listens where pods cannot reach it; kube-dns gets no endpoint from this server (give --cluster-dns-listen a non-loopback address)",
			"listen", p.cfg.Endpoint.String())
		<-ctx.Done()
		return nil
	}
	p.log.Info("publishing this server's cluster DNS endpoint", "service", ServiceNamespace+"/"+ServiceName,
		"endpoint", p.cfg.Endpoint.String(), "slice", p.name)
	tick := time.NewTicker(p.cfg.LeaseDuration / 3)
	defer tick.Stop()
	for {
		if err := p.sync(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("publishing the cluster DNS endpoint", "err", err)
		}
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.withdraw(sctx); err != nil {
				p.log.Warn("withdrawing the cluster DNS endpoint", "err", err)
			}
			return nil
		case <-tick.C:
		}
	}
}

// Service is the kube-dns Service a server creates: selector-less, DNS
// over UDP and TCP on port 53 to targetPort.
func Service(ip string, targetPort int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: ServiceNamespace,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "skiff-dns"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(targetPort)},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(targetPort)},
		}},
	}
	if ip != "" {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip, []string{ip}
	}
	return svc
}

// ensureService creates kube-dns when it does not exist; one that exists
// (another server's, or the administrator's) is left as it is.
func (p *Publisher) ensureService(ctx context.Context) error {
	svcs := p.cfg.Client.CoreV1().Services(ServiceNamespace)
	if _, err := svcs.Get(ctx, ServiceName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return err
	}
	target := int32(53)
	if p.cfg.Endpoint.Port() != 0 {
		target = int32(p.cfg.Endpoint.Port())
	}
	created, err := svcs.Create(ctx, Service(p.cfg.ServiceIP, target), metav1.CreateOptions{})
	if apierrors.IsInvalid(err) && p.cfg.ServiceIP != "" {
		p.log.Warn("the cluster DNS IP is not available; kube-dns gets another (agents read it from the service)", "ip", p.cfg.ServiceIP, "err", err)
		created, err = svcs.Create(ctx, Service("", target), metav1.CreateOptions{})
	}
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("dns: create the %s service: %w", ServiceName, err)
	}
	p.log.Info("created the cluster DNS service", "service", ServiceNamespace+"/"+ServiceName, "clusterIP", created.Spec.ClusterIP)
	return nil
}

// slice is this server's EndpointSlice.
func (p *Publisher) slice() *discoveryv1.EndpointSlice {
	ready, udp, tcp := true, corev1.ProtocolUDP, corev1.ProtocolTCP
	dns, dnsTCP, port := "dns", "dns-tcp", int32(p.cfg.Endpoint.Port())
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ServiceNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: ServiceName, discoveryv1.LabelManagedBy: ManagedBy}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{p.cfg.Endpoint.Addr().Unmap().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready}}},
		Ports: []discoveryv1.EndpointPort{{Name: &dns, Port: &port, Protocol: &udp}, {Name: &dnsTCP, Port: &port, Protocol: &tcp}},
	}
}

// sync renews this server's Lease, makes its slice right, removes the
// slices of servers whose Lease expired and rewrites the Endpoints.
func (p *Publisher) sync(ctx context.Context) error {
	if err := p.renew(ctx); err != nil {
		return err
	}
	api := p.cfg.Client.DiscoveryV1().EndpointSlices(ServiceNamespace)
	want := p.slice()
	cur, err := api.Get(ctx, p.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create endpoint slice %s: %w", p.name, err)
		}
	case err != nil:
		return err
	case !sameSlice(cur, want):
		cur.Labels, cur.AddressType, cur.Endpoints, cur.Ports = want.Labels, want.AddressType, want.Endpoints, want.Ports
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update endpoint slice %s: %w", p.name, err)
		}
	}
	if err := p.removeExpired(ctx); err != nil {
		return err
	}
	return p.writeEndpoints(ctx)
}

func sameSlice(a, b *discoveryv1.EndpointSlice) bool {
	return a.Labels[discoveryv1.LabelServiceName] == b.Labels[discoveryv1.LabelServiceName] &&
		a.Labels[discoveryv1.LabelManagedBy] == b.Labels[discoveryv1.LabelManagedBy] && a.AddressType == b.AddressType &&
		endpointsKey(a) == endpointsKey(b)
}

// endpointsKey sums up a slice's addresses and ports.
func endpointsKey(s *discoveryv1.EndpointSlice) string {
	var b strings.Builder
	for _, e := range s.Endpoints {
		fmt.Fprintf(&b, "%v %v;", e.Addresses, e.Conditions.Ready != nil && *e.Conditions.Ready)
	}
	for _, pt := range s.Ports {
		if pt.Name != nil && pt.Port != nil && pt.Protocol != nil {
			fmt.Fprintf(&b, "%s/%d/%s;", *pt.Name, *pt.Port, *pt.Protocol)
		}
	}
	return b.String()
}

// renew writes this server's Lease with the time now.
func (p *Publisher) renew(ctx context.Context) error {
	leases := p.cfg.Client.CoordinationV1().Leases(ServiceNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(p.cfg.LeaseDuration / time.Second)
	cur, err := leases.Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ServiceNamespace, Labels: map[string]string{LabelPublisher: p.name}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &p.cfg.Identity, LeaseDurationSeconds: &secs,
				AcquireTime: &now, RenewTime: &now}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create lease %s: %w", p.name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	cur.Labels[LabelPublisher] = p.name
	cur.Spec.HolderIdentity, cur.Spec.LeaseDurationSeconds, cur.Spec.RenewTime = &p.cfg.Identity, &secs, &now
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew lease %s: %w", p.name, err)
	}
	return nil
}

// expired says whether a publisher's Lease has gone unrenewed for twice
// its duration (some slack for clocks that differ between servers).
func expired(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(l.Spec.RenewTime.Add(2 * time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// removeExpired deletes the slices (and Leases) of servers whose Lease
// expired, and slices of ours that no Lease holds (older than a Lease
// duration).
func (p *Publisher) removeExpired(ctx context.Context) error {
	leases, err := p.cfg.Client.CoordinationV1().Leases(ServiceNamespace).List(ctx, metav1.ListOptions{LabelSelector: LabelPublisher})
	if err != nil {
		return err
	}
	live := map[string]bool{}
	now := time.Now()
	for i := range leases.Items {
		l := &leases.Items[i]
		if l.Name == p.name || !expired(l, now) {
			live[l.Labels[LabelPublisher]] = true
			continue
		}
		p.log.Info("removing the cluster DNS endpoint of a server that stopped renewing it", "slice", l.Labels[LabelPublisher],
			"holder", deref(l.Spec.HolderIdentity))
		if err := p.deleteSlice(ctx, l.Labels[LabelPublisher]); err != nil {
			return err
		}
		if err := p.cfg.Client.CoordinationV1().Leases(ServiceNamespace).Delete(ctx, l.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &l.ResourceVersion}}); err != nil &&
			!apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete lease %s: %w", l.Name, err)
		}
	}
	ours, err := p.ourSlices(ctx)
	if err != nil {
		return err
	}
	for _, s := range ours {
		// a young slice may belong to a server that made its Lease
		// after the list above
		if !live[s.Name] && now.Sub(s.CreationTimestamp.Time) > p.cfg.LeaseDuration {
			if err := p.deleteSlice(ctx, s.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (p *Publisher) ourSlices(ctx context.Context) ([]discoveryv1.EndpointSlice, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: ServiceName, discoveryv1.LabelManagedBy: ManagedBy})
	l, err := p.cfg.Client.DiscoveryV1().EndpointSlices(ServiceNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (p *Publisher) deleteSlice(ctx context.Context, name string) error {
	err := p.cfg.Client.DiscoveryV1().EndpointSlices(ServiceNamespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete endpoint slice %s: %w", name, err)
	}
	return nil
}

// writeEndpoints makes the kube-dns Endpoints the union of the servers'
// slices (for kubectl and clients that read Endpoints).
func (p *Publisher) writeEndpoints(ctx context.Context) error {
	ours, err := p.ourSlices(ctx)
	if err != nil {
		return err
	}
	want := endpointSubsets(ours)
	eps := p.cfg.Client.CoreV1().Endpoints(ServiceNamespace)
	cur, err := eps.Get(ctx, ServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if len(want) == 0 {
			return nil
		}
		_, err = eps.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: ServiceNamespace,
			Labels: map[string]string{"k8s-app": "kube-dns"}}, Subsets: want}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create endpoints %s: %w", ServiceName, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if subsetsEqual(cur.Subsets, want) {
		return nil
	}
	cur.Subsets = want
	if _, err := eps.Update(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("update endpoints %s: %w", ServiceName, err)
	}
	return nil
}

// endpointSubsets is the Endpoints form of the slices: one subset per
// distinct port, addresses sorted.
func endpointSubsets(ss []discoveryv1.EndpointSlice) []corev1.EndpointSubset {
	byPort := map[int32][]string{}
	for _, s := range ss {
		if len(s.Ports) == 0 || s.Ports[0].Port == nil {
			continue
		}
		port := *s.Ports[0].Port
		for _, e := range s.Endpoints {
			byPort[port] = append(byPort[port], e.Addresses...)
		}
	}
	var out []corev1.EndpointSubset
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		ips := slices.Compact(slices.Sorted(slices.Values(byPort[port])))
		sub := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: "dns", Port: port, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", Port: port, Protocol: corev1.ProtocolTCP}}}
		for _, ip := range ips {
			sub.Addresses = append(sub.Addresses, corev1.EndpointAddress{IP: ip})
		}
		out = append(out, sub)
	}
	return out
}

func subsetsEqual(a, b []corev1.EndpointSubset) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !slices.Equal(a[i].Addresses, b[i].Addresses) || !slices.Equal(a[i].Ports, b[i].Ports) {
			return false
		}
	}
	return true
}

// withdraw removes this server's slice and Lease and rewrites the
// Endpoints without it.
func (p *Publisher) withdraw(ctx context.Context) error {
	if err := p.deleteSlice(ctx, p.name); err != nil {
		return err
	}
	if err := p.cfg.Client.CoordinationV1().Leases(ServiceNamespace).Delete(ctx, p.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete lease %s: %w", p.name, err)
	}
	return p.writeEndpoints(ctx)
}
