package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/store"
)

// maxBodyBytes is the largest request body accepted (upstream's limit).
const maxBodyBytes = 3 * 1024 * 1024

// resourceHandler serves one resource.
type resourceHandler struct {
	s         *Server
	r         *registry.Resource
	gr        schema.GroupResource
	storageGR schema.GroupResource
	cache     *watchCache
	fieldKeys map[string]bool
	// hasSpec and hasStatus say whether the Go type has Spec / Status fields.
	hasSpec, hasStatus bool
}

func newResourceHandler(s *Server, r *registry.Resource, cache *watchCache) *resourceHandler {
	h := &resourceHandler{s: s, r: r, cache: cache,
		gr:        schema.GroupResource{Group: r.GVK.Group, Resource: r.Plural},
		fieldKeys: map[string]bool{"metadata.name": true, "metadata.namespace": true}}
	h.storageGR = h.gr
	if r.Storage != nil {
		h.storageGR = r.Storage.Resource
	}
	for k := range r.Strategy.Fields(r.New()) {
		h.fieldKeys[k] = true
	}
	t := reflect.TypeOf(r.New()).Elem()
	_, h.hasSpec = t.FieldByName("Spec")
	_, h.hasStatus = t.FieldByName("Status")
	return h
}

// storagePrefix is the etcd prefix of a storage resource.
func storagePrefix(root string, gr schema.GroupResource) string {
	g := gr.Group
	if g == "" {
		g = "core"
	}
	return root + "/" + g + "/" + gr.Resource + "/"
}

func (h *resourceHandler) key(ns, name string) string {
	p := storagePrefix(h.s.cfg.KeyPrefix, h.storageGR)
	if h.r.Namespaced {
		return p + ns + "/" + name
	}
	return p + name
}

func (h *resourceHandler) keyPrefix(ns string) string {
	p := storagePrefix(h.s.cfg.KeyPrefix, h.storageGR)
	if h.r.Namespaced && ns != "" {
		return p + ns + "/"
	}
	return p
}

// toServed converts a stored (cached) object to the served type. The
// result may be shared with the cache: never modify it.
func (h *resourceHandler) toServed(obj runtime.Object) (runtime.Object, error) {
	if h.r.Storage == nil {
		return obj, nil
	}
	out, err := h.r.Storage.FromStorage(obj)
	if err != nil {
		return nil, err
	}
	out.GetObjectKind().SetGroupVersionKind(h.r.GVK)
	return out, nil
}

func (h *resourceHandler) toStorage(obj runtime.Object) (runtime.Object, error) {
	if h.r.Storage == nil {
		return obj, nil
	}
	return h.r.Storage.ToStorage(obj)
}

func (h *resourceHandler) encodeForStore(obj runtime.Object) ([]byte, error) {
	so, err := h.toStorage(obj)
	if err != nil {
		return nil, err
	}
	m, err := meta.Accessor(so)
	if err != nil {
		return nil, err
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	defer m.SetResourceVersion(rv)
	return runtime.Encode(h.s.codecs.protobuf, so)
}

// fromStore decodes a stored value into the served type with its
// resourceVersion set.
func (h *resourceHandler) fromStore(kv store.KV) (runtime.Object, error) {
	obj, err := h.s.decodeStored(h.storageGR, kv)
	if err != nil {
		return nil, err
	}
	served, err := h.toServed(obj)
	if err != nil {
		return nil, err
	}
	if h.r.Storage != nil {
		registry.Meta(served).SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
	}
	return served, nil
}

func (h *resourceHandler) notFound(name string) error {
	return apierrors.NewNotFound(h.gr, name)
}

// --- reads ---

func (h *resourceHandler) get(ctx context.Context, ri requestInfo, q queryParams) (runtime.Object, error) {
	key := h.key(ri.namespace, ri.name)
	if q.resourceVersion == "" {
		kv, err := h.s.store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, h.notFound(ri.name)
		}
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		return h.fromStore(kv)
	}
	obj, _, ok := h.cache.get(key)
	if !ok {
		return nil, h.notFound(ri.name)
	}
	return h.toServed(obj)
}

// selector is a parsed label and field selector.
type selector struct {
	label labels.Selector
	field fields.Selector
}

