package cri_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/image/registry"
)

// registryIP is the test registry's address: on the loopback link of
// the node's network namespace, but not a loopback address, so containerd
// speaks plain HTTP to it only because its hosts.toml says so.
const registryIP = "10.250.0.1"

// startRegistry serves the busybox image as skiff/busybox:latest behind
// basic auth (alice / s3cret) on registryIP in the node's network
// namespace and returns its HOST:PORT.
func (h *harness) startRegistry(t *testing.T) string {
	t.Helper()
	ns := filepath.Base(h.netns)
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", registryIP+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add %s: %v: %s", registryIP, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "-n", ns, "addr", "del", registryIP+"/32", "dev", "lo").Run() })
	files, err := image.BusyboxFiles(context.Background(), image.DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Build(image.BusyboxSpec(files))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Config{Users: map[string]string{"alice": "s3cret"}, Logger: controllertest.Logger()})
	if err := reg.Add("skiff/busybox", "latest", img); err != nil {
		t.Fatal(err)
	}
	l, err := listenInNetns(h.netns, net.JoinHostPort(registryIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("registry: %v", err)
		}
	})
	return l.Addr().String()
}

// listenInNetns listens on addr inside the network namespace at nsPath.
func listenInNetns(nsPath, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(nsPath, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// pullSecrets pulls from a registry that wants basic auth, with
// imagePullPolicy Always: with the pod's pull secret the pod runs (a
// missing secret listed before it only gets a warning); without a secret,
// or with a wrong password, the pull fails with the registry's 401 in the
// waiting state and the events, and the pod backs off (ImagePullBackOff).
func (h *harness) pullSecrets(t *testing.T) {
	ctx := context.Background()
	addr := h.startRegistry(t)
	if err := h.ctrd.AddInsecureRegistry(addr); err != nil {
		t.Fatal(err)
	}
	ref := addr + "/skiff/busybox:latest"
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"http://` + addr + `":{"auth":"` + auth + `"}}}`)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "wrongcred"}, Type: corev1.SecretTypeDockercfg,
			Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"` + addr + `":{"username":"alice","password":"wrong"}}`)}},
	} {
		if _, err := h.cs.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name string, secrets ...string) *corev1.Pod {
		c := busybox("c", "exec sleep 3600")
		c.Image, c.ImagePullPolicy = ref, corev1.PullAlways
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
		for _, s := range secrets {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return p
	}
	h.runPod(t, pod("pull-ok", "nosuchsecret", "regcred"), "pulled with the secret and running",
		func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	h.waitEvents(t, "pull-ok", map[string]string{
		"FailedToRetrieveImagePullSecret": "Unable to retrieve some image pull secrets (nosuchsecret)",
		"Pulled":                          "Successfully pulled image \"" + ref + "\"",
	})

	for _, tc := range []struct{ name, secret string }{{"pull-nosecret", ""}, {"pull-wrongpass", "wrongcred"}} {
		var p *corev1.Pod
		if tc.secret == "" {
			p = pod(tc.name)
		} else {
			p = pod(tc.name, tc.secret)
		}
		waiting := func(reasons ...string) func(*corev1.Pod) bool {
			return func(p *corev1.Pod) bool {
				st := p.Status.ContainerStatuses
				return len(st) == 1 && st[0].State.Waiting != nil && slices.Contains(reasons, st[0].State.Waiting.Reason) &&
					strings.Contains(st[0].State.Waiting.Message, "401 Unauthorized")
			}
		}
		// the status flips between the two as the back-off runs out
		h.runPod(t, p, tc.name+": pull failed with the registry's 401", waiting("ErrImagePull", "ImagePullBackOff"))
		h.waitPod(t, tc.name, tc.name+": ImagePullBackOff with the registry's 401", waiting("ImagePullBackOff"))
		h.waitEvents(t, tc.name, map[string]string{"Failed": "401 Unauthorized", "BackOff": "Back-off pulling image \"" + ref + "\""})
	}
}

// waitEvents waits until the pod has, for each reason, an event whose
// message contains the text given.
func (h *harness) waitEvents(t *testing.T, pod string, want map[string]string) {
	t.Helper()
	controllertest.Eventually(t, pod+" events", func() (bool, string) {
		evs, err := h.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err != nil {
			return false, err.Error()
		}
		found := 0
		var all []string
		for reason, text := range want {
			for _, e := range evs.Items {
				if e.Reason == reason && strings.Contains(e.Message, text) {
					found++
					break
				}
			}
		}
		for _, e := range evs.Items {
			all = append(all, e.Reason+": "+e.Message)
		}
		return found == len(want), strings.Join(all, "\n")
	})
}
