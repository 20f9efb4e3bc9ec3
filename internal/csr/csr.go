// Package csr knows certificate signing requests as the certificates.k8s.io
// API carries them: parsing the PEM request, what a node's client and
// serving requests must look like (as upstream's kubelet makes them and its
// approver and signers check them), making such requests, and mapping
// usages to X.509 key usages.
package csr

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
)

const (
	// NodeUserPrefix starts a node's user name (system:node:<name>).
	NodeUserPrefix = "system:node:"
	// NodesGroup is the group every node's certificate carries.
	NodesGroup = "system:nodes"
	// BootstrappersGroup is the group of bootstrap token users.
	BootstrappersGroup = "system:bootstrappers"
	// MastersGroup is the administrators' group.
	MastersGroup = "system:masters"
)

// ClientUsages are the usages of a node client request with an ECDSA key
// (an RSA key adds key encipherment), as the kubelet asks for them.
var ClientUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}

// ServingUsages are the usages of a node serving request with an ECDSA key.
var ServingUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}

// Parse decodes a PEM "CERTIFICATE REQUEST" block and checks its signature.
func Parse(pemData []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("PEM block type must be CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := req.CheckSignature(); err != nil {
		return nil, err
	}
	return req, nil
}

// NodeName returns the node a user name (or a request's common name)
// stands for, and whether it is a node's at all.
func NodeName(user string) (string, bool) {
	name, ok := strings.CutPrefix(user, NodeUserPrefix)
	return name, ok && name != ""
}

// NewNodeClientRequest returns a PEM request for node's client
// certificate: CN system:node:<node>, O system:nodes, no other names.
func NewNodeClientRequest(key crypto.Signer, node string) ([]byte, error) {
	return newRequest(key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: NodeUserPrefix + node, Organization: []string{NodesGroup}}})
}

// NewNodeServingRequest returns a PEM request for node's serving
// certificate with the given DNS names and IP addresses.
func NewNodeServingRequest(key crypto.Signer, node string, dnsNames []string, ips []net.IP) ([]byte, error) {
	return newRequest(key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: NodeUserPrefix + node, Organization: []string{NodesGroup}},
		DNSNames: dnsNames, IPAddresses: ips})
}

func newRequest(key crypto.Signer, tmpl *x509.CertificateRequest) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ValidateNodeClient reports why req with usages is not a node client
// request (nil when it is one): organization exactly system:nodes, common
// name system:node:<name>, no subject alternative names, usages digital
// signature and client auth (and key encipherment, optional).
func ValidateNodeClient(req *x509.CertificateRequest, usages []certificatesv1.KeyUsage) error {
	if err := validateNodeSubject(req); err != nil {
		return err
	}
	switch {
	case len(req.DNSNames) > 0:
		return errors.New("DNS subjectAltNames are not allowed")
	case len(req.EmailAddresses) > 0:
		return errors.New("Email subjectAltNames are not allowed")
	case len(req.IPAddresses) > 0:
		return errors.New("IP subjectAltNames are not allowed")
	case len(req.URIs) > 0:
		return errors.New("URI subjectAltNames are not allowed")
	}
	return checkUsages(usages, certificatesv1.UsageClientAuth)
}

// ValidateNodeServing reports why req with usages is not a node serving
// request: organization exactly system:nodes, common name
// system:node:<name>, at least one DNS name or IP address and no other
// alternative names, usages digital signature and server auth (and key
// encipherment, optional).
func ValidateNodeServing(req *x509.CertificateRequest, usages []certificatesv1.KeyUsage) error {
	if err := validateNodeSubject(req); err != nil {
		return err
	}
	switch {
	case len(req.DNSNames) == 0 && len(req.IPAddresses) == 0:
		return errors.New("DNS or IP subjectAltName is required")
	case len(req.EmailAddresses) > 0:
		return errors.New("Email subjectAltNames are not allowed")
	case len(req.URIs) > 0:
		return errors.New("URI subjectAltNames are not allowed")
	}
	return checkUsages(usages, certificatesv1.UsageServerAuth)
}

func validateNodeSubject(req *x509.CertificateRequest) error {
	if !slices.Equal(req.Subject.Organization, []string{NodesGroup}) {
		return fmt.Errorf("organization is not set to %s", NodesGroup)
	}
	if _, ok := NodeName(req.Subject.CommonName); !ok {
		return fmt.Errorf("subject common name does not begin with %s", NodeUserPrefix)
	}
	return nil
}

