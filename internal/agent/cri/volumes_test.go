package cri

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readVolume returns the files visible in dir through its symlinks, as a
// container sees them: path → content.
func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		_ = filepath.Walk(filepath.Join(dir, e.Name())+"/", func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				b, _ := os.ReadFile(p)
				rel, _ := filepath.Rel(dir, p)
				out[rel] = string(b)
			}
			return nil
		})
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			out[e.Name()] = string(b)
		}
	}
	return out
}

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	steps := []struct {
		files []volumeFile
		want  map[string]string
	}{
		{[]volumeFile{{path: "a", mode: 0o644, data: []byte("1")}, {path: "sub/b", mode: 0o600, data: []byte("2")}},
			map[string]string{"a": "1", "sub/b": "2"}},
		{[]volumeFile{{path: "a", mode: 0o644, data: []byte("changed")}},
			map[string]string{"a": "changed"}},
		{nil, map[string]string{}},
	}
	for i, st := range steps {
		if err := writeAtomic(dir, st.files); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got := readVolume(t, dir)
		if len(got) != len(st.want) {
			t.Errorf("step %d: files %v, want %v", i, got, st.want)
		}
		for k, v := range st.want {
			if got[k] != v {
				t.Errorf("step %d: %s = %q, want %q", i, k, got[k], v)
			}
		}
		// one version directory only
		entries, _ := os.ReadDir(dir)
		var versions []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..v") {
				versions = append(versions, e.Name())
			}
		}
		if len(versions) != 1 {
			t.Errorf("step %d: versions %v", i, versions)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "..data")); err != nil || !fi.IsDir() {
		t.Errorf("..data: %v", err)
	}
	for _, bad := range []string{"../x", "/abs", "..hidden", "."} {
		if err := writeAtomic(dir, []volumeFile{{path: bad, mode: 0o644}}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	data := map[string][]byte{"a": []byte("1"), "b": []byte("2")}
	mode := int32(0o400)
	yes := true
	tests := []struct {
		name     string
		items    []corev1.KeyToPath
		optional *bool
		want     []string // path:mode:data
		wantErr  bool
	}{
		{name: "all keys", want: []string{"a:644:1", "b:644:2"}},
		{name: "items", items: []corev1.KeyToPath{{Key: "b", Path: "dir/bee", Mode: &mode}}, want: []string{"dir/bee:400:2"}},
		{name: "missing key", items: []corev1.KeyToPath{{Key: "c", Path: "c"}}, wantErr: true},
		{name: "missing optional key", items: []corev1.KeyToPath{{Key: "c", Path: "c"}}, optional: &yes},
	}
	for _, tt := range tests {
		files, err := keyFiles("ConfigMap", "cm", data, tt.items, tt.optional, 0o644)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: error %v", tt.name, err)
			continue
		}
		var got []string
		for _, f := range files {
			got = append(got, fmt.Sprintf("%s:%o:%s", f.path, f.mode.Perm(), f.data))
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHostPathTypes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	typ := func(v corev1.HostPathType) *corev1.HostPathType { return &v }
	tests := []struct {
		path string
		typ  *corev1.HostPathType
		ok   bool
	}{
		{filepath.Join(dir, "nothing"), nil, true},
		{filepath.Join(dir, "new/dir"), typ(corev1.HostPathDirectoryOrCreate), true},
		{filepath.Join(dir, "new/file"), typ(corev1.HostPathFileOrCreate), true},
		{dir, typ(corev1.HostPathDirectory), true},
		{file, typ(corev1.HostPathDirectory), false},
		{file, typ(corev1.HostPathFile), true},
		{file, typ(corev1.HostPathDirectoryOrCreate), false},
		{filepath.Join(dir, "missing"), typ(corev1.HostPathFile), false},
		{file, typ(corev1.HostPathSocket), false},
	}
	for _, tt := range tests {
		err := hostPath(&corev1.HostPathVolumeSource{Path: tt.path, Type: tt.typ})
		if (err == nil) != tt.ok {
			t.Errorf("%s (%v): error %v, want ok=%v", tt.path, tt.typ, err, tt.ok)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "new/file")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("FileOrCreate did not create a file: %v", err)
	}
}

func TestMounts(t *testing.T) {
	dir := t.TempDir()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
	}}}
	paths := map[string]string{"data": filepath.Join(dir, "data"), "cfg": filepath.Join(dir, "cfg")}
	c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "data", MountPath: "/data"},
		{Name: "data", MountPath: "/logs", SubPath: "logs/app"},
		{Name: "cfg", MountPath: "/etc/app"},
	}}
	ms, err := mounts(p, c, paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Readonly || ms[1].HostPath != filepath.Join(dir, "data/logs/app") || !ms[2].Readonly {
		t.Errorf("mounts %v", ms)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data/logs/app")); err != nil || !fi.IsDir() {
		t.Errorf("subPath not created: %v", err)
	}
	for _, bad := range []corev1.VolumeMount{{Name: "nope", MountPath: "/x"}, {Name: "data", MountPath: "/x", SubPath: "../escape"}} {
		if _, err := mounts(p, &corev1.Container{VolumeMounts: []corev1.VolumeMount{bad}}, paths); err == nil {
			t.Errorf("mount %+v accepted", bad)
		}
	}
}

func TestDownwardFiles(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"b": "2", "a": "1"}}}
	files, err := downwardFiles(p, []corev1.DownwardAPIVolumeFile{
		{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
	}, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if string(files[0].data) != "a=\"1\"\nb=\"2\"" || string(files[1].data) != "p" {
		t.Errorf("files %q %q", files[0].data, files[1].data)
	}
}
