package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// poll calls cond every interval until it returns true or the (generous)
// deadline passes, then fails the test with what cond last said.
func poll(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testdata returns the path of a fixture.
func testdata(name string) string { return filepath.Join("testdata", name) }

// fields splits every non-empty line of s into whitespace-separated fields.
func tableRows(s string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows = append(rows, f)
		}
	}
	return rows
}

// rowNamed returns the table row whose first field is name.
func rowNamed(rows [][]string, name string) []string {
	for _, r := range rows {
		if r[0] == name {
			return r
		}
	}
	return nil
}

// ctxT returns a context bounded by d and cancelled when the test ends.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rawResponse is the outcome of one raw HTTP request.
type rawResponse struct {
	code int
	body []byte
	ct   string
}

// do sends one raw request to the server with hc.
func do(t testing.TB, hc *http.Client, s *framework.Server, method, path, contentType string, body []byte) rawResponse {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(t, time.Minute), method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return rawResponse{code: resp.StatusCode, body: b, ct: resp.Header.Get("Content-Type")}
}

// writeFile writes content into a file in a temp dir and returns its path.
func writeFile(t testing.TB, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// lines returns the non-empty lines of s, trimmed.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// sameLines fails unless got holds exactly want's lines (in any order).
func sameLines(t testing.TB, what, got string, want ...string) {
	t.Helper()
	g := lines(got)
	seen := map[string]int{}
	for _, l := range g {
		seen[l]++
	}
	ok := len(g) == len(want)
	for _, w := range want {
		if seen[w] != 1 {
			ok = false
		}
	}
	if !ok {
		t.Fatalf("%s: got lines %q, want %q", what, g, want)
	}
}

func mustContain(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s: %q not found in:\n%s", what, sub, s)
		}
	}
}

func nsName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)
}
