// Package history keeps a controller's ControllerRevisions: snapshots of
// a DaemonSet's or StatefulSet's pod template, named and labelled by a hash
// of their data, numbered in the order they were current.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/ownership"
)

// HashLabel labels a revision, and the pods made from it, with the hash of
// the revision's data.
const HashLabel = appsv1.ControllerRevisionHashLabelKey

// maxPrefix keeps a revision name within the 253 characters of a name.
const maxPrefix = 223

// TemplatePatch is the data of a revision of template, as upstream stores
// it: a strategic merge patch replacing spec.template, which kubectl
// rollout undo applies to the owner.
func TemplatePatch(template *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(template)
	if err != nil {
		return nil, fmt.Errorf("encode template: %w", err)
	}
	var t map[string]any
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("decode template: %w", err)
	}
	t["$patch"] = "replace"
	data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": t}})
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return data, nil
}

// Template is the pod template a revision made by TemplatePatch holds.
func Template(r *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var p struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(r.Data.Raw, &p); err != nil {
		return nil, fmt.Errorf("decode revision %s: %w", r.Name, err)
	}
	return &p.Spec.Template, nil
}

// Hash is the FNV-32a hash of data and of the collision count, encoded as
// upstream encodes it.
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		h.Write([]byte(strconv.FormatInt(int64(*collisionCount), 10)))
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Name is the name of owner's revision with hash.
func Name(owner, hash string) string {
	if len(owner) > maxPrefix {
		owner = owner[:maxPrefix]
	}
	return owner + "-" + hash
}

// New is owner's revision of data with number revision; it carries the
// template's labels plus HashLabel and a controller reference to owner.
func New(owner metav1.Object, kind schema.GroupVersionKind, templateLabels map[string]string, data []byte, revision int64, collisionCount *int32) *appsv1.ControllerRevision {
	hash := Hash(data, collisionCount)
	lbls := make(map[string]string, len(templateLabels)+1)
	for k, v := range templateLabels {
		lbls[k] = v
	}
	lbls[HashLabel] = hash
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name: Name(owner.GetName(), hash), Namespace: owner.GetNamespace(), Labels: lbls,
			OwnerReferences: []metav1.OwnerReference{ownership.ControllerRef(owner, kind)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}
}

