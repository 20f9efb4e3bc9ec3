package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Defaults of the image garbage collection thresholds, as the kubelet's
// --image-gc-high-threshold and --image-gc-low-threshold: when the image
// file system is more than 85% full, unused images are removed until it is
// at most 80% full.
const (
	DefaultImageGCHighThreshold = 85
	DefaultImageGCLowThreshold  = 80
)

// imageMinAge is how long an image is kept after the runtime first saw it,
// even when no container uses it (the kubelet's ImageGCPolicy.MinAge): an
// image just pulled is about to be used.
const imageMinAge = 2 * time.Minute

// LocalImagePrefix names the images skiff builds on the node itself
// (skiff.local/pause, skiff.local/busybox, skiff.local/testserver). They
// cannot be pulled again from anywhere, so image garbage collection never
// removes them.
const LocalImagePrefix = "skiff.local/"

// gcState is what garbage collection remembers between runs: when each
// image was first seen and last used by a container (in memory only, as
// the kubelet's image manager).
type gcState struct {
	// imageMinAge, when not 0, replaces imageMinAge; negative means
	// none (tests).
	imageMinAge time.Duration

	mu        sync.Mutex
	firstSeen map[string]time.Time
	lastUsed  map[string]time.Time
}

// gcContainer is what container garbage collection needs of a container.
type gcContainer struct {
	id, sandboxID string
	pod           types.UID
	name          string
	attempt       uint32
	createdAt     int64
	exited        bool
}

// deadContainers selects the exited containers of pods that still exist to
// remove: per pod and container name all but the newest exited one (the
// kubelet's MaxPerPodContainer 1), which keeps the container's lastState,
// restart count and `logs --previous`. Containers of unknown pods are left
// to orphan collection.
func deadContainers(cs []gcContainer, known func(types.UID) bool) []gcContainer {
	type key struct {
		pod  types.UID
		name string
	}
	groups := map[key][]gcContainer{}
	for _, c := range cs {
		if c.exited && c.pod != "" && known(c.pod) {
			k := key{c.pod, c.name}
			groups[k] = append(groups[k], c)
		}
	}
	var out []gcContainer
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool {
			if g[i].attempt != g[j].attempt {
				return g[i].attempt > g[j].attempt
			}
			return g[i].createdAt > g[j].createdAt
		})
		out = append(out, g[1:]...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// orphans selects the pods the runtime holds sandboxes or containers for
// that are not known (the API no longer has them on this node), and the
// containers of unknown pods that have no sandbox left.
func orphans(sandboxes []*runtimeapi.PodSandbox, cs []gcContainer, known func(types.UID) bool) (pods []types.UID, loose []gcContainer) {
	seen := map[types.UID]bool{}
	sbs := map[string]bool{}
	for _, sb := range sandboxes {
		sbs[sb.Id] = true
		uid := types.UID(sb.Labels[LabelPodUID])
		if uid == "" || seen[uid] || known(uid) {
			continue
		}
		seen[uid] = true
		pods = append(pods, uid)
	}
	for _, c := range cs {
		if c.pod != "" && !sbs[c.sandboxID] && !known(c.pod) {
			loose = append(loose, c)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i] < pods[j] })
	return pods, loose
}

// gcImage is what image garbage collection needs of an image.
type gcImage struct {
	id        string
	refs      []string // repo tags and digests
	size      uint64
	pinned    bool
	firstSeen time.Time
	lastUsed  time.Time
}

// imageGCPolicy is when and how far image garbage collection frees space.
type imageGCPolicy struct {
	// high and low are percentages of the image file system: above high,
	// images are removed until usage is at most low. high 100 disables
	// image collection, as the kubelet's.
	high, low int
	minAge    time.Duration
}

