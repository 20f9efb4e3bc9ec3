// Package nodecreds gives a node agent its own TLS client credentials
// through the certificates.k8s.io API, as upstream's kubelet TLS
// bootstrapping does.
//
// On first start the agent has only a bootstrap token: Obtain generates a
// key (DATA_DIR/pki/node.key, ECDSA P-256), posts a CertificateSigningRequest
// for CN system:node:<name>, O system:nodes to the signer
// kubernetes.io/kube-apiserver-client-kubelet, waits until it is approved
// and issued, and writes DATA_DIR/node.kubeconfig (server, CA, certificate
// and key). Later starts load that kubeconfig and need no token. Run renews
// the certificate with the node's own credentials at 80% of its lifetime;
// the client config from RestConfig always presents the current
// certificate and drops its connections when it changes.
package nodecreds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/connrotation"

	"github.com/skiff-sh/skiff/internal/csr"
	"github.com/skiff-sh/skiff/internal/pki"
)

const (
	// KubeconfigFile is the node kubeconfig's name in the data dir.
	KubeconfigFile = "node.kubeconfig"
	// KeyFile is the node key's path under the data dir.
	KeyFile = "pki/node.key"
	// DefaultWaitTimeout is how long Obtain waits for a certificate.
	DefaultWaitTimeout = 15 * time.Minute
	// renewAt is the part of a certificate's lifetime after which Run
	// renews it.
	renewAt = 0.8
	// progressEvery is how often a waiting Obtain says it still waits.
	progressEvery = 30 * time.Second
)

// Config configures the credentials of one node.
type Config struct {
	// NodeName is the node the certificate is for.
	NodeName string
	// DataDir holds node.kubeconfig and pki/node.key.
	DataDir string
	// Bootstrap reaches the API server with the bootstrap token; it is
	// needed only while the node has no valid certificate. Its Host and
	// CA are written into the node kubeconfig.
	Bootstrap *rest.Config
	// WaitTimeout bounds the wait for approval and signing (default
	// DefaultWaitTimeout).
	WaitTimeout time.Duration
	// Logger receives progress and rotation logs.
	Logger *slog.Logger
}

// Credentials are a node's current client certificate.
type Credentials struct {
	cfg    Config
	log    *slog.Logger
	host   string
	caPEM  []byte
	dialer *connrotation.Dialer

	mu   sync.Mutex
	cert *tls.Certificate
	// rotated is closed and replaced each time the certificate changes.
	rotated chan struct{}
}

