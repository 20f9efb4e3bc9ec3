package cri

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's image pull back-off: after a failed pull of an image for
// a pod, the next is not tried before 10 s, doubling to 5 min; a back-off
// unused for twice the maximum starts over.
const (
	imagePullBackoffBase = 10 * time.Second
	imagePullBackoffMax  = 5 * time.Minute
)

// pullBackoff is the image pull back-off of every pod and image. The
// zero value is ready to use.
type pullBackoff struct {
	mu      sync.Mutex
	entries map[string]*pullBackoffEntry // "<pod UID>_<image>"
}

type pullBackoffEntry struct {
	delay time.Duration
	last  time.Time // when the last pull failed
	err   string    // "ErrImagePull: <why>"
}

// inBackoff says whether key's last failed pull is less than its delay
// ago, and what that pull's error was.
func (b *pullBackoff) inBackoff(key string, now time.Time) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil || now.Sub(e.last) >= e.delay {
		return "", false
	}
	return e.err, true
}

// failed records a failed pull at now: the delay starts at the base or
// doubles.
func (b *pullBackoff) failed(key string, now time.Time, err string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.entries == nil {
		b.entries = map[string]*pullBackoffEntry{}
	}
	for k, e := range b.entries { // forget back-offs that have run out
		if now.Sub(e.last) > 2*imagePullBackoffMax {
			delete(b.entries, k)
		}
	}
	e := b.entries[key]
	if e == nil {
		e = &pullBackoffEntry{delay: imagePullBackoffBase}
		b.entries[key] = e
	} else {
		e.delay = min(2*e.delay, imagePullBackoffMax)
	}
	e.last, e.err = now, err
}

// succeeded forgets key's back-off.
func (b *pullBackoff) succeeded(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, key)
}

// pullImage pulls a container's image as the kubelet does: not while the
// pod's back-off for the image lasts (ImagePullBackOff); otherwise with
// each credential of the pod's image pull secrets that matches the image,
// best match first, and then anonymously, until one pull succeeds. A
// failure is ErrImagePull, with every attempt's error.
func (r *Runtime) pullImage(ctx context.Context, p *corev1.Pod, c *corev1.Container) error {
	key := string(p.UID) + "_" + c.Image
	now := time.Now()
	if prev, ok := r.pulls.inBackoff(key, now); ok {
		msg := fmt.Sprintf("Back-off pulling image %q", c.Image)
		r.event(p, corev1.EventTypeNormal, "BackOff", "%s", msg)
		r.event(p, corev1.EventTypeWarning, "Failed", "Error: ImagePullBackOff")
		if prev != "" {
			msg += ": " + prev
		}
		return &waitingError{reason: "ImagePullBackOff", message: msg}
	}
	r.event(p, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	ref, err := r.pullWithSecrets(ctx, p, c.Image)
	if err != nil {
		r.event(p, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
		r.event(p, corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
		r.pulls.failed(key, now, "ErrImagePull: "+err.Error())
		return &waitingError{reason: "ErrImagePull", message: err.Error()}
	}
	r.pulls.succeeded(key)
	took := time.Since(now).Round(time.Millisecond)
	size := ""
	if st, err := r.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err == nil && st.Image != nil {
		size = fmt.Sprintf(" Image size: %d bytes.", st.Image.GetSize())
	}
	r.event(p, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %v (%v including waiting).%s", c.Image, took, took, size)
	return nil
}

// pullWithSecrets pulls image with the credentials of the pod's pull
// secrets that match it, then anonymously, and returns the image's
// reference.
func (r *Runtime) pullWithSecrets(ctx context.Context, p *corev1.Pod, image string) (string, error) {
	kr, err := r.podKeyring(ctx, p)
	if err != nil {
		return "", err
	}
	spec := &runtimeapi.ImageSpec{Image: image}
	var errs []error
	for _, cr := range kr.lookup(image) {
		resp, err := r.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec, Auth: cr.auth})
		if err == nil {
			return resp.ImageRef, nil
		}
		r.log.Debug("image pull with credentials failed", "pod", p.Namespace+"/"+p.Name, "image", image,
			"secret", cr.secret, "registry", cr.key, "err", err)
		errs = append(errs, err)
	}
	resp, err := r.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec})
	if err == nil {
		return resp.ImageRef, nil
	}
	errs = append(errs, err)
	return "", utilerrors.NewAggregate(errs)
}

// podKeyring reads the pod's image pull secrets. Those that cannot be
// read get the kubelet's warning event and are left out; one whose docker
// config does not decode fails the pull, as upstream.
func (r *Runtime) podKeyring(ctx context.Context, p *corev1.Pod) (*keyring, error) {
	kr := &keyring{}
	api := apiRefs{client: r.cfg.Client}
	var missing []string
	for _, ref := range p.Spec.ImagePullSecrets {
		if ref.Name == "" {
			continue
		}
		s, err := api.Secret(ctx, p.Namespace, ref.Name)
		if err != nil {
			r.log.Info("unable to retrieve pull secret; the image pull may not succeed", "pod", p.Namespace+"/"+p.Name,
				"secret", ref.Name, "err", err)
			missing = append(missing, ref.Name)
			continue
		}
		cfg, err := secretDockerConfig(s)
		if err != nil {
			return nil, err
		}
		kr.add(ref.Name, cfg)
	}
	if len(missing) > 0 {
		r.event(p, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
			"Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", strings.Join(missing, ", "))
	}
	return kr, nil
}
