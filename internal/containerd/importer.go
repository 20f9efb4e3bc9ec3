package containerd

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Importer imports OCI archives into a containerd's k8s.io namespace with
// containerd's own `ctr` tool, so the CRI plugin can start containers from
// them without a registry. It implements image.Importer.
type Importer struct {
	// Address is containerd's socket path (or unix:// endpoint).
	Address string
	// Ctr is the ctr executable; empty means "ctr" on PATH.
	Ctr string
}

// Import implements image.Importer: it imports and unpacks the archive
// (for the overlayfs snapshotter the CRI plugin uses) and checks that the
// image named name is there.
func (im Importer) Import(ctx context.Context, name, archivePath string) error {
	ctr := im.Ctr
	if ctr == "" {
		ctr = "ctr"
	}
	addr := strings.TrimPrefix(im.Address, "unix://")
	run := func(args ...string) (string, error) {
		args = append([]string{"--address", addr, "--namespace", Namespace}, args...)
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, ctr, args...) //nolint:gosec // fixed tool, our arguments
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s %s: %w: %s", ctr, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return out.String(), nil
	}
	if _, err := run("images", "import", "--snapshotter", "overlayfs", archivePath); err != nil {
		return fmt.Errorf("import %s: %w", name, err)
	}
	out, err := run("images", "list", "--quiet", "name=="+name)
	if err != nil {
		return fmt.Errorf("import %s: %w", name, err)
	}
	if strings.TrimSpace(out) != name {
		return fmt.Errorf("import %s: containerd has no image of that name after importing %s", name, archivePath)
	}
	return nil
}

// Importers imports into several containerds, one after another (every
// node this machine runs).
type Importers []Importer

// Import implements image.Importer.
func (ims Importers) Import(ctx context.Context, name, archivePath string) error {
	for _, im := range ims {
		if err := im.Import(ctx, name, archivePath); err != nil {
			return err
		}
	}
	return nil
}
