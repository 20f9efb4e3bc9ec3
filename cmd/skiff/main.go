// Command skiff is a Kubernetes-compatible container orchestrator in one
// binary: control plane, node agent, managed clusters and benchmarks.
package main

import (
	"os"

	"github.com/skiff-sh/skiff/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
