package cri

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// volumeRefresh is how often the contents of configMap, secret,
// downwardAPI and projected volumes of a running pod are brought up to
// date.
const volumeRefresh = 10 * time.Second

// podVolumeDir holds the volumes of one pod on the node.
func (r *Runtime) podVolumeDir(uid types.UID) string {
	return filepath.Join(r.cfg.VolumeDir, string(uid))
}

// volumesDue says whether the pod's volumes should be written now: before
// a container starts, or when they were last written volumeRefresh ago.
func (r *Runtime) volumesDue(uid types.UID, starting bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.volumesAt[uid]
	return starting || !ok || time.Since(last) >= volumeRefresh
}

// setupVolumes makes the pod's volumes exist on the node and writes the
// current contents of those built from API objects. It returns each
// volume's host path.
func (r *Runtime) setupVolumes(ctx context.Context, p *corev1.Pod, write bool) (map[string]string, error) {
	paths := map[string]string{}
	base := r.podVolumeDir(p.UID)
	for i := range p.Spec.Volumes {
		v := &p.Spec.Volumes[i]
		src := &v.VolumeSource
		dir := filepath.Join(base, v.Name)
		var err error
		switch {
		case src.EmptyDir != nil:
			err = emptyDir(dir, src.EmptyDir)
		case src.HostPath != nil:
			dir = src.HostPath.Path
			err = hostPath(src.HostPath)
		case src.ConfigMap != nil, src.Secret != nil, src.DownwardAPI != nil, src.Projected != nil:
			if !write && isDir(dir) {
				break
			}
			var files []volumeFile
			if files, err = r.volumeFiles(ctx, p, src); err == nil {
				// secrets live in memory only, as the kubelet keeps them
				if src.Secret != nil || src.Projected != nil {
					err = ensureTmpfs(dir, "")
				}
				if err == nil {
					err = writeAtomic(dir, files)
				}
			}
		default:
			err = errors.New("this volume type is not supported yet")
		}
		if err != nil {
			return nil, &waitingError{reason: "CreateContainerConfigError", message: fmt.Sprintf("volume %q: %v", v.Name, err)}
		}
		paths[v.Name] = dir
	}
	if write {
		r.mu.Lock()
		r.volumesAt[p.UID] = time.Now()
		r.mu.Unlock()
	}
	return paths, nil
}

