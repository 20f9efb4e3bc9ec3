package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

func (s *Server) serveSubresource(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo, q queryParams) {
	ctx := r.Context()
	isCore := h.gr.Group == ""
	switch {
	case ri.subresource == "status" && h.r.Status, slices.Contains(h.r.Subresources, ri.subresource):
		// status, or a subresource that like it reads and writes the
		// whole object (certificatesigningrequests/approval)
		switch ri.verb {
		case "get":
			obj, err := h.get(ctx, ri, q)
			s.respond(w, r, h, http.StatusOK, obj, nil, err)
		case "update":
			obj, warn, err := h.update(ctx, r, ri, q)
			s.respond(w, r, h, http.StatusOK, obj, warn, err)
		case "patch":
			obj, warn, err := h.patch(ctx, r, ri, q)
			s.respond(w, r, h, http.StatusOK, obj, warn, err)
		default:
			s.writeError(w, r, apierrors.NewMethodNotSupported(h.gr, ri.verb))
		}
	case ri.subresource == "scale" && h.r.Scale != nil:
		s.serveScale(h, w, r, ri, q)
	case ri.subresource == "finalize" && isCore && h.gr.Resource == "namespaces" && ri.verb == "update":
		obj, warn, err := h.finalizeNamespace(ctx, r, ri, q)
		s.respond(w, r, h, http.StatusOK, obj, warn, err)
	case ri.subresource == "binding" && isCore && h.gr.Resource == "pods" && ri.verb == "create":
		st, err := h.bind(ctx, r, ri, q)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeObject(w, r, http.StatusCreated, st)
	case ri.subresource == "eviction" && isCore && h.gr.Resource == "pods" && ri.verb == "create":
		st, err := h.evict(ctx, r, ri, q)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeObject(w, r, http.StatusCreated, st)
	case isCore && h.gr.Resource == "pods" && (ri.subresource == "log" || ri.subresource == "exec" || ri.subresource == "attach" ||
		ri.subresource == "portforward"):
		s.servePodStream(h, w, r, ri)
	case isCore && (ri.subresource == "log" || ri.subresource == "exec" || ri.subresource == "attach" ||
		ri.subresource == "portforward" || ri.subresource == "proxy"):
		s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf(
			"%s of %s %q needs a node agent, and no agent serves this node yet", ri.subresource, h.gr.Resource, ri.name)))
	default:
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{Group: h.gr.Group, Resource: h.gr.Resource + "/" + ri.subresource}, ri.name))
	}
}

func successStatus() *metav1.Status {
	return &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated}
}

// bind sets a pod's node, as the pods/binding subresource does upstream.
func (h *resourceHandler) bind(ctx context.Context, r *http.Request, ri requestInfo, q queryParams) (*metav1.Status, error) {
	obj, _, err := h.decodeBody(r, q, &corev1.Binding{}, corev1.SchemeGroupVersion.WithKind("Binding"))
	if err != nil {
		return nil, err
	}
	b := obj.(*corev1.Binding)
	if b.Name != "" && b.Name != ri.name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the binding (%s) does not match the pod (%s)", b.Name, ri.name))
	}
	if b.Target.Name == "" {
		return nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, ri.name, nil)
	}
	_, err = h.guaranteedUpdate(ctx, ri.namespace, ri.name, q.dryRun, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.(*corev1.Pod)
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(h.gr, ri.name, fmt.Errorf("precondition failed: UID %s does not match the pod's %s", b.UID, pod.UID))
		}
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(h.gr, ri.name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", ri.name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(h.gr, ri.name, fmt.Errorf("pod %s is already assigned to node %q", ri.name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.Now()})
		return pod, nil
	})
	if err != nil {
		return nil, err
	}
	return successStatus(), nil
}

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status {
				return
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// evict deletes a pod unless that would violate its PodDisruptionBudget.
func (h *resourceHandler) evict(ctx context.Context, r *http.Request, ri requestInfo, q queryParams) (*metav1.Status, error) {
	obj, _, err := h.decodeBody(r, q, &policyv1.Eviction{}, policyv1.SchemeGroupVersion.WithKind("Eviction"))
	if err != nil {
		return nil, err
	}
	ev := obj.(*policyv1.Eviction)
	if ev.Name != "" && ev.Name != ri.name {
		return nil, apierrors.NewBadRequest("name in URL does not match name in Eviction object")
	}
	cur, err := h.get(ctx, ri, queryParams{})
	if err != nil {
		return nil, err
	}
	pod := cur.(*corev1.Pod)
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if q.dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	del := func() (*metav1.Status, error) {
		if _, _, err := h.delete(ctx, ri.namespace, ri.name, opts); err != nil {
			return nil, err
		}
		return successStatus(), nil
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed ||
		pod.Status.Phase == corev1.PodPending {
		return del()
	}
	ph := h.s.byGR[schema.GroupResource{Group: "policy", Resource: "poddisruptionbudgets"}]
	if ph == nil {
		return del()
	}
	pdbs, _ := ph.cache.snapshot(ph.keyPrefix(ri.namespace), nil)
	var match []*policyv1.PodDisruptionBudget
	for _, o := range pdbs {
		pdb := o.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		match = append(match, pdb)
	}
	if len(match) == 0 {
		return del()
	}
	if len(match) > 1 {
		return nil, apierrors.NewInternalError(errors.New("this pod has more than one PodDisruptionBudget, which the eviction subresource does not support"))
	}
	pdb := match[0]
	_, err = ph.guaranteedUpdate(ctx, pdb.Namespace, pdb.Name, q.dryRun, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*policyv1.PodDisruptionBudget)
		if p.Status.ObservedGeneration < p.Generation {
			return nil, tooManyRequests("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget " + p.Name + " is still being processed by the server.")
		}
		if p.Status.DisruptionsAllowed <= 0 {
			return nil, tooManyRequests(fmt.Sprintf("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget %s needs %d healthy pods and has %d currently", p.Name, p.Status.DesiredHealthy, p.Status.CurrentHealthy))
		}
		p.Status.DisruptionsAllowed--
		if p.Status.DisruptedPods == nil {
			p.Status.DisruptedPods = map[string]metav1.Time{}
		}
		p.Status.DisruptedPods[pod.Name] = metav1.Now()
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return del()
}

func tooManyRequests(msg string) error {
	e := apierrors.NewTooManyRequests(msg, 10)
	e.ErrStatus.Reason = metav1.StatusReasonTooManyRequests
	e.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: "DisruptionBudget", Message: msg}}
	return e
}

