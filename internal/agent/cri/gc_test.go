package cri_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/containerd/containerdtest"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/image"
)

// TestGarbageCollect runs the CRI runtime's garbage collection on a real
// containerd holding a live pod with four attempts of one container (three
// dead), a pod the API no longer has, and an image nothing uses.
func TestGarbageCollect(t *testing.T) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "skiff-gc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctrd, _ := containerdtest.Start(t, dir, containerdtest.Options{})
	client := containerdtest.RuntimeClient(t, ctrd.Endpoint())
	logDir := filepath.Join(dir, "pods")
	// an unused image that is not skiff's own
	files, err := image.BusyboxFiles(ctx, image.DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	extra := image.BusyboxSpec(files)
	extra.Name = "example.test/extra:1"
	extra.Config.Env = append(extra.Config.Env, "EXTRA=1") // another image ID than busybox's
	img, err := image.Build(extra)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "extra.tar")
	if err := img.WriteArchiveFile(archive); err != nil {
		t.Fatal(err)
	}
	if err := (containerd.Importer{Address: ctrd.Endpoint()}).Import(ctx, extra.Name, archive); err != nil {
		t.Fatal(err)
	}

	live := runSandbox(t, client, logDir, "live")
	var ids []string
	for attempt := range uint32(4) {
		script := "true"
		if attempt == 3 {
			script = "exec sleep 3600"
		}
		ids = append(ids, runContainer(t, client, live, "app", attempt, script))
		if attempt < 3 {
			waitExited(t, client, ids[attempt])
		}
	}
	gone := runSandbox(t, client, logDir, "gone")
	goneCtr := runContainer(t, client, gone, "app", 0, "exec sleep 3600")
	for _, p := range []string{containerLog(live, "app", 0), containerLog(gone, "app", 0)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("container log: %v", err)
		}
	}

	rt, err := cri.New(cri.Config{Endpoint: ctrd.Endpoint(), PodLogDir: logDir, VolumeDir: filepath.Join(dir, "volumes"),
		ImageGCHighThreshold: 2, ImageGCLowThreshold: 1, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	cri.SetImageMinAge(rt, -1)
	known := func(uid types.UID) bool { return uid == "live-uid" }
	if err := rt.GarbageCollect(ctx, known); err != nil {
		t.Fatal(err)
	}

	ctrs, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, c := range ctrs.Containers {
		left = append(left, fmt.Sprintf("%s/%s#%d", c.Labels[cri.LabelPodUID], c.Metadata.Name, c.Metadata.Attempt))
	}
	sort.Strings(left)
	if want := fmt.Sprint([]string{"live-uid/app#2", "live-uid/app#3"}); fmt.Sprint(left) != want {
		t.Errorf("containers left %v, want %s (the running attempt and the newest dead one)", left, want)
	}
	for attempt, want := range map[uint32]bool{0: false, 1: false, 2: true, 3: true} {
		_, err := os.Stat(containerLog(live, "app", attempt))
		if exists := err == nil; exists != want {
			t.Errorf("log of attempt %d: exists %t, want %t (%v)", attempt, exists, want, err)
		}
	}
	sbs, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs.Items) != 1 || sbs.Items[0].Id != live.id {
		t.Errorf("sandboxes %v, want only the live pod's %s", sbs.Items, live.id)
	}
	if _, err := os.Stat(filepath.Join(logDir, "default_gone_gone-uid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan's log directory: %v, want it removed", err)
	}
	if _, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: goneCtr}); err == nil {
		t.Errorf("orphan's container %s still exists", goneCtr)
	}
	imgs, err := runtimeapi.NewImageServiceClient(containerdtest.Conn(t, ctrd.Endpoint())).ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, im := range imgs.Images {
		tags = append(tags, im.RepoTags...)
	}
	sort.Strings(tags)
	// above the threshold (2%), the unused image went; the sandbox image
	// and busybox (in use, and skiff.local/*) stayed
	if want := fmt.Sprint([]string{image.BusyboxName, image.PauseName}); fmt.Sprint(tags) != want {
		t.Errorf("images %v, want %s", tags, want)
	}
}

// testSandbox is a sandbox the test made as the runtime would.
type testSandbox struct {
	id     string
	config *runtimeapi.PodSandboxConfig
}

// runSandbox starts a host-network sandbox for a pod default/name with UID
// name-uid, labelled as the runtime labels its own.
func runSandbox(t *testing.T, client runtimeapi.RuntimeServiceClient, logDir, name string) testSandbox {
	t.Helper()
	uid := name + "-uid"
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: uid},
		Labels:       map[string]string{cri.LabelPodUID: uid, cri.LabelPodName: name, cri.LabelPodNamespace: "default"},
		LogDirectory: filepath.Join(logDir, "default_"+name+"_"+uid),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}},
	}
	resp, err := client.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return testSandbox{id: resp.PodSandboxId, config: cfg}
}

// runContainer creates and starts one attempt of a busybox container in a
// sandbox.
func runContainer(t *testing.T, client runtimeapi.RuntimeServiceClient, sb testSandbox, name string, attempt uint32, script string) string {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(sb.config.LogDirectory, name), 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err := client.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.id, SandboxConfig: sb.config,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
			Image:    &runtimeapi.ImageSpec{Image: image.BusyboxName},
			Command:  []string{"sh", "-c", script},
			Labels:   map[string]string{cri.LabelPodUID: sb.config.Metadata.Uid, cri.LabelContainerName: name},
			LogPath:  filepath.Join(name, fmt.Sprintf("%d.log", attempt)),
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatal(err)
	}
	return resp.ContainerId
}

func containerLog(sb testSandbox, name string, attempt uint32) string {
	return filepath.Join(sb.config.LogDirectory, name, fmt.Sprintf("%d.log", attempt))
}

// waitExited waits until a container has exited.
func waitExited(t *testing.T, client runtimeapi.RuntimeServiceClient, id string) {
	t.Helper()
	controllertest.Eventually(t, "container "+id+" exited", func() (bool, string) {
		st, err := client.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return false, err.Error()
		}
		return st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED, st.Status.State.String()
	})
}
