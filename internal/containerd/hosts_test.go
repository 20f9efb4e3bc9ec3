package containerd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
)

func TestInsecureRegistry(t *testing.T) {
	dir := t.TempDir()
	c, err := containerd.New(containerd.Config{Dir: dir, SandboxImage: image.PauseName})
	if err != nil {
		t.Fatal(err)
	}
	if want := `config_path = "` + filepath.Join(dir, "certs.d") + `"`; !strings.Contains(c.Config(), want) {
		t.Errorf("config lacks %s:\n%s", want, c.Config())
	}
	for _, host := range []string{"10.250.0.1:5000", "registry.example.com", "reg-1.lab:443"} {
		if err := c.AddInsecureRegistry(host); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		b, err := os.ReadFile(filepath.Join(c.RegistryConfigDir(), host, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`server = "http://` + host + `"`, `[host."http://` + host + `"]`, `capabilities = ["pull", "resolve"]`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: hosts.toml lacks %s:\n%s", host, want, b)
			}
		}
	}
	for _, bad := range []string{"", "http://r.example.com", "r.example.com/path", "r:0", "r:99999", "r:port", "..", ".hidden", "a b", ":5000"} {
		if err := c.AddInsecureRegistry(bad); err == nil {
			t.Errorf("AddInsecureRegistry(%q) accepted", bad)
		}
	}
	entries, err := os.ReadDir(c.RegistryConfigDir())
	if err != nil || len(entries) != 3 {
		t.Errorf("certs.d holds %v (%v), want the three good hosts only", entries, err)
	}
}
