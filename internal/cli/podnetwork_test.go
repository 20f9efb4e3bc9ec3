package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/agent/podnet"
	"github.com/skiff-sh/skiff/internal/controller/nodeipam"
	"github.com/skiff-sh/skiff/internal/server"
)

// TestPodNetworkFlags checks --pod-network's defaults (host-gw for the
// agent and the server's embedded agent), that the server hands its pod
// network, cluster and service CIDRs to the embedded agent, and that bad
// values are usage errors.
func TestPodNetworkFlags(t *testing.T) {
	parseServer := func(t *testing.T, args ...string) *serverFlags {
		t.Helper()
		var sf serverFlags
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sf.register(fs, t.TempDir())
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &sf
	}
	cases := []struct {
		name                           string
		serverArgs                     []string
		wantMode, wantCluster, wantSvc string
	}{
		{"defaults", nil, podnet.ModeHostGW, nodeipam.DefaultClusterCIDR, server.DefaultServiceCIDR},
		{"vxlan and other ranges", []string{"--pod-network=vxlan", "--cluster-cidr=10.100.0.0/16", "--service-cidr=10.200.0.0/16"},
			podnet.ModeVXLAN, "10.100.0.0/16", "10.200.0.0/16"},
		{"none", []string{"--pod-network", "none"}, podnet.ModeNone, nodeipam.DefaultClusterCIDR, server.DefaultServiceCIDR},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := embeddedAgentFlags(parseServer(t, tc.serverArgs...))
			if err != nil {
				t.Fatal(err)
			}
			if f.podNetwork != tc.wantMode || f.clusterCIDR != tc.wantCluster || f.serviceCIDR != tc.wantSvc || f.runtime != "cri" {
				t.Errorf("embedded agent: runtime %s, --pod-network %s, --cluster-cidr %s, --service-cidr %s; want cri, %s, %s, %s",
					f.runtime, f.podNetwork, f.clusterCIDR, f.serviceCIDR, tc.wantMode, tc.wantCluster, tc.wantSvc)
			}
		})
	}
	t.Run("agent default", func(t *testing.T) {
		var f agentFlags
		fs := flag.NewFlagSet("agent", flag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if f.podNetwork != podnet.ModeHostGW {
			t.Errorf("skiff agent --pod-network defaults to %q, want %q", f.podNetwork, podnet.ModeHostGW)
		}
	})
	for cmd, run := range map[string]func(context.Context, *env, []string) error{"server": runServer, "agent": runAgent} {
		t.Run(cmd+" --pod-network=flannel", func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), &env{stdout: &out, stderr: &errOut}, []string{"--pod-network=flannel", "--data-dir", t.TempDir()})
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "use host-gw, vxlan or none") {
				t.Errorf("got %v, want a usage error naming the modes", err)
			}
		})
	}
}
