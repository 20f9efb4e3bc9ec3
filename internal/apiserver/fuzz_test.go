package apiserver

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// FuzzDecodeRequest feeds arbitrary request bodies through the decoders
// the API server uses for create/update bodies and patches: none may panic,
// and a successful decode must yield the endpoint's kind.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}`), uint8(0))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nbogus: 1\n"), uint8(1))
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment"}`), uint8(2))
	f.Add([]byte(`[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`), uint8(3))
	f.Add([]byte(`{"metadata":{"labels":{"a":null}}}`), uint8(4))
	f.Add([]byte(`{"spec":{"containers":[{"name":"c","$patch":"delete"}]}}`), uint8(5))
	f.Add([]byte("k8s\x00\x0a\x02v1"), uint8(6))
	s, err := newScheme()
	if err != nil {
		f.Fatal(err)
	}
	srv := &Server{codecs: newCodecs(s)}
	podGVK := corev1.SchemeGroupVersion.WithKind("Pod")
	cur := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"x":"y"}},"spec":{"containers":[{"name":"c","image":"i"}]}}`)
	f.Fuzz(func(t *testing.T, body []byte, mode uint8) {
		contentTypes := []string{mediaJSON, mediaYAML, mediaProtobuf}
		directives := []string{metav1.FieldValidationStrict, metav1.FieldValidationWarn, metav1.FieldValidationIgnore}
		switch mode % 6 {
		case 0, 1, 2:
			obj, _, err := srv.decodeObject(body, contentTypes[int(mode)%3], directives[int(mode/3)%3], &corev1.Pod{}, podGVK)
			if err == nil {
				if _, ok := obj.(*corev1.Pod); !ok {
					t.Fatalf("decoded %T, want *v1.Pod", obj)
				}
			}
			_, _, _ = srv.decodeObject(body, mediaJSON, metav1.FieldValidationStrict, &appsv1.Deployment{}, appsv1.SchemeGroupVersion.WithKind("Deployment"))
		case 3:
			_, _ = applyPatch(types.JSONPatchType, cur, body, &corev1.Pod{})
		case 4:
			_, _ = applyPatch(types.MergePatchType, cur, body, &corev1.Pod{})
		case 5:
			_, _ = applyPatch(types.StrategicMergePatchType, cur, body, &corev1.Pod{})
		}
	})
}
