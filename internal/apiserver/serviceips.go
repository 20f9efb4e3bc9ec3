package apiserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/store"
)

var servicesGR = schema.GroupResource{Resource: "services"}

// PortRange is an inclusive range of ports.
type PortRange struct{ Min, Max int32 }

// DefaultNodePortRange is kube-apiserver's default --service-node-port-range.
var DefaultNodePortRange = PortRange{Min: 30000, Max: 32767}

// ParsePortRange parses "30000-32767".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	a, err1 := strconv.ParseInt(lo, 10, 32)
	b, err2 := strconv.ParseInt(hi, 10, 32)
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return PortRange{}, fmt.Errorf("invalid port range %q: want MIN-MAX within 1-65535", s)
	}
	return PortRange{Min: int32(a), Max: int32(b)}, nil
}

// String formats the range as MIN-MAX.
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// serviceAlloc hands out cluster IPs and node ports. Each allocation is
// an etcd key (<prefix>/skiff/serviceips/<ip>, .../serviceports/<port>)
// written in the same transaction as the service that holds it, so that
// allocations survive restarts and two services never hold the same one.
type serviceAlloc struct {
	cidr       netip.Prefix
	first      uint32 // first dynamically allocated address (network + 2)
	size       uint32 // number of dynamically allocated addresses
	ports      PortRange
	ipPrefix   string
	portPrefix string
}

func newServiceAlloc(keyPrefix string, cidr netip.Prefix, ports PortRange) (*serviceAlloc, error) {
	cidr = cidr.Masked()
	if !cidr.Addr().Is4() || cidr.Bits() > 29 || cidr.Bits() < 8 {
		return nil, fmt.Errorf("service CIDR %s: want an IPv4 range between /8 and /29", cidr)
	}
	if ports == (PortRange{}) {
		ports = DefaultNodePortRange
	}
	n := uint32(1) << (32 - cidr.Bits())
	return &serviceAlloc{cidr: cidr, first: ip4(cidr.Addr()) + 2, size: n - 3, ports: ports,
		ipPrefix: keyPrefix + "/skiff/serviceips/", portPrefix: keyPrefix + "/skiff/serviceports/"}, nil
}