// imagesToRemove selects the images to remove, least recently used first
// (the largest first among equals), when the file system's usage is at or
// above the high threshold, until the bytes freed bring it down to the low
// threshold. Images a container uses (inUse holds image IDs and
// references), pinned images (the CRI's pinned flag, the sandbox image and
// skiff.local/* images, which cannot be pulled again) and images first seen
// less than minAge ago are never removed.
func imagesToRemove(images []gcImage, inUse map[string]bool, used, capacity uint64, p imageGCPolicy, now time.Time) []gcImage {
	if capacity == 0 || p.high >= 100 || used*100 < uint64(p.high)*capacity {
		return nil
	}
	toFree := int64(used) - int64(uint64(p.low)*capacity/100)
	if toFree <= 0 {
		return nil
	}
	var cands []gcImage
	for _, im := range images {
		if im.pinned || inUse[im.id] || now.Sub(im.firstSeen) < p.minAge {
			continue
		}
		used := false
		for _, ref := range im.refs {
			used = used || inUse[ref]
		}
		if !used {
			cands = append(cands, im)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if !a.lastUsed.Equal(b.lastUsed) {
			return a.lastUsed.Before(b.lastUsed)
		}
		if a.size != b.size {
			return a.size > b.size
		}
		return a.id < b.id
	})
	var out []gcImage
	for _, im := range cands {
		if toFree <= 0 {
			break
		}
		out = append(out, im)
		toFree -= int64(im.size)
	}
	return out
}

// pinnedImage says whether an image is never garbage-collected.
func pinnedImage(im *runtimeapi.Image) bool {
	if im.Pinned {
		return true
	}
	for _, t := range im.RepoTags {
		if strings.HasPrefix(t, LocalImagePrefix) {
			return true
		}
	}
	return false
}

// GarbageCollect implements agent.GarbageCollector, with the kubelet's
// rules simplified: the sandboxes, containers, logs and volumes of pods
// that known says do not exist are removed (orphans); of every pod
// container, exited attempts but the newest are removed with their logs;
// and when the image file system is above Config.ImageGCHighThreshold
// percent full, unused images are removed, least recently used first,
// until it is at most ImageGCLowThreshold percent full. known is called
// after the runtime's state was read, so that a pod created meanwhile is
// not taken for an orphan.
func (r *Runtime) GarbageCollect(ctx context.Context, known func(types.UID) bool) error {
	sbs, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("gc: list sandboxes: %w", err)
	}
	ctrs, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("gc: list containers: %w", err)
	}
	cs := make([]gcContainer, 0, len(ctrs.Containers))
	for _, c := range ctrs.Containers {
		gc := gcContainer{id: c.Id, sandboxID: c.PodSandboxId, pod: types.UID(c.Labels[LabelPodUID]), createdAt: c.CreatedAt,
			exited: c.State == runtimeapi.ContainerState_CONTAINER_EXITED}
		if c.Metadata != nil {
			gc.name, gc.attempt = c.Metadata.Name, c.Metadata.Attempt
		}
		cs = append(cs, gc)
	}
	var errs []error
	pods, loose := orphans(sbs.Items, cs, known)
	for _, uid := range pods {
		r.log.Info("removing an orphaned pod's sandboxes", "uid", uid)
		if err := r.ForgetPod(ctx, uid); err != nil {
			errs = append(errs, fmt.Errorf("gc: orphaned pod %s: %w", uid, err))
		}
	}
	for _, c := range append(loose, deadContainers(cs, known)...) {
		r.log.Debug("removing a dead container", "pod", c.pod, "container", c.name, "attempt", c.attempt, "id", c.id)
		if err := r.removeContainer(ctx, c.id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.collectImages(ctx, ctrs.Containers); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeContainer removes a container and its log file.
func (r *Runtime) removeContainer(ctx context.Context, id string) error {
	logPath := ""
	if st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err == nil {
		logPath = st.GetStatus().GetLogPath()
	}
	if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if logPath != "" && filepath.IsAbs(logPath) && strings.HasPrefix(filepath.Clean(logPath), filepath.Clean(r.cfg.PodLogDir)+"/") {
		_ = os.Remove(logPath)
	}
	return nil
}

// collectImages removes unused images when the image file system is above
// the high threshold.
func (r *Runtime) collectImages(ctx context.Context, containers []*runtimeapi.Container) error {
	now := time.Now()
	list, err := r.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return fmt.Errorf("gc: list images: %w", err)
	}
	inUse := map[string]bool{}
	for _, c := range containers {
		inUse[c.ImageRef] = true
		if c.Image != nil {
			inUse[c.Image.Image] = true
		}
	}
	images := r.gc.observe(list.Images, inUse, now)
	p := imageGCPolicy{high: r.cfg.ImageGCHighThreshold, low: r.cfg.ImageGCLowThreshold, minAge: imageMinAge}
	if r.gc.imageMinAge != 0 {
		p.minAge = max(r.gc.imageMinAge, 0)
	}
	if p.high >= 100 {
		return nil
	}
	fs, err := r.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		return fmt.Errorf("gc: image file system: %w", err)
	}
	if len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].GetFsId().GetMountpoint() == "" {
		return nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(fs.ImageFilesystems[0].FsId.Mountpoint, &sfs); err != nil {
		return fmt.Errorf("gc: image file system: %w", err)
	}
	capacity := sfs.Blocks * uint64(sfs.Bsize)
	used := capacity - sfs.Bavail*uint64(sfs.Bsize)
	var errs []error
	for _, im := range imagesToRemove(images, inUse, used, capacity, p, now) {
		r.log.Info("removing an unused image", "image", im.id, "refs", im.refs, "size", im.size,
			"usedPercent", used*100/capacity, "highThreshold", p.high)
		if _, err := r.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: im.id}}); err != nil {
			errs = append(errs, fmt.Errorf("gc: remove image %s: %w", im.id, err))
			continue
		}
		r.gc.forget(im.id)
	}
	return errors.Join(errs...)
}

