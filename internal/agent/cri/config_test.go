package cri

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpandVars(t *testing.T) {
	vals := map[string]string{"A": "x", "B": "y z"}
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "x"},
		{"a$(A)b$(B)c", "axby zc"},
		{"$(MISSING)", "$(MISSING)"},
		{"$$(A)", "$(A)"},
		{"$$", "$"},
		{"cost $5", "cost $5"},
		{"$(A", "$(A"},
		{"end$", "end$"},
	} {
		if got := expandVars(tc.in, vals); got != tc.want {
			t.Errorf("expandVars(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestContainerEnv(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1"}}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	c := &corev1.Container{Name: "c",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("250m")}},
		Env: []corev1.EnvVar{
			{Name: "NAME", ValueFrom: field("metadata.name")},
			{Name: "NS", ValueFrom: field("metadata.namespace")},
			{Name: "UID", ValueFrom: field("metadata.uid")},
			{Name: "NODE", ValueFrom: field("spec.nodeName")},
			{Name: "IP", ValueFrom: field("status.podIP")},
			{Name: "HOST", ValueFrom: field("status.hostIP")},
			{Name: "APP", ValueFrom: field("metadata.labels['app']")},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "MSG", Value: "$(NAME) on $(NODE)"},
		}}
	env, err := containerEnv(context.Background(), fakeRefs{}, p, c, []string{"10.0.0.5"}, []string{"192.0.2.2"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range env {
		got[kv.Key] = string(kv.Value)
	}
	want := map[string]string{"NAME": "p", "NS": "ns", "UID": "u", "NODE": "n1", "IP": "10.0.0.5", "HOST": "192.0.2.2",
		"APP": "web", "MEM": "64", "CPU": "1", "MSG": "p on n1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for name, bad := range map[string]corev1.EnvVar{
		"missing configmap": {Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "none"}, Key: "k"}}},
		"unknown field": {Name: "X", ValueFrom: field("spec.nothing")},
	} {
		if _, err := containerEnv(context.Background(), fakeRefs{}, p, &corev1.Container{Name: "c", Env: []corev1.EnvVar{bad}}, nil, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestResources(t *testing.T) {
	for _, tc := range []struct {
		name               string
		qos                corev1.PodQOSClass
		req, lim           corev1.ResourceList
		shares, quota, mem int64
		oom                int64
	}{
		{name: "best effort", qos: corev1.PodQOSBestEffort, shares: 2, oom: 1000},
		{name: "request only", qos: corev1.PodQOSBurstable, req: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}, shares: 512, oom: 999},
		{name: "limits", qos: corev1.PodQOSGuaranteed,
			lim:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			shares: 2048, quota: 200000, mem: 128 << 20, oom: -997},
		{name: "tiny cpu limit", qos: corev1.PodQOSBurstable, lim: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m")}, shares: 2, quota: 1000, oom: 999},
	} {
		p := &corev1.Pod{Status: corev1.PodStatus{QOSClass: tc.qos}}
		r := resources(p, &corev1.Container{Resources: corev1.ResourceRequirements{Requests: tc.req, Limits: tc.lim}})
		if r.CpuShares != tc.shares || r.CpuQuota != tc.quota || r.MemoryLimitInBytes != tc.mem || r.OomScoreAdj != tc.oom || r.CpuPeriod != 100000 {
			t.Errorf("%s: got shares %d quota %d mem %d oom %d", tc.name, r.CpuShares, r.CpuQuota, r.MemoryLimitInBytes, r.OomScoreAdj)
		}
	}
}

func TestCNIConfig(t *testing.T) {
	b, err := cniConfig("skiff0", "10.244.3.0/24", "/d/cni")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPMasq bool   `json:"ipMasq"`
			IPAM   struct {
				Type    string                `json:"type"`
				Ranges  [][]map[string]string `json:"ranges"`
				DataDir string                `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins %+v", conf.Plugins)
	}
	br := conf.Plugins[0]
	if br.Bridge != "skiff0" || br.IPMasq || br.IPAM.Type != "host-local" || br.IPAM.Ranges[0][0]["subnet"] != "10.244.3.0/24" || br.IPAM.DataDir != "/d/cni" {
		t.Errorf("bridge %+v", br)
	}
}

func TestSandboxConfig(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{ContainerPort: 80}, {ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP}}}}}}
	cfg := sandboxConfig(p, 2, "/logs")
	if cfg.Metadata.Attempt != 2 || cfg.Hostname != "p" || cfg.LogDirectory != "/logs/ns_p_u" {
		t.Errorf("sandbox %+v", cfg)
	}
	if cfg.Labels[LabelPodUID] != "u" || cfg.Labels["app"] != "web" {
		t.Errorf("labels %v", cfg.Labels)
	}
	if len(cfg.PortMappings) != 1 || cfg.PortMappings[0].HostPort != 5353 || cfg.PortMappings[0].ContainerPort != 53 {
		t.Errorf("port mappings %v", cfg.PortMappings)
	}
}