func ip4(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addr4(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// KubernetesIP is the first address of the range, held by the
// default/kubernetes service.
func (a *serviceAlloc) kubernetesIP() netip.Addr { return addr4(ip4(a.cidr.Addr()) + 1) }

// claim is one allocation a service write takes.
type claim struct {
	key       string
	requested bool // the client asked for it: a conflict is the client's
	path      *field.Path
	value     any
	what      string // "IP" or "port"
}

// plan is what a service write allocates and releases.
type plan struct {
	claims   []claim
	releases []string
}

func wantsIP(svc *corev1.Service) bool {
	return svc != nil && svc.Spec.Type != corev1.ServiceTypeExternalName && !isHeadlessService(svc)
}

func isHeadlessService(svc *corev1.Service) bool {
	return len(svc.Spec.ClusterIPs) == 1 && svc.Spec.ClusterIPs[0] == corev1.ClusterIPNone
}

// heldPorts are the node ports a stored service holds.
func heldPorts(svc *corev1.Service) map[int32]bool {
	out := map[int32]bool{}
	if svc == nil {
		return out
	}
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				out[p.NodePort] = true
			}
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.HealthCheckNodePort != 0 {
		out[svc.Spec.HealthCheckNodePort] = true
	}
	return out
}

// plan fills the cluster IPs and node ports svc lacks and says which
// allocations it takes and which of old's it gives back. A nil svc (a
// delete) releases everything old holds.
//
// The first attempts pick at random without reading what is taken (the
// transaction settles it, and a write costs no scan of all allocations);
// later attempts, when the range is crowded, pick from the list of free ones.
func (a *serviceAlloc) plan(ctx context.Context, st *store.Store, old, svc *corev1.Service, attempt int) (*plan, field.ErrorList) {
	scan := attempt >= blindAttempts
	p := &plan{}
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	oldIPs := map[string]bool{}
	if wantsIP(old) {
		for _, ip := range old.Spec.ClusterIPs {
			oldIPs[ip] = true
		}
	}
	newIPs := map[string]bool{}
	if svc != nil && svc.Spec.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, a.families(svc)...)
	}
	if wantsIP(svc) && len(errs) == 0 {
		if len(svc.Spec.ClusterIPs) == 0 {
			ip, err := a.pickIP(ctx, st, scan)
			if err != nil {
				return nil, field.ErrorList{field.InternalError(specPath.Child("clusterIPs"), err)}
			}
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip, []string{ip}
			p.claims = append(p.claims, claim{key: a.ipPrefix + ip, what: "IP"})
			newIPs[ip] = true
		} else {
			for i, ip := range svc.Spec.ClusterIPs {
				newIPs[ip] = true
				if oldIPs[ip] {
					continue
				}
				path := specPath.Child("clusterIPs").Index(i)
				addr, err := netip.ParseAddr(ip)
				if err != nil || !a.inRange(addr) {
					errs = append(errs, field.Invalid(path, ip, fmt.Sprintf(
						"provided IP is not in the valid range. The range of valid IPs is %s", a.cidr)))
					continue
				}
				p.claims = append(p.claims, claim{key: a.ipPrefix + ip, requested: true, path: specPath.Child("clusterIPs"), value: ip, what: "IP"})
			}
		}
	}
	for ip := range oldIPs {
		if !newIPs[ip] {
			p.releases = append(p.releases, a.ipPrefix+ip)
		}
	}

	oldPorts := heldPorts(old)
	newPorts := map[int32]bool{}
	if svc != nil {
		// ports the client named come first, so that picks avoid them
		for i := range svc.Spec.Ports {
			if np := svc.Spec.Ports[i].NodePort; np != 0 {
				errs = append(errs, a.claimPort(p, np, oldPorts, newPorts, specPath.Child("ports").Index(i).Child("nodePort"))...)
			}
		}
		if np := svc.Spec.HealthCheckNodePort; np != 0 {
			errs = append(errs, a.claimPort(p, np, oldPorts, newPorts, specPath.Child("healthCheckNodePort"))...)
		}
		allocate := svc.Spec.Type == corev1.ServiceTypeNodePort || (svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
			(svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts))
		var used map[int32]bool
		pick := func() (int32, error) {
			if used == nil && !scan {
				used = map[int32]bool{}
			}
			if used == nil {
				var err error
				if used, err = a.usedPorts(ctx, st); err != nil {
					return 0, err
				}
			}
			np, err := a.pickPort(used, newPorts)
			if err == nil {
				newPorts[np] = true
				p.claims = append(p.claims, claim{key: a.portKey(np), what: "port"})
			}
			return np, err
		}
		if allocate && len(errs) == 0 {
			for i := range svc.Spec.Ports {
				if svc.Spec.Ports[i].NodePort != 0 {
					continue
				}
				np, err := pick()
				if err != nil {
					return nil, field.ErrorList{field.InternalError(specPath.Child("ports").Index(i).Child("nodePort"), err)}
				}
				svc.Spec.Ports[i].NodePort = np
			}
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
			svc.Spec.HealthCheckNodePort == 0 && len(errs) == 0 {
			np, err := pick()
			if err != nil {
				return nil, field.ErrorList{field.InternalError(specPath.Child("healthCheckNodePort"), err)}
			}
			svc.Spec.HealthCheckNodePort = np
		}
	}
	for np := range oldPorts {
		if !newPorts[np] {
			p.releases = append(p.releases, a.portKey(np))
		}
	}
	return p, errs
}

