package cli

import (
	"context"
	"errors"

	"github.com/skiff-sh/skiff/internal/scheduler"
)

// schedulerFlags are the flags of 'skiff scheduler'.
type schedulerFlags struct {
	kubeconfig, configFile, logLevel string
	leaderElect                      bool
}

func runScheduler(ctx context.Context, e *env, args []string) error {
	var f schedulerFlags
	fs := newFlagSet(e, "scheduler", `
Run skiff's scheduler on its own, against a running API server: it places
pods that have no node and name one of its profiles (default
default-scheduler), and binds them through pods/binding. With leader
election (the default) only the holder of the Lease
kube-system/skiff-scheduler schedules, so several instances, and the
scheduler inside 'skiff server', can run side by side; start the server with
--disable-scheduler to leave scheduling to this process alone.`,
		`  skiff server --data-dir /var/lib/skiff --disable-scheduler &
  skiff scheduler --kubeconfig /var/lib/skiff/admin.kubeconfig --config sched.yaml`)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server with (required)")
	fs.StringVar(&f.configFile, "config", "", "scheduler configuration file (YAML SchedulerConfiguration: profiles, weights, strategy)")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "schedule only while holding the Lease kube-system/skiff-scheduler")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.kubeconfig == "" {
		return usageError{errors.New("--kubeconfig is required")}
	}
	log, err := newLogger(e.stderr, f.logLevel)
	if err != nil {
		return err
	}
	s, err := scheduler.New(scheduler.Config{Kubeconfig: f.kubeconfig, ConfigFile: f.configFile,
		LeaderElect: f.leaderElect, Logger: log.With("component", "scheduler")})
	if err != nil {
		return err
	}
	err = s.Run(ctx)
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		// Stopped by a signal: a clean exit.
		return nil
	}
	return err
}