func (h *resourceHandler) parseSelectors(q queryParams) (selector, error) {
	sel := selector{label: labels.Everything(), field: fields.Everything()}
	if q.labelSelector != "" {
		ls, err := labels.Parse(q.labelSelector)
		if err != nil {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
		sel.label = ls
	}
	if q.fieldSelector != "" {
		fs, err := fields.ParseSelector(q.fieldSelector)
		if err != nil {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
		for _, req := range fs.Requirements() {
			if !h.fieldKeys[req.Field] {
				return sel, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
			}
		}
		sel.field = fs
	}
	return sel, nil
}

func (h *resourceHandler) fieldSet(obj runtime.Object) fields.Set {
	m := registry.Meta(obj)
	set := h.r.Strategy.Fields(obj)
	out := make(fields.Set, len(set)+2)
	for k, v := range set {
		out[k] = v
	}
	out["metadata.name"] = m.GetName()
	if h.r.Namespaced {
		out["metadata.namespace"] = m.GetNamespace()
	}
	return out
}

func (h *resourceHandler) matches(sel selector, obj runtime.Object) bool {
	if !sel.label.Empty() && !sel.label.Matches(labels.Set(registry.Meta(obj).GetLabels())) {
		return false
	}
	if !sel.field.Empty() && !sel.field.Matches(h.fieldSet(obj)) {
		return false
	}
	return true
}

// continueToken is the opaque token of a paginated list.
type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	StartKey        string `json:"start"`
}

func (h *resourceHandler) list(ctx context.Context, ri requestInfo, q queryParams) (runtime.Object, error) {
	sel, err := h.parseSelectors(q)
	if err != nil {
		return nil, err
	}
	served := func(o runtime.Object) (runtime.Object, bool, error) {
		so, err := h.toServed(o)
		if err != nil {
			return nil, false, err
		}
		return so, h.matches(sel, so), nil
	}
	prefix := h.keyPrefix(ri.namespace)
	var items []runtime.Object
	var rv int64
	var next string
	switch {
	case q.continueToken != "" || (q.limit > 0 && q.resourceVersion != "0") ||
		(q.resourceVersionMatch == string(metav1.ResourceVersionMatchExact) && q.resourceVersion != "" && q.resourceVersion != "0"):
		items, rv, next, err = h.listFromStore(ctx, prefix, q, served)
		if err != nil {
			return nil, err
		}
	default:
		if q.resourceVersion != "0" {
			if err := h.cache.waitFresh(ctx); err != nil {
				// Serve from etcd instead: slower but consistent.
				items, rv, next, err = h.listFromStore(ctx, prefix, q, served)
				if err != nil {
					return nil, err
				}
				break
			}
		}
		var objs []runtime.Object
		objs, rv = h.cache.snapshot(prefix, nil)
		items = make([]runtime.Object, 0, len(objs))
		for _, o := range objs {
			so, ok, err := served(o)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			if ok {
				items = append(items, so)
			}
		}
	}
	list := h.r.NewList()
	if err := meta.SetList(list, items); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	lm.SetResourceVersion(strconv.FormatInt(rv, 10))
	lm.SetContinue(next)
	list.GetObjectKind().SetGroupVersionKind(h.r.GVK.GroupVersion().WithKind(h.r.GVK.Kind + "List"))
	return list, nil
}

func (h *resourceHandler) listFromStore(ctx context.Context, prefix string, q queryParams,
	served func(runtime.Object) (runtime.Object, bool, error)) ([]runtime.Object, int64, string, error) {
	start := ""
	var rev int64
	if q.continueToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.continueToken)
		if err != nil {
			return nil, 0, "", apierrors.NewBadRequest("continue key is not valid: " + err.Error())
		}
		var tok continueToken
		if err := json.Unmarshal(raw, &tok); err != nil || tok.ResourceVersion <= 0 {
			return nil, 0, "", apierrors.NewBadRequest("continue key is not valid")
		}
		if q.resourceVersion != "" && q.resourceVersion != "0" {
			return nil, 0, "", apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
		}
		start = prefix + tok.StartKey
		rev = tok.ResourceVersion
	} else if q.resourceVersion != "" && q.resourceVersionMatch == "Exact" {
		n, err := strconv.ParseInt(q.resourceVersion, 10, 64)
		if err != nil {
			return nil, 0, "", apierrors.NewBadRequest("invalid resourceVersion")
		}
		rev = n
	}
	var items []runtime.Object
	for {
		batch := q.limit
		if batch <= 0 {
			batch = 0
		} else {
			batch = batch - int64(len(items)) + 1
		}
		kvs, readRev, more, err := h.s.store.List(ctx, prefix, start, batch, rev)
		if errors.Is(err, store.ErrCompacted) && q.continueToken == "" {
			return nil, 0, "", apierrors.NewResourceExpired(fmt.Sprintf("The resourceVersion for the provided list is too old: %d", rev))
		}
		if errors.Is(err, store.ErrCompacted) {
			return nil, 0, "", apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
		}
		if err != nil {
			return nil, 0, "", apierrors.NewInternalError(err)
		}
		if rev == 0 {
			rev = readRev
		}
		for i, kv := range kvs {
			if q.limit > 0 && int64(len(items)) == q.limit {
				// the page is full and kv is the first of the next page
				tok, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: rev,
					StartKey: strings.TrimPrefix(kv.Key, prefix)})
				_ = i
				return items, rev, base64.RawURLEncoding.EncodeToString(tok), nil
			}
			obj, err := h.s.decodeStored(h.storageGR, kv)
			if err != nil {
				return nil, 0, "", apierrors.NewInternalError(err)
			}
			so, ok, err := served(obj)
			if err != nil {
				return nil, 0, "", apierrors.NewInternalError(err)
			}
			if h.r.Storage != nil {
				registry.Meta(so).SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
			}
			if ok {
				items = append(items, so)
			}
		}
		if !more || len(kvs) == 0 {
			return items, rev, "", nil
		}
		start = kvs[len(kvs)-1].Key + "\x00"
	}
}

