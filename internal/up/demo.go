package up

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// The demo app: a Deployment of the test HTTP server behind a
// LoadBalancer Service, with a page from a ConfigMap.
const (
	DemoNamespace = "default"
	DemoName      = "demo"
	DemoPage      = "demo-page"
	DemoReplicas  = 3
	demoImage     = "skiff.local/testserver:latest"
	demoPort      = 80
	pageDir       = "/etc/demo"
)

const demoPageHTML = `<!doctype html>
<title>skiff demo</title>
<h1>Hello from skiff</h1>
<p>This page comes from the ConfigMap demo-page. Change it with
<code>kubectl edit configmap demo-page</code>: the pods see the new page within a few seconds.</p>
`

// demoObjects returns the demo app's ConfigMap, Deployment and Service.
func demoObjects() (*corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": DemoName}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: DemoPage, Namespace: DemoNamespace, Labels: labels},
		Data:       map[string]string{"index.html": demoPageHTML},
	}
	replicas := int32(DemoReplicas)
	grace := int64(2)
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: DemoName, Namespace: DemoNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:            "web",
						Image:           demoImage,
						ImagePullPolicy: corev1.PullNever,
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: field("metadata.name")},
							{Name: "POD_NAMESPACE", ValueFrom: field("metadata.namespace")},
							{Name: "POD_IP", ValueFrom: field("status.podIP")},
							{Name: "PAGE_FILE", Value: pageDir + "/index.html"},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "page", MountPath: pageDir, ReadOnly: true}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 2,
						},
					}},
					Volumes: []corev1.Volume{{Name: "page", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: DemoPage}},
					}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: DemoName, Namespace: DemoNamespace, Labels: labels},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: demoPort, TargetPort: intstr.FromString("http")}},
		},
	}
	return cm, dep, svc
}

// deployDemo creates the demo app's objects that do not exist; existing
// ones (perhaps edited by the user) are left as they are.
func deployDemo(ctx context.Context, c kubernetes.Interface) error {
	cm, dep, svc := demoObjects()
	create := func(kind string, f func() error) error {
		if err := f(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating the demo %s: %w", kind, err)
		}
		return nil
	}
	if err := create("ConfigMap", func() error {
		_, err := c.CoreV1().ConfigMaps(DemoNamespace).Create(ctx, cm, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := create("Deployment", func() error {
		_, err := c.AppsV1().Deployments(DemoNamespace).Create(ctx, dep, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	return create("Service", func() error {
		_, err := c.CoreV1().Services(DemoNamespace).Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
}

// demoState is how far the demo app is.
type demoState struct {
	Ready, Want int32
	// LBIP is the Service's LoadBalancer IP ("" while pending).
	LBIP string
	// Waiting says, per pod that is not ready, why (for errors).
	Waiting []string
}

func (d demoState) done() bool { return d.Want > 0 && d.Ready >= d.Want && d.LBIP != "" }

func (d demoState) String() string {
	s := fmt.Sprintf("%d/%d replicas ready", d.Ready, d.Want)
	if d.LBIP == "" {
		return s + ", LoadBalancer IP pending"
	}
	return s + ", LoadBalancer " + d.LBIP
}

// readDemo reads the demo app's state.
func readDemo(ctx context.Context, c kubernetes.Interface) (demoState, error) {
	var st demoState
	dep, err := c.AppsV1().Deployments(DemoNamespace).Get(ctx, DemoName, metav1.GetOptions{})
	if err != nil {
		return st, err
	}
	if dep.Spec.Replicas != nil {
		st.Want = *dep.Spec.Replicas
	}
	if dep.Status.ObservedGeneration >= dep.Generation {
		st.Ready = dep.Status.AvailableReplicas
	}
	svc, err := c.CoreV1().Services(DemoNamespace).Get(ctx, DemoName, metav1.GetOptions{})
	if err != nil {
		return st, err
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			st.LBIP = in.IP
			break
		}
	}
	pods, err := c.CoreV1().Pods(DemoNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + DemoName})
	if err != nil {
		return st, err
	}
	for _, p := range pods.Items {
		if why := podWaiting(&p); why != "" {
			st.Waiting = append(st.Waiting, p.Name+": "+why)
		}
	}
	sort.Strings(st.Waiting)
	return st, nil
}

// podWaiting says why a pod is not ready ("" when it is).
func podWaiting(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return ""
		}
	}
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Message != "" {
				return "not scheduled: " + c.Message
			}
		}
		return "not scheduled yet"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			return strings.TrimSpace(w.Reason + " " + w.Message)
		}
		if t := cs.State.Terminated; t != nil {
			return fmt.Sprintf("exited with %d (%s)", t.ExitCode, t.Reason)
		}
	}
	return string(p.Status.Phase) + " on " + p.Spec.NodeName
}

// lbPool is the LoadBalancer pool skiff up gives the server: the last 15
// addresses of the lab subnet below its broadcast address, which are
// never nodes' (node I is host 10+I, at most 200 nodes).
func lbPool(subnet string) (string, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("lab subnet %q: want IPv4", subnet)
	}
	p = p.Masked()
	b := p.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bcast := n | (1<<(32-p.Bits()) - 1)
	ip := func(v uint32) string { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String() }
	return ip(bcast-15) + "-" + ip(bcast-1), nil
}