// Equal reports whether two revisions hold the same data, compared as
// JSON values (the API server may re-encode what it stores).
func Equal(a, b *appsv1.ControllerRevision) bool {
	if string(a.Data.Raw) == string(b.Data.Raw) {
		return true
	}
	var x, y any
	if json.Unmarshal(a.Data.Raw, &x) != nil || json.Unmarshal(b.Data.Raw, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// Sort orders revisions by number, then by creation, then by name.
func Sort(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// Next is the number after the highest of revs.
func Next(revs []*appsv1.ControllerRevision) int64 {
	var m int64
	for _, r := range revs {
		m = max(m, r.Revision)
	}
	return m + 1
}

// Store reads and writes one owner kind's revisions.
type Store struct {
	// Client writes revisions.
	Client kubernetes.Interface
	// Indexer is the revision informer's indexer, with ownership.IndexName.
	Indexer cache.Indexer
	// Kind is the owners' kind.
	Kind schema.GroupVersionKind
}

// Claim returns the revisions owner controls, adopting orphans its
// selector matches and releasing those it no longer matches, sorted; it
// sets claimer's Patch to patch revisions.
func (s *Store) Claim(ctx context.Context, owner metav1.Object, claimer *ownership.Claimer) ([]*appsv1.ControllerRevision, error) {
	cands, err := ownership.Candidates(s.Indexer, owner)
	if err != nil {
		return nil, err
	}
	var revs []*appsv1.ControllerRevision
	for _, o := range cands {
		if r, ok := o.(*appsv1.ControllerRevision); ok {
			revs = append(revs, r)
		}
	}
	claimer.Patch = func(ctx context.Context, ns, name string, pt types.PatchType, data []byte) error {
		_, err := s.Client.AppsV1().ControllerRevisions(ns).Patch(ctx, name, pt, data, metav1.PatchOptions{})
		return err
	}
	out, err := ownership.Claim(ctx, claimer, revs)
	Sort(out)
	return out, err
}

// ErrCollision reports that a different revision holds the name of the one
// being created; the owner's collision count must go up and the hash change.
var ErrCollision = errors.New("controller revision hash collision")

// Create writes rev; when a revision of the same name exists it returns
// that one if it holds the same data and belongs to the same owner, and
// ErrCollision otherwise.
func (s *Store) Create(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	created, err := s.Client.AppsV1().ControllerRevisions(rev.Namespace).Create(ctx, rev, metav1.CreateOptions{})
	if err == nil {
		return created, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create controller revision %s: %w", rev.Name, err)
	}
	existing, gerr := s.Client.AppsV1().ControllerRevisions(rev.Namespace).Get(ctx, rev.Name, metav1.GetOptions{})
	if gerr != nil {
		return nil, fmt.Errorf("read controller revision %s: %w", rev.Name, gerr)
	}
	if metav1.IsControlledBy(existing, ownerOf(rev)) && Equal(existing, rev) {
		return existing, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrCollision, rev.Name)
}

// ownerOf is a stand-in for the owner named in rev's controller reference.
func ownerOf(rev *appsv1.ControllerRevision) metav1.Object {
	o := &metav1.ObjectMeta{}
	if ref := metav1.GetControllerOfNoCopy(rev); ref != nil {
		o.UID = ref.UID
	}
	return o
}

// Renumber gives rev the number n.
func (s *Store) Renumber(ctx context.Context, rev *appsv1.ControllerRevision, n int64) (*appsv1.ControllerRevision, error) {
	r := rev.DeepCopy()
	r.Revision = n
	updated, err := s.Client.AppsV1().ControllerRevisions(r.Namespace).Update(ctx, r, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("renumber controller revision %s: %w", r.Name, err)
	}
	return updated, nil
}

// Delete removes rev.
func (s *Store) Delete(ctx context.Context, rev *appsv1.ControllerRevision) error {
	err := s.Client.AppsV1().ControllerRevisions(rev.Namespace).Delete(ctx, rev.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rev.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete controller revision %s: %w", rev.Name, err)
	}
	return nil
}

// Truncate deletes the oldest revisions not in live until at most limit of
// them remain.
func (s *Store) Truncate(ctx context.Context, revs []*appsv1.ControllerRevision, live map[string]bool, limit int32) error {
	var dead []*appsv1.ControllerRevision
	for _, r := range revs {
		if !live[r.Name] {
			dead = append(dead, r)
		}
	}
	Sort(dead)
	var errs []error
	for i := 0; i < len(dead)-int(max(limit, 0)); i++ {
		errs = append(errs, s.Delete(ctx, dead[i]))
	}
	return errors.Join(errs...)
}

// Current finds or creates the revision for data among owner's revs: an
// equal revision is renumbered to the top if it is not there already, a
// new one is created numbered after all others. On a collision it returns
// ErrCollision; the caller raises its collision count and tries again.
func (s *Store) Current(ctx context.Context, owner metav1.Object, templateLabels map[string]string, data []byte, revs []*appsv1.ControllerRevision, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	want := New(owner, s.Kind, templateLabels, data, Next(revs), collisionCount)
	var equal []*appsv1.ControllerRevision
	for _, r := range revs {
		if Equal(r, want) {
			equal = append(equal, r)
		}
	}
	if len(equal) == 0 {
		return s.Create(ctx, want)
	}
	cur := equal[len(equal)-1]
	if len(revs) > 0 && revs[len(revs)-1].Name == cur.Name {
		return cur, nil
	}
	return s.Renumber(ctx, cur, want.Revision)
}