// observe records when each image was first seen and last used, and
// returns the images as garbage collection sees them.
func (s *gcState) observe(images []*runtimeapi.Image, inUse map[string]bool, now time.Time) []gcImage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstSeen == nil {
		s.firstSeen, s.lastUsed = map[string]time.Time{}, map[string]time.Time{}
	}
	out := make([]gcImage, 0, len(images))
	live := map[string]bool{}
	for _, im := range images {
		live[im.Id] = true
		refs := append(append([]string(nil), im.RepoTags...), im.RepoDigests...)
		used := inUse[im.Id]
		for _, ref := range refs {
			used = used || inUse[ref]
		}
		if _, ok := s.firstSeen[im.Id]; !ok {
			s.firstSeen[im.Id] = now
		}
		if used {
			s.lastUsed[im.Id] = now
		}
		out = append(out, gcImage{id: im.Id, refs: refs, size: im.Size, pinned: pinnedImage(im),
			firstSeen: s.firstSeen[im.Id], lastUsed: s.lastUsed[im.Id]})
	}
	for id := range s.firstSeen {
		if !live[id] {
			delete(s.firstSeen, id)
			delete(s.lastUsed, id)
		}
	}
	return out
}

func (s *gcState) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.firstSeen, id)
	delete(s.lastUsed, id)
}

// defaultImageGC fills and checks the image garbage collection thresholds.
func (cfg *Config) defaultImageGC() error {
	if cfg.ImageGCHighThreshold == 0 {
		cfg.ImageGCHighThreshold = DefaultImageGCHighThreshold
	}
	if cfg.ImageGCLowThreshold == 0 {
		cfg.ImageGCLowThreshold = DefaultImageGCLowThreshold
	}
	h, l := cfg.ImageGCHighThreshold, cfg.ImageGCLowThreshold
	if h < 0 || h > 100 || l < 0 || l > 100 || l > h {
		return fmt.Errorf("cri: image gc thresholds high %d, low %d: want 0 <= low <= high <= 100", h, l)
	}
	return nil
}
