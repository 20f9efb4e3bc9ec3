// Package csrapproving is the CertificateSigningRequest approver: it
// approves what a kubelet asks for on its own, as upstream's csrapproving
// controller does after its SubjectAccessReviews, with skiff's rules in
// place of RBAC (which skiff does not enforce yet):
//
//   - a node client certificate (signer kubernetes.io/kube-apiserver-client-kubelet,
//     CN system:node:<name>, O system:nodes, no alternative names, usages
//     digital signature and client auth, key encipherment optional)
//     requested by a bootstrap token user (group system:bootstrappers) or an
//     administrator (system:masters), or by that same node renewing its
//     certificate (user system:node:<name> in system:nodes);
//   - a node serving certificate (signer kubernetes.io/kubelet-serving)
//     requested by that same node when every DNS name and IP address it
//     asks for is one of the Node's status.addresses. Upstream leaves
//     serving requests to an administrator; a name the node does not
//     report still waits for `kubectl certificate approve`.
//
// Everything else is left pending for an administrator. The controller never
// denies.
package csrapproving

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certificateslisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/csr"
)

// Reason is the Approved condition's reason.
const Reason = "AutoApproved"

// Messages of the Approved condition, as upstream's (the serving one is skiff's).
const (
	MessageNodeClient     = "Auto approving kubelet client certificate after SubjectAccessReview."
	MessageSelfNodeClient = "Auto approving self kubelet client certificate after SubjectAccessReview."
	MessageNodeServing    = "Auto approving kubelet serving certificate: its names are the node's addresses."
)

// Config configures the controller.
type Config struct {
	// Client approves requests.
	Client kubernetes.Interface
	// Factory provides the CSR and node informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of requests handled at once (default 1).
	Workers int
}

// Controller is the approver.
type Controller struct {
	cfg    Config
	loop   *loop.Loop
	csrs   certificateslisters.CertificateSigningRequestLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	log    *slog.Logger
}

// New builds the controller and registers its informer handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	csrInf := cfg.Factory.Certificates().V1().CertificateSigningRequests()
	nodeInf := cfg.Factory.Core().V1().Nodes()
	c := &Controller{cfg: cfg, csrs: csrInf.Lister(), nodes: nodeInf.Lister(), log: cfg.Logger,
		synced: []cache.InformerSynced{csrInf.Informer().HasSynced, nodeInf.Informer().HasSynced}}
	c.loop = loop.New("csrapproving", c, cfg.Logger)
	if _, err := csrInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, cur any) { c.loop.Enqueue(cur) },
	}); err != nil {
		return nil, fmt.Errorf("csrapproving controller: csr handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and approves until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("csrapproving controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile approves the request named key if the rules allow it.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	obj, err := c.csrs.Get(key)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if decided(obj) || len(obj.Status.Certificate) > 0 {
		return 0, nil
	}
	msg := c.Decide(obj)
	if msg == "" {
		return 0, nil
	}
	obj = obj.DeepCopy()
	obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: Reason, Message: msg,
		LastUpdateTime: metav1.Now(),
	})
	if _, err := c.cfg.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, obj.Name, obj, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("approve csr %s: %w", obj.Name, err)
	}
	c.log.Info("approved certificate signing request", "csr", obj.Name, "signer", obj.Spec.SignerName, "requestor", obj.Spec.Username)
	return 0, nil
}

// decided reports whether the request is approved or denied already.
func decided(r *certificatesv1.CertificateSigningRequest) bool {
	for _, cond := range r.Status.Conditions {
		if cond.Type == certificatesv1.CertificateApproved || cond.Type == certificatesv1.CertificateDenied {
			return true
		}
	}
	return false
}

// Decide returns the approval message for a request the rules approve,
// or "" to leave it pending.
func (c *Controller) Decide(r *certificatesv1.CertificateSigningRequest) string {
	req, err := csr.Parse(r.Spec.Request)
	if err != nil {
		return ""
	}
	groups := r.Spec.Groups
	self := r.Spec.Username == req.Subject.CommonName && slices.Contains(groups, csr.NodesGroup)
	switch r.Spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		if csr.ValidateNodeClient(req, r.Spec.Usages) != nil {
			return ""
		}
		if self {
			return MessageSelfNodeClient
		}
		if slices.Contains(groups, csr.BootstrappersGroup) || slices.Contains(groups, csr.MastersGroup) {
			return MessageNodeClient
		}
	case certificatesv1.KubeletServingSignerName:
		if !self || csr.ValidateNodeServing(req, r.Spec.Usages) != nil {
			return ""
		}
		name, _ := csr.NodeName(req.Subject.CommonName)
		node, err := c.nodes.Get(name)
		if err != nil {
			return ""
		}
		if namesAreAddresses(req.DNSNames, req.IPAddresses, node.Status.Addresses) {
			return MessageNodeServing
		}
	}
	return ""
}

// namesAreAddresses reports whether every DNS name is a Hostname or DNS
// address of the node and every IP an InternalIP or ExternalIP.
func namesAreAddresses(dnsNames []string, ips []net.IP, addrs []corev1.NodeAddress) bool {
	has := func(want string, types ...corev1.NodeAddressType) bool {
		for _, a := range addrs {
			if slices.Contains(types, a.Type) && a.Address == want {
				return true
			}
		}
		return false
	}
	for _, n := range dnsNames {
		if !has(n, corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS) {
			return false
		}
	}
	for _, ip := range ips {
		if !has(ip.String(), corev1.NodeInternalIP, corev1.NodeExternalIP) {
			return false
		}
	}
	return true
}
