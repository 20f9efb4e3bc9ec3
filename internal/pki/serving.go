package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	servingValidity = 365 * 24 * time.Hour
	// renewBefore is how long before expiry a serving certificate is reissued.
	renewBefore = 30 * 24 * time.Hour
)

// defaultServingHosts are in every API server serving certificate: the
// loopback addresses and the names in-cluster clients use.
var defaultServingHosts = []string{
	"127.0.0.1",
	"::1",
	"localhost",
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

// IssueServing makes sure dir/name.crt and dir/name.key hold a serving
// certificate (ExtKeyUsageServerAuth, valid for one year) signed by this CA,
// whose subject alternative names are hosts (IP addresses and DNS names)
// plus the loopback addresses, "localhost" and the in-cluster names of the
// kubernetes service. The files are reissued when either is missing or
// unreadable, the certificate is not from this CA, it expires within 30 days,
// or its names differ from those requested; otherwise they are left as they
// are. It returns the paths of the certificate and key files.
func (c *CA) IssueServing(dir, name string, hosts []string) (certFile, keyFile string, err error) {
	if name == "" || strings.ContainsRune(name, filepath.Separator) {
		return "", "", fmt.Errorf("issue serving certificate: invalid name %q", name)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	ips, dnsNames, err := splitHosts(append(slices.Clone(defaultServingHosts), hosts...))
	if err != nil {
		return "", "", fmt.Errorf("issue serving certificate %s: %w", name, err)
	}

	unlock, err := lockDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("issue serving certificate %s: %w", name, err)
	}
	defer unlock()
	current, err := c.servingUpToDate(certFile, keyFile, ips, dnsNames)
	if err != nil {
		return "", "", fmt.Errorf("issue serving certificate %s: %w", name, err)
	}
	if current {
		return certFile, keyFile, nil
	}

	t := c.now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		NotBefore:   t.Add(-backdate),
		NotAfter:    t.Add(servingValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
		DNSNames:    dnsNames,
	}
	certPEM, keyPEM, err := c.issue(tmpl)
	if err != nil {
		return "", "", fmt.Errorf("issue serving certificate %s: %w", name, err)
	}
	// The key goes first: a crash between the two renames leaves a pair that
	// does not match, which the next call detects and reissues.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write serving key %s: %w", name, err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("write serving certificate %s: %w", name, err)
	}
	return certFile, keyFile, nil
}

// servingUpToDate reports whether certFile and keyFile hold a matching pair
// from this CA with exactly the wanted names that is not due for renewal.
// Only unexpected I/O errors are returned; anything wrong with the files'
// content means "not up to date".
func (c *CA) servingUpToDate(certFile, keyFile string, ips []net.IP, dnsNames []string) (bool, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return false, fmt.Errorf("read existing certificate: %w", err)
		}
		return false, nil // missing, corrupt or mismatched: reissue
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, nil
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       c.pool,
		CurrentTime: c.now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return false, nil
	}
	if c.now().Add(renewBefore).After(cert.NotAfter) {
		return false, nil
	}
	haveIPs, haveDNS, err := splitHosts(append(ipStrings(cert.IPAddresses), cert.DNSNames...))
	if err != nil {
		return false, nil
	}
	return slices.EqualFunc(haveIPs, ips, net.IP.Equal) && slices.Equal(haveDNS, dnsNames), nil
}

// splitHosts sorts hosts into IP addresses and DNS names, each sorted and
// without duplicates, so that two requests for the same set compare equal.
func splitHosts(hosts []string) ([]net.IP, []string, error) {
	var ips []net.IP
	var names []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			ips = append(ips, ip)
			continue
		}
		if strings.ContainsAny(h, " /:@") {
			return nil, nil, fmt.Errorf("invalid host %q: neither an IP address nor a DNS name", h)
		}
		names = append(names, strings.ToLower(strings.TrimSuffix(h, ".")))
	}
	slices.SortFunc(ips, func(a, b net.IP) int { return strings.Compare(string(a.To16()), string(b.To16())) })
	ips = slices.CompactFunc(ips, net.IP.Equal)
	slices.Sort(names)
	names = slices.Compact(names)
	return ips, names, nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