// --- writes ---

// decodeBody reads and decodes a request body into the resource's type.
func (h *resourceHandler) decodeBody(r *http.Request, q queryParams, into runtime.Object, gvk schema.GroupVersionKind) (runtime.Object, []string, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	return h.s.decodeObject(body, r.Header.Get("Content-Type"), q.fieldValidation, into, gvk)
}

func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", maxBodyBytes))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, apierrors.NewBadRequest("cannot read request body: " + err.Error())
	}
	if len(body) > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", maxBodyBytes))
	}
	return body, nil
}

func (h *resourceHandler) qualifiedKind() schema.GroupKind { return h.r.GVK.GroupKind() }

func (h *resourceHandler) invalid(name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(h.qualifiedKind(), name, errs)
}

// validateMeta checks object metadata as upstream's ValidateObjectMeta does.
func (h *resourceHandler) validateMeta(obj runtime.Object) field.ErrorList {
	m := registry.Meta(obj)
	nameFn := apivalidation.NameIsDNSSubdomain
	if h.gr.Resource == "namespaces" || h.gr.Resource == "services" {
		nameFn = apivalidation.NameIsDNSLabel
	}
	if h.gr.Resource == "namespaces" {
		nameFn = apivalidation.ValidateNamespaceName
	}
	if h.gr.Group == "rbac.authorization.k8s.io" {
		nameFn = func(name string, prefix bool) []string {
			if strings.ContainsAny(name, "/%") || name == "." || name == ".." {
				return []string{`may not contain '/' or '%' or be '.' or '..'`}
			}
			return nil
		}
	}
	return apivalidation.ValidateObjectMetaAccessor(m, h.r.Namespaced, nameFn, field.NewPath("metadata"))
}

