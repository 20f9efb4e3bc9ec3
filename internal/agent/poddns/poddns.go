// Package poddns computes what a pod's resolver sees, as the kubelet does:
// the DNS configuration of its sandbox (the resolv.conf the runtime
// writes) from the pod's dnsPolicy and dnsConfig, its hostname and domain,
// and its /etc/hosts. Everything here is pure; the CRI runtime feeds it the
// node's resolv.conf and /etc/hosts and records the warnings as events.
package poddns

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Limits of the resolver (libc), as the kubelet applies them.
const (
	MaxNameservers    = 3
	MaxSearchPaths    = 32
	MaxSearchListLen  = 2048
	maxSearchLen      = 253 // a longer search domain makes some glibc versions abort
	maxResolvConfSize = 200 << 10
	maxHostnameLen    = 63
	maxFQDNHostname   = 64
)

// defaultOptions are the options of pods on the cluster DNS.
var defaultOptions = []string{"ndots:5"}

// ResolvConf is a resolver configuration: a resolv.conf's nameservers,
// search domains and options, or what a sandbox gets.
type ResolvConf struct {
	Servers, Searches, Options []string
}

// ParseResolvConf reads a resolv.conf as the kubelet does: nameservers
// accumulate, the last search line wins (trailing dots dropped, "."
// ignored), options accumulate with a later one of the same name
// replacing the earlier.
func ParseResolvConf(r io.Reader) (ResolvConf, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxResolvConfSize+1))
	if err != nil {
		return ResolvConf{}, fmt.Errorf("read resolv.conf: %w", err)
	}
	if len(b) > maxResolvConfSize {
		return ResolvConf{}, fmt.Errorf("resolv.conf is longer than %d bytes", maxResolvConfSize)
	}
	var rc ResolvConf
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				return rc, fmt.Errorf("resolv.conf: nameserver line without an address")
			}
			rc.Servers = append(rc.Servers, f[1])
		case "search":
			rc.Searches = nil
			for _, s := range f[1:] {
				if s != "." {
					rc.Searches = append(rc.Searches, strings.TrimSuffix(s, "."))
				}
			}
		case "options":
			rc.Options = mergeOptions(rc.Options, f[1:])
		}
	}
	return rc, sc.Err()
}

// Warning is something the pod's owner should hear about, as an event.
type Warning struct {
	// Reason is the event's reason (DNSConfigForming, MissingClusterDNS).
	Reason, Message string
	// NodeMessage, when set, is an event for the node as well.
	NodeMessage string
}

// Node is what the node contributes to its pods' DNS.
type Node struct {
	// ClusterDNS are the cluster DNS servers (empty: not known, so
	// ClusterFirst pods fall back to Default with a warning).
	ClusterDNS []string
	// ClusterDomain is the cluster's domain ("cluster.local").
	ClusterDomain string
	// Host is the node's resolv.conf (the kubelet's --resolv-conf); nil
	// means none: Default pods get the resolver on their own localhost.
	Host *ResolvConf
}

// Policy returns the DNS policy the pod's configuration is built from:
// ClusterFirst on the host network is Default, ClusterFirstWithHostNet is
// ClusterFirst, an empty policy is ClusterFirst (the API's default).
func Policy(p *corev1.Pod) corev1.DNSPolicy {
	switch pol := p.Spec.DNSPolicy; pol {
	case corev1.DNSNone, corev1.DNSDefault:
		return pol
	case corev1.DNSClusterFirstWithHostNet:
		return corev1.DNSClusterFirst
	default:
		if p.Spec.HostNetwork {
			return corev1.DNSDefault
		}
		return corev1.DNSClusterFirst
	}
}

