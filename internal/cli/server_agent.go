package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/csr"
	"github.com/skiff-sh/skiff/internal/pki"
	"github.com/skiff-sh/skiff/internal/server"
)

// controlPlaneLabel marks the node of an agent embedded in 'skiff server'.
const controlPlaneLabel = "node-role.kubernetes.io/control-plane"

// runServerAndAgent runs the control plane and, once it is ready, the node
// agent embedded in it (the CRI runtime with its own containerd under
// DATA_DIR/agent, as 'skiff agent' with default flags), until ctx ends.
// The agent authenticates with a node certificate the server's CA issues
// directly (no CSR round trip). It needs root and containerd: without them
// the server runs alone and says so.
func runServerAndAgent(ctx context.Context, sf *serverFlags, srv *server.Server, log *slog.Logger) error {
	if why := embeddedAgentMissing(); why != "" {
		log.Warn("embedded node agent off: "+why+"; run 'skiff agent' where containers can run, or pass --disable-agent to silence this", "server", "running")
		return srv.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-srvDone:
		return err
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- embeddedAgent(ctx, sf, srv, log.With("component", "agent")) }()
	select {
	case err := <-srvDone:
		cancel()
		<-agentDone
		return err
	case err := <-agentDone:
		if err != nil && ctx.Err() == nil {
			// the control plane keeps serving; a node can join with 'skiff agent'
			log.Error("embedded node agent stopped; the control plane keeps running", "err", err)
		}
		return <-srvDone
	}
}

// embeddedAgentMissing says what the embedded agent lacks on this
// machine, or "".
func embeddedAgentMissing() string {
	if os.Geteuid() != 0 {
		return "it needs root (pod sandboxes, mounts, the CNI bridge)"
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		return "no containerd on PATH (Debian: containerd, runc, containernetworking-plugins)"
	}
	return ""
}

// embeddedAgent runs the CRI agent of this machine against srv.
func embeddedAgent(ctx context.Context, sf *serverFlags, srv *server.Server, log *slog.Logger) error {
	f, err := embeddedAgentFlags(sf)
	if err != nil {
		return err
	}
	name, err := f.node()
	if err != nil {
		return err
	}
	cfg, err := nodeRestConfig(sf.dataDir, srv.RestConfig(), name)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("embedded agent: client: %w", err)
	}
	log.Info("starting the embedded node agent", "node", name, "data-dir", f.dataDir)
	return runCRIAgent(ctx, &f, client, map[string]string{controlPlaneLabel: ""}, nil, log)
}

// embeddedAgentFlags are the embedded agent's flags: the defaults of 'skiff agent'
// with the server's data dir, CA, pod network, cluster and
// service CIDRs and cluster domain.
func embeddedAgentFlags(sf *serverFlags) (agentFlags, error) {
	var f agentFlags
	fs := flag.NewFlagSet("embedded agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	if err := fs.Parse(nil); err != nil {
		return agentFlags{}, err
	}
	f.dataDir = filepath.Join(sf.dataDir, "agent")
	f.caFile = filepath.Join(sf.dataDir, "pki", pki.CACertFile) // the streaming endpoint admits the API server by it
	f.podNetwork = sf.podNetwork
	f.clusterCIDR, f.serviceCIDR, f.clusterDomain = sf.clusterCIDR, sf.serviceCIDR, sf.clusterDomain
	return f, nil
}

// nodeRestConfig is a client configuration for node name with a
// certificate (CN system:node:<name>, O system:nodes) issued by the CA in
// dataDir/pki, reaching the API server as admin does.
func nodeRestConfig(dataDir string, admin *rest.Config, name string) (*rest.Config, error) {
	if admin == nil {
		return nil, errors.New("embedded agent: the server has no client configuration")
	}
	ca, err := pki.EnsureCA(filepath.Join(dataDir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("embedded agent: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueClient(csr.NodeUserPrefix+name, []string{csr.NodesGroup}, 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("embedded agent: node certificate: %w", err)
	}
	cfg := &rest.Config{Host: admin.Host, UserAgent: "skiff-agent/" + Version, QPS: 50, Burst: 100,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData, CertData: certPEM, KeyData: keyPEM}}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return cfg, nil
}
