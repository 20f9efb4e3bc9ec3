// Package e2e drives the real skiff binary with stock kubectl and client-go.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// env is the run's environment, set up once by TestMain: the binary is
// built once per `go test` run.
var env *framework.Env

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := framework.Build(ctx, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build skiff:", err)
		return 1
	}
	env = &framework.Env{Binary: bin, WorkDir: dir}
	return m.Run()
}