// checkUsages accepts exactly {digital signature, auth} or {digital
// signature, key encipherment, auth}.
func checkUsages(usages []certificatesv1.KeyUsage, auth certificatesv1.KeyUsage) error {
	set := map[certificatesv1.KeyUsage]bool{}
	for _, u := range usages {
		set[u] = true
	}
	delete(set, certificatesv1.UsageKeyEncipherment)
	if len(set) != 2 || !set[certificatesv1.UsageDigitalSignature] || !set[auth] {
		return fmt.Errorf("usages did not match [%s %s] (key encipherment optional): %v", certificatesv1.UsageDigitalSignature, auth, usages)
	}
	return nil
}

// ValidateAPIServerClient reports why usages are not those of a client
// certificate for the API server: client auth, plus only digital signature
// and key encipherment.
func ValidateAPIServerClient(usages []certificatesv1.KeyUsage) error {
	if !slices.Contains(usages, certificatesv1.UsageClientAuth) {
		return fmt.Errorf("invalid usage for client certificate: %v", usages)
	}
	for _, u := range usages {
		switch u {
		case certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return fmt.Errorf("invalid usage for client certificate: %s", u)
		}
	}
	return nil
}

var keyUsages = map[certificatesv1.KeyUsage]x509.KeyUsage{
	certificatesv1.UsageSigning:           x509.KeyUsageDigitalSignature,
	certificatesv1.UsageDigitalSignature:  x509.KeyUsageDigitalSignature,
	certificatesv1.UsageContentCommitment: x509.KeyUsageContentCommitment,
	certificatesv1.UsageKeyEncipherment:   x509.KeyUsageKeyEncipherment,
	certificatesv1.UsageKeyAgreement:      x509.KeyUsageKeyAgreement,
	certificatesv1.UsageDataEncipherment:  x509.KeyUsageDataEncipherment,
	certificatesv1.UsageCertSign:          x509.KeyUsageCertSign,
	certificatesv1.UsageCRLSign:           x509.KeyUsageCRLSign,
	certificatesv1.UsageEncipherOnly:      x509.KeyUsageEncipherOnly,
	certificatesv1.UsageDecipherOnly:      x509.KeyUsageDecipherOnly,
}

var extKeyUsages = map[certificatesv1.KeyUsage]x509.ExtKeyUsage{
	certificatesv1.UsageAny:             x509.ExtKeyUsageAny,
	certificatesv1.UsageServerAuth:      x509.ExtKeyUsageServerAuth,
	certificatesv1.UsageClientAuth:      x509.ExtKeyUsageClientAuth,
	certificatesv1.UsageCodeSigning:     x509.ExtKeyUsageCodeSigning,
	certificatesv1.UsageEmailProtection: x509.ExtKeyUsageEmailProtection,
	certificatesv1.UsageSMIME:           x509.ExtKeyUsageEmailProtection,
	certificatesv1.UsageIPsecEndSystem:  x509.ExtKeyUsageIPSECEndSystem,
	certificatesv1.UsageIPsecTunnel:     x509.ExtKeyUsageIPSECTunnel,
	certificatesv1.UsageIPsecUser:       x509.ExtKeyUsageIPSECUser,
	certificatesv1.UsageTimestamping:    x509.ExtKeyUsageTimeStamping,
	certificatesv1.UsageOCSPSigning:     x509.ExtKeyUsageOCSPSigning,
	certificatesv1.UsageMicrosoftSGC:    x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	certificatesv1.UsageNetscapeSGC:     x509.ExtKeyUsageNetscapeServerGatedCrypto,
}

// X509Usages maps API usages to X.509 key usages and extended key usages
// (deduplicated, in the order given); an unknown usage is an error.
func X509Usages(usages []certificatesv1.KeyUsage) (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	var ku x509.KeyUsage
	var eku []x509.ExtKeyUsage
	for _, u := range usages {
		if k, ok := keyUsages[u]; ok {
			ku |= k
			continue
		}
		if e, ok := extKeyUsages[u]; ok {
			if !slices.Contains(eku, e) {
				eku = append(eku, e)
			}
			continue
		}
		return 0, nil, fmt.Errorf("unknown key usage %q", u)
	}
	return ku, eku, nil
}
