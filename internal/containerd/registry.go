package containerd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultRegistryDir is where the agents of this machine list their
// containerd sockets, so that `skiff images build` can import into every
// node the machine runs.
const DefaultRegistryDir = "/run/skiff/containerd"

// Register lists socket as the containerd of node in dir (a symlink
// dir/NODE.sock → socket) and returns a function that removes the entry.
func Register(dir, node, socket string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("containerd registry: %w", err)
	}
	link := filepath.Join(dir, node+".sock")
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(strings.TrimPrefix(socket, "unix://"), tmp); err != nil {
		return nil, fmt.Errorf("containerd registry: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return nil, fmt.Errorf("containerd registry: %w", err)
	}
	return func() { _ = os.Remove(link) }, nil
}

// Registered returns the node → socket entries of dir whose containerd
// accepts connections; stale entries (the agent is gone) are skipped.
func Registered(dir string) map[string]string {
	links, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	sort.Strings(links)
	out := map[string]string{}
	for _, l := range links {
		target, err := os.Readlink(l)
		if err != nil {
			continue
		}
		conn, err := net.DialTimeout("unix", target, time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		out[strings.TrimSuffix(filepath.Base(l), ".sock")] = target
	}
	return out
}