// families checks the IP families and policy against this single-stack
// IPv4 cluster, dropping IPv6 from a PreferDualStack service.
func (a *serviceAlloc) families(svc *corev1.Service) field.ErrorList {
	specPath := field.NewPath("spec")
	policy := corev1.IPFamilyPolicySingleStack
	if svc.Spec.IPFamilyPolicy != nil {
		policy = *svc.Spec.IPFamilyPolicy
	}
	if policy == corev1.IPFamilyPolicyRequireDualStack {
		return field.ErrorList{field.Invalid(specPath.Child("ipFamilyPolicy"), policy, "this cluster is not configured for dual-stack services")}
	}
	var errs field.ErrorList
	var keep []corev1.IPFamily
	for i, f := range svc.Spec.IPFamilies {
		switch {
		case f == corev1.IPv4Protocol:
			keep = append(keep, f)
		case policy == corev1.IPFamilyPolicyPreferDualStack && i > 0:
		default:
			errs = append(errs, field.Invalid(specPath.Child("ipFamilies").Index(i), f, "not configured on this cluster"))
		}
	}
	if len(errs) == 0 {
		svc.Spec.IPFamilies = keep
	}
	return errs
}

func (a *serviceAlloc) claimPort(p *plan, np int32, oldPorts, newPorts map[int32]bool, path *field.Path) field.ErrorList {
	if newPorts[np] {
		return nil // the same port for another protocol of this service
	}
	newPorts[np] = true
	if oldPorts[np] {
		return nil
	}
	if np < a.ports.Min || np > a.ports.Max {
		return field.ErrorList{field.Invalid(path, np, fmt.Sprintf(
			"provided port is not in the valid range. The range of valid ports is %s", a.ports))}
	}
	p.claims = append(p.claims, claim{key: a.portKey(np), requested: true, path: path, value: np, what: "port"})
	return nil
}

func (a *serviceAlloc) portKey(np int32) string { return a.portPrefix + strconv.Itoa(int(np)) }

func (a *serviceAlloc) inRange(addr netip.Addr) bool {
	if !addr.Is4() || !a.cidr.Contains(addr) {
		return false
	}
	n := ip4(addr) - ip4(a.cidr.Addr())
	return n != 0 && n != a.size+2 // neither the network nor the broadcast address
}

// pickIP picks an address at random, a free one when scan is set; the
// transaction that claims it settles a race with another writer.
func (a *serviceAlloc) pickIP(ctx context.Context, st *store.Store, scan bool) (string, error) {
	if !scan {
		return addr4(a.first + rand.Uint32N(a.size)).String(), nil
	}
	kvs, _, _, err := st.List(ctx, a.ipPrefix, "", 0, 0)
	if err != nil {
		return "", err
	}
	used := make(map[uint32]bool, len(kvs))
	for _, kv := range kvs {
		if addr, err := netip.ParseAddr(strings.TrimPrefix(kv.Key, a.ipPrefix)); err == nil && addr.Is4() {
			used[ip4(addr)] = true
		}
	}
	start := rand.Uint32N(a.size)
	for i := uint32(0); i < a.size; i++ {
		n := a.first + (start+i)%a.size
		if !used[n] {
			return addr4(n).String(), nil
		}
	}
	return "", fmt.Errorf("range is full: no free cluster IP in %s", a.cidr)
}

func (a *serviceAlloc) usedPorts(ctx context.Context, st *store.Store) (map[int32]bool, error) {
	kvs, _, _, err := st.List(ctx, a.portPrefix, "", 0, 0)
	if err != nil {
		return nil, err
	}
	used := make(map[int32]bool, len(kvs))
	for _, kv := range kvs {
		if n, err := strconv.ParseInt(strings.TrimPrefix(kv.Key, a.portPrefix), 10, 32); err == nil {
			used[int32(n)] = true
		}
	}
	return used, nil
}

func (a *serviceAlloc) pickPort(used, taken map[int32]bool) (int32, error) {
	size := a.ports.Max - a.ports.Min + 1
	start := rand.Int32N(size)
	for i := int32(0); i < size; i++ {
		np := a.ports.Min + (start+i)%size
		if !used[np] && !taken[np] {
			return np, nil
		}
	}
	return 0, fmt.Errorf("range is full: no free node port in %s", a.ports)
}