func (h *resourceHandler) create(ctx context.Context, r *http.Request, ri requestInfo, q queryParams) (runtime.Object, []string, error) {
	obj, warnings, err := h.decodeBody(r, q, h.r.New(), h.r.GVK)
	if err != nil {
		return nil, nil, err
	}
	m := registry.Meta(obj)
	if h.r.Namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(ri.namespace)
		} else if m.GetNamespace() != ri.namespace {
			return nil, nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
	} else {
		m.SetNamespace("")
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(generateName(m.GetGenerateName()))
	}
	if m.GetName() == "" {
		return nil, nil, h.invalid("", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if h.r.Namespaced {
		if err := h.s.checkNamespace(ri.namespace, h.gr, m.GetName()); err != nil {
			return nil, nil, err
		}
	}
	prepareCreateMeta(m, h.hasSpec)
	// Strategies clear status on create where upstream does (nodes keep
	// theirs: a kubelet registers with its status).
	h.r.Strategy.Default(obj)
	h.r.Strategy.PrepareForCreate(obj)
	if rs, ok := h.r.Strategy.(registry.RequesterStrategy); ok {
		rs.SetRequester(obj, requester(ctx))
	}
	if h.gr == podsGR {
		if err := h.s.admitPodPriority(ctx, obj); err != nil {
			return nil, nil, err
		}
		if err := h.s.admitPodServiceAccount(ctx, obj); err != nil {
			return nil, nil, err
		}
	}
	errs := h.validateMeta(obj)
	errs = append(errs, h.r.Strategy.ValidateCreate(obj)...)
	if len(errs) > 0 {
		return nil, nil, h.invalid(m.GetName(), errs)
	}
	if q.dryRun {
		if h.gr == servicesGR {
			err = h.previewService(ctx, nil, obj)
		}
		return obj, warnings, err
	}
	rev, err := h.write(ctx, store.OpCreate, h.key(m.GetNamespace(), m.GetName()), 0, nil, obj)
	if errors.Is(err, store.ErrExists) {
		return nil, nil, apierrors.NewAlreadyExists(h.gr, m.GetName())
	}
	if err != nil {
		return nil, nil, h.storeErr(err, m.GetName())
	}
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	return obj, warnings, nil
}

func prepareCreateMeta(m metav1.Object, hasSpec bool) {
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.Now())
	m.SetResourceVersion("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetSelfLink("")
	m.SetManagedFields(nil)
	if hasSpec {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
}

func generateName(base string) string {
	const maxName = 63
	const randLen = 5
	if len(base) > maxName-randLen {
		base = base[:maxName-randLen]
	}
	return base + utilrand.String(randLen)
}

// copyField copies the named struct field from src to dst.
func copyField(dst, src runtime.Object, name string) {
	d := reflect.ValueOf(dst).Elem().FieldByName(name)
	s := reflect.ValueOf(src).Elem().FieldByName(name)
	if d.IsValid() && s.IsValid() && d.CanSet() {
		d.Set(s)
	}
}

func fieldEqual(a, b runtime.Object, name string) bool {
	fa := reflect.ValueOf(a).Elem().FieldByName(name)
	fb := reflect.ValueOf(b).Elem().FieldByName(name)
	if !fa.IsValid() || !fb.IsValid() {
		return true
	}
	return reflect.DeepEqual(fa.Interface(), fb.Interface())
}

// updateFunc computes a new object from the current one. The current
// object is a private copy that may be modified and returned.
type updateFunc func(cur runtime.Object) (runtime.Object, error)

// errNoChange tells guaranteedUpdate that nothing needs writing.
var errNoChange = errors.New("no change")

// guaranteedUpdate reads the object from etcd, applies fn and writes the
// result with compare-and-swap, retrying on a conflict when the caller
// gave no resourceVersion precondition (fn returns a Conflict itself when
// the new object names a stale version).
func (h *resourceHandler) guaranteedUpdate(ctx context.Context, ns, name string, dryRun bool, fn updateFunc) (runtime.Object, error) {
	key := h.key(ns, name)
	for attempt := 0; ; attempt++ {
		kv, err := h.s.store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, h.notFound(name)
		}
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		cur, err := h.fromStore(kv)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if h.r.Storage == nil {
			cur = cur.DeepCopyObject()
		}
		old := cur.DeepCopyObject()
		obj, err := fn(cur)
		if errors.Is(err, errNoChange) {
			return old, nil
		}
		if err != nil {
			return nil, err
		}
		if dryRun {
			if h.gr == servicesGR {
				err = h.previewService(ctx, old, obj)
			}
			return obj, err
		}
		m := registry.Meta(obj)
		if m.GetDeletionTimestamp() != nil && len(m.GetFinalizers()) == 0 &&
			(m.GetDeletionGracePeriodSeconds() == nil || *m.GetDeletionGracePeriodSeconds() == 0) {
			// the last finalizer is gone: the object goes
			rev, err := h.write(ctx, store.OpDelete, key, kv.ModRevision, old, nil)
			if errors.Is(err, store.ErrConflict) && attempt < 100 {
				continue
			}
			if err != nil {
				return nil, h.storeErr(err, name)
			}
			m.SetResourceVersion(strconv.FormatInt(rev, 10))
			return obj, nil
		}
		if reflect.DeepEqual(old, obj) {
			return obj, nil
		}
		rev, err := h.write(ctx, store.OpUpdate, key, kv.ModRevision, old, obj)
		if errors.Is(err, store.ErrConflict) && attempt < 100 {
			continue
		}
		if err != nil {
			return nil, h.storeErr(err, name)
		}
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
		return obj, nil
	}
}

func (h *resourceHandler) storeErr(err error, name string) error {
	var status apierrors.APIStatus
	switch {
	case errors.As(err, &status):
		return err
	case errors.Is(err, store.ErrNotFound):
		return h.notFound(name)
	case errors.Is(err, store.ErrConflict):
		return h.conflict(name)
	}
	return apierrors.NewInternalError(err)
}

func (h *resourceHandler) conflict(name string) error {
	return apierrors.NewConflict(h.gr, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// mergeUpdate applies the rules every update of the main resource or the
// status follows: immutable metadata, status/spec separation, the
// resourceVersion precondition, generation, defaults and validation.
func (h *resourceHandler) mergeUpdate(obj, cur runtime.Object, sub string) (runtime.Object, error) {
	m, cm := registry.Meta(obj), registry.Meta(cur)
	if m.GetName() != cm.GetName() {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), cm.GetName()))
	}
	if h.r.Namespaced && m.GetNamespace() != "" && m.GetNamespace() != cm.GetNamespace() {
		return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
		return nil, h.conflict(cm.GetName())
	}
	if uid := m.GetUID(); uid != "" && uid != cm.GetUID() {
		return nil, apierrors.NewConflict(h.gr, cm.GetName(), fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, cm.GetUID())) //nolint:staticcheck // upstream wording, which clients print
	}
	m.SetNamespace(cm.GetNamespace())
	m.SetUID(cm.GetUID())
	m.SetCreationTimestamp(cm.GetCreationTimestamp())
	m.SetDeletionTimestamp(cm.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(cm.GetDeletionGracePeriodSeconds())
	m.SetGeneration(cm.GetGeneration())
	m.SetResourceVersion(cm.GetResourceVersion())
	m.SetSelfLink("")
	m.SetManagedFields(nil)
	if cm.GetDeletionTimestamp() != nil && len(newFinalizers(m.GetFinalizers(), cm.GetFinalizers())) > 0 {
		return nil, h.invalid(cm.GetName(), field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"),
			"no new finalizers can be added if the object is being deleted")})
	}
	var errs field.ErrorList
	switch sub {
	case "status":
		if h.hasSpec {
			copyField(obj, cur, "Spec")
		}
		// status writes do not change labels' meaning; keep owner refs
		m.SetOwnerReferences(cm.GetOwnerReferences())
		if ss, ok := h.r.Strategy.(registry.SubresourceStrategy); ok {
			ss.PrepareForSubresourceUpdate(sub, obj, cur)
		}
		h.r.Strategy.Default(obj)
		errs = h.validateMeta(obj)
		errs = append(errs, h.r.Strategy.ValidateStatusUpdate(obj, cur)...)
	case "":
		if h.r.Status && h.hasStatus {
			copyField(obj, cur, "Status")
		}
		h.r.Strategy.Default(obj)
		h.r.Strategy.PrepareForUpdate(obj, cur)
		if h.hasSpec && !fieldEqual(obj, cur, "Spec") {
			m.SetGeneration(cm.GetGeneration() + 1)
		}
		errs = h.validateMeta(obj)
		errs = append(errs, h.r.Strategy.ValidateUpdate(obj, cur)...)
	default:
		// a whole-object subresource such as certificatesigningrequests/approval
		ss, ok := h.r.Strategy.(registry.SubresourceStrategy)
		if !ok {
			return nil, apierrors.NewInternalError(fmt.Errorf("%s has no strategy for subresource %q", h.gr, sub))
		}
		m.SetOwnerReferences(cm.GetOwnerReferences())
		ss.PrepareForSubresourceUpdate(sub, obj, cur)
		h.r.Strategy.Default(obj)
		errs = h.validateMeta(obj)
		errs = append(errs, ss.ValidateSubresourceUpdate(sub, obj, cur)...)
	}
	if len(errs) > 0 {
		return nil, h.invalid(cm.GetName(), errs)
	}
	return obj, nil
}

