package nodecreds_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/agent/nodecreds"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/manager"
	"github.com/skiff-sh/skiff/internal/csr"
	"github.com/skiff-sh/skiff/internal/pki"
)

// TestBootstrapThroughCSR bootstraps a node against the real API server
// with the approver and signer of the controller manager: the node gets its
// certificate with a bootstrap token, talks to the API server as
// system:node:<name>, finds its credentials again after a restart without
// the token, and renews them before they expire. Without an approver the
// wait ends with an error that says how to approve.
func TestBootstrapThroughCSR(t *testing.T) {
	rc, cs, dir := controllertest.ControlPlaneDir(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef", Namespace: "kube-system"},
		Type:       "bootstrap.kubernetes.io/token",
		StringData: map[string]string{"token-id": "abcdef", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bootstrap := &rest.Config{Host: rc.Host, BearerToken: "abcdef.0123456789abcdef",
		TLSClientConfig: rest.TLSClientConfig{CAData: rc.CAData}}

	// No approver yet: the wait times out with advice.
	_, err := nodecreds.Obtain(ctx, nodecreds.Config{NodeName: "lonely", DataDir: t.TempDir(), Bootstrap: bootstrap,
		WaitTimeout: 2 * time.Second, Logger: controllertest.Logger()})
	if err == nil || !strings.Contains(err.Error(), "kubectl certificate approve node-csr-") {
		t.Fatalf("Obtain without an approver: %v", err)
	}
	// No token and no credentials: a clear error at once.
	if _, err := nodecreds.Obtain(ctx, nodecreds.Config{NodeName: "n0", DataDir: t.TempDir(), Logger: controllertest.Logger()}); err == nil ||
		!strings.Contains(err.Error(), "--token") {
		t.Fatalf("Obtain without a token: %v", err)
	}

	m, err := manager.New(manager.Config{Rest: rc, Controllers: []string{manager.CSRApproving, manager.CSRSigning}, DisableLeaderElection: true,
		ClusterSigningCertFile: filepath.Join(dir, "pki", pki.CACertFile), ClusterSigningKeyFile: filepath.Join(dir, "pki", pki.CAKeyFile),
		ClusterSigningDuration: 20 * time.Second, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stopManager := context.WithCancel(ctx)
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(mctx) }()
	t.Cleanup(func() { stopManager(); <-mdone })

	nodeDir := t.TempDir()
	creds, err := nodecreds.Obtain(ctx, nodecreds.Config{NodeName: "n1", DataDir: nodeDir, Bootstrap: bootstrap,
		WaitTimeout: time.Minute, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	first := creds.Current().Leaf
	if first.Subject.CommonName != "system:node:n1" {
		t.Errorf("certificate for %q", first.Subject.CommonName)
	}
	nodeCfg, err := creds.RestConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	whoami := func(cfg *rest.Config) (string, error) {
		// A CSR records its requester: the node's identity as the API
		// server sees it.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", err
		}
		req, err := csr.NewNodeClientRequest(key, "n1")
		if err != nil {
			return "", err
		}
		obj, err := kubernetes.NewForConfigOrDie(cfg).CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "whoami-"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: "example.com/nobody",
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", err
		}
		return obj.Spec.Username + " " + strings.Join(obj.Spec.Groups, ","), nil
	}
	if who, err := whoami(nodeCfg); err != nil || who != "system:node:n1 system:nodes,system:authenticated" {
		t.Errorf("node talks as %q (%v)", who, err)
	}

	// A restart finds the credentials without the token.
	again, err := nodecreds.Obtain(ctx, nodecreds.Config{NodeName: "n1", DataDir: nodeDir, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Current().Leaf.Equal(first) {
		t.Error("restart did not load the same certificate")
	}

	// Renewal at 80% of the 20s lifetime, through the node's own
	// credentials; the client keeps working with the new certificate.
	rctx, stopRenewal := context.WithCancel(ctx)
	rdone := make(chan error, 1)
	go func() { rdone <- creds.Run(rctx) }()
	t.Cleanup(func() { stopRenewal(); <-rdone })
	var renewed *x509.Certificate
	controllertest.Eventually(t, "certificate renewed", func() (bool, string) {
		renewed = creds.Current().Leaf
		return !renewed.Equal(first), "serial " + renewed.SerialNumber.String()
	})
	if who, err := whoami(nodeCfg); err != nil || !strings.HasPrefix(who, "system:node:n1 ") {
		t.Errorf("after renewal the node talks as %q (%v)", who, err)
	}
	reloaded, err := nodecreds.Obtain(ctx, nodecreds.Config{NodeName: "n1", DataDir: nodeDir, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if l := reloaded.Current().Leaf; !l.NotAfter.After(first.NotAfter) {
		t.Error("the renewed certificate was not written to the kubeconfig")
	}
	list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	selfRenewals := 0
	for _, r := range list.Items {
		if r.Spec.Username == "system:node:n1" && r.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName {
			selfRenewals++
		}
	}
	if selfRenewals == 0 {
		t.Error("no renewal request made by the node itself")
	}
}
