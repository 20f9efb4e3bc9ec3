package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/csr"
	"github.com/skiff-sh/skiff/internal/pki"
	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestCertificateSigningRequests drives the certificates API with stock
// kubectl: a user's request waits in `kubectl get csr` until `kubectl
// certificate approve`, is signed by the server's controller manager and
// its certificate authenticates kubectl; `kubectl certificate deny` denies;
// a node's request made with a bootstrap token is approved and signed
// without anyone.
func TestCertificateSigningRequests(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	k := framework.LatestKubectl(t)
	ctx := ctxT(t, 2*time.Minute)

	newRequest := func(cn string) (reqPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"devs"}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	}
	manifest := func(name string, req []byte) string {
		return fmt.Sprintf(`apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: %s
spec:
  request: %s
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 86400
  usages: ["client auth"]
`, name, base64.StdEncoding.EncodeToString(req))
	}
	aliceReq, aliceKey := newRequest("alice")
	bobReq, _ := newRequest("bob")
	s.MustKubectl(t, k, "create", "-f", writeFile(t, "alice.yaml", manifest("alice", aliceReq), 0o600))
	s.MustKubectl(t, k, "create", "-f", writeFile(t, "bob.yaml", manifest("bob", bobReq), 0o600))

	out := s.MustKubectl(t, k, "get", "csr")
	rows := tableRows(out)
	if got := strings.Join(rows[0], " "); got != "NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION" {
		t.Errorf("kubectl get csr header %q", got)
	}
	if r := rowNamed(rows, "alice"); len(r) != 6 || r[2] != "kubernetes.io/kube-apiserver-client" || r[3] != "skiff-admin" || r[4] != "24h" || r[5] != "Pending" {
		t.Errorf("alice row %v in\n%s", r, out)
	}
	// Not approved: never signed.
	time.Sleep(time.Second)
	if c := s.MustKubectl(t, k, "get", "csr", "alice", "-o", "jsonpath={.status.certificate}"); c != "" {
		t.Fatal("a pending request was signed")
	}

	s.MustKubectl(t, k, "certificate", "approve", "alice")
	s.MustKubectl(t, k, "certificate", "deny", "bob")
	poll(t, "alice approved and issued", time.Minute, func() (bool, string) {
		r := rowNamed(tableRows(s.MustKubectl(t, k, "get", "csr", "alice")), "alice")
		return len(r) == 6 && r[5] == "Approved,Issued", fmt.Sprint(r)
	})
	if r := rowNamed(tableRows(s.MustKubectl(t, k, "get", "csr", "bob")), "bob"); len(r) != 6 || r[5] != "Denied" {
		t.Errorf("bob row %v", r)
	}
	if reason := s.MustKubectl(t, k, "get", "csr", "alice", "-o", "jsonpath={.status.conditions[0].reason}"); reason != "KubectlApprove" {
		t.Errorf("approval reason %q", reason)
	}
	// Status writes may not approve, and an issued certificate stays.
	if r := s.Kubectl(k, "certificate", "deny", "alice"); r.ExitCode == 0 {
		t.Errorf("denying an approved request succeeded: %s", r)
	}

	// alice's certificate authenticates kubectl.
	certB64 := s.MustKubectl(t, k, "get", "csr", "alice", "-o", "jsonpath={.status.certificate}")
	certPEM, err := base64.StdEncoding.DecodeString(certB64)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := s.RestConfig(t).CAData
	aliceKC := filepath.Join(t.TempDir(), "alice.kubeconfig")
	if err := pki.WriteKubeconfig(aliceKC, s.URL(), caPEM, certPEM, aliceKey, "alice"); err != nil {
		t.Fatal(err)
	}
	s.MustKubectl(t, k, "--kubeconfig", aliceKC, "get", "namespaces")
	if who := s.MustKubectl(t, k, "--kubeconfig", aliceKC, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"); who != `alice ["devs","system:authenticated"]` {
		t.Errorf("kubectl auth whoami with alice's certificate: %q", who)
	}

	// A node joining with a bootstrap token is approved and signed by the
	// server alone.
	r := s.Skiff(ctx, "token", "create", "--kubeconfig", s.Kubeconfig())
	if r.ExitCode != 0 {
		t.Fatalf("skiff token create: %s", r)
	}
	tokenCfg := &rest.Config{Host: s.URL(), BearerToken: strings.TrimSpace(r.Stdout), TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nodeReq, err := csr.NewNodeClientRequest(nodeKey, "e2e-node")
	if err != nil {
		t.Fatal(err)
	}
	obj, err := kubernetes.NewForConfigOrDie(tokenCfg).CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: nodeReq, SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages: csr.ClientUsages},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "node request approved and issued", time.Minute, func() (bool, string) {
		r := rowNamed(tableRows(s.MustKubectl(t, k, "get", "csr", obj.Name)), obj.Name)
		return len(r) == 6 && r[5] == "Approved,Issued" && strings.HasPrefix(r[3], "system:bootstrap:"), fmt.Sprint(r)
	})
}
