package core

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestResources(t *testing.T) {
	want := map[string]struct {
		kind, singular, short, category string
		namespaced, status              bool
	}{
		"namespaces":      {"Namespace", "namespace", "ns", "", false, true},
		"pods":            {"Pod", "pod", "po", "all", true, true},
		"nodes":           {"Node", "node", "no", "", false, true},
		"services":        {"Service", "service", "svc", "all", true, true},
		"endpoints":       {"Endpoints", "endpoints", "ep", "", true, false},
		"configmaps":      {"ConfigMap", "configmap", "cm", "", true, false},
		"secrets":         {"Secret", "secret", "", "", true, false},
		"serviceaccounts": {"ServiceAccount", "serviceaccount", "sa", "", true, false},
		"events":          {"Event", "event", "ev", "", true, false},
		"resourcequotas":  {"ResourceQuota", "resourcequota", "quota", "", true, true},
		"limitranges":     {"LimitRange", "limitrange", "limits", "", true, false},
	}
	got := Resources()
	if len(got) != len(want) {
		t.Fatalf("%d resources, want %d", len(got), len(want))
	}
	now := time.Now()
	for _, r := range got {
		w, ok := want[r.Plural]
		if !ok {
			t.Errorf("unexpected resource %s", r.Plural)
			continue
		}
		if r.GVK.Kind != w.kind || r.GVK.Version != "v1" || r.GVK.Group != "" || r.Singular != w.singular ||
			strings.Join(r.ShortNames, ",") != w.short || strings.Join(r.Categories, ",") != w.category ||
			r.Namespaced != w.namespaced || r.Status != w.status {
			t.Errorf("%s = %+v, want %+v", r.Plural, r, w)
		}
		obj := r.New()
		if _, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj); err != nil {
			t.Errorf("%s: New returns %T: %v", r.Plural, obj, err)
		}
		if r.NewList() == nil || r.Strategy == nil {
			t.Errorf("%s: missing NewList or Strategy", r.Plural)
			continue
		}
		// Every strategy must cope with an empty object, and its row must
		// match its columns and hold JSON-friendly cells.
		r.Strategy.Default(obj)
		r.Strategy.PrepareForCreate(obj)
		_ = r.Strategy.ValidateCreate(obj)
		row := r.Strategy.Row(obj, now)
		if len(row) != len(r.Strategy.Columns()) {
			t.Errorf("%s: %d cells for %d columns", r.Plural, len(row), len(r.Strategy.Columns()))
		}
		for i, cell := range row {
			switch cell.(type) {
			case string, int64, bool:
			default:
				t.Errorf("%s: cell %d is %T", r.Plural, i, cell)
			}
		}
		if _, err := json.Marshal(row); err != nil {
			t.Errorf("%s: row not JSON: %v", r.Plural, err)
		}
	}
}

func TestNamespace(t *testing.T) {
	s := namespaceStrategy{}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", CreationTimestamp: ago(48 * time.Hour)}}
	s.Default(ns)
	s.PrepareForCreate(ns)
	if ns.Labels[corev1.LabelMetadataName] != "team-a" {
		t.Errorf("labels = %v", ns.Labels)
	}
	if len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != corev1.FinalizerKubernetes {
		t.Errorf("finalizers = %v", ns.Spec.Finalizers)
	}
	if ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("phase = %s", ns.Status.Phase)
	}
	checkErrs(t, s.ValidateCreate(ns))
	checkRow(t, s.Row(ns, testNow), []interface{}{"team-a", "Active", "2d"})
	if f := s.Fields(ns); f["status.phase"] != "Active" || len(f) != 1 {
		t.Errorf("fields = %v", f)
	}

	bad := ns.DeepCopy()
	bad.Spec.Finalizers = append(bad.Spec.Finalizers, "custom", "example.com/ok")
	checkErrs(t, s.ValidateCreate(bad), wantErr{field.ErrorTypeInvalid, "spec.finalizers"})

	upd := ns.DeepCopy()
	upd.Spec.Finalizers = nil
	s.PrepareForUpdate(upd, ns)
	if len(upd.Spec.Finalizers) != 1 {
		t.Errorf("update dropped finalizers: %v", upd.Spec.Finalizers)
	}

	term := ns.DeepCopy()
	checkErrs(t, s.ValidateStatusUpdate(term, ns))
	term.Status.Phase = corev1.NamespaceTerminating
	checkErrs(t, s.ValidateStatusUpdate(term, ns), wantErr{field.ErrorTypeInvalid, "status.Phase"})
}

