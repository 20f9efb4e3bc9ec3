package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/controller/manager"
	"github.com/skiff-sh/skiff/internal/lab"
	"github.com/skiff-sh/skiff/internal/scheduler"
)

// ErrNotRunning is Status's error when there is no running cluster.
var ErrNotRunning = errors.New("not running")

// ErrUnhealthy is Status's error when the cluster runs but a part of it
// is not healthy.
var ErrUnhealthy = errors.New("not healthy")

// row is one line of the status: a part, whether it is fine, what it says.
type row struct {
	part   string
	ok     bool
	detail string
}

// Status prints the components, nodes and demo app of the cluster in dir
// at a glance. Its error wraps ErrNotRunning when there is no cluster or
// its API server does not answer, ErrUnhealthy when a part is not fine.
func Status(ctx context.Context, dir string, out io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, lab.StateFile)); err != nil {
		fmt.Fprintf(out, "No skiff cluster in %s. Start one with: skiff up --data-dir %s\n", dir, dir)
		return fmt.Errorf("%w: no cluster in %s", ErrNotRunning, dir)
	}
	l, err := lab.Load(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	st := l.State()
	fmt.Fprintf(out, "skiff cluster %q in %s\n\n", st.Name, dir)
	var rows []row
	proc := func(p lab.Process) string {
		if p.Alive() {
			return "pid " + strconv.Itoa(p.PID)
		}
		return "process gone"
	}
	rows = append(rows, row{"server process", st.Server.Alive(), proc(st.Server) + ", log " + st.Server.Log})
	rows = append(rows, row{"API forwarder", st.Forwarder.Alive(), "https://" + st.Forward + ", " + proc(st.Forwarder)})
	c, err := l.Client()
	apiUp := false
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		apiUp = err == nil
	}
	if apiUp {
		rows = append(rows, row{"API server", true, "ready (" + st.APIServer + " inside the lab)"})
	} else {
		rows = append(rows, row{"API server", false, fmt.Sprintf("not answering: %v", err)})
	}
	var nodes []row
	var demo row
	if apiUp {
		qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		rows = append(rows, leaseRow(qctx, c, "controller manager", manager.DefaultLeaseName))
		rows = append(rows, leaseRow(qctx, c, "scheduler", scheduler.DefaultLeaseName))
		rows = append(rows, dnsRow(qctx, c, "/run/netns/"+st.Nodes[0].Netns))
		nodes = nodeRows(qctx, c, st)
		demo = demoRow(qctx, c, st)
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tSTATE")
	healthy := true
	put := func(r row) {
		mark := "✓"
		if !r.ok {
			mark, healthy = "✗", false
		}
		fmt.Fprintf(tw, "%s\t%s %s\n", r.part, mark, r.detail)
	}
	for _, r := range rows {
		put(r)
	}
	if apiUp {
		fmt.Fprintln(tw, "\t")
		fmt.Fprintln(tw, "NODE\tSTATE")
		for _, r := range nodes {
			put(r)
		}
		fmt.Fprintln(tw, "\t")
		fmt.Fprintln(tw, "APP\tSTATE")
		put(demo)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\nKUBECONFIG=%s\n", st.Kubeconfig)
	if f, ok := l.ForwardOf(DemoForward); ok {
		fmt.Fprintf(out, "URL=http://%s\n", f.Addr)
	}
	switch {
	case !apiUp || !st.Server.Alive():
		return fmt.Errorf("%w: the API server of the cluster in %s does not answer (skiff up restarts it)", ErrNotRunning, dir)
	case !healthy:
		return fmt.Errorf("%w: see the ✗ lines", ErrUnhealthy)
	}
	return nil
}

// leaseRow says who holds the Lease name in kube-system and whether it is
// current.
func leaseRow(ctx context.Context, c kubernetes.Interface, part, name string) row {
	le, err := c.CoordinationV1().Leases(manager.DefaultLeaseNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return row{part, false, "no leader: " + err.Error()}
	}
	holder := ""
	if le.Spec.HolderIdentity != nil {
		holder = *le.Spec.HolderIdentity
	}
	if holder == "" {
		return row{part, false, "no leader (Lease " + name + " is free)"}
	}
	dur := 15 * time.Second
	if le.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*le.Spec.LeaseDurationSeconds) * time.Second
	}
	if le.Spec.RenewTime == nil || time.Since(le.Spec.RenewTime.Time) > dur {
		return row{part, false, "leader " + holder + " stopped renewing its Lease"}
	}
	return row{part, true, "leader " + holder}
}

