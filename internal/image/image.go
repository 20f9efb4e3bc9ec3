// Package image builds OCI images from local files: a single gzip'd tar
// layer, an image config and a manifest, written as an OCI image layout or as
// an OCI archive (a tar of that layout) that containerd can import. Output is
// deterministic: the same inputs give the same digests.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // registers sha256 for go-digest
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationContainerdImageName is the index.json annotation that containerd
// reads an imported image's full name from.
const AnnotationContainerdImageName = "io.containerd.image.name"

// epoch returns the modification time of every tar entry and the image's
// creation time, fixed so builds are reproducible.
func epoch() time.Time { return time.Unix(0, 0).UTC() }

// File is one entry of an image's filesystem.
type File struct {
	// Path is the absolute path inside the image ("/bin/busybox").
	Path string
	// Mode holds the permission bits (and sticky/setuid bits) of the entry.
	Mode os.FileMode
	// Type is tar.TypeReg, tar.TypeDir or tar.TypeSymlink; zero means
	// tar.TypeReg.
	Type byte
	// Data is the content of a regular file.
	Data []byte
	// Link is the target of a symlink.
	Link string
}

// Config is the runtime configuration recorded in the image config.
type Config struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	ExposedPorts []string // "8080/tcp"
}

// Spec describes an image to build.
type Spec struct {
	// Name is the image's full reference ("skiff.local/busybox:latest").
	Name   string
	Files  []File
	Config Config
	// Arch is the GOARCH-style architecture; empty means runtime.GOARCH.
	Arch string
}

// Image is a built image: its blobs and the descriptors that tie them
// together.
type Image struct {
	Name     string
	Index    ocispec.Index
	Manifest ocispec.Descriptor // the manifest's descriptor, as listed in the index
	Config   ocispec.Descriptor
	Layer    ocispec.Descriptor
	// DiffID is the digest of the uncompressed layer.
	DiffID digest.Digest
	// Blobs maps each blob's digest to its content.
	Blobs map[digest.Digest][]byte
}

// Digest is the image's identity: its manifest's digest.
func (img *Image) Digest() digest.Digest { return img.Manifest.Digest }

// Build builds the image that spec describes.
func Build(spec Spec) (*Image, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("building image: no name")
	}
	arch := spec.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	rawLayer, err := layerTar(spec.Files)
	if err != nil {
		return nil, fmt.Errorf("building image %s: %w", spec.Name, err)
	}
	gzLayer, err := gzipBytes(rawLayer)
	if err != nil {
		return nil, fmt.Errorf("building image %s: %w", spec.Name, err)
	}
	img := &Image{Name: spec.Name, DiffID: digest.FromBytes(rawLayer), Blobs: map[digest.Digest][]byte{}}
	img.Layer = img.add(ocispec.MediaTypeImageLayerGzip, gzLayer)

	platform := ocispec.Platform{OS: "linux", Architecture: arch}
	ports := map[string]struct{}{}
	for _, p := range spec.Config.ExposedPorts {
		ports[p] = struct{}{}
	}
	created := epoch()
	cfg := ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config: ocispec.ImageConfig{
			Entrypoint: spec.Config.Entrypoint,
			Cmd:        spec.Config.Cmd,
			Env:        spec.Config.Env,
			WorkingDir: spec.Config.WorkingDir,
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{img.DiffID}},
		History: []ocispec.History{{Created: &created, CreatedBy: "skiff images build"}},
	}
	if len(ports) > 0 {
		cfg.Config.ExposedPorts = ports
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding config of %s: %w", spec.Name, err)
	}
	img.Config = img.add(ocispec.MediaTypeImageConfig, cfgJSON)

	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.Config,
		Layers:    []ocispec.Descriptor{img.Layer},
	}
	manJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest of %s: %w", spec.Name, err)
	}
	img.Manifest = img.add(ocispec.MediaTypeImageManifest, manJSON)
	img.Manifest.Platform = &platform
	img.Manifest.Annotations = map[string]string{
		// OCI's ref.name holds the tag; containerd's annotation the full name
		// (the convention containerd's own exporter follows).
		ocispec.AnnotationRefName:     refTag(spec.Name),
		AnnotationContainerdImageName: spec.Name,
	}
	img.Index = ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{img.Manifest},
	}
	return img, nil
}

// refTag returns the tag of a reference ("latest" for "a.b/c:latest"), or
// the whole name when it has none.
func refTag(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return name
}

func (img *Image) add(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	img.Blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// layerTar writes files as a tar, sorted by path, with parent directories
// added where missing and fixed ownership and times.
func layerTar(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			continue
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("%s listed twice", p)
		}
		f.Path = p
		entries[p] = f
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = File{Path: dir, Type: tar.TypeDir, Mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		if f.Type == 0 {
			f.Type = tar.TypeReg
		}
		if strings.HasPrefix(p[1:], "/") {
			return nil, fmt.Errorf("bad path %q", p)
		}
		hdr := &tar.Header{
			Typeflag: f.Type,
			Name:     p[1:],
			Mode:     int64(f.Mode.Perm()) | modeBits(f.Mode),
			ModTime:  epoch(),
			Format:   tar.FormatPAX,
		}
		switch f.Type {
		case tar.TypeReg:
			hdr.Size = int64(len(f.Data))
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = f.Link
		default:
			return nil, fmt.Errorf("%s: unsupported tar type %q", p, f.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
		if f.Type == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("writing %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing layer: %w", err)
	}
	return buf.Bytes(), nil
}

// modeBits maps Go's setuid, setgid and sticky bits to tar's.
func modeBits(m os.FileMode) int64 {
	var b int64
	if m&os.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	// The header carries no name and a zero mtime, so it is the same for
	// every build.
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	return buf.Bytes(), nil
}

// layoutFiles returns the files of the image's OCI layout, sorted by path.
func (img *Image) layoutFiles() ([]File, error) {
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return nil, err
	}
	index, err := json.Marshal(img.Index)
	if err != nil {
		return nil, fmt.Errorf("encoding index: %w", err)
	}
	files := []File{
		{Path: "/" + ocispec.ImageLayoutFile, Mode: 0o644, Data: layout},
		{Path: "/" + ocispec.ImageIndexFile, Mode: 0o644, Data: index},
	}
	for d, b := range img.Blobs {
		files = append(files, File{Path: path.Join("/", ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()), Mode: 0o644, Data: b})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// WriteLayout writes the image as an OCI image layout into dir, which is
// created if missing.
func (img *Image) WriteLayout(dir string) error {
	files, err := img.layoutFiles()
	if err != nil {
		return fmt.Errorf("writing layout of %s: %w", img.Name, err)
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("writing layout of %s: %w", img.Name, err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return fmt.Errorf("writing layout of %s: %w", img.Name, err)
		}
	}
	return nil
}

// WriteArchive writes the image as an OCI archive (a tar of its layout), the
// format `ctr images import` and containerd's import API read.
func (img *Image) WriteArchive(w io.Writer) error {
	files, err := img.layoutFiles()
	if err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	b, err := layerTar(files)
	if err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	return nil
}

// WriteArchiveFile writes the OCI archive to path atomically (through a
// temporary file in the same directory).
func (img *Image) WriteArchiveFile(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	defer os.Remove(tmp.Name())
	if err := img.WriteArchive(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("writing archive of %s: %w", img.Name, err)
	}
	return nil
}
