package framework

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd is an external etcd process (Debian's etcd-server) on loopback.
type Etcd struct {
	// Endpoint is the client URL (plain HTTP on 127.0.0.1).
	Endpoint string
	logPath  string
	proc     *process
}

// StartEtcd starts a single-member etcd with its own data dir on free
// loopback ports and stops it when the test ends. It fails the test if no
// etcd binary is on PATH (hack/install-deps.sh installs etcd-server).
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("no etcd on PATH (apt-get install -y etcd-server): %v", err)
	}
	cport, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pport, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	e := &Etcd{Endpoint: client, logPath: filepath.Join(root, "etcd.log")}
	e.proc, err = startProcess(e.logPath, nil, bin,
		"--name", "e2e",
		"--data-dir", filepath.Join(root, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e="+peer, "--initial-cluster-state", "new",
		"--log-outputs", "stderr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.proc.stop(stopGrace)
		if t.Failed() {
			t.Logf("etcd log (kept as %s):\n%s", keepLog(t, e.logPath, "etcd"), tail(e.logPath, 16<<10))
		}
	})
	cli := e.Client(t)
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Status(ctx, client)
		cancel()
		if err == nil {
			return e
		}
		if e.proc.exited() || time.Now().After(deadline) {
			t.Fatalf("etcd on %s did not start: %v\n%s", client, err, tail(e.logPath, 16<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns an etcd client for this etcd, closed when the test ends.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