func TestNode(t *testing.T) {
	s := nodeStrategy{}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", CreationTimestamp: ago(3 * time.Hour),
			Labels: map[string]string{"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.33.0", KernelVersion: "6.8.0", ContainerRuntimeVersion: "containerd://2.0.0"},
		},
	}
	s.Default(node)
	s.PrepareForCreate(node)
	if len(node.Spec.PodCIDRs) != 1 || node.Status.Allocatable.Cpu().String() != "4" {
		t.Errorf("defaults: podCIDRs %v allocatable %v", node.Spec.PodCIDRs, node.Status.Allocatable)
	}
	if len(node.Status.Conditions) != 1 {
		t.Errorf("create dropped the kubelet's status")
	}
	checkErrs(t, s.ValidateCreate(node))
	checkRow(t, s.Row(node, testNow), []interface{}{"n1", "Ready", "control-plane,worker", "3h", "v1.33.0",
		"192.168.1.10", "<none>", "<unknown>", "6.8.0", "containerd://2.0.0"})

	cordoned := node.DeepCopy()
	cordoned.Spec.Unschedulable = true
	cordoned.Status.Conditions[0].Status = corev1.ConditionFalse
	if got := s.Row(cordoned, testNow)[1]; got != "NotReady,SchedulingDisabled" {
		t.Errorf("status = %v", got)
	}
	if f := s.Fields(cordoned); f["spec.unschedulable"] != "true" || len(f) != 1 {
		t.Errorf("fields = %v", f)
	}
	unknown := node.DeepCopy()
	unknown.Status.Conditions = nil
	if got := s.Row(unknown, testNow)[1]; got != "Unknown" {
		t.Errorf("status = %v", got)
	}

	bad := node.DeepCopy()
	bad.Spec.PodCIDRs = []string{"10.244.1.0/33"}
	bad.Spec.PodCIDR = bad.Spec.PodCIDRs[0]
	bad.Spec.Taints = []corev1.Taint{{Key: "k", Effect: "Sometimes"}, {Key: "dup", Effect: corev1.TaintEffectNoSchedule}, {Key: "dup", Effect: corev1.TaintEffectNoSchedule}}
	checkErrs(t, s.ValidateCreate(bad),
		wantErr{field.ErrorTypeInvalid, "spec.podCIDRs[0]"},
		wantErr{field.ErrorTypeNotSupported, "metadata.taints[0].effect"},
		wantErr{field.ErrorTypeDuplicate, "metadata.taints[2]"})

	moved := node.DeepCopy()
	moved.Spec.PodCIDRs = []string{"10.244.2.0/24"}
	checkErrs(t, s.ValidateUpdate(moved, node), wantErr{field.ErrorTypeForbidden, "spec.podCIDRs"})
}

func TestConfigMap(t *testing.T) {
	s := configMapStrategy{}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", CreationTimestamp: ago(time.Minute)},
		Data: map[string]string{"a.conf": "x"}, BinaryData: map[string][]byte{"b.bin": {1}}}
	checkErrs(t, s.ValidateCreate(cm))
	checkRow(t, s.Row(cm, testNow), []interface{}{"cfg", int64(2), "60s"})

	bad := cm.DeepCopy()
	bad.Data["bad/key"] = "x"
	bad.Data["b.bin"] = "dup"
	checkErrs(t, s.ValidateCreate(bad),
		wantErr{field.ErrorTypeInvalid, "data[bad/key]"}, wantErr{field.ErrorTypeInvalid, "data[b.bin]"})

	big := cm.DeepCopy()
	big.Data["big"] = strings.Repeat("x", 1<<20)
	checkErrs(t, s.ValidateCreate(big), wantErr{field.ErrorTypeTooLong, "[]"})

	immutable := cm.DeepCopy()
	immutable.Immutable = ptrTo(true)
	changed := immutable.DeepCopy()
	changed.Data["a.conf"] = "y"
	checkErrs(t, s.ValidateUpdate(changed, immutable), wantErr{field.ErrorTypeForbidden, "data"})
	unset := immutable.DeepCopy()
	unset.Immutable = nil
	checkErrs(t, s.ValidateUpdate(unset, immutable), wantErr{field.ErrorTypeForbidden, "immutable"})
	checkErrs(t, s.ValidateUpdate(changed, cm))
}