func newFinalizers(now, before []string) []string {
	had := map[string]bool{}
	for _, f := range before {
		had[f] = true
	}
	var out []string
	for _, f := range now {
		if !had[f] {
			out = append(out, f)
		}
	}
	return out
}

func (h *resourceHandler) update(ctx context.Context, r *http.Request, ri requestInfo, q queryParams) (runtime.Object, []string, error) {
	obj, warnings, err := h.decodeBody(r, q, h.r.New(), h.r.GVK)
	if err != nil {
		return nil, nil, err
	}
	if n := registry.Meta(obj).GetName(); n != ri.name {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", n, ri.name))
	}
	out, err := h.guaranteedUpdate(ctx, ri.namespace, ri.name, q.dryRun, func(cur runtime.Object) (runtime.Object, error) {
		return h.mergeUpdate(obj.DeepCopyObject(), cur, ri.subresource)
	})
	return out, warnings, err
}

func (h *resourceHandler) patch(ctx context.Context, r *http.Request, ri requestInfo, q queryParams) (runtime.Object, []string, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	pt := types.PatchType(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	var warnings []string
	out, err := h.guaranteedUpdate(ctx, ri.namespace, ri.name, q.dryRun, func(cur runtime.Object) (runtime.Object, error) {
		curJSON, err := runtime.Encode(h.s.codecs.json, cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		patched, err := applyPatch(pt, curJSON, body, h.r.New())
		if err != nil {
			return nil, err
		}
		obj, w, err := h.s.decodeObject(patched, mediaJSON, q.fieldValidation, h.r.New(), h.r.GVK)
		if err != nil {
			return nil, err
		}
		warnings = w
		// A patch that does not name a resourceVersion applies to whatever
		// is current.
		var probe struct {
			Metadata struct {
				ResourceVersion *string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(body, &probe)
		if probe.Metadata.ResourceVersion == nil || pt == types.JSONPatchType {
			registry.Meta(obj).SetResourceVersion(registry.Meta(cur).GetResourceVersion())
		}
		return h.mergeUpdate(obj, cur, ri.subresource)
	})
	return out, warnings, err
}

// --- deletes ---

func (h *resourceHandler) deleteOptions(r *http.Request, q queryParams) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec, _, err := h.s.codecs.decoderFor(r.Header.Get("Content-Type"), false)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		def := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
		if _, _, err := dec.Decode(body, &def, opts); err != nil {
			return nil, apierrors.NewBadRequest("invalid DeleteOptions: " + err.Error())
		}
	}
	if v := q.raw.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid gracePeriodSeconds")
		}
		opts.GracePeriodSeconds = &n
	}
	if v := q.raw.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.raw.Get("orphanDependents"); v != "" {
		b := v == "true"
		opts.OrphanDependents = &b
	}
	if q.dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		var one int64 = 1
		opts.GracePeriodSeconds = &one
	}
	return opts, nil
}

