package csrapproving

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func request(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestDecide(t *testing.T) {
	nodeSubject := pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}
	client := request(t, &x509.CertificateRequest{Subject: nodeSubject})
	withSAN := request(t, &x509.CertificateRequest{Subject: nodeSubject, DNSNames: []string{"n1"}})
	wrongOrg := request(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:masters"}}})
	twoOrgs := request(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes", "system:masters"}}})
	notNode := request(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice", Organization: []string{"system:nodes"}}})
	serving := request(t, &x509.CertificateRequest{Subject: nodeSubject, DNSNames: []string{"n1"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}})
	servingOther := request(t, &x509.CertificateRequest{Subject: nodeSubject, DNSNames: []string{"evil.example.com"}})

	clientUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	rsaUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth}
	servingUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	bootstrap := []string{"system:bootstrappers", "system:authenticated"}
	node := []string{"system:nodes", "system:authenticated"}

	tests := []struct {
		name   string
		signer string
		req    []byte
		usages []certificatesv1.KeyUsage
		user   string
		groups []string
		want   string
	}{
		{"bootstrap client", certificatesv1.KubeAPIServerClientKubeletSignerName, client, clientUsages, "system:bootstrap:abcdef", bootstrap, MessageNodeClient},
		{"bootstrap client with key encipherment", certificatesv1.KubeAPIServerClientKubeletSignerName, client, rsaUsages, "system:bootstrap:abcdef", bootstrap, MessageNodeClient},
		{"admin client", certificatesv1.KubeAPIServerClientKubeletSignerName, client, clientUsages, "skiff-admin", []string{"system:masters"}, MessageNodeClient},
		{"self renewal", certificatesv1.KubeAPIServerClientKubeletSignerName, client, clientUsages, "system:node:n1", node, MessageSelfNodeClient},
		{"other node renewing", certificatesv1.KubeAPIServerClientKubeletSignerName, client, clientUsages, "system:node:n2", node, ""},
		{"unprivileged user", certificatesv1.KubeAPIServerClientKubeletSignerName, client, clientUsages, "alice", []string{"system:authenticated"}, ""},
		{"server auth usage", certificatesv1.KubeAPIServerClientKubeletSignerName, client, []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, "system:bootstrap:abcdef", bootstrap, ""},
		{"extra usage", certificatesv1.KubeAPIServerClientKubeletSignerName, client, append(clientUsages, certificatesv1.UsageServerAuth), "system:bootstrap:abcdef", bootstrap, ""},
		{"missing digital signature", certificatesv1.KubeAPIServerClientKubeletSignerName, client, []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}, "system:bootstrap:abcdef", bootstrap, ""},
		{"client with SAN", certificatesv1.KubeAPIServerClientKubeletSignerName, withSAN, clientUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"wrong organization", certificatesv1.KubeAPIServerClientKubeletSignerName, wrongOrg, clientUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"extra organization", certificatesv1.KubeAPIServerClientKubeletSignerName, twoOrgs, clientUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"not a node name", certificatesv1.KubeAPIServerClientKubeletSignerName, notNode, clientUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"other signer", certificatesv1.KubeAPIServerClientSignerName, client, clientUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"garbage request", certificatesv1.KubeAPIServerClientKubeletSignerName, []byte("junk"), clientUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"serving, names are the node's", certificatesv1.KubeletServingSignerName, serving, servingUsages, "system:node:n1", node, MessageNodeServing},
		{"serving, foreign name", certificatesv1.KubeletServingSignerName, servingOther, servingUsages, "system:node:n1", node, ""},
		{"serving, asked by bootstrapper", certificatesv1.KubeletServingSignerName, serving, servingUsages, "system:bootstrap:abcdef", bootstrap, ""},
		{"serving, client usages", certificatesv1.KubeletServingSignerName, serving, clientUsages, "system:node:n1", node, ""},
	}

	cs := fake.NewClientset()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := New(Config{Client: cs, Factory: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Core().V1().Nodes().Informer().GetStore().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: tt.signer, Request: tt.req, Usages: tt.usages, Username: tt.user, Groups: tt.groups}}
			if got := c.Decide(r); got != tt.want {
				t.Errorf("Decide = %q, want %q", got, tt.want)
			}
		})
	}
}
