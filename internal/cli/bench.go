package cli

import (
	"context"
	"fmt"
)

func runBench(ctx context.Context, e *env, args []string) error {
	return usageError{fmt.Errorf("benchmarks are not built yet")}
}
