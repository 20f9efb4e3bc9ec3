package apps

import (
	"encoding/json"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// FuzzDeployment decodes arbitrary JSON into a Deployment and runs the
// strategy over it: nothing may panic.
func FuzzDeployment(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":80}]}]}}}}`,
		`{"spec":{"replicas":-1,"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"x%","maxUnavailable":"200%"}}}}`,
		`{"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"Bogus"}]},"template":{"spec":{"volumes":[{"name":"v"}],"containers":[{"volumeMounts":[{"name":"w"}]}]}}}}`,
		`{"spec":{"strategy":{"type":"Recreate","rollingUpdate":{}}},"status":{"collisionCount":-3}}`,
	} {
		f.Add([]byte(s))
	}
	r := Resources()[0]
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &appsv1.Deployment{}
		if err := json.Unmarshal(data, d); err != nil {
			return
		}
		old := d.DeepCopy()
		s := r.Strategy
		s.Default(d)
		s.PrepareForCreate(d)
		_ = s.ValidateCreate(d)
		_ = s.ValidateUpdate(d, old)
		_ = s.ValidateStatusUpdate(d, old)
		if cells, cols := s.Row(d, now), s.Columns(); len(cells) != len(cols) {
			t.Fatalf("%d cells for %d columns", len(cells), len(cols))
		}
		r.Scale.Get(d)
	})
}
