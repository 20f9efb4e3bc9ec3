package core

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Labels kubectl reads a node's roles from.
const (
	nodeRoleLabelPrefix = "node-role.kubernetes.io/"
	nodeRoleLabel       = "kubernetes.io/role"
)

// nodeStrategy implements nodes. The kubelet registers a node with its
// status, so create keeps the status.
type nodeStrategy struct{ registry.Base }

// Default keeps podCIDR and podCIDRs in step and defaults allocatable to
// capacity.
func (nodeStrategy) Default(obj runtime.Object) {
	node := obj.(*corev1.Node)
	if node.Spec.PodCIDR != "" && len(node.Spec.PodCIDRs) == 0 {
		node.Spec.PodCIDRs = []string{node.Spec.PodCIDR}
	}
	if node.Spec.PodCIDR == "" && len(node.Spec.PodCIDRs) > 0 {
		node.Spec.PodCIDR = node.Spec.PodCIDRs[0]
	}
	if node.Status.Allocatable == nil && node.Status.Capacity != nil {
		node.Status.Allocatable = node.Status.Capacity.DeepCopy()
	}
}

// PrepareForCreate drops the deprecated dynamic kubelet config status.
func (nodeStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*corev1.Node).Status.Config = nil
}

// ValidateCreate checks taints, pod CIDRs and resource quantities.
func (nodeStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateNode(obj.(*corev1.Node))
}

func validateNode(node *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	if len(node.Spec.Taints) > 0 {
		// Upstream reports taint errors under metadata.taints.
		errs = append(errs, validateNodeTaints(node.Spec.Taints, field.NewPath("metadata", "taints"))...)
	}
	errs = append(errs, validateNodeResources(node)...)
	if len(node.Spec.PodCIDRs) > 0 {
		p := field.NewPath("spec", "podCIDRs")
		var v6, v4 int
		for i, c := range node.Spec.PodCIDRs {
			cidrErrs := validation.IsValidCIDRForLegacyField(p.Index(i), c, false, nil)
			errs = append(errs, cidrErrs...)
			if len(cidrErrs) == 0 {
				if pfx, err := netip.ParsePrefix(c); err == nil && pfx.Addr().Is6() && !pfx.Addr().Is4In6() {
					v6++
				} else {
					v4++
				}
			}
		}
		if len(node.Spec.PodCIDRs) > 2 || v6 > 1 || v4 > 1 {
			errs = append(errs, field.Invalid(p, node.Spec.PodCIDRs, "may specify no more than one CIDR for each IP family"))
		}
	}
	return errs
}

func validateNodeTaints(taints []corev1.Taint, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[corev1.TaintEffect]map[string]bool{}
	for i, t := range taints {
		p := fldPath.Index(i)
		errs = append(errs, validateLabelName(t.Key, p.Child("key"))...)
		if msgs := validation.IsValidLabelValue(t.Value); len(msgs) != 0 {
			errs = append(errs, field.Invalid(p.Child("value"), t.Value, strings.Join(msgs, ";")))
		}
		errs = append(errs, validateTaintEffect(t.Effect, false, p.Child("effect"))...)
		if seen[t.Effect][t.Key] {
			dup := field.Duplicate(p, t)
			dup.Detail = "taints must be unique by key and effect pair"
			errs = append(errs, dup)
			continue
		}
		if seen[t.Effect] == nil {
			seen[t.Effect] = map[string]bool{}
		}
		seen[t.Effect][t.Key] = true
	}
	return errs
}

func validateNodeResources(node *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedResourceNames(node.Status.Capacity) {
		errs = append(errs, validateResourceQuantityValue(name, node.Status.Capacity[name], field.NewPath("status", "capacity", string(name)))...)
	}
	for _, name := range sortedResourceNames(node.Status.Allocatable) {
		errs = append(errs, validateResourceQuantityValue(name, node.Status.Allocatable[name], field.NewPath("status", "allocatable", string(name)))...)
	}
	return errs
}

// ValidateUpdate also keeps podCIDRs and providerID immutable once set.
func (nodeStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	return validateNodeUpdate(obj.(*corev1.Node), old.(*corev1.Node))
}

// ValidateStatusUpdate applies the same checks as an update.
func (nodeStrategy) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	return validateNodeUpdate(obj.(*corev1.Node), old.(*corev1.Node))
}

func validateNodeUpdate(node, oldNode *corev1.Node) field.ErrorList {
	errs := validateNode(node)
	seen := map[corev1.NodeAddress]bool{}
	for i, a := range node.Status.Addresses {
		if seen[a] {
			errs = append(errs, field.Duplicate(field.NewPath("status", "addresses").Index(i), a))
		}
		seen[a] = true
	}
	if len(oldNode.Spec.PodCIDRs) > 0 {
		changed := len(oldNode.Spec.PodCIDRs) != len(node.Spec.PodCIDRs)
		for i := 0; !changed && i < len(oldNode.Spec.PodCIDRs); i++ {
			changed = oldNode.Spec.PodCIDRs[i] != node.Spec.PodCIDRs[i]
		}
		if changed {
			errs = append(errs, field.Forbidden(field.NewPath("spec", "podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
		}
	}
	if oldNode.Spec.ProviderID != "" && oldNode.Spec.ProviderID != node.Spec.ProviderID {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	if node.Spec.DoNotUseExternalID != oldNode.Spec.DoNotUseExternalID {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "externalID"), "may not be updated"))
	}
	return errs
}

// Fields returns spec.unschedulable.
func (nodeStrategy) Fields(obj runtime.Object) fields.Set {
	return fields.Set{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
}

// Columns returns kubectl's node columns.
func (nodeStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Status", Type: "string", Description: "The status of the node"},
		{Name: "Roles", Type: "string", Description: "The roles of the node"},
		registry.AgeColumn(),
		{Name: "Version", Type: "string", Description: "Kubelet version reported by the node."},
		{Name: "Internal-IP", Type: "string", Priority: 1, Description: "The node's first internal IP."},
		{Name: "External-IP", Type: "string", Priority: 1, Description: "The node's first external IP."},
		{Name: "OS-Image", Type: "string", Priority: 1, Description: "OS image reported by the node."},
		{Name: "Kernel-Version", Type: "string", Priority: 1, Description: "Kernel version reported by the node."},
		{Name: "Container-Runtime", Type: "string", Priority: 1, Description: "Container runtime version reported by the node."},
	}
}

// Row returns the node's cells.
func (nodeStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	node := obj.(*corev1.Node)
	var status []string
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			status = []string{"Ready"}
		} else {
			status = []string{"NotReady"}
		}
	}
	if len(status) == 0 {
		status = []string{"Unknown"}
	}
	if node.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	info := node.Status.NodeInfo
	return []interface{}{
		node.Name, strings.Join(status, ","), nodeRoles(node), registry.Age(node.CreationTimestamp, now), info.KubeletVersion,
		nodeAddress(node, corev1.NodeInternalIP), nodeAddress(node, corev1.NodeExternalIP),
		orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion),
	}
}

func nodeRoles(node *corev1.Node) string {
	set := map[string]bool{}
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, nodeRoleLabelPrefix):
			if role := strings.TrimPrefix(k, nodeRoleLabelPrefix); role != "" {
				set[role] = true
			}
		case k == nodeRoleLabel && v != "":
			set[v] = true
		}
	}
	if len(set) == 0 {
		return "<none>"
	}
	roles := make([]string, 0, len(set))
	for r := range set {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return strings.Join(roles, ",")
}

func nodeAddress(node *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range node.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}
