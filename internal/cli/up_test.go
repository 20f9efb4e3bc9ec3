package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestUpDownStatusHelp checks that skiff --help and the help of up, down
// and status explain themselves with an example.
func TestUpDownStatusHelp(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"up ", "down ", "status ", "Example", "skiff up", "export KUBECONFIG="}},
		{[]string{"up", "--help"}, []string{"KUBECONFIG=<path>", "URL=<url>", "Example:", "--nodes", "--data-dir", "make deps", "Ctrl-C"}},
		{[]string{"down", "--help"}, []string{"Example:", "--purge", "network namespaces"}},
		{[]string{"status", "--help"}, []string{"Example:", "Exits 0", "nodes"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Main(tc.args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			text := out.String() + errOut.String()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("help lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestUpFlagsAndStatusExit(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"up", "--nodes", "0"}, 2, "--nodes 0"},
		{[]string{"up", "--port", "70000"}, 2, "--port 70000"},
		{[]string{"status", "--data-dir", "/nonexistent/skiff"}, 1, "not running"},
		{[]string{"down", "--data-dir", "/nonexistent/skiff"}, 0, ""},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		if code := Main(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d (%s), want %d with %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
