package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindModule(t *testing.T) {
	root := t.TempDir()
	skiff := filepath.Join(root, "skiff")
	other := filepath.Join(root, "other")
	for dir, gomod := range map[string]string{
		skiff: "module github.com/skiff-sh/skiff\n\ngo 1.26\n",
		other: "module example.com/other\n",
	} {
		if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		from    string
		want    string
		wantErr bool
	}{
		{skiff, skiff, false},
		{filepath.Join(skiff, "a", "b"), skiff, false},
		{filepath.Join(other, "a"), "", true},
		{root, "", true},
	}
	for _, tt := range tests {
		got, err := findModule(tt.from)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("findModule(%s) = %q, %v; want %q (error %t)", tt.from, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestImagesUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"images"}, 2, "skiff images build"},
		{[]string{"images", "push"}, 2, "skiff images build"},
		{[]string{"images", "build", "--busybox", "/nonexistent", "--testserver-bin", "/nonexistent", "--out", "OUT"}, 1, "busybox"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := append([]string(nil), tt.args...)
		for i, a := range args {
			if a == "OUT" {
				args[i] = t.TempDir()
			}
		}
		code := Main(args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("skiff %v: code %d, stderr %q; want code %d and %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
		}
	}
}
