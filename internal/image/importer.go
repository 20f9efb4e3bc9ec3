package image

import "context"

// Importer loads an OCI archive into a container runtime's image store, so
// pods can use the image with imagePullPolicy IfNotPresent or Never. The
// node agent's CRI runtime (containerd) implements it; until it exists,
// archives are only written to disk.
type Importer interface {
	// Import loads the OCI archive at archivePath, which holds the image
	// named name, and returns when the runtime can start containers from it.
	Import(ctx context.Context, name, archivePath string) error
}