// Config is the pod's resolver configuration and the warnings it came
// with (limits exceeded, no cluster DNS known).
func Config(n Node, p *corev1.Pod) (ResolvConf, []Warning) {
	var warns []Warning
	var rc ResolvConf
	if n.Host != nil {
		rc = ResolvConf{Servers: clone(n.Host.Servers), Searches: clone(n.Host.Searches), Options: clone(n.Host.Options)}
	}
	pol := Policy(p)
	if pol == corev1.DNSClusterFirst && len(n.ClusterDNS) == 0 {
		msg := fmt.Sprintf("kubelet does not have ClusterDNS IP configured and cannot create Pod using %q policy. Falling back to %q policy.",
			corev1.DNSClusterFirst, corev1.DNSDefault)
		warns = append(warns, Warning{Reason: "MissingClusterDNS", NodeMessage: msg,
			Message: fmt.Sprintf("pod: %q. %s", p.Name+"_"+p.Namespace+"("+string(p.UID)+")", msg)})
		pol = corev1.DNSDefault
	}
	switch pol {
	case corev1.DNSNone:
		rc = ResolvConf{}
	case corev1.DNSClusterFirst:
		rc.Servers = clone(n.ClusterDNS)
		rc.Searches = clusterSearches(n.ClusterDomain, p.Namespace, rc.Searches)
		rc.Options = clone(defaultOptions)
	default: // Default: the node's resolver
		if n.Host == nil {
			rc = ResolvConf{Servers: []string{"127.0.0.1"}, Searches: []string{"."}}
		}
	}
	if dc := p.Spec.DNSConfig; dc != nil {
		rc.Servers = unique(append(rc.Servers, dc.Nameservers...))
		rc.Searches = unique(append(rc.Searches, dc.Searches...))
		var opts []string
		for _, o := range dc.Options {
			if o.Value != nil && *o.Value != "" {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
		rc.Options = mergeOptions(rc.Options, opts)
	}
	var w []Warning
	rc.Servers, w = fitServers(rc.Servers)
	warns = append(warns, w...)
	rc.Searches, w = fitSearches(rc.Searches)
	warns = append(warns, w...)
	return rc, warns
}

// clusterSearches are the search domains of a ClusterFirst pod: its
// namespace's services, all services, the cluster domain, then the host's.
func clusterSearches(domain, namespace string, host []string) []string {
	if domain == "" {
		return host
	}
	return unique(append([]string{namespace + ".svc." + domain, "svc." + domain, domain}, host...))
}

func fitServers(servers []string) ([]string, []Warning) {
	if len(servers) <= MaxNameservers {
		return servers, nil
	}
	servers = servers[:MaxNameservers]
	return servers, []Warning{{Reason: "DNSConfigForming", Message: "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: " + strings.Join(servers, " ")}}
}

// fitSearches applies the resolver's limits as the kubelet does: at most
// MaxSearchPaths domains, none longer than 253 characters, and a search
// line of at most MaxSearchListLen characters (domains cut from the end).
func fitSearches(searches []string) ([]string, []Warning) {
	exceeded := false
	if len(searches) > MaxSearchPaths {
		searches, exceeded = searches[:MaxSearchPaths], true
	}
	kept := searches[:0:0]
	for _, s := range searches {
		if len(s) > maxSearchLen {
			exceeded = true
			continue
		}
		kept = append(kept, s)
	}
	searches = kept
	if n := len(strings.Join(searches, " ")); n > MaxSearchListLen {
		cut := 0
		for i := len(searches) - 1; i >= 0 && n > MaxSearchListLen; i-- {
			n -= len(searches[i]) + 1
			cut++
		}
		searches, exceeded = searches[:len(searches)-cut], true
	}
	if !exceeded {
		return searches, nil
	}
	return searches, []Warning{{Reason: "DNSConfigForming", Message: "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: " + strings.Join(searches, " ")}}
}

// mergeOptions adds options to a list; one with the name of an earlier
// one ("ndots" of "ndots:2") replaces it in place.
func mergeOptions(opts, add []string) []string {
	out := clone(opts)
	for _, o := range add {
		name, _, _ := strings.Cut(o, ":")
		replaced := false
		for i, cur := range out {
			if n, _, _ := strings.Cut(cur, ":"); n == name {
				out[i], replaced = o, true
				break
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

func unique(l []string) []string {
	seen := map[string]bool{}
	out := l[:0:0]
	for _, s := range l {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func clone(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return append([]string(nil), l...)
}

// ResolvConfFile is the resolv.conf a container runtime writes for rc.
func ResolvConfFile(rc ResolvConf) string {
	var b strings.Builder
	if len(rc.Searches) > 0 {
		b.WriteString("search " + strings.Join(rc.Searches, " ") + "\n")
	}
	for _, s := range rc.Servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(rc.Options) > 0 {
		b.WriteString("options " + strings.Join(rc.Options, " ") + "\n")
	}
	return b.String()
}