// delete deletes one object and reports whether it is gone (false while
// finalizers or a grace period keep it).
func (h *resourceHandler) delete(ctx context.Context, ns, name string, opts *metav1.DeleteOptions) (runtime.Object, bool, error) {
	dryRun := len(opts.DryRun) > 0
	key := h.key(ns, name)
	for attempt := 0; attempt < 100; attempt++ {
		kv, err := h.s.store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, false, h.notFound(name)
		}
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		cur, err := h.fromStore(kv)
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		cur = cur.DeepCopyObject()
		m := registry.Meta(cur)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, false, apierrors.NewConflict(h.gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID())) //nolint:staticcheck // upstream wording, which clients print
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(h.gr, name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion())) //nolint:staticcheck // upstream wording, which clients print
			}
		}
		grace := h.gracePeriod(cur, opts)
		finalizers := deletionFinalizers(m.GetFinalizers(), opts)
		if grace == 0 && len(finalizers) == 0 && !h.isNamespaceWithFinalizers(cur) {
			if dryRun {
				return cur, true, nil
			}
			rev, err := h.write(ctx, store.OpDelete, key, kv.ModRevision, cur, nil)
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			if err != nil {
				return nil, false, h.storeErr(err, name)
			}
			m.SetResourceVersion(strconv.FormatInt(rev, 10))
			return cur, true, nil
		}
		// graceful or finalized deletion: mark the object
		now := metav1.Now()
		changed := false
		if dt := m.GetDeletionTimestamp(); dt == nil {
			t := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
			m.SetDeletionTimestamp(&t)
			m.SetDeletionGracePeriodSeconds(&grace)
			if h.hasSpec {
				m.SetGeneration(m.GetGeneration() + 1)
			}
			changed = true
		} else if old := m.GetDeletionGracePeriodSeconds(); old != nil && grace < *old {
			// a shorter grace period may replace a longer one
			t := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
			m.SetDeletionTimestamp(&t)
			m.SetDeletionGracePeriodSeconds(&grace)
			changed = true
		}
		if !reflect.DeepEqual(finalizers, m.GetFinalizers()) {
			m.SetFinalizers(finalizers)
			changed = true
		}
		if ns, ok := cur.(interface{ GetObjectMeta() metav1.Object }); ok && h.gr.Resource == "namespaces" {
			_ = ns
			setNamespaceTerminating(cur)
			changed = true
		}
		if !changed || dryRun {
			return cur, false, nil
		}
		data, err := h.encodeForStore(cur)
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		rev, _, err := h.s.store.Update(ctx, key, data, kv.ModRevision)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, false, h.storeErr(err, name)
		}
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
		return cur, false, nil
	}
	return nil, false, h.conflict(name)
}