// Obtain returns the node's credentials: from DATA_DIR/node.kubeconfig when
// it holds a certificate valid for more than a moment, else through a new
// CertificateSigningRequest made with cfg.Bootstrap.
func Obtain(ctx context.Context, cfg Config) (*Credentials, error) {
	if cfg.NodeName == "" || cfg.DataDir == "" {
		return nil, errors.New("node credentials: node name and data dir are required")
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Credentials{cfg: cfg, log: cfg.Logger, rotated: make(chan struct{}),
		dialer: connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)}
	path := filepath.Join(cfg.DataDir, KubeconfigFile)
	kc, err := clientcmd.LoadFromFile(path)
	switch {
	case err == nil:
		if host, caPEM, cert, lerr := fromKubeconfig(kc); lerr == nil && time.Now().Before(cert.Leaf.NotAfter) {
			c.host, c.caPEM, c.cert = host, caPEM, cert
			c.log.Info("using the node's credentials", "kubeconfig", path, "expires", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
			return c, nil
		} else if lerr != nil {
			c.log.Warn("node kubeconfig unusable; bootstrapping again", "kubeconfig", path, "err", lerr)
		} else {
			c.log.Warn("node certificate expired; bootstrapping again", "kubeconfig", path, "expired", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	case !errors.Is(err, fs.ErrNotExist):
		c.log.Warn("node kubeconfig unreadable; bootstrapping again", "kubeconfig", path, "err", err)
	}
	if cfg.Bootstrap == nil {
		return nil, fmt.Errorf("node credentials: %s holds no valid certificate and no bootstrap token was given (--token)", path)
	}
	c.host, c.caPEM = cfg.Bootstrap.Host, cfg.Bootstrap.CAData
	if len(c.caPEM) == 0 && cfg.Bootstrap.CAFile != "" {
		if c.caPEM, err = os.ReadFile(cfg.Bootstrap.CAFile); err != nil {
			return nil, fmt.Errorf("node credentials: read CA: %w", err)
		}
	}
	if len(c.caPEM) == 0 {
		return nil, errors.New("node credentials: the cluster CA is needed to write the node kubeconfig (--ca-file)")
	}
	client, err := kubernetes.NewForConfig(cfg.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("node credentials: bootstrap client: %w", err)
	}
	if err := c.request(ctx, client); err != nil {
		return nil, err
	}
	return c, nil
}

// fromKubeconfig reads the server, CA and client certificate of a node
// kubeconfig's current context (all embedded, as request writes them).
func fromKubeconfig(kc *clientcmdapi.Config) (string, []byte, *tls.Certificate, error) {
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		return "", nil, nil, fmt.Errorf("no context %q", kc.CurrentContext)
	}
	cluster, user := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if cluster == nil || user == nil || cluster.Server == "" || len(cluster.CertificateAuthorityData) == 0 {
		return "", nil, nil, errors.New("the context's cluster or user is incomplete")
	}
	cert, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData)
	if err != nil {
		return "", nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	return cluster.Server, cluster.CertificateAuthorityData, &cert, nil
}

// request makes a new key, asks for a certificate with client and stores
// both.
func (c *Credentials) request(ctx context.Context, client kubernetes.Interface) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("node credentials: generate key: %w", err)
	}
	req, err := csr.NewNodeClientRequest(key, c.cfg.NodeName)
	if err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	certPEM, err := c.waitForCertificate(ctx, client, req)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("node credentials: issued certificate: %w", err)
	}
	if err := pki.WriteFile(filepath.Join(c.cfg.DataDir, KeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	if err := pki.WriteKubeconfig(filepath.Join(c.cfg.DataDir, KubeconfigFile), c.host, c.caPEM, certPEM, keyPEM, csr.NodeUserPrefix+c.cfg.NodeName); err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	c.mu.Lock()
	old := c.cert
	c.cert = &cert
	close(c.rotated)
	c.rotated = make(chan struct{})
	c.mu.Unlock()
	if old != nil {
		// connections made with the old certificate go; new ones present
		// the new one
		c.dialer.CloseAll()
	}
	c.log.Info("node certificate issued", "node", c.cfg.NodeName, "expires", cert.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"kubeconfig", filepath.Join(c.cfg.DataDir, KubeconfigFile))
	return nil
}

// waitForCertificate creates the request and waits until it is issued,
// denied or failed, or the wait times out.
func (c *Credentials) waitForCertificate(ctx context.Context, client kubernetes.Interface, req []byte) ([]byte, error) {
	api := client.CertificatesV1().CertificateSigningRequests()
	obj, err := api.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages: csr.ClientUsages},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("node credentials: create certificate signing request: %w", err)
	}
	name := obj.Name
	c.log.Info("requested a node certificate", "csr", name, "node", c.cfg.NodeName)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.WaitTimeout)
	defer cancel()
	progress := time.NewTicker(progressEvery)
	defer progress.Stop()
	start := time.Now()
	for {
		if done, certPEM, err := issued(obj); done {
			return certPEM, err
		}
		w, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: obj.ResourceVersion})
		if err != nil {
			if ctx.Err() != nil {
				return nil, c.timeout(name, start)
			}
			c.log.Warn("watch certificate signing request", "csr", name, "err", err)
			if obj, err = c.refetch(ctx, api.Get, name, start); err != nil {
				return nil, err
			}
			continue
		}
		obj, err = c.follow(ctx, w, progress.C, name, start)
		w.Stop()
		if err != nil {
			return nil, err
		}
		if obj == nil { // the watch ended; start again from the current object
			if obj, err = c.refetch(ctx, api.Get, name, start); err != nil {
				return nil, err
			}
		}
	}
}

// follow reads watch events until the request is decided (returning it),
// the watch ends (nil), or the wait times out.
func (c *Credentials) follow(ctx context.Context, w watch.Interface, progress <-chan time.Time, name string, start time.Time) (*certificatesv1.CertificateSigningRequest, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, c.timeout(name, start)
		case <-progress:
			c.log.Info("waiting for the node certificate to be approved and signed", "csr", name, "waited", time.Since(start).Round(time.Second),
				"approve", "kubectl certificate approve "+name)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, fmt.Errorf("node credentials: certificate signing request %s was deleted before it was issued", name)
			case watch.Error:
				return nil, nil
			}
			obj, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok {
				continue
			}
			if done, _, _ := issued(obj); done {
				return obj, nil
			}
		}
	}
}

