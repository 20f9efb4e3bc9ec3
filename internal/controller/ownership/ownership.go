// Package ownership finds the objects a controller owns through controller
// owner references: an informer index by controller UID, and claiming,
// which adopts matching orphans and releases owned objects that no longer
// match the controller's selector.
package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// IndexName is the informer index from controller UID to owned objects;
// objects without a controller are indexed under OrphanKey(namespace).
const IndexName = "skiff.sh/controller-uid"

// OrphanKey is the index value of objects in namespace without a controller.
func OrphanKey(namespace string) string { return "orphan/" + namespace }

// AddIndex adds IndexName to an informer that has not started. Adding it
// twice (two controllers sharing an informer) is fine.
func AddIndex(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[IndexName]; ok {
		return nil
	}
	err := inf.AddIndexers(cache.Indexers{IndexName: indexFunc})
	if err != nil {
		if _, ok := inf.GetIndexer().GetIndexers()[IndexName]; ok {
			return nil
		}
		return fmt.Errorf("add controller index: %w", err)
	}
	return nil
}

func indexFunc(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return []string{OrphanKey(m.GetNamespace())}, nil
}

// Candidates returns the objects owner controls and the orphans in its
// namespace: everything a claim may keep or adopt.
func Candidates(indexer cache.Indexer, owner metav1.Object) ([]any, error) {
	owned, err := indexer.ByIndex(IndexName, string(owner.GetUID()))
	if err != nil {
		return nil, fmt.Errorf("owned objects of %s: %w", owner.GetName(), err)
	}
	orphans, err := indexer.ByIndex(IndexName, OrphanKey(owner.GetNamespace()))
	if err != nil {
		return nil, fmt.Errorf("orphans in %s: %w", owner.GetNamespace(), err)
	}
	return append(owned, orphans...), nil
}

// Patcher sends a patch to one object of the claimed kind.
type Patcher func(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) error

// Claimer claims objects for one controlling owner.
type Claimer struct {
	// Owner is the controlling object.
	Owner metav1.Object
	// Kind is the owner's group, version and kind.
	Kind schema.GroupVersionKind
	// Selector chooses the objects the owner wants.
	Selector labels.Selector
	// Recheck reads the owner again, uncached, and fails if it is being
	// deleted or was replaced; it guards the first adoption.
	Recheck func(ctx context.Context) error
	// Patch writes adoptions and releases.
	Patch Patcher

	once     sync.Once
	recheckE error
}

// ControllerRef is the owner reference Claimer adopts with.
func ControllerRef(owner metav1.Object, kind schema.GroupVersionKind) metav1.OwnerReference {
	return *metav1.NewControllerRef(owner, kind)
}

// Claim returns the objects of objs the owner controls after adopting
// orphans that match the selector and releasing owned objects that do not.
// Objects controlled by others are skipped. A failed adoption or release
// is reported but does not stop the other objects from being claimed.
func Claim[T metav1.Object](ctx context.Context, c *Claimer, objs []T) ([]T, error) {
	var out []T
	var errs []error
	deleting := c.Owner.GetDeletionTimestamp() != nil
	for _, o := range objs {
		ref := metav1.GetControllerOfNoCopy(o)
		matches := c.Selector.Matches(labels.Set(o.GetLabels()))
		switch {
		case ref != nil && ref.UID != c.Owner.GetUID():
			// someone else's
		case ref != nil && matches:
			out = append(out, o)
		case ref != nil:
			if deleting {
				continue
			}
			if err := c.release(ctx, o); err != nil {
				errs = append(errs, err)
			}
		case !matches || deleting || o.GetDeletionTimestamp() != nil:
			// an orphan we do not want, or cannot take now
		default:
			if err := c.adopt(ctx, o); err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, o)
		}
	}
	return out, errors.Join(errs...)
}

type patchRef struct {
	APIVersion         string    `json:"apiVersion,omitempty"`
	Kind               string    `json:"kind,omitempty"`
	Name               string    `json:"name,omitempty"`
	UID                types.UID `json:"uid"`
	Controller         *bool     `json:"controller,omitempty"`
	BlockOwnerDeletion *bool     `json:"blockOwnerDeletion,omitempty"`
	Patch              string    `json:"$patch,omitempty"`
}

type patchMeta struct {
	Metadata struct {
		OwnerReferences []patchRef `json:"ownerReferences"`
		UID             types.UID  `json:"uid"`
	} `json:"metadata"`
}

func (c *Claimer) adopt(ctx context.Context, o metav1.Object) error {
	c.once.Do(func() {
		if c.Recheck != nil {
			c.recheckE = c.Recheck(ctx)
		}
	})
	if c.recheckE != nil {
		return fmt.Errorf("adopt %s: %w", o.GetName(), c.recheckE)
	}
	ref := ControllerRef(c.Owner, c.Kind)
	var p patchMeta
	p.Metadata.UID = o.GetUID()
	p.Metadata.OwnerReferences = []patchRef{{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID,
		Controller: ref.Controller, BlockOwnerDeletion: ref.BlockOwnerDeletion}}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", o.GetName(), err)
	}
	if err := c.Patch(ctx, o.GetNamespace(), o.GetName(), types.StrategicMergePatchType, data); err != nil {
		return fmt.Errorf("adopt %s: %w", o.GetName(), err)
	}
	return nil
}

func (c *Claimer) release(ctx context.Context, o metav1.Object) error {
	var p patchMeta
	p.Metadata.UID = o.GetUID()
	p.Metadata.OwnerReferences = []patchRef{{UID: c.Owner.GetUID(), Patch: "delete"}}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("release %s: %w", o.GetName(), err)
	}
	err = c.Patch(ctx, o.GetNamespace(), o.GetName(), types.StrategicMergePatchType, data)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
		return fmt.Errorf("release %s: %w", o.GetName(), err)
	}
	return nil
}

// RecheckOwner builds a Claimer.Recheck from an uncached read of the owner.
func RecheckOwner(owner metav1.Object, get func(ctx context.Context) (metav1.Object, error)) func(context.Context) error {
	return func(ctx context.Context) error {
		fresh, err := get(ctx)
		if err != nil {
			return fmt.Errorf("recheck %s: %w", owner.GetName(), err)
		}
		if fresh.GetUID() != owner.GetUID() {
			return fmt.Errorf("original %s is gone: got uid %s, wanted %s", owner.GetName(), fresh.GetUID(), owner.GetUID())
		}
		if fresh.GetDeletionTimestamp() != nil {
			return fmt.Errorf("%s has just been deleted at %v", owner.GetName(), fresh.GetDeletionTimestamp())
		}
		return nil
	}
}
