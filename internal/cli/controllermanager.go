package cli

import (
	"context"
	"strings"

	"github.com/skiff-sh/skiff/internal/controller/manager"
)

func runControllerManager(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "controller-manager", `
Run skiff's controllers (those --controllers names; by default all of them)
against an API server. Several instances may run: they elect a
leader through the Lease kube-system/skiff-controller-manager and only the
leader acts; when it loses the Lease its controllers stop at once.
'skiff server' runs the same controllers in-process.`, `  skiff controller-manager --kubeconfig /var/lib/skiff/admin.kubeconfig
  skiff controller-manager --kubeconfig admin.kubeconfig --leader-elect-lease-duration 2s \
    --leader-elect-renew-deadline 1500ms --leader-elect-retry-period 250ms`)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to reach the API server with (required)")
	controllers := fs.String("controllers", strings.Join(manager.All, ","), "comma-separated controllers to run")
	leaderElect := fs.Bool("leader-elect", true, "run only while holding the controller-manager Lease")
	leaseDuration := fs.Duration("leader-elect-lease-duration", manager.DefaultLeaseDuration, "how long a Lease is valid without renewal; followers wait this long before taking over")
	renewDeadline := fs.Duration("leader-elect-renew-deadline", manager.DefaultRenewDeadline, "how long the leader tries to renew before it stops acting")
	retryPeriod := fs.Duration("leader-elect-retry-period", manager.DefaultRetryPeriod, "how often to try to acquire or renew the Lease")
	identity := fs.String("identity", "", "name of this instance in the Lease (default hostname_uuid)")
	workers := fs.Int("workers", 0, "objects each controller syncs at once (0: each controller's default)")
	signingCert := fs.String("cluster-signing-cert-file", "", "cluster CA certificate (PEM) the csrsigning controller signs with (e.g. DATA_DIR/pki/ca.crt); without it and the key, no CSR is signed")
	signingKey := fs.String("cluster-signing-key-file", "", "the cluster CA's private key (PEM), e.g. DATA_DIR/pki/ca.key")
	signingDuration := fs.Duration("cluster-signing-duration", 0, "longest lifetime of a signed certificate (default 8760h)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *kubeconfig == "" {
		return usageError{errString("--kubeconfig is required")}
	}
	log, err := newLogger(e.stderr, *logLevel)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range strings.Split(*controllers, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	m, err := manager.New(manager.Config{Kubeconfig: *kubeconfig, Controllers: names, DisableLeaderElection: !*leaderElect,
		LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline, RetryPeriod: *retryPeriod,
		Identity: *identity, Workers: *workers, Logger: log.With("component", "controller-manager"),
		ClusterSigningCertFile: *signingCert, ClusterSigningKeyFile: *signingKey, ClusterSigningDuration: *signingDuration})
	if err != nil {
		return usageError{err}
	}
	return m.Run(ctx)
}

type errString string

func (e errString) Error() string { return string(e) }
