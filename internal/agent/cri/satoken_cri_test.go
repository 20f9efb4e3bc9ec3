package cri_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// serviceAccountToken runs a pod as admission leaves it (the
// kube-api-access volume): the container finds a token bound to the pod,
// the cluster CA and its namespace under the service-account path.
func (h *harness) serviceAccountToken(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sa-token"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{busybox("main", "sleep 3600")}}}
	p := h.runPod(t, pod, "pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	read := func(file string) string {
		out, err := h.cri.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id,
			Cmd: []string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/" + file}, Timeout: 10})
		if err != nil {
			t.Fatal(err)
		}
		if out.ExitCode != 0 {
			t.Fatalf("cat %s: %s", file, out.Stderr)
		}
		return string(out.Stdout)
	}
	if ns := read("namespace"); ns != "default" {
		t.Errorf("namespace file %q", ns)
	}
	if ca := read("ca.crt"); !strings.Contains(ca, "BEGIN CERTIFICATE") {
		t.Errorf("ca.crt %q", ca)
	}
	tok := read("token")
	rv, err := h.cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u := rv.Status.User
	if !rv.Status.Authenticated || u.Username != "system:serviceaccount:default:default" ||
		!slices.Equal(u.Extra["authentication.kubernetes.io/pod-name"], []string{"sa-token"}) ||
		!slices.Equal(u.Extra["authentication.kubernetes.io/pod-uid"], []string{string(p.UID)}) {
		t.Errorf("the pod's token reviews as %+v", rv.Status)
	}
}
