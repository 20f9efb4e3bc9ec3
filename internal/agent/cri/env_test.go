package cri

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeRefs holds ConfigMaps and Secrets by name (in any namespace), and
// the service variables of every namespace.
type fakeRefs struct {
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
	svcEnv  map[string]string
}

func (f fakeRefs) ServiceEnv(context.Context, string, bool) (map[string]string, error) {
	return f.svcEnv, nil
}

func (f fakeRefs) ConfigMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f fakeRefs) Secret(_ context.Context, _, name string) (*corev1.Secret, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func TestContainerEnvRefs(t *testing.T) {
	refs := fakeRefs{
		cms: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"mode": "fast", "1bad": "x", "level": "3"},
			BinaryData: map[string][]byte{"bin": []byte("raw")}}},
		secrets: map[string]*corev1.Secret{"creds": {Data: map[string][]byte{"password": []byte("s3cret")}}},
	}
	yes := true
	cmRef := func(name, key string, opt bool) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &opt}}
	}
	secRef := func(name, key string, opt bool) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &opt}}
	}
	tests := []struct {
		name    string
		c       corev1.Container
		want    string // KEY=VALUE lines in order
		wantErr string
	}{
		{name: "configMapKeyRef and secretKeyRef", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "MODE", ValueFrom: cmRef("cfg", "mode", false)},
			{Name: "BIN", ValueFrom: cmRef("cfg", "bin", false)},
			{Name: "PW", ValueFrom: secRef("creds", "password", false)},
			{Name: "URL", Value: "db://$(PW)@host/$(MODE)"},
		}}, want: "MODE=fast BIN=raw PW=s3cret URL=db://s3cret@host/fast"},
		{name: "optional references that find nothing are skipped", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: cmRef("none", "k", true)},
			{Name: "B", ValueFrom: cmRef("cfg", "nokey", true)},
			{Name: "C", ValueFrom: secRef("none", "k", true)},
			{Name: "D", Value: "d"},
		}}, want: "D=d"},
		{name: "envFrom with prefix, invalid names skipped, env overrides", c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
				{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "none"}, Optional: &yes}},
			},
			Env: []corev1.EnvVar{{Name: "mode", Value: "slow"}},
		}, want: "level=3 mode=slow S_password=s3cret"},
		{name: "missing configmap", c: corev1.Container{Env: []corev1.EnvVar{{Name: "A", ValueFrom: cmRef("none", "k", false)}}}, wantErr: `configmap "none"`},
		{name: "missing key", c: corev1.Container{Env: []corev1.EnvVar{{Name: "A", ValueFrom: secRef("creds", "user", false)}}}, wantErr: "couldn't find key user in Secret"},
		{name: "missing envFrom secret", c: corev1.Container{EnvFrom: []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "none"}}}}}, wantErr: `envFrom secret "none"`},
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Name = "c"
			env, err := containerEnv(context.Background(), refs, p, &tt.c, nil, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range env {
				got = append(got, kv.Key+"="+string(kv.Value))
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("env %q, want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
}
