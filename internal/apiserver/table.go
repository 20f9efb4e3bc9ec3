package apiserver

import (
	"encoding/json"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// transform converts a response object to what the client asked for:
// a Table, PartialObjectMetadata(List), or the object itself.
func (s *Server) transform(h *resourceHandler, obj runtime.Object, enc encoder, includeObject string) (runtime.Object, error) {
	if _, isStatus := obj.(*metav1.Status); isStatus {
		return obj, nil
	}
	switch enc.as {
	case "":
		return obj, nil
	case "Table":
		return s.toTable(h, obj, enc, includeObject)
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		if meta.IsListType(obj) {
			items, err := meta.ExtractList(obj)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			out := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: metaAPIVersion(enc)}}
			if lm, err := meta.ListAccessor(obj); err == nil {
				out.ResourceVersion, out.Continue = lm.GetResourceVersion(), lm.GetContinue()
			}
			for _, it := range items {
				out.Items = append(out.Items, *partial(it, enc))
			}
			return out, nil
		}
		return partial(obj, enc), nil
	}
	return obj, nil
}

func metaAPIVersion(enc encoder) string {
	if enc.asVer == "v1beta1" {
		return "meta.k8s.io/v1beta1"
	}
	return "meta.k8s.io/v1"
}

func partial(obj runtime.Object, enc encoder) *metav1.PartialObjectMetadata {
	m := metaOf(obj)
	om := metav1.ObjectMeta{}
	if a, ok := m.(*metav1.ObjectMeta); ok {
		om = *a
	} else {
		om.Name, om.Namespace, om.UID, om.ResourceVersion = m.GetName(), m.GetNamespace(), m.GetUID(), m.GetResourceVersion()
		om.Labels, om.Annotations, om.OwnerReferences, om.Finalizers = m.GetLabels(), m.GetAnnotations(), m.GetOwnerReferences(), m.GetFinalizers()
		om.CreationTimestamp, om.DeletionTimestamp, om.Generation = m.GetCreationTimestamp(), m.GetDeletionTimestamp(), m.GetGeneration()
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: metaAPIVersion(enc)},
		ObjectMeta: om,
	}
}

func (s *Server) toTable(h *resourceHandler, obj runtime.Object, enc encoder, includeObject string) (runtime.Object, error) {
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: metaAPIVersion(enc)}}
	t.ColumnDefinitions = h.r.Strategy.Columns()
	var items []runtime.Object
	if meta.IsListType(obj) {
		var err error
		items, err = meta.ExtractList(obj)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if lm, err := meta.ListAccessor(obj); err == nil {
			t.ResourceVersion, t.Continue = lm.GetResourceVersion(), lm.GetContinue()
		}
	} else {
		items = []runtime.Object{obj}
		t.ResourceVersion = metaOf(obj).GetResourceVersion()
	}
	now := time.Now()
	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		row := metav1.TableRow{Cells: h.r.Strategy.Row(it, now)}
		var embed runtime.Object
		switch includeObject {
		case "None":
		case "Object":
			embed = it
		default:
			embed = partial(it, enc)
		}
		if embed != nil {
			raw, err := runtime.Encode(enc.enc, embed)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			row.Object = runtime.RawExtension{Raw: raw}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}
