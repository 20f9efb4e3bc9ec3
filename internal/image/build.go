package image

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Options says where BuildTestImages takes its inputs from and where it
// writes.
type Options struct {
	// Busybox is the static busybox binary; empty means DefaultBusybox.
	Busybox string
	// Testserver is a prebuilt static test server binary; empty means build
	// it with `go build` from ModuleDir.
	Testserver string
	// ModuleDir is the root of the skiff module (where go.mod is).
	ModuleDir string
	// OutDir receives one OCI archive per image.
	OutDir string
	// Importer, when set, loads each archive into a runtime after it is
	// written.
	Importer Importer
	// Log receives progress lines; nil discards them.
	Log *slog.Logger
}

// Result is one built image.
type Result struct {
	Name    string
	Digest  digest.Digest // the manifest digest
	Archive string        // path of the OCI archive
	Size    int64         // size of the archive in bytes
}

// ArchiveFileName is the file name of an image's OCI archive in the output
// directory ("busybox.oci.tar" for skiff.local/busybox:latest).
func ArchiveFileName(name string) string {
	base := name[strings.LastIndex(name, "/")+1:]
	if i := strings.Index(base, ":"); i >= 0 {
		base = base[:i]
	}
	return base + ".oci.tar"
}

// BuildTestImages builds skiff.local/busybox:latest and
// skiff.local/testserver:latest as OCI archives in opts.OutDir.
func BuildTestImages(ctx context.Context, opts Options) ([]Result, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bbPath := opts.Busybox
	if bbPath == "" {
		bbPath = DefaultBusybox
	}
	log.Info("reading busybox", "path", bbPath)
	bb, err := BusyboxFiles(ctx, bbPath)
	if err != nil {
		return nil, err
	}
	var server []byte
	if opts.Testserver != "" {
		log.Info("reading testserver", "path", opts.Testserver)
		if server, err = os.ReadFile(opts.Testserver); err != nil {
			return nil, fmt.Errorf("reading testserver: %w", err)
		}
	} else {
		if opts.ModuleDir == "" {
			return nil, fmt.Errorf("no testserver binary and no module directory to build it from")
		}
		log.Info("building testserver", "module", opts.ModuleDir)
		if server, err = BuildTestserver(ctx, opts.ModuleDir, ""); err != nil {
			return nil, err
		}
	}
	ts, err := TestserverSpec(bb, server)
	if err != nil {
		return nil, err
	}
	var results []Result
	for _, spec := range []Spec{BusyboxSpec(bb), ts} {
		log.Info("building image", "name", spec.Name)
		img, err := Build(spec)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(opts.OutDir, ArchiveFileName(spec.Name))
		if err := img.WriteArchiveFile(p); err != nil {
			return nil, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("writing archive of %s: %w", spec.Name, err)
		}
		log.Info("wrote image", "name", spec.Name, "digest", img.Digest(), "archive", p)
		if opts.Importer != nil {
			log.Info("importing image", "name", spec.Name)
			if err := opts.Importer.Import(ctx, spec.Name, p); err != nil {
				return nil, fmt.Errorf("importing %s: %w", spec.Name, err)
			}
		}
		results = append(results, Result{Name: spec.Name, Digest: img.Digest(), Archive: p, Size: fi.Size()})
	}
	return results, nil
}
