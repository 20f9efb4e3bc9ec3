package apiserver

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

func TestApplyPatch(t *testing.T) {
	cur := `{"metadata":{"name":"p","labels":{"a":"1"}},"spec":{"containers":[{"name":"c","image":"i1"},{"name":"d","image":"j1"}]}}`
	cases := []struct {
		name  string
		pt    types.PatchType
		patch string
		check func(p *corev1.Pod) bool
		code  int32 // expected error code, 0 for success
	}{
		{"json patch", types.JSONPatchType, `[{"op":"replace","path":"/metadata/labels/a","value":"2"}]`,
			func(p *corev1.Pod) bool { return p.Labels["a"] == "2" }, 0},
		{"json patch failing test", types.JSONPatchType, `[{"op":"test","path":"/metadata/labels/a","value":"9"}]`, nil, 422},
		{"json patch malformed", types.JSONPatchType, `{"op":"add"}`, nil, 400},
		{"merge patch replaces lists", types.MergePatchType, `{"spec":{"containers":[{"name":"c","image":"i2"}]}}`,
			func(p *corev1.Pod) bool { return len(p.Spec.Containers) == 1 && p.Spec.Containers[0].Image == "i2" }, 0},
		{"merge patch deletes keys", types.MergePatchType, `{"metadata":{"labels":{"a":null}}}`,
			func(p *corev1.Pod) bool { return len(p.Labels) == 0 }, 0},
		{"strategic merge by name", types.StrategicMergePatchType, `{"spec":{"containers":[{"name":"c","image":"i2"}]}}`,
			func(p *corev1.Pod) bool {
				return len(p.Spec.Containers) == 2 && p.Spec.Containers[0].Image == "i2" && p.Spec.Containers[1].Image == "j1"
			}, 0},
		{"strategic merge yaml", types.StrategicMergePatchType, "metadata:\n  labels:\n    b: \"3\"\n",
			func(p *corev1.Pod) bool { return p.Labels["a"] == "1" && p.Labels["b"] == "3" }, 0},
		{"server-side apply refused", types.ApplyYAMLPatchType, `{}`, nil, 415},
		{"unknown type", types.PatchType("text/plain"), `{}`, nil, 415},
	}
	for _, c := range cases {
		out, err := applyPatch(c.pt, []byte(cur), []byte(c.patch), &corev1.Pod{})
		if c.code != 0 {
			var se apierrors.APIStatus
			if err == nil {
				t.Errorf("%s: no error, want code %d", c.name, c.code)
			} else if !asAPIStatus(err, &se) || se.Status().Code != c.code {
				t.Errorf("%s: error %v, want code %d", c.name, err, c.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var p corev1.Pod
		if err := json.Unmarshal(out, &p); err != nil {
			t.Errorf("%s: result is not a pod: %v", c.name, err)
			continue
		}
		if !c.check(&p) {
			t.Errorf("%s: unexpected result %s", c.name, out)
		}
	}
}

func asAPIStatus(err error, target *apierrors.APIStatus) bool {
	s, ok := err.(apierrors.APIStatus)
	if ok {
		*target = s
	}
	return ok
}

func TestToJSON(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		wantErr        bool
	}{
		{"json passes unchanged", `{"status":{"phase":"Running"}, "b":1}`, `{"status":{"phase":"Running"}, "b":1}`, false},
		{"yaml converted", "status:\n  phase: Running\n", `{"status":{"phase":"Running"}}`, false},
		{"neither", "a: [", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := toJSON([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && string(got) != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
