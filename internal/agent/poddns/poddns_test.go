package poddns

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseResolvConf(t *testing.T) {
	cases := []struct {
		name, in string
		want     ResolvConf
		wantErr  bool
	}{
		{"empty", "", ResolvConf{}, false},
		{"typical", "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.com. corp.example.com\noptions ndots:2 timeout:1\n",
			ResolvConf{Servers: []string{"192.0.2.53", "192.0.2.54"}, Searches: []string{"example.com", "corp.example.com"}, Options: []string{"ndots:2", "timeout:1"}}, false},
		{"last search wins, dot ignored", "search a.example\nsearch b.example .\n; comment\n",
			ResolvConf{Searches: []string{"b.example"}}, false},
		{"later option replaces earlier", "options ndots:2 edns0\noptions ndots:3\n",
			ResolvConf{Options: []string{"ndots:3", "edns0"}}, false},
		{"nameserver without address", "nameserver\n", ResolvConf{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseResolvConf(strings.NewReader(c.in))
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			if !c.wantErr && !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func strp(s string) *string { return &s }

func TestConfig(t *testing.T) {
	host := &ResolvConf{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"timeout:1"}}
	node := Node{ClusterDNS: []string{"10.43.0.10"}, ClusterDomain: "cluster.local", Host: host}
	pod := func(policy corev1.DNSPolicy, hostNet bool, dc *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
			Spec: corev1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: dc}}
	}
	clusterFirst := ResolvConf{Servers: []string{"10.43.0.10"},
		Searches: []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:5"}}
	long := strings.Repeat("a", 254)
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("d%d.example", i))
	}
	var wide []string // 10 domains of 250 characters: 2509 characters on one line
	for i := range 10 {
		wide = append(wide, fmt.Sprintf("%d%s", i, strings.Repeat("w", 249)))
	}
	cases := []struct {
		name    string
		node    Node
		pod     *corev1.Pod
		want    ResolvConf
		reasons []string
	}{
		{"ClusterFirst", node, pod(corev1.DNSClusterFirst, false, nil), clusterFirst, nil},
		{"empty policy is ClusterFirst", node, pod("", false, nil), clusterFirst, nil},
		{"ClusterFirstWithHostNet on the host network", node, pod(corev1.DNSClusterFirstWithHostNet, true, nil), clusterFirst, nil},
		{"ClusterFirst on the host network is Default", node, pod(corev1.DNSClusterFirst, true, nil), *host, nil},
		{"Default", node, pod(corev1.DNSDefault, false, nil), *host, nil},
		{"Default without a host resolv.conf", Node{ClusterDNS: node.ClusterDNS, ClusterDomain: "cluster.local"}, pod(corev1.DNSDefault, false, nil),
			ResolvConf{Servers: []string{"127.0.0.1"}, Searches: []string{"."}}, nil},
		{"ClusterFirst without cluster DNS falls back to Default", Node{ClusterDomain: "cluster.local", Host: host}, pod(corev1.DNSClusterFirst, false, nil),
			*host, []string{"MissingClusterDNS"}},
		{"ClusterFirst without a cluster domain keeps the host's searches", Node{ClusterDNS: node.ClusterDNS, Host: host}, pod(corev1.DNSClusterFirst, false, nil),
			ResolvConf{Servers: []string{"10.43.0.10"}, Searches: []string{"corp.example"}, Options: []string{"ndots:5"}}, nil},
		{"None takes only dnsConfig", node, pod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: []string{"x.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: strp("1")}, {Name: "edns0"}}}),
			ResolvConf{Servers: []string{"192.0.2.1"}, Searches: []string{"x.example"}, Options: []string{"ndots:1", "edns0"}}, nil},
		{"dnsConfig merges into ClusterFirst", node, pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{
			Nameservers: []string{"10.43.0.10", "192.0.2.1"}, Searches: []string{"svc.cluster.local", "x.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: strp("2")}, {Name: "single-request"}}}),
			ResolvConf{Servers: []string{"10.43.0.10", "192.0.2.1"},
				Searches: []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "x.example"},
				Options:  []string{"ndots:2", "single-request"}}, nil},
		{"dnsConfig merges into Default", node, pod(corev1.DNSDefault, false, &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "timeout", Value: strp("3")}}}),
			ResolvConf{Servers: host.Servers, Searches: host.Searches, Options: []string{"timeout:3"}}, nil},
		{"more than 3 nameservers", node, pod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}}),
			ResolvConf{Servers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}}, []string{"DNSConfigForming"}},
		{"more than 32 searches", node, pod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: many}),
			ResolvConf{Servers: []string{"192.0.2.1"}, Searches: many[:32]}, []string{"DNSConfigForming"}},
		{"a search domain longer than 253 is dropped", node, pod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: []string{"a.example", long, "b.example"}}),
			ResolvConf{Servers: []string{"192.0.2.1"}, Searches: []string{"a.example", "b.example"}}, []string{"DNSConfigForming"}},
		{"a search line over 2048 characters loses domains from its end", node, pod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: wide}),
			ResolvConf{Servers: []string{"192.0.2.1"}, Searches: wide[:8]}, []string{"DNSConfigForming"}},
		{"both limits", node, pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, Searches: many}),
			ResolvConf{Servers: []string{"10.43.0.10", "192.0.2.1", "192.0.2.2"}, Searches: append(clone(clusterFirst.Searches), many[:28]...), Options: []string{"ndots:5"}},
			[]string{"DNSConfigForming", "DNSConfigForming"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, warns := Config(c.node, c.pod)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
			var reasons []string
			for _, w := range warns {
				reasons = append(reasons, w.Reason)
				if w.Reason == "MissingClusterDNS" && (w.NodeMessage == "" || !strings.Contains(w.Message, `"p_ns(u1)"`)) {
					t.Errorf("warning %+v: want a node message and the pod named", w)
				}
				if w.Reason == "DNSConfigForming" && !strings.Contains(w.Message, "limits were exceeded") {
					t.Errorf("warning %+v", w)
				}
			}
			if !reflect.DeepEqual(reasons, c.reasons) {
				t.Errorf("warnings %v, want %v", reasons, c.reasons)
			}
		})
	}
	// the node's configuration is never changed through the pod's
	if !reflect.DeepEqual(*host, ResolvConf{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"timeout:1"}}) {
		t.Errorf("host config changed: %+v", *host)
	}
}