// gracePeriod is the deletion grace period: only pods have one.
func (h *resourceHandler) gracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) int64 {
	pod, ok := podOf(obj)
	if !ok || h.gr.Resource != "pods" || h.gr.Group != "" {
		return 0
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == "Succeeded" || pod.Status.Phase == "Failed" {
		return 0
	}
	if opts.GracePeriodSeconds != nil {
		return *opts.GracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return 30
}

// deletionFinalizers adds the garbage collector's finalizers a delete asks for.
func deletionFinalizers(cur []string, opts *metav1.DeleteOptions) []string {
	out := append([]string(nil), cur...)
	has := func(f string) bool {
		for _, x := range out {
			if x == f {
				return true
			}
		}
		return false
	}
	policy := metav1.DeletePropagationBackground
	if opts.OrphanDependents != nil && *opts.OrphanDependents {
		policy = metav1.DeletePropagationOrphan
	}
	if opts.PropagationPolicy != nil {
		policy = *opts.PropagationPolicy
	}
	switch policy {
	case metav1.DeletePropagationOrphan:
		if !has(metav1.FinalizerOrphanDependents) {
			out = append(out, metav1.FinalizerOrphanDependents)
		}
	case metav1.DeletePropagationForeground:
		if !has(metav1.FinalizerDeleteDependents) {
			out = append(out, metav1.FinalizerDeleteDependents)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (h *resourceHandler) deleteCollection(ctx context.Context, ri requestInfo, q queryParams, opts *metav1.DeleteOptions) (runtime.Object, error) {
	q.limit, q.continueToken = 0, ""
	lst, err := h.list(ctx, ri, q)
	if err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(lst)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out := make([]runtime.Object, 0, len(items))
	for _, it := range items {
		m := registry.Meta(it)
		o, _, err := h.delete(ctx, m.GetNamespace(), m.GetName(), opts)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	if err := meta.SetList(lst, out); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return lst, nil
}

// requester returns the request's authenticated user, for strategies that
// record who creates an object.
func requester(ctx context.Context) registry.UserInfo {
	u, _ := ctx.Value(userKey).(user)
	var extra map[string][]string
	for k, v := range u.extra {
		if extra == nil {
			extra = map[string][]string{}
		}
		extra[k] = slices.Clone(v)
	}
	return registry.UserInfo{Name: u.name, UID: u.uid, Groups: slices.Clone(u.groups), Extra: extra}
}
