package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
)

// skiffModule is the module path of skiff's source, which the testserver
// is built from.
const skiffModule = "github.com/skiff-sh/skiff"

func imagesGroup() *group {
	return &group{name: "images", description: "Build the test images and import them into this machine's nodes.",
		subs: []subcommand{{name: "build", summary: "build skiff.local/busybox and skiff.local/testserver and import them into the nodes' containerd",
			run: runImagesBuild}},
		example: `  skiff images build --data-dir /var/lib/skiff`}
}

func runImagesBuild(ctx context.Context, e *env, args []string) error {
	var dataDir, out, busybox, testserver, moduleDir, logLevel, sockets string
	var noImport bool
	fs := newFlagSet(e, "images build", `
Build the images skiff's tests use, skiff.local/busybox:latest and
skiff.local/testserver:latest, as OCI archives in DATA_DIR/images (or --out).
busybox comes from Debian's busybox-static; the test server is built with
'go build' (CGO_ENABLED=0) from skiff's source unless --testserver-bin is
given. The same inputs give the same digests.

The images are then imported into the containerd of every node this machine
runs ('skiff agent --runtime=cri' lists its containerd in /run/skiff/containerd),
or into the containerd sockets given with --containerd-socket.`,
		`  skiff images build --data-dir /var/lib/skiff
  skiff images build --out /tmp/images --testserver-bin ./testserver`)
	fs.StringVar(&dataDir, "data-dir", "/var/lib/skiff", "skiff's data directory; archives go to DATA_DIR/images")
	fs.StringVar(&out, "out", "", "directory for the archives (default DATA_DIR/images)")
	fs.StringVar(&busybox, "busybox", image.DefaultBusybox, "static busybox binary (apt-get install busybox-static)")
	fs.StringVar(&testserver, "testserver-bin", "", "prebuilt static testserver binary; empty builds it from --module-dir")
	fs.StringVar(&moduleDir, "module-dir", "", "root of skiff's source to build the testserver from (default: found from the working directory)")
	fs.StringVar(&sockets, "containerd-socket", "", "containerd sockets to import into, comma-separated; empty means every node's this machine runs")
	fs.BoolVar(&noImport, "no-import", false, "only write the archives")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, logLevel)
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(dataDir, "images")
	}
	if testserver == "" && moduleDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("finding skiff's source: %w", err)
		}
		if moduleDir, err = findModule(wd); err != nil {
			return err
		}
	}
	var importers containerd.Importers
	if !noImport {
		targets := map[string]string{}
		if sockets != "" {
			for _, s := range strings.Split(sockets, ",") {
				targets[s] = s
			}
		} else {
			targets = containerd.Registered(containerd.DefaultRegistryDir)
		}
		for node, sock := range targets {
			log.Info("importing into containerd", "node", node, "socket", sock)
			importers = append(importers, containerd.Importer{Address: sock})
		}
	}
	opts := image.Options{
		Busybox:    busybox,
		Testserver: testserver,
		ModuleDir:  moduleDir,
		OutDir:     out,
		Log:        log,
	}
	if len(importers) > 0 {
		opts.Importer = importers
	}
	results, err := image.BuildTestImages(ctx, opts)
	if err != nil {
		return fmt.Errorf("building images: %w", err)
	}
	for _, r := range results {
		fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", r.Name, r.Digest, r.Archive)
	}
	if len(importers) == 0 {
		fmt.Fprintf(e.stdout, "\nNo node's containerd is running on this machine, so nothing was imported.\n"+
			"Start 'skiff agent' and run this again, or: ctr -n k8s.io images import %s\n", filepath.Join(out, "*.oci.tar"))
		return nil
	}
	fmt.Fprintf(e.stdout, "\nImported into %d containerd(s).\n", len(importers))
	return nil
}

// findModule returns the nearest directory at or above dir whose go.mod
// declares skiff's module.
func findModule(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && moduleLine(string(b)) == skiffModule {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no skiff source (go.mod of %s) at or above %s; pass --module-dir or --testserver-bin", skiffModule, dir)
		}
	}
}

// moduleLine returns the module path declared in a go.mod file.
func moduleLine(gomod string) string {
	for _, line := range strings.Split(gomod, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}
