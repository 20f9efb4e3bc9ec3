package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/skiff-sh/skiff/internal/lab"
)

func labGroup() *group {
	return &group{name: "lab", description: `
Run a multi-node cluster on this machine, every node in a network namespace
of its own with its own containerd (needs root).`,
		subs: []subcommand{
			{name: "up", summary: "start a lab in the background and print its KUBECONFIG", run: runLabUp},
			{name: "down", summary: "stop a lab and remove its namespaces, routes and mounts (--purge: its data too)", run: runLabDown},
			{name: "forward", hidden: true, run: runLabForward},
		},
		example: `  skiff lab up --dir /var/lib/skiff-lab --nodes 3
  skiff lab down --dir /var/lib/skiff-lab`}
}

func runLabUp(ctx context.Context, e *env, args []string) error {
	var cfg lab.Config
	var timeout time.Duration
	fs := newFlagSet(e, "lab up", `
Start a multi-node lab on this machine in the background: every node in a
network namespace of its own (skiff-NAME-n0 …, joined by a bridge in
skiff-NAME-hub; addresses from --subnet), skiff server in node 0's
namespace, and skiff agent --runtime=cri with its own containerd and the
pod network of --pod-network in every node's. The host reaches the API
server only through a forwarder on 127.0.0.1; nothing else is added to the
host's network. Prints KUBECONFIG=<path> once every node is Ready. Needs
root and Debian's containerd, runc, containernetworking-plugins, iproute2
and busybox-static.
'skiff lab down --dir DIR' removes it all.`,
		`  skiff lab up --dir /var/lib/skiff-lab --nodes 3
  export KUBECONFIG=/var/lib/skiff-lab/kubeconfig; kubectl get nodes -o wide
  skiff lab down --dir /var/lib/skiff-lab`)
	fs.StringVar(&cfg.Dir, "dir", "/var/lib/skiff-lab", "directory for the lab's state, logs and nodes' data")
	fs.StringVar(&cfg.Name, "name", "lab", "the lab's name: its namespaces are skiff-NAME-…, its nodes NAME-0 …")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "number of nodes")
	fs.StringVar(&cfg.Subnet, "subnet", lab.DefaultSubnet, "the lab network (IPv4, /24 or larger); node I gets host 10+I")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", lab.DefaultClusterCIDR, "the pods' range")
	fs.StringVar(&cfg.ServiceCIDR, "service-cidr", lab.DefaultServiceCIDR, "the services' range")
	fs.StringVar(&cfg.PodNetwork, "pod-network", "host-gw", "the agents' --pod-network: host-gw or vxlan")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "loopback address of the API forwarder (port 0: a free one)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "the components' log level")
	fs.DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the nodes")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, "info")
	if err != nil {
		return err
	}
	if cfg.Binary, err = os.Executable(); err != nil {
		return err
	}
	cfg.Detach, cfg.Logger = true, log
	l, err := lab.New(cfg)
	if err != nil {
		return usageError{err}
	}
	if why := lab.Missing(); why != "" {
		return fmt.Errorf("%s", why)
	}
	if err := l.Up(ctx); err != nil {
		return err
	}
	if err := l.WaitNodesReady(ctx, timeout); err != nil {
		if ctx.Err() != nil { // interrupted: leave nothing half-made
			if derr := l.Down(context.Background()); derr != nil {
				return fmt.Errorf("%w; tearing the lab down: %w", err, derr)
			}
			return err
		}
		return fmt.Errorf("%w (the lab is still up: skiff lab down --dir %s)", err, cfg.Dir)
	}
	st := l.State()
	fmt.Fprintf(e.stdout, "KUBECONFIG=%s\nAPI=https://%s\n", st.Kubeconfig, st.Forward)
	return nil
}

func runLabDown(ctx context.Context, e *env, args []string) error {
	var dir string
	var purge bool
	fs := newFlagSet(e, "lab down", `
Tear down the lab in --dir: stop its server, agents, containerds and
containers, remove its network namespaces (with their routes and nftables
tables) and mounts. Its data and logs stay in the directory unless --purge.`, `  skiff lab down --dir /var/lib/skiff-lab --purge`)
	fs.StringVar(&dir, "dir", "/var/lib/skiff-lab", "the lab's directory")
	fs.BoolVar(&purge, "purge", false, "also remove the directory (data, logs, images)")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, "info")
	if err != nil {
		return err
	}
	l, err := lab.Load(dir, log)
	if err != nil {
		return err
	}
	if err := l.Down(ctx); err != nil {
		return err
	}
	if purge {
		return os.RemoveAll(dir)
	}
	return nil
}

// runLabForward is the detached lab's API forwarder (started by lab up).
func runLabForward(ctx context.Context, e *env, args []string) error {
	var fd int
	var netns, to string
	fs := newFlagSet(e, "lab forward", `
Forward connections from an inherited listening socket to an address
inside a network namespace (started by 'skiff lab up').`, "")
	fs.IntVar(&fd, "listen-fd", 3, "file descriptor of the listening socket")
	fs.StringVar(&netns, "netns", "", "network namespace to dial from (/run/netns/NAME)")
	fs.StringVar(&to, "to", "", "host:port to dial")
	if err := parse(fs, args); err != nil {
		return err
	}
	if netns == "" || to == "" {
		return usageError{fmt.Errorf("--netns and --to are required")}
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		return fmt.Errorf("listening socket: %w", err)
	}
	f := lab.ForwardFrom(ln, netns, to)
	<-ctx.Done()
	return f.Close()
}
