// Package csrsigning is the CertificateSigningRequest signer for the
// cluster CA's signers, as upstream's csrsigning controller: an approved,
// not failed, not yet issued request for kubernetes.io/kube-apiserver-client-kubelet,
// kubernetes.io/kube-apiserver-client or kubernetes.io/kubelet-serving is
// checked against its signer's rules and signed by the cluster CA, with the
// requested usages, for the shorter of spec.expirationSeconds and the
// configured duration. A request that breaks its signer's rules gets a
// Failed condition (SignerValidationFailure). Requests for other signers
// are left alone.
package csrsigning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certificateslisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/csr"
	"github.com/skiff-sh/skiff/internal/pki"
)

// DefaultDuration is the longest certificate the signer issues, as
// upstream's --cluster-signing-duration (one year).
const DefaultDuration = 365 * 24 * time.Hour

// Config configures the controller.
type Config struct {
	// Client writes the issued certificates.
	Client kubernetes.Interface
	// Factory provides the CSR informer; the caller starts it.
	Factory informers.SharedInformerFactory
	// CA signs.
	CA *pki.CA
	// Duration caps a certificate's lifetime (default DefaultDuration).
	Duration time.Duration
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of requests handled at once (default 1).
	Workers int
}

// Controller is the signer.
type Controller struct {
	cfg    Config
	loop   *loop.Loop
	csrs   certificateslisters.CertificateSigningRequestLister
	synced cache.InformerSynced
	log    *slog.Logger
}

// New builds the controller and registers its informer handler.
func New(cfg Config) (*Controller, error) {
	if cfg.CA == nil {
		return nil, errors.New("csrsigning controller: no CA")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	inf := cfg.Factory.Certificates().V1().CertificateSigningRequests()
	c := &Controller{cfg: cfg, csrs: inf.Lister(), synced: inf.Informer().HasSynced, log: cfg.Logger}
	c.loop = loop.New("csrsigning", c, cfg.Logger)
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, cur any) { c.loop.Enqueue(cur) },
	}); err != nil {
		return nil, fmt.Errorf("csrsigning controller: csr handler: %w", err)
	}
	return c, nil
}

// Run waits for the informer to sync and signs until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return fmt.Errorf("csrsigning controller: cache did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile signs the request named key when it is due.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	obj, err := c.csrs.Get(key)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !due(obj) {
		return 0, nil
	}
	certPEM, failure, err := c.Sign(obj)
	if err != nil {
		return 0, err
	}
	if certPEM == nil && failure == "" {
		return 0, nil // another signer's
	}
	obj = obj.DeepCopy()
	if failure != "" {
		obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SignerValidationFailure",
			Message: failure, LastUpdateTime: metav1.Now(),
		})
	} else {
		obj.Status.Certificate = certPEM
	}
	if _, err := c.cfg.Client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("update csr %s: %w", obj.Name, err)
	}
	if failure != "" {
		c.log.Warn("certificate signing request failed its signer's rules", "csr", obj.Name, "signer", obj.Spec.SignerName, "reason", failure)
	} else {
		c.log.Info("signed certificate signing request", "csr", obj.Name, "signer", obj.Spec.SignerName, "requestor", obj.Spec.Username)
	}
	return 0, nil
}

// due reports whether the request is approved, not failed and not issued.
func due(r *certificatesv1.CertificateSigningRequest) bool {
	if len(r.Status.Certificate) > 0 {
		return false
	}
	approved := false
	for _, cond := range r.Status.Conditions {
		switch cond.Type {
		case certificatesv1.CertificateApproved:
			approved = cond.Status == corev1.ConditionTrue
		case certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			if cond.Status == corev1.ConditionTrue {
				return false
			}
		}
	}
	return approved
}

// Sign returns the PEM certificate for an approved request of one of the
// CA's signers; failure says why a request breaks its signer's rules;
// both are empty for another signer's request. err is an error to retry.
func (c *Controller) Sign(r *certificatesv1.CertificateSigningRequest) (certPEM []byte, failure string, err error) {
	switch r.Spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeAPIServerClientSignerName, certificatesv1.KubeletServingSignerName:
	default:
		return nil, "", nil
	}
	req, err := csr.Parse(r.Spec.Request)
	if err != nil {
		return nil, fmt.Sprintf("unable to parse csr %q: %v", r.Name, err), nil
	}
	var rule error
	switch r.Spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		rule = csr.ValidateNodeClient(req, r.Spec.Usages)
	case certificatesv1.KubeletServingSignerName:
		rule = csr.ValidateNodeServing(req, r.Spec.Usages)
	case certificatesv1.KubeAPIServerClientSignerName:
		rule = csr.ValidateAPIServerClient(r.Spec.Usages)
	}
	if rule != nil {
		return nil, rule.Error(), nil
	}
	ku, eku, err := csr.X509Usages(r.Spec.Usages)
	if err != nil {
		return nil, err.Error(), nil
	}
	ttl := c.cfg.Duration
	if e := r.Spec.ExpirationSeconds; e != nil {
		if d := time.Duration(*e) * time.Second; d < ttl {
			ttl = d
		}
	}
	certPEM, err = c.cfg.CA.SignRequest(req, ku, eku, ttl)
	if err != nil {
		return nil, "", err
	}
	return certPEM, "", nil
}