func (c *Credentials) refetch(ctx context.Context, get func(context.Context, string, metav1.GetOptions) (*certificatesv1.CertificateSigningRequest, error),
	name string, start time.Time) (*certificatesv1.CertificateSigningRequest, error) {
	for {
		obj, err := get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			return obj, nil
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("node credentials: certificate signing request %s was deleted before it was issued", name)
		}
		select {
		case <-ctx.Done():
			return nil, c.timeout(name, start)
		case <-time.After(time.Second):
		}
	}
}

func (c *Credentials) timeout(name string, start time.Time) error {
	return fmt.Errorf("node credentials: certificate signing request %s was not approved and signed within %s; "+
		"approve it with `kubectl certificate approve %s` (the server's controller manager approves node requests made with a bootstrap token and signs approved ones), then start the agent again",
		name, time.Since(start).Round(time.Second), name)
}

// issued reports whether the request is decided: issued (the certificate),
// or denied or failed (an error).
func issued(obj *certificatesv1.CertificateSigningRequest) (bool, []byte, error) {
	for _, cond := range obj.Status.Conditions {
		switch cond.Type {
		case certificatesv1.CertificateDenied:
			return true, nil, fmt.Errorf("node credentials: certificate signing request %s was denied: %s %s", obj.Name, cond.Reason, cond.Message)
		case certificatesv1.CertificateFailed:
			return true, nil, fmt.Errorf("node credentials: certificate signing request %s failed: %s %s", obj.Name, cond.Reason, cond.Message)
		}
	}
	if len(obj.Status.Certificate) > 0 {
		return true, obj.Status.Certificate, nil
	}
	return false, nil, nil
}

// Current returns the certificate in use.
func (c *Credentials) Current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

// RestConfig returns a client configuration for the API server that
// presents the current certificate; base's user agent, content types,
// QPS and timeout are kept.
func (c *Credentials) RestConfig(base *rest.Config) (*rest.Config, error) {
	cfg := &rest.Config{Host: c.host}
	if base != nil {
		cfg.UserAgent, cfg.ContentType, cfg.AcceptContentTypes = base.UserAgent, base.ContentType, base.AcceptContentTypes
		cfg.QPS, cfg.Burst, cfg.Timeout = base.QPS, base.Burst, base.Timeout
	}
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{Host: c.host, TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM}})
	if err != nil {
		return nil, fmt.Errorf("node credentials: TLS config: %w", err)
	}
	tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return c.Current(), nil
	}
	cfg.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: 25,
		DialContext:         c.dialer.DialContext,
		IdleConnTimeout:     90 * time.Second,
	})
	return cfg, nil
}

// Run renews the certificate at 80% of its lifetime, with the node's own
// credentials, until ctx ends; failures are retried.
func (c *Credentials) Run(ctx context.Context) error {
	rc, err := c.RestConfig(nil)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("node credentials: client: %w", err)
	}
	retry := 10 * time.Second
	for {
		at := renewalTime(c.Current().Leaf)
		leaf := c.Current().Leaf
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(at)):
		}
		c.log.Info("renewing the node certificate", "node", c.cfg.NodeName, "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
		if err := c.request(ctx, client); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("node certificate renewal failed; retrying", "err", err, "in", retry)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retry):
			}
			if retry < 5*time.Minute {
				retry *= 2
			}
			continue
		}
		retry = 10 * time.Second
	}
}

// signerBackdate is how far skiff's signer backdates NotBefore.
const signerBackdate = 5 * time.Minute

// renewalTime is when 80% of a certificate's lifetime has passed, counted
// from its issue: NotBefore plus the signer's backdating, when the
// certificate lives longer than that.
func renewalTime(leaf *x509.Certificate) time.Time {
	start := leaf.NotBefore
	if start.Add(signerBackdate).Before(leaf.NotAfter) {
		start = start.Add(signerBackdate)
	}
	return start.Add(time.Duration(float64(leaf.NotAfter.Sub(start)) * renewAt))
}
