package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// runClient runs the client modes (`testserver get …`, `testserver dns
// …`), so that tests make requests and DNS queries by name from a pod
// with the pure Go resolver (the image's static busybox cannot resolve).
// It returns the exit code.
func runClient(args []string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "get":
		return clientGet(args[1:], stdout, stderr)
	case "dns":
		return clientDNS(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "testserver: unknown command %q (want get or dns)\n", args[0])
	return 2
}

// clientGet makes -n GET requests to URL, each on a new connection, and
// prints one line per request: "ok POD MS" (POD from the echo answer) or
// "fail KIND MS ERROR" (KIND: refused, reset, timeout, dns, unreachable,
// status or other), then "summary ok=N fail=M POD=COUNT…". It exits 0
// when at least -min requests succeeded.
func clientGet(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1, "number of requests")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of each request")
	interval := fs.Duration("interval", 0, "pause between requests")
	minOK := fs.Int("min", 1, "exit 0 only when at least this many requests succeed")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: testserver get [-n N] [-timeout D] [-interval D] [-min N] URL")
		return 2
	}
	url := fs.Arg(0)
	counts := map[string]int{}
	ok, fail := 0, 0
	for i := 0; i < *n; i++ {
		if i > 0 && *interval > 0 {
			time.Sleep(*interval)
		}
		start := time.Now()
		pod, err := getOnce(url, *timeout)
		ms := time.Since(start).Milliseconds()
		if err != nil {
			fail++
			fmt.Fprintf(stdout, "fail %s %d %v\n", errKind(err), ms, err)
			continue
		}
		ok++
		counts[pod]++
		fmt.Fprintf(stdout, "ok %s %d\n", pod, ms)
	}
	fmt.Fprintf(stdout, "summary ok=%d fail=%d", ok, fail)
	pods := make([]string, 0, len(counts))
	for p := range counts {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	for _, p := range pods {
		fmt.Fprintf(stdout, " %s=%d", p, counts[p])
	}
	fmt.Fprintln(stdout)
	if ok < *minOK {
		return 1
	}
	return 0
}

// getOnce GETs url on a new connection and returns the answering pod.
func getOnce(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", &statusError{code: resp.StatusCode}
	}
	var e echoResponse
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return "", fmt.Errorf("decoding the answer: %w", err)
	}
	if e.PodName != "" {
		return e.PodName, nil
	}
	return e.Hostname, nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("HTTP status %d", e.code) }

// errKind names the kind of a request's error.
func errKind(err error) string {
	var se *statusError
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return "status"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// clientDNS asks the first nameserver of /etc/resolv.conf (or -server)
// one question, NAME as given (fully qualified), and prints the answer
// section one record a line ("CNAME target.", "A 10.0.0.1", "SRV …") after
// a line "rcode NAME".
func clientDNS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "DNS server host:port (default: the first nameserver of /etc/resolv.conf)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: testserver dns [-server HOST:PORT] TYPE NAME")
		return 2
	}
	qtype, ok := dns.StringToType[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "testserver dns: unknown type %q\n", fs.Arg(0))
		return 2
	}
	addr := *server
	if addr == "" {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			fmt.Fprintf(stderr, "testserver dns: no nameserver in /etc/resolv.conf: %v\n", err)
			return 1
		}
		addr = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(fs.Arg(1)), qtype)
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		fmt.Fprintf(stderr, "testserver dns: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "rcode", dns.RcodeToString[r.Rcode])
	for _, rr := range r.Answer {
		fmt.Fprintln(stdout, answerLine(rr))
	}
	return 0
}

// answerLine is one answer record without its name, class and TTL.
func answerLine(rr dns.RR) string {
	switch v := rr.(type) {
	case *dns.A:
		return "A " + v.A.String()
	case *dns.AAAA:
		return "AAAA " + v.AAAA.String()
	case *dns.CNAME:
		return "CNAME " + v.Target
	case *dns.SRV:
		return fmt.Sprintf("SRV %d %d %d %s", v.Priority, v.Weight, v.Port, v.Target)
	}
	return rr.String()
}

// isClient reports whether args name a client mode.
func isClient(args []string) bool {
	return len(args) > 0 && (args[0] == "get" || args[0] == "dns")
}
