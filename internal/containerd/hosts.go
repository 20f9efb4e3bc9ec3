package containerd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RegistryConfigDir is the CRI plugin's registry config_path: one
// directory per registry host (HOST:PORT) with a hosts.toml, which
// containerd reads at every pull, so a registry added while containerd
// runs is used at once.
func (c *Containerd) RegistryConfigDir() string { return filepath.Join(c.cfg.Dir, "certs.d") }

// AddInsecureRegistry makes containerd pull from host ("HOST:PORT" or
// "HOST") over plain HTTP.
func (c *Containerd) AddInsecureRegistry(host string) error {
	return WriteInsecureRegistry(c.RegistryConfigDir(), host)
}

// WriteInsecureRegistry writes the hosts.toml under configPath that
// tells containerd (1.5 and later) to reach host over plain HTTP.
func WriteInsecureRegistry(configPath, host string) error {
	if err := checkRegistryHost(host); err != nil {
		return err
	}
	dir := filepath.Join(configPath, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	server := "http://" + host
	toml := strings.Join([]string{
		"# written by skiff: " + host + " is reached over plain HTTP",
		"server = " + strconv.Quote(server),
		"",
		"[host." + strconv.Quote(server) + "]",
		"  capabilities = [\"pull\", \"resolve\"]",
		"",
	}, "\n")
	tmp := filepath.Join(dir, ".hosts.toml.tmp")
	if err := os.WriteFile(tmp, []byte(toml), 0o644); err != nil {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "hosts.toml")); err != nil {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	return nil
}

// checkRegistryHost accepts a registry host as images name it: a host
// name or IP address with an optional port, nothing else.
func checkRegistryHost(host string) error {
	h, port := host, ""
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		var err error
		if h, port, err = net.SplitHostPort(host); err != nil {
			return fmt.Errorf("registry host %q: %w", host, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("registry host %q: bad port", host)
		}
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "" || strings.HasPrefix(h, ".") || strings.Contains(h, "..") || net.ParseIP(h) == nil && strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
		return fmt.Errorf("registry host %q: want HOST or HOST:PORT", host)
	}
	return nil
}
