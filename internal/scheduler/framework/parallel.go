package framework

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
)

// parallelize calls fn(i) for i in [0,n) on up to workers goroutines, in
// chunks, and stops handing out work once ctx is done.
func parallelize(ctx context.Context, workers, n int, fn func(i int)) {
	if n == 0 {
		return
	}
	if workers < 1 {
		workers = 1
	}
	chunk := max(1, min(int(math.Sqrt(float64(n))), n/workers+1))
	chunks := (n + chunk - 1) / chunk
	workers = min(workers, chunks)
	if workers == 1 {
		for i := 0; i < n; i++ {
			if i%chunk == 0 && ctx.Err() != nil {
				return
			}
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer wg.Done()
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks || ctx.Err() != nil {
					return
				}
				for i := c * chunk; i < min(n, (c+1)*chunk); i++ {
					fn(i)
				}
			}
		}()
	}
	wg.Wait()
}
