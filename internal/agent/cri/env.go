package cri

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// refs reads the ConfigMaps and Secrets that containers' env refers to,
// and the service environment variables of a namespace (serviceenv.go).
type refs interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	ServiceEnv(ctx context.Context, namespace string, enableServiceLinks bool) (map[string]string, error)
}

// apiRefs reads them from the API server (services from the runtime's
// informer, see dns.go).
type apiRefs struct {
	client  kubernetes.Interface
	cluster *cluster
}

func (a apiRefs) ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	if a.client == nil {
		return nil, errors.New("the runtime has no API client to read configmaps")
	}
	return a.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (a apiRefs) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	if a.client == nil {
		return nil, errors.New("the runtime has no API client to read secrets")
	}
	return a.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

// envList is an ordered environment where a later value of a name
// replaces the earlier one in place.
type envList struct {
	keys []string
	vals map[string]string
}

func (l *envList) set(k, v string) {
	if _, ok := l.vals[k]; !ok {
		l.keys = append(l.keys, k)
	}
	l.vals[k] = v
}

// validEnvName is the kubelet's rule for names taken from envFrom:
// letters, digits, '-', '.' and '_', not starting with a digit.
func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// containerEnv resolves the container's env as the kubelet does: envFrom
// first (ConfigMaps and Secrets, with prefixes; keys that are not valid
// names are skipped), then env: plain values with $(VAR) references to
// the variables before them and to service variables, and fieldRef,
// resourceFieldRef, configMapKeyRef and secretKeyRef; then the service
// variables (serviceenv.go) the container does not set itself. A missing
// ConfigMap, Secret or key is an error unless the reference is optional.
func containerEnv(ctx context.Context, refs refs, p *corev1.Pod, c *corev1.Container, podIPs, hostIPs []string) ([]*runtimeapi.KeyValue, error) {
	svcEnv, err := refs.ServiceEnv(ctx, p.Namespace, p.Spec.EnableServiceLinks == nil || *p.Spec.EnableServiceLinks)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	env := &envList{vals: map[string]string{}}
	optional := func(b *bool) bool { return b != nil && *b }
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := refs.ConfigMap(ctx, p.Namespace, from.ConfigMapRef.Name)
			if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("container %s: envFrom configmap %q: %w", c.Name, from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := refs.Secret(ctx, p.Namespace, from.SecretRef.Name)
			if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("container %s: envFrom secret %q: %w", c.Name, from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if name := from.Prefix + k; validEnvName(name) {
				env.set(name, data[k])
			}
		}
	}
	lookup := maps.Clone(svcEnv) // $(VAR): the container's variables, then the services'
	if lookup == nil {
		lookup = map[string]string{}
	}
	maps.Copy(lookup, env.vals)
	for _, e := range c.Env {
		v := expandVars(e.Value, lookup)
		if src := e.ValueFrom; src != nil {
			var err error
			var skip bool
			switch {
			case src.FieldRef != nil:
				v, err = fieldValue(p, src.FieldRef.FieldPath, podIPs, hostIPs)
			case src.ResourceFieldRef != nil:
				v, err = resourceValue(c, src.ResourceFieldRef)
			case src.ConfigMapKeyRef != nil:
				v, skip, err = configMapKey(ctx, refs, p.Namespace, src.ConfigMapKeyRef)
			case src.SecretKeyRef != nil:
				v, skip, err = secretKey(ctx, refs, p.Namespace, src.SecretKeyRef)
			default:
				err = errors.New("no value source")
			}
			if err != nil {
				return nil, fmt.Errorf("container %s: env %s: %w", c.Name, e.Name, err)
			}
			if skip {
				continue
			}
		}
		env.set(e.Name, v)
		lookup[e.Name] = v
	}
	for _, k := range slices.Sorted(maps.Keys(svcEnv)) {
		if _, ok := env.vals[k]; !ok {
			env.set(k, svcEnv[k])
		}
	}
	out := make([]*runtimeapi.KeyValue, 0, len(env.keys))
	for _, k := range env.keys {
		out = append(out, &runtimeapi.KeyValue{Key: k, Value: []byte(env.vals[k])})
	}
	return out, nil
}

// configMapKey is one key of a ConfigMap; skip says an optional reference
// found nothing.
func configMapKey(ctx context.Context, refs refs, namespace string, sel *corev1.ConfigMapKeySelector) (string, bool, error) {
	return keyRef("ConfigMap", namespace, sel.Name, sel.Key, sel.Optional, func() (map[string]string, error) {
		cm, err := refs.ConfigMap(ctx, namespace, sel.Name)
		if err != nil {
			return nil, err
		}
		data := map[string]string{}
		for k, v := range cm.BinaryData {
			data[k] = string(v)
		}
		maps.Copy(data, cm.Data)
		return data, nil
	})
}

// secretKey is one key of a Secret; skip says an optional reference found
// nothing.
func secretKey(ctx context.Context, refs refs, namespace string, sel *corev1.SecretKeySelector) (string, bool, error) {
	return keyRef("Secret", namespace, sel.Name, sel.Key, sel.Optional, func() (map[string]string, error) {
		s, err := refs.Secret(ctx, namespace, sel.Name)
		if err != nil {
			return nil, err
		}
		data := map[string]string{}
		for k, v := range s.Data {
			data[k] = string(v)
		}
		return data, nil
	})
}

// keyRef resolves one key of an object that get reads.
func keyRef(kind, namespace, name, key string, optional *bool, get func() (map[string]string, error)) (v string, skip bool, err error) {
	opt := optional != nil && *optional
	data, err := get()
	if apierrors.IsNotFound(err) && opt {
		return "", true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("%s %q: %w", strings.ToLower(kind), name, err)
	}
	if v, ok := data[key]; ok {
		return v, false, nil
	}
	if opt {
		return "", true, nil
	}
	return "", false, fmt.Errorf("couldn't find key %s in %s %s/%s", key, kind, namespace, name)
}

// fieldValue is the value of a downward-API field path.
func fieldValue(p *corev1.Pod, path string, podIPs, hostIPs []string) (string, error) {
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return p.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return p.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	first := func(l []string) string {
		if len(l) == 0 {
			return ""
		}
		return l[0]
	}
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP":
		return first(podIPs), nil
	case "status.podIPs":
		return strings.Join(podIPs, ","), nil
	case "status.hostIP":
		return first(hostIPs), nil
	case "status.hostIPs":
		return strings.Join(hostIPs, ","), nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// resourceValue is a container's request or limit, in units of the
// divisor rounded up; an unset limit is reported as unset (0).
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	} else if kind != "limits" {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	q := list[corev1.ResourceName(name)]
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if name == string(corev1.ResourceCPU) {
		m, d := q.MilliValue(), div.MilliValue()
		return strconv.FormatInt((m+d-1)/d, 10), nil
	}
	v, d := q.Value(), div.Value()
	return strconv.FormatInt((v+d-1)/d, 10), nil
}

// expandVars replaces $(NAME) with the value of NAME when it is defined;
// $$ is a literal $ and other references stay as written, as Kubernetes
// does.
func expandVars(s string, vals map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