func TestResolvConfFile(t *testing.T) {
	got := ResolvConfFile(ResolvConf{Servers: []string{"10.43.0.10", "192.0.2.1"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}})
	want := "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\nnameserver 192.0.2.1\noptions ndots:5\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHostnameAndDomain(t *testing.T) {
	yes := true
	long := strings.Repeat("a", 60) + "-b-cdef"
	cases := []struct {
		name               string
		spec               corev1.PodSpec
		podName            string
		host, domain, sbox string
		err                bool
	}{
		{"pod name", corev1.PodSpec{}, "web-0", "web-0", "", "web-0", false},
		{"hostname and subdomain", corev1.PodSpec{Hostname: "db", Subdomain: "dbs"}, "p", "db", "dbs.ns.svc.cluster.local", "db", false},
		{"FQDN hostname", corev1.PodSpec{Hostname: "db", Subdomain: "dbs", SetHostnameAsFQDN: &yes}, "p", "db", "dbs.ns.svc.cluster.local", "db.dbs.ns.svc.cluster.local", false},
		{"FQDN without subdomain", corev1.PodSpec{SetHostnameAsFQDN: &yes}, "p", "p", "", "p", false},
		{"long name cut to 63 without a trailing dash", corev1.PodSpec{}, long, strings.Repeat("a", 60) + "-b", "", strings.Repeat("a", 60) + "-b", false},
		{"FQDN too long", corev1.PodSpec{Hostname: strings.Repeat("h", 40), Subdomain: "dbs", SetHostnameAsFQDN: &yes}, "p",
			strings.Repeat("h", 40), "dbs.ns.svc.cluster.local", "", true},
		{"host network", corev1.PodSpec{HostNetwork: true, Hostname: "db"}, "p", "db", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: c.podName, Namespace: "ns"}, Spec: c.spec}
			host, domain, err := HostnameAndDomain(p, "cluster.local")
			if err != nil || host != c.host || domain != c.domain {
				t.Errorf("HostnameAndDomain = %q, %q, %v; want %q, %q", host, domain, err, c.host, c.domain)
			}
			sbox, err := SandboxHostname(p, "cluster.local")
			if (err != nil) != c.err || sbox != c.sbox {
				t.Errorf("SandboxHostname = %q, %v; want %q (error %v)", sbox, err, c.sbox, c.err)
			}
		})
	}
}

func TestHostsFile(t *testing.T) {
	const head = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	aliases := []corev1.HostAlias{{IP: "192.0.2.9", Hostnames: []string{"foo.local", "bar.local"}}}
	cases := []struct {
		name         string
		ips          []string
		host, domain string
		aliases      []corev1.HostAlias
		want         string
	}{
		{"pod IP", []string{"10.42.0.5"}, "web", "", nil, head + "10.42.0.5\tweb\n"},
		{"with a domain", []string{"10.42.0.5"}, "db-0", "dbs.ns.svc.cluster.local", nil, head + "10.42.0.5\tdb-0.dbs.ns.svc.cluster.local\tdb-0\n"},
		{"host aliases", []string{"10.42.0.5"}, "web", "", aliases, head + "10.42.0.5\tweb\n\n# Entries added by HostAliases.\n192.0.2.9\tfoo.local\tbar.local\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{Spec: corev1.PodSpec{HostAliases: c.aliases}}
			if got := string(HostsFile(p, c.ips, c.host, c.domain)); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
	p := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true, HostAliases: aliases}}
	got := string(HostNetworkHostsFile(p, []byte("127.0.0.1\tlocalhost\n")))
	want := "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n\n# Entries added by HostAliases.\n192.0.2.9\tfoo.local\tbar.local\n"
	if got != want {
		t.Errorf("host network: got %q, want %q", got, want)
	}
}
