package csrsigning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/csrapproving"
	"github.com/skiff-sh/skiff/internal/controller/csrsigning"
	"github.com/skiff-sh/skiff/internal/csr"
	"github.com/skiff-sh/skiff/internal/pki"
)

// TestBootstrapAndManualApproval runs the approver and the signer against
// the real API server: a node's client request made with a bootstrap token
// is approved and signed, and the certificate authenticates the node; an
// administrator's kube-apiserver-client request waits until approved
// through the approval subresource, as `kubectl certificate approve` does.
func TestBootstrapAndManualApproval(t *testing.T) {
	rc, cs, dir := controllertest.ControlPlaneDir(t)
	ctx := context.Background()
	certPEM, err := os.ReadFile(filepath.Join(dir, "pki", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "pki", pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	approver, err := csrapproving.New(csrapproving.Config{Client: cs, Factory: f, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := csrsigning.New(csrsigning.Config{Client: cs, Factory: f, CA: ca, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, f, runners{approver, signer})

	// A bootstrap token, as `skiff token create` makes it.
	if _, err := cs.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef", Namespace: "kube-system"},
		Type:       "bootstrap.kubernetes.io/token",
		StringData: map[string]string{"token-id": "abcdef", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tokenCfg := rest.AnonymousClientConfig(rc)
	tokenCfg.BearerToken = "abcdef.0123456789abcdef"
	bootstrap := kubernetes.NewForConfigOrDie(tokenCfg)

	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req, err := csr.NewNodeClientRequest(nodeKey, "n1")
	if err != nil {
		t.Fatal(err)
	}
	created, err := bootstrap.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages: csr.ClientUsages, Username: "forged", Groups: []string{"system:masters"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Spec.Username != "system:bootstrap:abcdef" || len(created.Spec.Groups) == 0 || created.Spec.Groups[0] != "system:bootstrappers" {
		t.Fatalf("requester recorded as %q %v", created.Spec.Username, created.Spec.Groups)
	}
	var issued *certificatesv1.CertificateSigningRequest
	controllertest.Eventually(t, "node client certificate issued", func() (bool, string) {
		issued, err = cs.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(issued.Status.Certificate) > 0, fmt.Sprint(issued.Status.Conditions)
	})
	if c := issued.Status.Conditions; len(c) != 1 || c[0].Type != certificatesv1.CertificateApproved || c[0].Reason != csrapproving.Reason || c[0].LastUpdateTime.IsZero() {
		t.Errorf("conditions %+v", c)
	}
	nodeKeyDER, err := x509.MarshalPKCS8PrivateKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeCfg := rest.AnonymousClientConfig(rc)
	nodeCfg.CertData = issued.Status.Certificate
	nodeCfg.KeyData = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: nodeKeyDER})
	node := kubernetes.NewForConfigOrDie(nodeCfg)

	// The node's own renewal is recorded as the node and approved as
	// self renewal.
	renewal, err := node.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName, Usages: csr.ClientUsages},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if renewal.Spec.Username != "system:node:n1" {
		t.Errorf("renewal requested by %q", renewal.Spec.Username)
	}
	controllertest.Eventually(t, "renewal issued", func() (bool, string) {
		r, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, renewal.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(r.Status.Certificate) > 0 && r.Status.Conditions[0].Message == csrapproving.MessageSelfNodeClient, fmt.Sprint(r.Status.Conditions)
	})

	// An administrator's request for a user certificate waits for approval.
	userKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice", Organization: []string{"devs"}}}, userKey)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "alice"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeAPIServerClientSignerName, Usages: csr.ClientUsages},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The status subresource may not approve.
	alice.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, alice, metav1.UpdateOptions{}); err == nil {
		t.Error("approval through status was accepted")
	}
	got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, "alice", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) != 0 || len(got.Status.Certificate) != 0 {
		t.Fatalf("a pending user request changed: %+v", got.Status)
	}
	got.Status.Conditions = append(got.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "KubectlApprove", Message: "This CSR was approved by kubectl certificate approve."})
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, "alice", got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "user certificate issued", func() (bool, string) {
		r, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, "alice", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(r.Status.Certificate) > 0, fmt.Sprint(r.Status.Conditions)
	})
}

// runners runs several controllers on one factory until all stop.
type runners []controllertest.Runner

func (rs runners) Run(ctx context.Context) error {
	errc := make(chan error, len(rs))
	for _, r := range rs {
		go func() { errc <- r.Run(ctx) }()
	}
	var first error
	for range rs {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}