// maxAllocAttempts bounds the retries when a picked IP or port was taken;
// the first blindAttempts pick without reading the allocations.
const (
	maxAllocAttempts = 50
	blindAttempts    = 8
)

// writeService stores a service write (primary) together with the
// allocations it takes and releases. obj is nil for a delete.
func (h *resourceHandler) writeService(ctx context.Context, primary store.Op, old, obj runtime.Object) (int64, error) {
	a := h.s.alloc
	oldSvc, _ := old.(*corev1.Service)
	svc, _ := obj.(*corev1.Service)
	var orig *corev1.ServiceSpec
	if svc != nil {
		orig = svc.Spec.DeepCopy()
	}
	name := ""
	if m, ok := obj.(metav1.Object); ok {
		name = m.GetName()
	} else if m, ok := old.(metav1.Object); ok {
		name = m.GetName()
	}
	for attempt := 0; ; attempt++ {
		if svc != nil {
			svc.Spec = *orig.DeepCopy()
		}
		p, errs := a.plan(ctx, h.s.store, oldSvc, svc, attempt)
		if len(errs) > 0 {
			return 0, h.invalid(name, errs)
		}
		if svc != nil {
			data, err := h.encodeForStore(svc)
			if err != nil {
				return 0, apierrors.NewInternalError(err)
			}
			primary.Value = data
		}
		owner := []byte(registryName(old, obj))
		ops := []store.Op{primary}
		for _, c := range p.claims {
			ops = append(ops, store.Op{Type: store.OpCreate, Key: c.key, Value: owner})
		}
		for _, k := range p.releases {
			ops = append(ops, store.Op{Type: store.OpRemove, Key: k})
		}
		rev, err := h.s.store.Txn(ctx, ops...)
		var te *store.TxnError
		if err == nil || !errors.As(err, &te) || te.Index <= 0 {
			return rev, err
		}
		c := p.claims[te.Index-1]
		if c.requested {
			return 0, h.invalid(name, field.ErrorList{field.Invalid(c.path, c.value,
				fmt.Sprintf("provided %s is already allocated", c.what))})
		}
		if attempt >= maxAllocAttempts {
			return 0, apierrors.NewInternalError(fmt.Errorf("could not allocate a %s after %d attempts", c.what, attempt))
		}
	}
}

func registryName(old, obj runtime.Object) string {
	for _, o := range []runtime.Object{obj, old} {
		if m, ok := o.(metav1.Object); ok {
			return m.GetNamespace() + "/" + m.GetName()
		}
	}
	return ""
}

// write stores a create (old nil), update or delete (obj nil) of one
// object, with the allocations of a service.
func (h *resourceHandler) write(ctx context.Context, typ store.OpType, key string, rev int64, old, obj runtime.Object) (int64, error) {
	if h.gr == servicesGR && h.s.alloc != nil {
		return h.writeService(ctx, store.Op{Type: typ, Key: key, Rev: rev}, old, obj)
	}
	var data []byte
	if obj != nil {
		var err error
		if data, err = h.encodeForStore(obj); err != nil {
			return 0, apierrors.NewInternalError(err)
		}
	}
	switch typ {
	case store.OpCreate:
		return h.s.store.Create(ctx, key, data)
	case store.OpUpdate:
		rev, _, err := h.s.store.Update(ctx, key, data, rev)
		return rev, err
	default:
		rev, _, err := h.s.store.Delete(ctx, key, rev)
		return rev, err
	}
}

