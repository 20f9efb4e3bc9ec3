package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/satoken"
	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestServiceAccountTokens drives bound service-account tokens with stock
// kubectl (1.33 and 1.27): `kubectl create token`, the token used against
// the API, `kubectl auth whoami`, a pod-bound token refused once its pod is
// gone, and the kube-api-access volume admission gives a pod on a
// simulated node.
func TestServiceAccountTokens(t *testing.T) {
	c := startCluster(t, nil)
	c.startNodes(t, framework.AgentOptions{Nodes: 1, NamePrefix: "sa-"}, "sa-0")
	ks := []framework.Kubectl{framework.LatestKubectl(t)}
	if old, ok := kubectlVersion("1.27"); ok {
		ks = append(ks, old)
	}
	for _, k := range ks {
		t.Run("kubectl-"+k.Version, func(t *testing.T) { c.serviceAccountTokens(t, k) })
	}
}

func (c *cluster) serviceAccountTokens(t *testing.T, k framework.Kubectl) {
	ns := c.namespace(t, k, "sa")
	// the serviceaccount and root-ca-cert-publisher controllers fill the
	// new namespace
	poll(t, "default ServiceAccount and kube-root-ca.crt in "+ns, ctrlTimeout, func() (bool, string) {
		if _, err := c.cs.CoreV1().ServiceAccounts(ns).Get(ctxT(t, 10*time.Second), "default", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		cm, err := c.cs.CoreV1().ConfigMaps(ns).Get(ctxT(t, 10*time.Second), "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(cm.Data["ca.crt"], "BEGIN CERTIFICATE"), "no CA in kube-root-ca.crt"
	})
	tok := strings.TrimSpace(c.kubectl(t, k, ns, "create", "token", "default", "--duration", "20m"))
	claims, err := satoken.Parse(tok)
	if err != nil {
		t.Fatalf("kubectl create token printed %q: %v", tok, err)
	}
	if got := claims.Claims.Expiry - claims.Claims.IssuedAt; got != 1200 {
		t.Errorf("--duration 20m: token lifetime %ds", got)
	}
	as := func(tok string, args ...string) framework.Result {
		return c.s.Kubectl(k, append(args, "-n", ns, "--kubeconfig", tokenKubeconfig(t, c.s, tok))...)
	}
	if r := as(tok, "get", "pods"); r.ExitCode != 0 {
		t.Fatalf("kubectl get pods with the token: %s", r)
	}
	r := as(tok, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
	if want := "system:serviceaccount:" + ns + ":default"; r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, want+" ") ||
		!strings.Contains(r.Stdout, "system:serviceaccounts:"+ns) {
		t.Fatalf("kubectl auth whoami: want %s with its groups: %s", want, r)
	}

	// a pod on the simulated node gets the token volume
	c.apply(t, k, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: c
    image: %s
`, imageA))
	pod, err := c.cs.CoreV1().Pods(ns).Get(ctxT(t, 10*time.Second), "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vol := ""
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil && len(v.Projected.Sources) == 3 {
			vol = v.Name
		}
	}
	mounted := false
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == vol && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && m.ReadOnly)
	}
	if vol == "" || !mounted || pod.Spec.ServiceAccountName != "default" {
		t.Fatalf("pod spec lacks the kube-api-access volume or its mount: %+v", pod.Spec)
	}
	poll(t, "pod p Running", ctrlTimeout, func() (bool, string) {
		p, err := c.cs.CoreV1().Pods(ns).Get(ctxT(t, 10*time.Second), "p", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return podReady(p), string(p.Status.Phase)
	})

	bound := strings.TrimSpace(c.kubectl(t, k, ns, "create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "p"))
	if r := as(bound, "get", "pods"); r.ExitCode != 0 {
		t.Fatalf("kubectl get pods with the pod-bound token: %s", r)
	}
	c.kubectl(t, k, ns, "delete", "pod", "p", "--wait=true")
	poll(t, "pod-bound token refused once the pod is gone", ctrlTimeout, func() (bool, string) {
		r := as(bound, "get", "pods")
		return r.ExitCode != 0 && (strings.Contains(r.Stderr, "Unauthorized") || strings.Contains(r.Stderr, "must be logged in")), r.String()
	})
	// the unbound token outlives the pod
	if r := as(tok, "get", "pods"); r.ExitCode != 0 {
		t.Fatalf("unbound token after the pod went: %s", r)
	}
	if r := c.s.Kubectl(k, "create", "token", "nobody", "-n", ns); r.ExitCode == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("kubectl create token for a missing account: %s", r)
	}
}