func TestSecret(t *testing.T) {
	s := secretStrategy{}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", CreationTimestamp: ago(time.Minute)},
		Data: map[string][]byte{"user": []byte("a")}, StringData: map[string]string{"pass": "b", "user": "override"}}
	s.Default(sec)
	if sec.Type != corev1.SecretTypeOpaque || sec.StringData != nil || string(sec.Data["pass"]) != "b" || string(sec.Data["user"]) != "override" {
		t.Errorf("defaults: %+v", sec)
	}
	checkErrs(t, s.ValidateCreate(sec))
	checkRow(t, s.Row(sec, testNow), []interface{}{"creds", "Opaque", int64(2), "60s"})
	if f := s.Fields(sec); f["type"] != "Opaque" || len(f) != 1 {
		t.Errorf("fields = %v", f)
	}

	tls := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": nil}}
	checkErrs(t, s.ValidateCreate(tls), wantErr{field.ErrorTypeRequired, "data[tls.key]"})
	docker := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte("{")}}
	checkErrs(t, s.ValidateCreate(docker), wantErr{field.ErrorTypeInvalid, "data[.dockerconfigjson]"})

	retyped := sec.DeepCopy()
	retyped.Type = "example.com/custom"
	checkErrs(t, s.ValidateUpdate(retyped, sec), wantErr{field.ErrorTypeInvalid, "type"})

	frozen := sec.DeepCopy()
	frozen.Immutable = ptrTo(true)
	changed := frozen.DeepCopy()
	changed.Data["pass"] = []byte("c")
	checkErrs(t, s.ValidateUpdate(changed, frozen), wantErr{field.ErrorTypeForbidden, "data"})
}

func TestEndpoints(t *testing.T) {
	s := endpointsStrategy{}
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: ago(time.Hour)},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "10.1.0.1"}, {IP: "10.1.0.2"}, {IP: "10.1.0.3"}, {IP: "10.1.0.4"}},
			Ports:     []corev1.EndpointPort{{Port: 8080}},
		}}}
	s.Default(ep)
	if ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("protocol not defaulted")
	}
	checkErrs(t, s.ValidateCreate(ep))
	checkRow(t, s.Row(ep, testNow), []interface{}{"web", "10.1.0.1:8080,10.1.0.2:8080,10.1.0.3:8080 + 1 more...", "60m"})
	checkRow(t, s.Row(&corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "e"}}, testNow), []interface{}{"e", "<none>", "<unknown>"})

	bad := ep.DeepCopy()
	bad.Subsets[0].Addresses[0].IP = "127.0.0.1"
	bad.Subsets[0].Ports = append(bad.Subsets[0].Ports, corev1.EndpointPort{Port: 9090, Protocol: corev1.ProtocolTCP})
	checkErrs(t, s.ValidateCreate(bad),
		wantErr{field.ErrorTypeInvalid, "subsets[0].addresses[0].ip"},
		wantErr{field.ErrorTypeRequired, "subsets[0].ports[0].name"},
		wantErr{field.ErrorTypeRequired, "subsets[0].ports[1].name"})
}

func TestServiceAccountRow(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", CreationTimestamp: ago(time.Hour)},
		Secrets: []corev1.ObjectReference{{Name: "tok"}}}
	checkRow(t, serviceAccountStrategy{}.Row(sa, testNow), []interface{}{"default", int64(1), "60m"})
	if f := (serviceAccountStrategy{}).Fields(sa); len(f) != 0 {
		t.Errorf("fields = %v", f)
	}
}

func TestEvent(t *testing.T) {
	s := eventStrategy{}
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web.17f", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", FieldPath: "spec.containers{app}"},
		Reason:         "BackOff", Message: " Back-off restarting failed container \n", Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "kubelet", Host: "n1"},
		FirstTimestamp: ago(10 * time.Minute), LastTimestamp: ago(time.Minute), Count: 7,
	}
	checkErrs(t, s.ValidateCreate(ev))
	checkRow(t, s.Row(ev, testNow), []interface{}{"60s", "Warning", "BackOff", "pod/web", "spec.containers{app}",
		"kubelet, n1", "Back-off restarting failed container", "10m", int64(7), "web.17f"})
	f := s.Fields(ev)
	if f["involvedObject.name"] != "web" || f["source"] != "kubelet" || f["reason"] != "BackOff" || len(f) != 11 {
		t.Errorf("fields = %v", f)
	}
	cols := s.Columns()
	if cols[0].Name != "Last Seen" || cols[len(cols)-1].Name != "Name" || cols[len(cols)-1].Priority != 1 {
		t.Errorf("columns = %+v", cols)
	}

	wrongNS := ev.DeepCopy()
	wrongNS.InvolvedObject.Namespace = "other"
	checkErrs(t, s.ValidateCreate(wrongNS), wantErr{field.ErrorTypeInvalid, "involvedObject.namespace"})

	series := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "default"}, EventTime: metav1.NewMicroTime(testNow)}
	checkErrs(t, s.ValidateCreate(series),
		wantErr{field.ErrorTypeRequired, "reportingComponent"},
		wantErr{field.ErrorTypeInvalid, "reportingComponent"}, wantErr{field.ErrorTypeInvalid, "reportingComponent"},
		wantErr{field.ErrorTypeRequired, "reportingInstance"}, wantErr{field.ErrorTypeRequired, "action"},
		wantErr{field.ErrorTypeRequired, "reason"})
	if row := s.Row(series, testNow); row[0] != "0s" || row[8] != int64(1) {
		t.Errorf("new-style event row = %v", row)
	}
}

