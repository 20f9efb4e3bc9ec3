package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const strategicMerge = types.StrategicMergePatchType

// renewLease sets the node lease's renewTime to now, creating the lease if
// it does not exist. It writes once per renewal when nothing else touched
// the lease, reusing the object it wrote last time.
func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.client.CoordinationV1().Leases(NodeLeaseNamespace)
	a.mu.Lock()
	cached := a.lease
	a.mu.Unlock()
	if cached != nil {
		l := a.leaseFrom(cached)
		updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			a.setLease(updated)
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renew lease %s/%s: %w", NodeLeaseNamespace, a.cfg.NodeName, err)
		}
	}
	if cached == nil {
		// first renewal: the lease usually does not exist yet
		created, err := leases.Create(ctx, a.leaseFrom(&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: NodeLeaseNamespace}}), metav1.CreateOptions{})
		if err == nil {
			a.setLease(created)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create lease %s/%s: %w", NodeLeaseNamespace, a.cfg.NodeName, err)
		}
	}
	cur, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		a.setLease(nil)
		return a.renewLease(ctx)
	}
	if err != nil {
		return fmt.Errorf("get lease %s/%s: %w", NodeLeaseNamespace, a.cfg.NodeName, err)
	}
	updated, err := leases.Update(ctx, a.leaseFrom(cur), metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("renew lease %s/%s: %w", NodeLeaseNamespace, a.cfg.NodeName, err)
	}
	a.setLease(updated)
	return nil
}

func (a *Agent) setLease(l *coordinationv1.Lease) {
	a.mu.Lock()
	a.lease = l
	a.mu.Unlock()
}

// leaseFrom returns a copy of base renewed now, held by this node and
// owned by its Node object.
func (a *Agent) leaseFrom(base *coordinationv1.Lease) *coordinationv1.Lease {
	l := base.DeepCopy()
	now := metav1.NewMicroTime(a.clock.Now())
	holder := a.cfg.NodeName
	dur := int32(a.cfg.LeaseDuration.Seconds())
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &dur
	l.Spec.RenewTime = &now
	a.mu.Lock()
	node := a.node
	a.mu.Unlock()
	if node != nil && node.UID != "" {
		l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
	}
	return l
}

// conditionsPatch is a strategic merge patch of the node's status that
// sets these conditions and leaves others' conditions alone.
func conditionsPatch(conds []corev1.NodeCondition) ([]byte, error) {
	b, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return nil, fmt.Errorf("encode node status patch: %w", err)
	}
	return b, nil
}

// defaultIPv4 is the first IPv4 address of an up, non-loopback interface,
// or 127.0.0.1 when there is none.
func defaultIPv4() string {
	ifs, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			addrs, _ := ifc.Addrs()
			for _, ad := range addrs {
				if n, ok := ad.(*net.IPNet); ok && n.IP.To4() != nil {
					return n.IP.String()
				}
			}
		}
	}
	return "127.0.0.1"
}
