package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestRefTag(t *testing.T) {
	tests := []struct{ in, want string }{
		{"skiff.local/busybox:latest", "latest"},
		{"localhost:5000/x:v1", "v1"},
		{"localhost:5000/x", "localhost:5000/x"},
		{"busybox", "busybox"},
	}
	for _, tt := range tests {
		if got := refTag(tt.in); got != tt.want {
			t.Errorf("refTag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestArchiveFileName(t *testing.T) {
	tests := []struct{ in, want string }{
		{BusyboxName, "busybox.oci.tar"},
		{TestserverName, "testserver.oci.tar"},
		{"x", "x.oci.tar"},
	}
	for _, tt := range tests {
		if got := ArchiveFileName(tt.in); got != tt.want {
			t.Errorf("ArchiveFileName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// tarEntry is a tar header reduced to what the tests compare.
type tarEntry struct {
	Name string
	Type byte
	Mode int64
	Link string
	Data string
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if !h.ModTime.Equal(epoch()) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d, want epoch and root", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		out = append(out, tarEntry{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, Link: h.Linkname, Data: string(b)})
	}
}

func TestLayerTar(t *testing.T) {
	tests := []struct {
		name    string
		files   []File
		want    []tarEntry
		wantErr bool
	}{
		{
			name: "sorted with parents",
			files: []File{
				{Path: "/usr/bin/x", Type: tar.TypeSymlink, Mode: 0o777, Link: "/bin/busybox"},
				{Path: "/bin/busybox", Mode: 0o755, Data: []byte("elf")},
				{Path: "/tmp", Type: tar.TypeDir, Mode: 0o777 | os.ModeSticky},
			},
			want: []tarEntry{
				{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
				{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Data: "elf"},
				{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
				{Name: "usr/", Type: tar.TypeDir, Mode: 0o755},
				{Name: "usr/bin/", Type: tar.TypeDir, Mode: 0o755},
				{Name: "usr/bin/x", Type: tar.TypeSymlink, Mode: 0o777, Link: "/bin/busybox"},
			},
		},
		{name: "duplicate", files: []File{{Path: "/a"}, {Path: "a"}}, wantErr: true},
		{name: "unsupported type", files: []File{{Path: "/dev/null", Type: tar.TypeChar}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := layerTar(tt.files)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %t", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := readTar(t, bytes.NewReader(b)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	spec := func() Spec {
		return Spec{Name: "skiff.local/t:latest", Arch: "amd64",
			Files:  []File{{Path: "/b", Data: []byte("b")}, {Path: "/a/x", Data: []byte("x"), Mode: 0o600}},
			Config: Config{Entrypoint: []string{"/b"}, ExposedPorts: []string{"80/tcp", "53/udp"}, Env: []string{"A=1"}}}
	}
	archive := func(s Spec) (digest.Digest, []byte) {
		img, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := img.WriteArchive(&buf); err != nil {
			t.Fatal(err)
		}
		return img.Digest(), buf.Bytes()
	}
	d1, a1 := archive(spec())
	s2 := spec()
	s2.Files[0], s2.Files[1] = s2.Files[1], s2.Files[0] // order of input does not matter
	d2, a2 := archive(s2)
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Errorf("two builds differ: %s vs %s (archives equal: %t)", d1, d2, bytes.Equal(a1, a2))
	}
	s3 := spec()
	s3.Files[0].Data = []byte("c")
	if d3, _ := archive(s3); d3 == d1 {
		t.Errorf("changing a file kept the digest %s", d1)
	}
}

func TestBuildNeedsName(t *testing.T) {
	if _, err := Build(Spec{}); err == nil {
		t.Error("Build without a name succeeded")
	}
}

func TestCheckStaticELF(t *testing.T) {
	bb := needBusybox(t)
	busybox, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"static busybox", busybox, ""},
		{"not ELF", []byte("#!/bin/sh\n"), "not an ELF"},
	}
	if sh, err := os.ReadFile("/bin/sh"); err == nil {
		if info, err := parseELF(sh); err == nil && info.interp {
			tests = append(tests, struct {
				name    string
				data    []byte
				wantErr string
			}{"dynamic /bin/sh", sh, "dynamically linked"})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkStaticELF(tt.data)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func needBusybox(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(DefaultBusybox); err != nil {
		t.Skipf("%s missing (apt-get install busybox-static): %v", DefaultBusybox, err)
	}
	return DefaultBusybox
}

// testImages builds both images once for the tests that read them back.
type builtImages struct {
	once    sync.Once
	dir     string
	results []Result
	err     error
}

func (b *builtImages) get(t *testing.T) (string, []Result) {
	t.Helper()
	needBusybox(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "skiff-image-test-")
		if b.err != nil {
			return
		}
		modDir, err := filepath.Abs("../..")
		if err != nil {
			b.err = err
			return
		}
		b.results, b.err = BuildTestImages(context.Background(), Options{ModuleDir: modDir, OutDir: b.dir})
	})
	if b.err != nil {
		t.Fatalf("BuildTestImages: %v", b.err)
	}
	return b.dir, b.results
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

var shared builtImages

// layoutFromArchive extracts an OCI archive into a directory.
func layoutFromArchive(t *testing.T, archive string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatalf("reading %s: %v", archive, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if h.Typeflag != tar.TypeReg {
			t.Fatalf("%s: unexpected entry %s of type %q", archive, h.Name, h.Typeflag)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readBlob reads a blob from a layout and checks its digest and size
// against desc.
func readBlob(t *testing.T, layout string, desc ocispec.Descriptor) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(layout, "blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded()))
	if err != nil {
		t.Fatalf("blob %s: %v", desc.Digest, err)
	}
	if got := digest.FromBytes(b); got != desc.Digest {
		t.Errorf("blob %s has digest %s", desc.Digest, got)
	}
	if int64(len(b)) != desc.Size {
		t.Errorf("blob %s has size %d, descriptor says %d", desc.Digest, len(b), desc.Size)
	}
	return b
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

// readImage reads an image back from an OCI layout: index, manifest, config
// and the layer's entries.
func readImage(t *testing.T, layout, wantName string) (ocispec.Image, map[string]tarEntry) {
	t.Helper()
	var ol ocispec.ImageLayout
	b, err := os.ReadFile(filepath.Join(layout, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, b, &ol)
	if ol.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version %q", ol.Version)
	}
	var idx ocispec.Index
	if b, err = os.ReadFile(filepath.Join(layout, "index.json")); err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, b, &idx)
	if idx.SchemaVersion != 2 || len(idx.Manifests) != 1 {
		t.Fatalf("index = %+v, want schema 2 with one manifest", idx)
	}
	md := idx.Manifests[0]
	if md.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type %q", md.MediaType)
	}
	if got := md.Annotations[AnnotationContainerdImageName]; got != wantName {
		t.Errorf("containerd name annotation = %q, want %q", got, wantName)
	}
	if got := md.Annotations[ocispec.AnnotationRefName]; got != "latest" {
		t.Errorf("ref.name annotation = %q, want latest", got)
	}
	if md.Platform == nil || md.Platform.OS != "linux" {
		t.Errorf("manifest platform = %+v", md.Platform)
	}
	var man ocispec.Manifest
	decodeJSON(t, readBlob(t, layout, md), &man)
	if man.Config.MediaType != ocispec.MediaTypeImageConfig || len(man.Layers) != 1 || man.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("manifest = %+v", man)
	}
	var cfg ocispec.Image
	decodeJSON(t, readBlob(t, layout, man.Config), &cfg)
	zr, err := gzip.NewReader(bytes.NewReader(readBlob(t, layout, man.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(raw) {
		t.Errorf("config diff_ids = %v, want [%s]", cfg.RootFS.DiffIDs, digest.FromBytes(raw))
	}
	entries := map[string]tarEntry{}
	for _, e := range readTar(t, bytes.NewReader(raw)) {
		entries[e.Name] = e
	}
	return cfg, entries
}

func TestBuildTestImages(t *testing.T) {
	dir, results := shared.get(t)
	if len(results) != 2 || results[0].Name != BusyboxName || results[1].Name != TestserverName {
		t.Fatalf("results = %+v", results)
	}
	for _, r := range results {
		t.Logf("%s %s %s (%d bytes)", r.Name, r.Digest, r.Archive, r.Size)
		if filepath.Dir(r.Archive) != dir {
			t.Errorf("archive %s not in %s", r.Archive, dir)
		}
	}

	t.Run("busybox", func(t *testing.T) {
		layout := layoutFromArchive(t, results[0].Archive)
		cfg, entries := readImage(t, layout, BusyboxName)
		if !reflect.DeepEqual(cfg.Config.Cmd, []string{"sh"}) {
			t.Errorf("Cmd = %v", cfg.Config.Cmd)
		}
		checkBusybox(t, entries)
		if _, ok := entries["testserver"]; ok {
			t.Error("busybox image has /testserver")
		}
	})

	t.Run("testserver", func(t *testing.T) {
		layout := layoutFromArchive(t, results[1].Archive)
		cfg, entries := readImage(t, layout, TestserverName)
		if !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/testserver"}) {
			t.Errorf("Entrypoint = %v", cfg.Config.Entrypoint)
		}
		if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("ExposedPorts = %v", cfg.Config.ExposedPorts)
		}
		checkBusybox(t, entries)
		ts, ok := entries["testserver"]
		if !ok {
			t.Fatal("no /testserver")
		}
		if ts.Type != tar.TypeReg || ts.Mode != 0o755 {
			t.Errorf("/testserver type %q mode %o", ts.Type, ts.Mode)
		}
		if err := checkStaticELF([]byte(ts.Data)); err != nil {
			t.Errorf("/testserver: %v", err)
		}
	})

	t.Run("extracted busybox runs", func(t *testing.T) {
		layout := layoutFromArchive(t, results[0].Archive)
		_, entries := readImage(t, layout, BusyboxName)
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(root, "bin", "busybox")
		if err := os.WriteFile(bin, []byte(entries["bin/busybox"].Data), os.FileMode(entries["bin/busybox"].Mode)); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "echo", "hi").Output()
		if err != nil || string(out) != "hi\n" {
			t.Errorf("%s echo hi = %q, %v; want \"hi\\n\"", bin, out, err)
		}
	})
}

func checkBusybox(t *testing.T, entries map[string]tarEntry) {
	t.Helper()
	bb, ok := entries["bin/busybox"]
	if !ok || bb.Type != tar.TypeReg || bb.Mode != 0o755 {
		t.Fatalf("bin/busybox = %+v", bb.Name)
	}
	if err := checkStaticELF([]byte(bb.Data)); err != nil {
		t.Errorf("bin/busybox: %v", err)
	}
	for _, applet := range []string{"bin/sh", "bin/ls", "bin/cat", "bin/sleep", "usr/bin/wget", "bin/ping"} {
		e, ok := entries[applet]
		if !ok {
			t.Errorf("no %s", applet)
			continue
		}
		if e.Type != tar.TypeSymlink || e.Link != "/bin/busybox" {
			t.Errorf("%s: type %q -> %q, want a symlink to /bin/busybox", applet, e.Type, e.Link)
		}
	}
	links := 0
	for _, e := range entries {
		if e.Type == tar.TypeSymlink {
			links++
			if e.Link != "/bin/busybox" {
				t.Errorf("%s -> %s, want /bin/busybox", e.Name, e.Link)
			}
		}
	}
	if links < 100 {
		t.Errorf("%d applet symlinks, want at least 100", links)
	}
	if tmp := entries["tmp/"]; tmp.Type != tar.TypeDir || tmp.Mode != 0o1777 {
		t.Errorf("tmp/ = type %q mode %o, want dir 1777", tmp.Type, tmp.Mode)
	}
	for name, want := range map[string]string{"etc/passwd": "nobody:x:65534:65534:", "etc/group": "root:x:0:"} {
		if !strings.Contains(entries[name].Data, want) {
			t.Errorf("%s = %q, want it to contain %q", name, entries[name].Data, want)
		}
	}
}

// recordingImporter records the imports it is asked for.
type recordingImporter struct {
	names []string
	err   error
}

func (r *recordingImporter) Import(_ context.Context, name, archivePath string) error {
	if _, err := os.Stat(archivePath); err != nil {
		return err
	}
	r.names = append(r.names, name)
	return r.err
}

func TestBuildTestImagesPrebuiltAndImport(t *testing.T) {
	_, first := shared.get(t)
	// Take the testserver binary out of the first build's image.
	layout := layoutFromArchive(t, first[1].Archive)
	_, entries := readImage(t, layout, TestserverName)
	bin := filepath.Join(t.TempDir(), "testserver")
	if err := os.WriteFile(bin, []byte(entries["testserver"].Data), 0o755); err != nil {
		t.Fatal(err)
	}

	imp := &recordingImporter{}
	out := t.TempDir()
	results, err := BuildTestImages(context.Background(), Options{Testserver: bin, OutDir: out, Importer: imp})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(imp.names, []string{BusyboxName, TestserverName}) {
		t.Errorf("imported %v", imp.names)
	}
	for i := range results {
		if results[i].Digest != first[i].Digest {
			t.Errorf("%s: rebuilt digest %s, first build %s", results[i].Name, results[i].Digest, first[i].Digest)
		}
		a, _ := os.ReadFile(results[i].Archive)
		b, _ := os.ReadFile(first[i].Archive)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: archives differ between builds", results[i].Name)
		}
	}

	failing := &recordingImporter{err: errors.New("no containerd")}
	if _, err := BuildTestImages(context.Background(), Options{Testserver: bin, OutDir: out, Importer: failing}); err == nil || !strings.Contains(err.Error(), "no containerd") {
		t.Errorf("import failure: err = %v", err)
	}

	if _, err := BuildTestImages(context.Background(), Options{Busybox: "/nonexistent/busybox", Testserver: bin, OutDir: out}); err == nil {
		t.Error("missing busybox: no error")
	}
	if _, err := BuildTestImages(context.Background(), Options{Testserver: "/bin/sh", OutDir: out}); err == nil {
		t.Error("dynamic testserver binary: no error")
	}
}