func TestResourceQuota(t *testing.T) {
	s := resourceQuotaStrategy{}
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "compute", CreationTimestamp: ago(time.Hour)},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"requests.cpu": resource.MustParse("4"), "limits.memory": resource.MustParse("8Gi"), "pods": resource.MustParse("10")}},
		Status:     corev1.ResourceQuotaStatus{Used: corev1.ResourceList{"pods": resource.MustParse("3")}},
	}
	s.PrepareForCreate(q)
	if q.Status.Used != nil {
		t.Errorf("status kept on create")
	}
	checkErrs(t, s.ValidateCreate(q))
	q.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{"pods": resource.MustParse("3"), "requests.cpu": resource.MustParse("500m"), "limits.memory": resource.MustParse("1Gi")}}
	checkRow(t, s.Row(q, testNow), []interface{}{"compute", "pods: 3/10, requests.cpu: 500m/4", "limits.memory: 1Gi/8Gi", "60m"})

	bad := q.DeepCopy()
	bad.Spec.Hard["pods"] = resource.MustParse("1500m")
	bad.Spec.Hard["widgets"] = resource.MustParse("1")
	bad.Spec.Scopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort}
	checkErrs(t, s.ValidateCreate(bad),
		wantErr{field.ErrorTypeInvalid, "spec.hard[pods]"},
		wantErr{field.ErrorTypeInvalid, "spec.hard[widgets]"}, wantErr{field.ErrorTypeInvalid, "spec.hard[widgets]"},
		wantErr{field.ErrorTypeInvalid, "spec.scopes"})

	rescoped := q.DeepCopy()
	rescoped.Spec.Scopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeTerminating}
	checkErrs(t, s.ValidateUpdate(rescoped, q), wantErr{field.ErrorTypeInvalid, "spec.scopes"})

	st := q.DeepCopy()
	st.Status.Used["pods"] = resource.MustParse("-1")
	checkErrs(t, s.ValidateStatusUpdate(st, q), wantErr{field.ErrorTypeInvalid, "status.used[pods]"})
}

func TestLimitRange(t *testing.T) {
	s := limitRangeStrategy{}
	lr := &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults", CreationTimestamp: metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer,
			Max:  corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
			Min:  corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		}}},
	}
	s.Default(lr)
	item := lr.Spec.Limits[0]
	if item.Default.Cpu().String() != "2" || item.DefaultRequest.Cpu().String() != "2" || item.DefaultRequest.Memory().String() != "64Mi" {
		t.Errorf("defaults: %+v", item)
	}
	checkErrs(t, s.ValidateCreate(lr))
	checkRow(t, s.Row(lr, testNow), []interface{}{"defaults", "2025-01-02T03:04:05Z"})
	if cols := s.Columns(); len(cols) != 2 || cols[1].Name != "Created At" || cols[1].Type != "date" {
		t.Errorf("columns = %+v", cols)
	}

	bad := lr.DeepCopy()
	bad.Spec.Limits[0].Min[corev1.ResourceCPU] = resource.MustParse("3")
	bad.Spec.Limits = append(bad.Spec.Limits, corev1.LimitRangeItem{Type: "Widget"})
	checkErrs(t, s.ValidateCreate(bad),
		wantErr{field.ErrorTypeInvalid, "spec.limits[0].min[cpu]"},
		wantErr{field.ErrorTypeInvalid, "spec.limits[0].defaultRequest[cpu]"},
		wantErr{field.ErrorTypeInvalid, "spec.limits[0].default[cpu]"},
		wantErr{field.ErrorTypeInvalid, "spec.limits[1].type"})
}