// dnsRow checks that kube-system/kube-dns has a cluster IP and a ready
// endpoint, and that the endpoint answers a query for the kubernetes
// service (sent from the network namespace at netns, where the lab's
// nodes are).
func dnsRow(ctx context.Context, c kubernetes.Interface, netns string) row {
	const part = "cluster DNS"
	svc, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		return row{part, false, "no kube-system/kube-dns service: " + err.Error()}
	}
	slices, err := c.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
	if err != nil {
		return row{part, false, err.Error()}
	}
	var addrs, udp []string
	for _, s := range slices.Items {
		port := ""
		for _, p := range s.Ports {
			if p.Port != nil && p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP {
				port = strconv.Itoa(int(*p.Port))
			}
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				addrs = append(addrs, e.Addresses...)
				for _, a := range e.Addresses {
					if port != "" {
						udp = append(udp, net.JoinHostPort(a, port))
					}
				}
			}
		}
	}
	if len(addrs) == 0 {
		return row{part, false, "kube-dns " + svc.Spec.ClusterIP + " has no ready endpoint"}
	}
	detail := "kube-dns " + svc.Spec.ClusterIP + " → " + strings.Join(addrs, ", ")
	for _, a := range udp {
		if err := dnsAnswers(ctx, netns, a); err != nil {
			return row{part, false, detail + ": " + a + " does not answer: " + err.Error()}
		}
	}
	return row{part, true, detail + ", answering"}
}

// dnsAnswers asks the DNS server at addr (UDP, dialled from the network
// namespace at netns) for the kubernetes service's A record.
func dnsAnswers(ctx context.Context, netns, addr string) error {
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := lab.DialIn(qctx, netns, "udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	c := &dns.Conn{Conn: conn}
	q := new(dns.Msg)
	q.SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
	if err := c.WriteMsg(q); err != nil {
		return err
	}
	r, err := c.ReadMsg()
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return fmt.Errorf("kubernetes.default.svc.cluster.local: %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}

// nodeRows gives each lab node's Ready condition and agent process.
func nodeRows(ctx context.Context, c kubernetes.Interface, st lab.State) []row {
	var out []row
	for _, n := range st.Nodes {
		agent := "agent pid " + strconv.Itoa(n.Agent.PID)
		if !n.Agent.Alive() {
			out = append(out, row{n.Name, false, "agent process gone (log " + n.Agent.Log + ")"})
			continue
		}
		node, err := c.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			out = append(out, row{n.Name, false, err.Error()})
			continue
		}
		ready, why := false, "no Ready condition yet"
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready, why = cond.Status == corev1.ConditionTrue, cond.Reason
			}
		}
		state := "Ready"
		if !ready {
			state = "NotReady (" + why + ")"
		}
		out = append(out, row{n.Name, ready, fmt.Sprintf("%s, %s, pod CIDR %s, %s", state, n.IP, node.Spec.PodCIDR, agent)})
	}
	return out
}

// demoRow says how the demo app is.
func demoRow(ctx context.Context, c kubernetes.Interface, st lab.State) row {
	d, err := readDemo(ctx, c)
	if err != nil {
		return row{"demo", false, err.Error()}
	}
	detail := d.String()
	for _, f := range st.Forwards {
		if f.Name == DemoForward {
			if !f.Process.Alive() {
				return row{"demo", false, detail + "; its URL forwarder is gone (skiff up restarts it)"}
			}
			detail += ", URL http://" + f.Addr
		}
	}
	if len(d.Waiting) > 0 {
		detail += "; " + strings.Join(d.Waiting, "; ")
	}
	return row{"demo", d.done(), detail}
}