// removeVolumes unmounts and removes the pod's volume directory (never
// following hostPath volumes, which are mounted into containers directly).
func (r *Runtime) removeVolumes(uid types.UID) error {
	r.mu.Lock()
	delete(r.volumesAt, uid)
	r.mu.Unlock()
	r.tokens.forget(uid)
	base := r.podVolumeDir(uid)
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("volumes of pod %s: %w", uid, err)
	}
	for _, e := range entries {
		dir := filepath.Join(base, e.Name())
		if mounted(dir) {
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
	}
	if err := os.RemoveAll(base); err != nil {
		return fmt.Errorf("volumes of pod %s: %w", uid, err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// mounted says whether dir is a mount point: it lies on another device
// than its parent.
func mounted(dir string) bool {
	var st, parent syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// ensureTmpfs mounts a tmpfs on dir unless one is there.
func ensureTmpfs(dir, size string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if mounted(dir) {
		return nil
	}
	opts := "mode=0755"
	if size != "" {
		opts += ",size=" + size
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// emptyDir makes an emptyDir volume: a directory anyone may write, or a
// tmpfs for medium Memory (limited to sizeLimit).
func emptyDir(dir string, src *corev1.EmptyDirVolumeSource) error {
	if src.Medium == corev1.StorageMediumMemory {
		size := ""
		if src.SizeLimit != nil && !src.SizeLimit.IsZero() {
			size = strconv.FormatInt(src.SizeLimit.Value(), 10)
		}
		if err := ensureTmpfs(dir, size); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	return os.Chmod(dir, 0o777) //nolint:gosec // emptyDir is writable by every container user, as upstream's
}

// hostPath checks (or creates) a hostPath volume as its type says.
func hostPath(src *corev1.HostPathVolumeSource) error {
	typ := corev1.HostPathUnset
	if src.Type != nil {
		typ = *src.Type
	}
	fi, err := os.Stat(src.Path)
	exists := err == nil
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			return os.MkdirAll(src.Path, 0o755)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", src.Path)
		}
		return nil
	case corev1.HostPathFileOrCreate:
		if !exists {
			if err := os.MkdirAll(filepath.Dir(src.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(src.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory", src.Path)
		}
		return nil
	}
	if !exists {
		return fmt.Errorf("hostPath %s (type %s) does not exist", src.Path, typ)
	}
	var ok bool
	switch m := fi.Mode(); typ {
	case corev1.HostPathDirectory:
		ok = m.IsDir()
	case corev1.HostPathFile:
		ok = m.IsRegular()
	case corev1.HostPathSocket:
		ok = m&os.ModeSocket != 0
	case corev1.HostPathCharDev:
		ok = m&os.ModeCharDevice != 0
	case corev1.HostPathBlockDev:
		ok = m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
	default:
		return fmt.Errorf("unknown hostPath type %q", typ)
	}
	if !ok {
		return fmt.Errorf("hostPath %s is not of type %s", src.Path, typ)
	}
	return nil
}

// volumeFile is one file of a volume built from API objects.
type volumeFile struct {
	path string
	mode os.FileMode
	data []byte
}

// volumeFiles is the content of a configMap, secret, downwardAPI or
// projected volume.
func (r *Runtime) volumeFiles(ctx context.Context, p *corev1.Pod, src *corev1.VolumeSource) ([]volumeFile, error) {
	refs := apiRefs{client: r.cfg.Client}
	mode := func(m *int32, def int32) os.FileMode {
		if m != nil {
			return os.FileMode(*m)
		}
		return os.FileMode(def)
	}
	switch {
	case src.ConfigMap != nil:
		return configMapFiles(ctx, refs, p.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, mode(src.ConfigMap.DefaultMode, corev1.ConfigMapVolumeSourceDefaultMode))
	case src.Secret != nil:
		return secretFiles(ctx, refs, p.Namespace, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, mode(src.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode))
	case src.DownwardAPI != nil:
		return downwardFiles(p, src.DownwardAPI.Items, mode(src.DownwardAPI.DefaultMode, corev1.DownwardAPIVolumeSourceDefaultMode))
	}
	def := mode(src.Projected.DefaultMode, corev1.ProjectedVolumeSourceDefaultMode)
	var out []volumeFile
	for _, s := range src.Projected.Sources {
		var files []volumeFile
		var err error
		switch {
		case s.ConfigMap != nil:
			files, err = configMapFiles(ctx, refs, p.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, def)
		case s.Secret != nil:
			files, err = secretFiles(ctx, refs, p.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, def)
		case s.DownwardAPI != nil:
			files, err = downwardFiles(p, s.DownwardAPI.Items, def)
		case s.ServiceAccountToken != nil:
			var tok string
			if tok, err = r.tokens.token(ctx, r.cfg.Client, p, s.ServiceAccountToken, time.Now()); err == nil {
				files = []volumeFile{{path: s.ServiceAccountToken.Path, mode: def, data: []byte(tok)}}
			}
		default:
			err = errors.New("projected sources other than configMap, secret, downwardAPI and serviceAccountToken are not supported yet")
		}
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	return out, nil
}

func configMapFiles(ctx context.Context, refs refs, ns, name string, items []corev1.KeyToPath, optional *bool, def os.FileMode) ([]volumeFile, error) {
	cm, err := refs.ConfigMap(ctx, ns, name)
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	return keyFiles("ConfigMap", name, data, items, optional, def)
}

func secretFiles(ctx context.Context, refs refs, ns, name string, items []corev1.KeyToPath, optional *bool, def os.FileMode) ([]volumeFile, error) {
	s, err := refs.Secret(ctx, ns, name)
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return keyFiles("Secret", name, s.Data, items, optional, def)
}

// keyFiles projects an object's keys to files: every key under its own
// name, or only the listed items at their paths and modes.
func keyFiles(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, def os.FileMode) ([]volumeFile, error) {
	var out []volumeFile
	if len(items) == 0 {
		for k, v := range data {
			out = append(out, volumeFile{path: k, mode: def, data: v})
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return nil, fmt.Errorf("%s %q has no key %q", kind, name, it.Key)
		}
		m := def
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out = append(out, volumeFile{path: it.Path, mode: m, data: v})
	}
	return out, nil
}

// downwardFiles writes pod fields to files (labels and annotations as
// sorted key="value" lines, as upstream).
func downwardFiles(p *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def os.FileMode) ([]volumeFile, error) {
	var out []volumeFile
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil && it.FieldRef.FieldPath == "metadata.labels":
			v = formatMap(p.Labels)
		case it.FieldRef != nil && it.FieldRef.FieldPath == "metadata.annotations":
			v = formatMap(p.Annotations)
		case it.FieldRef != nil:
			v, err = fieldValue(p, it.FieldRef.FieldPath, nil, nil)
		case it.ResourceFieldRef != nil:
			c := findSpecContainer(p, it.ResourceFieldRef.ContainerName)
			if c == nil {
				err = fmt.Errorf("no container %q", it.ResourceFieldRef.ContainerName)
			} else {
				v, err = resourceValue(c, it.ResourceFieldRef)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		m := def
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out = append(out, volumeFile{path: it.Path, mode: m, data: []byte(v)})
	}
	return out, nil
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

func findSpecContainer(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// writeAtomic writes files into dir the way the kubelet's atomic writer
// does, so that containers see a whole new version or the old one: the
// files go into a fresh hidden directory, ..data is switched to it with a
// rename, and each top-level name is a symlink through ..data. Nothing is
// written when the content is unchanged.
func writeAtomic(dir string, files []volumeFile) error {
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	h := sha256.New()
	for _, f := range files {
		clean := filepath.Clean(f.path)
		if filepath.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.HasPrefix(clean, "..") {
			return fmt.Errorf("invalid file path %q", f.path)
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", clean, f.mode, len(f.data))
		h.Write(f.data)
	}
	version := "..v" + hex.EncodeToString(h.Sum(nil))[:16]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data := filepath.Join(dir, "..data")
	if cur, err := os.Readlink(data); err == nil && cur == version {
		return nil
	}
	tmp := filepath.Join(dir, version)
	_ = os.RemoveAll(tmp)
	top := map[string]bool{}
	for _, f := range files {
		clean := filepath.Clean(f.path)
		p := filepath.Join(tmp, clean)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode.Perm()); err != nil {
			return err
		}
		top[strings.SplitN(clean, "/", 2)[0]] = true
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	link := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(link)
	if err := os.Symlink(version, link); err != nil {
		return err
	}
	if err := os.Rename(link, data); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "..data" || name == version:
		case strings.HasPrefix(name, ".."):
			_ = os.RemoveAll(filepath.Join(dir, name)) // an older version
		case !top[name]:
			_ = os.Remove(filepath.Join(dir, name)) // a key that is gone
		}
	}
	for name := range top {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), p); err != nil {
			return err
		}
	}
	return nil
}

// mounts are the CRI mounts of container c from the pod's volume paths.
func mounts(p *corev1.Pod, c *corev1.Container, paths map[string]string) ([]*runtimeapi.Mount, error) {
	readOnlyType := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		s := v.VolumeSource
		readOnlyType[v.Name] = s.ConfigMap != nil || s.Secret != nil || s.DownwardAPI != nil || s.Projected != nil
	}
	var out []*runtimeapi.Mount
	for _, m := range c.VolumeMounts {
		host, ok := paths[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %q: no such volume", m.Name)
		}
		if m.SubPath != "" {
			sub := filepath.Clean(m.SubPath)
			if filepath.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
				return nil, fmt.Errorf("volume mount %q: invalid subPath %q", m.Name, m.SubPath)
			}
			host = filepath.Join(host, sub)
			if _, err := os.Lstat(host); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(host, 0o777); err != nil {
					return nil, fmt.Errorf("volume mount %q: %w", m.Name, err)
				}
			}
		}
		prop := runtimeapi.MountPropagation_PROPAGATION_PRIVATE
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case corev1.MountPropagationHostToContainer:
				prop = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
			case corev1.MountPropagationBidirectional:
				prop = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			}
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: m.MountPath, HostPath: host,
			Readonly: m.ReadOnly || readOnlyType[m.Name], Propagation: prop})
	}
	return out, nil
}