// finalizeNamespace replaces a namespace's spec.finalizers; once they and
// its metadata finalizers are empty a terminating namespace is deleted.
func (h *resourceHandler) finalizeNamespace(ctx context.Context, r *http.Request, ri requestInfo, q queryParams) (runtime.Object, []string, error) {
	obj, warn, err := h.decodeBody(r, q, &corev1.Namespace{}, corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err != nil {
		return nil, nil, err
	}
	in := obj.(*corev1.Namespace)
	out, err := h.guaranteedUpdate(ctx, "", ri.name, q.dryRun, func(cur runtime.Object) (runtime.Object, error) {
		ns := cur.(*corev1.Namespace)
		if in.ResourceVersion != "" && in.ResourceVersion != ns.ResourceVersion {
			return nil, h.conflict(ri.name)
		}
		ns.Spec.Finalizers = in.Spec.Finalizers
		return ns, nil
	})
	if err != nil {
		return nil, nil, err
	}
	ns := out.(*corev1.Namespace)
	if ns.DeletionTimestamp != nil && len(ns.Spec.Finalizers) == 0 && len(ns.Finalizers) == 0 && !q.dryRun {
		if _, _, err := h.delete(ctx, "", ri.name, &metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
	}
	return out, warn, nil
}

// serveScale serves the autoscaling/v1 Scale view of a workload.
func (s *Server) serveScale(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo, q queryParams) {
	ctx := r.Context()
	toScale := func(obj runtime.Object) *autoscalingv1.Scale {
		m := registry.Meta(obj)
		spec, status, sel := h.r.Scale.Get(obj)
		return &autoscalingv1.Scale{
			TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
			ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
				ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp()},
			Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
			Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
		}
	}
	scaleGVK := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	var out runtime.Object
	var err error
	switch ri.verb {
	case "get":
		var obj runtime.Object
		obj, err = h.get(ctx, ri, q)
		if err == nil {
			out = toScale(obj)
		}
	case "update", "patch":
		var body []byte
		body, err = readBody(r)
		if err != nil {
			break
		}
		var res runtime.Object
		res, err = h.guaranteedUpdate(ctx, ri.namespace, ri.name, q.dryRun, func(cur runtime.Object) (runtime.Object, error) {
			sc := toScale(cur)
			var in runtime.Object
			var err error
			if ri.verb == "update" {
				in, _, err = s.decodeObject(body, r.Header.Get("Content-Type"), q.fieldValidation, &autoscalingv1.Scale{}, scaleGVK)
			} else {
				var curJSON, patched []byte
				curJSON, err = runtime.Encode(s.codecs.json, sc)
				if err != nil {
					return nil, apierrors.NewInternalError(err)
				}
				ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
				pt := types.PatchType(strings.TrimSpace(ct))
				patched, err = applyPatch(pt, curJSON, body, &autoscalingv1.Scale{})
				if err != nil {
					return nil, err
				}
				in, _, err = s.decodeObject(patched, mediaJSON, q.fieldValidation, &autoscalingv1.Scale{}, scaleGVK)
			}
			if err != nil {
				return nil, err
			}
			nsc := in.(*autoscalingv1.Scale)
			if nsc.ResourceVersion != "" && nsc.ResourceVersion != registry.Meta(cur).GetResourceVersion() {
				return nil, h.conflict(ri.name)
			}
			if nsc.Spec.Replicas < 0 {
				return nil, apierrors.NewInvalid(schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, ri.name,
					field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), nsc.Spec.Replicas, "must be greater than or equal to 0")})
			}
			obj := cur.DeepCopyObject()
			h.r.Scale.Set(obj, nsc.Spec.Replicas)
			registry.Meta(obj).SetResourceVersion(registry.Meta(cur).GetResourceVersion())
			return h.mergeUpdate(obj, cur, "")
		})
		if err == nil {
			out = toScale(res)
		}
	default:
		err = apierrors.NewMethodNotSupported(h.gr, ri.verb)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, out)
}