// previewService fills a dry-run service's cluster IPs and node ports
// without taking them.
func (h *resourceHandler) previewService(ctx context.Context, old, obj runtime.Object) error {
	svc, ok := obj.(*corev1.Service)
	if !ok || h.s.alloc == nil {
		return nil
	}
	oldSvc, _ := old.(*corev1.Service)
	if _, errs := h.s.alloc.plan(ctx, h.s.store, oldSvc, svc, blindAttempts); len(errs) > 0 {
		return h.invalid(svc.Name, errs)
	}
	return nil
}

// kubernetesService is the default/kubernetes service and its endpoints,
// created at bootstrap: the first IP of the range, port 443 to the API
// server's address, as Endpoints and (for the service proxy, which reads
// only slices) an EndpointSlice of the same name, as upstream writes them.
func (s *Server) kubernetesService() []runtime.Object {
	if s.alloc == nil {
		return nil
	}
	ip := s.alloc.kubernetesIP().String()
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault, Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443}}},
	}
	out := []runtime.Object{svc}
	ap, err := netip.ParseAddrPort(s.Addr())
	if err != nil {
		return out
	}
	svc.Spec.Ports[0].TargetPort = intstr.FromInt32(int32(ap.Port()))
	if addr := s.cfg.AdvertiseAddress; addr.IsValid() {
		ap = netip.AddrPortFrom(addr, ap.Port())
	}
	if ap.Addr().IsUnspecified() || ap.Addr().IsLoopback() {
		return out // endpoints may not name these
	}
	ip, port := ap.Addr().Unmap().String(), int32(ap.Port())
	ready, name, proto := true, "https", corev1.ProtocolTCP
	out = append(out, &corev1.Endpoints{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Endpoints"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: ip}},
			Ports:     []corev1.EndpointPort{{Name: name, Port: port, Protocol: proto}},
		}},
	})
	if s.byGR[schema.GroupResource{Group: discoveryv1.GroupName, Resource: "endpointslices"}] == nil {
		return out // a server without the discovery group (tests)
	}
	return append(out, &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	})
}

// updateKubernetesEndpoints points the kubernetes service's Endpoints
// and EndpointSlice at this server when they name another address (a
// restart on a new port).
func (s *Server) updateKubernetesEndpoints(ctx context.Context, objs []runtime.Object) error {
	h := s.byGR[schema.GroupResource{Resource: "endpoints"}]
	for _, o := range objs {
		if want, ok := o.(*discoveryv1.EndpointSlice); ok {
			if err := s.updateKubernetesSlice(ctx, want); err != nil {
				return err
			}
			continue
		}
		want, ok := o.(*corev1.Endpoints)
		if !ok || h == nil {
			continue
		}
		_, err := h.guaranteedUpdate(ctx, want.Namespace, want.Name, false, func(cur runtime.Object) (runtime.Object, error) {
			ep := cur.(*corev1.Endpoints)
			if reflect.DeepEqual(ep.Subsets, want.Subsets) {
				return nil, errNoChange
			}
			ep.Subsets = want.Subsets
			return ep, nil
		})
		if err != nil {
			return fmt.Errorf("update the kubernetes service's endpoints: %w", err)
		}
	}
	return nil
}

// updateKubernetesSlice is updateKubernetesEndpoints for the slice.
func (s *Server) updateKubernetesSlice(ctx context.Context, want *discoveryv1.EndpointSlice) error {
	h := s.byGR[schema.GroupResource{Group: discoveryv1.GroupName, Resource: "endpointslices"}]
	if h == nil {
		return nil
	}
	_, err := h.guaranteedUpdate(ctx, want.Namespace, want.Name, false, func(cur runtime.Object) (runtime.Object, error) {
		es := cur.(*discoveryv1.EndpointSlice)
		if reflect.DeepEqual(es.Endpoints, want.Endpoints) && reflect.DeepEqual(es.Ports, want.Ports) {
			return nil, errNoChange
		}
		es.Endpoints, es.Ports = want.Endpoints, want.Ports
		return es, nil
	})
	if err != nil {
		return fmt.Errorf("update the kubernetes service's endpoint slice: %w", err)
	}
	return nil
}
