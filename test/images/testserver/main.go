// Command testserver is a small HTTP server packaged into the
// skiff.local/testserver image for end-to-end tests: it echoes who it is,
// serves the file PAGE_FILE names at /page (a mounted ConfigMap key in skiff
// up's demo app), and can be told to fail its health check, exit, hold
// memory or burn CPU. `testserver get URL` and `testserver dns TYPE NAME`
// are its client modes (requests and DNS questions from a pod).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if args := os.Args[1:]; len(args) > 0 {
		if !isClient(args) {
			fmt.Fprintf(os.Stderr, "testserver: unknown command %q (want get or dns, or no arguments to serve)\n", args[0])
			os.Exit(2)
		}
		os.Exit(runClient(args, os.Stdout, os.Stderr))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("testserver failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	srv := newServer(cfg, os.Hostname, time.Now, os.Exit)
	hs := &http.Server{Addr: ":" + cfg.port, Handler: srv.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.ListenAndServe() }()
	log.Info("testserver listening", "port", cfg.port)
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
