package apiserver

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/skiff-sh/skiff/internal/satoken"
)

var (
	serviceAccountsGR = schema.GroupResource{Resource: "serviceaccounts"}
	secretsGR         = schema.GroupResource{Resource: "secrets"}
	nodesGR           = schema.GroupResource{Resource: "nodes"}
)

// Token request limits, as upstream has them.
const (
	// minTokenSeconds is the shortest expirationSeconds a TokenRequest
	// may ask for.
	minTokenSeconds = 600
	// maxTokenSeconds is the longest (2^32 s).
	maxTokenSeconds = 1 << 32
	// defaultTokenSeconds is what a TokenRequest without
	// expirationSeconds gets.
	defaultTokenSeconds = 3600
	// WarnOnlyTokenSeconds is the expirationSeconds of the projected
	// token admission adds to pods (3607). Pod-bound requests for exactly
	// this lifetime get a token valid for ExtendedTokenSeconds, whose
	// warnafter claim marks when the short lifetime ran out, so that
	// clients that never re-read their token keep working (upstream's
	// --service-account-extend-token-expiration, on by default).
	WarnOnlyTokenSeconds = 3607
	// ExtendedTokenSeconds is one year.
	ExtendedTokenSeconds = 365 * 24 * 3600
)

// Names admission gives the service-account token volume.
const (
	// TokenVolumePrefix starts the name of the projected volume admission
	// adds ("kube-api-access-" and five random characters).
	TokenVolumePrefix = "kube-api-access-"
	// TokenMountPath is where every container sees that volume.
	TokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// RootCAConfigMap is the ConfigMap in every namespace that holds the
	// cluster CA (key ca.crt).
	RootCAConfigMap = "kube-root-ca.crt"
)

// DefaultIssuer is the default issuer of service-account tokens in a
// cluster domain, as upstream names it.
func DefaultIssuer(clusterDomain string) string {
	if clusterDomain == "" {
		clusterDomain = "cluster.local"
	}
	return "https://kubernetes.default.svc." + clusterDomain
}

// serviceAccountTokens issues and checks the cluster's service-account
// tokens.
type serviceAccountTokens struct {
	signer    *satoken.Signer
	verifier  *satoken.Verifier
	issuer    string
	audiences []string
	maxTTL    time.Duration
}

func newServiceAccountTokens(cfg Config) (*serviceAccountTokens, error) {
	if cfg.ServiceAccountSigner == nil {
		return nil, nil
	}
	t := &serviceAccountTokens{signer: cfg.ServiceAccountSigner, issuer: cfg.ServiceAccountIssuer,
		audiences: cfg.APIAudiences, maxTTL: cfg.ServiceAccountMaxTokenExpiration}
	if t.issuer == "" {
		t.issuer = DefaultIssuer("")
	}
	if len(t.audiences) == 0 {
		t.audiences = []string{t.issuer}
	}
	v, err := satoken.NewVerifier(satoken.VerifierConfig{Keys: append([]crypto.PublicKey{t.signer.Public()}, cfg.ServiceAccountKeys...),
		Issuers: []string{t.issuer}, Audiences: t.audiences})
	if err != nil {
		return nil, fmt.Errorf("apiserver: service-account tokens: %w", err)
	}
	t.verifier = v
	return t, nil
}

// lookup returns an object from the watch cache, or from etcd when the
// cache does not have it yet (created a moment ago).
func (s *Server) lookup(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
	h := s.byGR[gr]
	if h == nil {
		return nil, apierrors.NewNotFound(gr, name)
	}
	if obj, _, found := h.cache.get(h.key(ns, name)); found {
		return obj, nil
	}
	kv, err := s.store.Get(ctx, h.key(ns, name))
	if err != nil {
		return nil, h.storeErr(err, name)
	}
	return h.fromStore(kv)
}

// serveToken serves serviceaccounts/token: it issues a TokenRequest
// (authentication.k8s.io/v1) for the service account, optionally bound to
// a Pod or Secret of its namespace.
func (s *Server) serveToken(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo, q queryParams) {
	if ri.verb != "create" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "serviceaccounts/token"}, ri.verb))
		return
	}
	if s.tokens == nil {
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccounts/token"}, ri.name))
		return
	}
	obj, _, err := h.decodeBody(r, q, &authenticationv1.TokenRequest{}, authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.issueToken(r.Context(), ri.namespace, ri.name, obj.(*authenticationv1.TokenRequest), time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusCreated, out)
}

// issueToken checks a TokenRequest as upstream's token REST storage does
// and signs its token.
func (s *Server) issueToken(ctx context.Context, ns, name string, req *authenticationv1.TokenRequest, now time.Time) (*authenticationv1.TokenRequest, error) {
	gk := schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}
	if req.Name != "" && req.Name != name {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), req.Name, "must match the service account name if specified")})
	}
	if req.Namespace != "" && req.Namespace != ns {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "namespace"), req.Namespace, "must match the service account namespace if specified")})
	}
	if req.Spec.ExpirationSeconds == nil || *req.Spec.ExpirationSeconds == 0 {
		req.Spec.ExpirationSeconds = ptr.To(int64(defaultTokenSeconds))
	}
	if len(req.Spec.Audiences) == 0 {
		req.Spec.Audiences = append([]string(nil), s.tokens.audiences...)
	}
	exp := *req.Spec.ExpirationSeconds
	var errs field.ErrorList
	expPath := field.NewPath("spec", "expirationSeconds")
	switch {
	case exp < minTokenSeconds:
		errs = append(errs, field.Invalid(expPath, exp, "may not specify a duration less than 10 minutes"))
	case exp > maxTokenSeconds:
		errs = append(errs, field.TooLong(expPath, exp, maxTokenSeconds))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(gk, name, errs)
	}
	if max := int64(s.tokens.maxTTL / time.Second); max > 0 && exp > max {
		exp = max
		req.Spec.ExpirationSeconds = &exp
	}
	saObj, err := s.lookup(ctx, serviceAccountsGR, ns, name)
	if err != nil {
		return nil, err
	}
	sa := saObj.(*corev1.ServiceAccount)
	priv := &satoken.Private{Namespace: ns, ServiceAccount: satoken.Ref{Name: sa.Name, UID: string(sa.UID)}}
	var pod *corev1.Pod
	if ref := req.Spec.BoundObjectRef; ref != nil {
		var gr schema.GroupResource
		switch {
		case ref.APIVersion == "v1" && ref.Kind == "Pod":
			gr = podsGR
		case ref.APIVersion == "v1" && ref.Kind == "Secret":
			gr = secretsGR
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)))
		}
		bound, err := s.lookup(ctx, gr, ns, ref.Name)
		if err != nil {
			return nil, err
		}
		m := metaOf(bound)
		if ref.UID != "" && ref.UID != m.GetUID() {
			return nil, apierrors.NewConflict(gr, ref.Name, fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
		}
		req.Spec.BoundObjectRef.UID = m.GetUID()
		r := &satoken.Ref{Name: m.GetName(), UID: string(m.GetUID())}
		switch b := bound.(type) {
		case *corev1.Pod:
			if b.Spec.ServiceAccountName != name {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", name))
			}
			pod, priv.Pod = b, r
			if b.Spec.NodeName != "" {
				if n, err := s.lookup(ctx, nodesGR, "", b.Spec.NodeName); err == nil {
					priv.Node = &satoken.Ref{Name: b.Spec.NodeName, UID: string(metaOf(n).GetUID())}
				}
			}
		case *corev1.Secret:
			priv.Secret = r
		}
	}
	lifetime := exp
	if pod != nil && exp == WarnOnlyTokenSeconds && s.tokens.kubeAudiences(req.Spec.Audiences) {
		warn := now.Unix() + exp
		priv.WarnAfter = &warn
		lifetime = ExtendedTokenSeconds
	}
	tok, err := s.tokens.signer.Sign(satoken.Claims{Issuer: s.tokens.issuer, Subject: satoken.Subject(ns, name),
		Audience: req.Spec.Audiences, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Unix() + lifetime,
		ID: string(uuid.NewUUID()), Kubernetes: priv})
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out := req.DeepCopy()
	out.TypeMeta = metav1.TypeMeta{APIVersion: authenticationv1.SchemeGroupVersion.String(), Kind: "TokenRequest"}
	out.Name, out.Namespace = name, ns
	out.CreationTimestamp = metav1.NewTime(now)
	out.Status = authenticationv1.TokenRequestStatus{Token: tok,
		ExpirationTimestamp: metav1.NewTime(now.Add(time.Duration(exp) * time.Second).Truncate(time.Second))}
	return out, nil
}

// kubeAudiences says whether auds are all audiences the API server
// accepts (only such tokens get an extended lifetime).
func (t *serviceAccountTokens) kubeAudiences(auds []string) bool {
	for _, a := range auds {
		found := false
		for _, k := range t.audiences {
			found = found || a == k
		}
		if !found {
			return false
		}
	}
	return true
}

// errTokenInvalidated is what a token bound to a gone object gets.
var errTokenInvalidated = errors.New("token has been invalidated")

// authenticateServiceAccount checks a service-account JWT: signature,
// issuer, audience and lifetime, then that the service account and the
// pod, secret or node it is bound to still exist with the uids the token
// names.
func (s *Server) authenticateServiceAccount(ctx context.Context, tok string) (user, error) {
	if s.tokens == nil {
		return user{}, errors.New("service-account tokens are not enabled")
	}
	u, _, err := s.authenticateServiceAccountFor(ctx, tok, s.tokens.audiences)
	return u, err
}

// authenticateServiceAccountFor is authenticateServiceAccount for tokens
// meant for audiences; it returns the token's claims too.
func (s *Server) authenticateServiceAccountFor(ctx context.Context, tok string, audiences []string) (user, *satoken.Claims, error) {
	c, err := s.tokens.verifier.VerifyFor(tok, audiences)
	if err != nil {
		return user{}, nil, err
	}
	k := c.Kubernetes
	if k == nil || k.Namespace == "" || k.ServiceAccount.Name == "" || k.ServiceAccount.UID == "" ||
		c.Subject != satoken.Subject(k.Namespace, k.ServiceAccount.Name) {
		return user{}, nil, errors.New("token lacks the kubernetes.io claims of a bound service-account token")
	}
	now := time.Now()
	live := func(gr schema.GroupResource, ns string, ref *satoken.Ref) (metav1.Object, error) {
		obj, err := s.lookup(ctx, gr, ns, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", gr.Resource, ns, ref.Name, errTokenInvalidated)
		}
		m := metaOf(obj)
		if string(m.GetUID()) != ref.UID {
			return nil, fmt.Errorf("%s %s/%s has uid %s, not %s: %w", gr.Resource, ns, ref.Name, m.GetUID(), ref.UID, errTokenInvalidated)
		}
		if dt := m.GetDeletionTimestamp(); dt != nil && dt.Time.Before(now.Add(-satoken.Leeway)) {
			return nil, fmt.Errorf("%s %s/%s is being deleted: %w", gr.Resource, ns, ref.Name, errTokenInvalidated)
		}
		return m, nil
	}
	if _, err := live(serviceAccountsGR, k.Namespace, &k.ServiceAccount); err != nil {
		return user{}, nil, err
	}
	u := user{name: c.Subject, uid: k.ServiceAccount.UID,
		groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + k.Namespace, "system:authenticated"}}
	if c.ID != "" {
		u.extra = map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=" + c.ID}}
	}
	addExtra := func(key, val string) {
		if u.extra == nil {
			u.extra = map[string][]string{}
		}
		u.extra[key] = []string{val}
	}
	if k.Pod != nil {
		if _, err := live(podsGR, k.Namespace, k.Pod); err != nil {
			return user{}, nil, err
		}
		addExtra("authentication.kubernetes.io/pod-name", k.Pod.Name)
		addExtra("authentication.kubernetes.io/pod-uid", k.Pod.UID)
	}
	if k.Secret != nil {
		if _, err := live(secretsGR, k.Namespace, k.Secret); err != nil {
			return user{}, nil, err
		}
	}
	if k.Node != nil {
		addExtra("authentication.kubernetes.io/node-name", k.Node.Name)
		addExtra("authentication.kubernetes.io/node-uid", k.Node.UID)
	}
	return u, c, nil
}

// admitPodServiceAccount does what upstream's ServiceAccount admission
// plugin does to a new pod: spec.serviceAccountName defaults to
// "default"; a pod whose service account does not exist is refused
// (403); the service account's imagePullSecrets are copied to a pod that
// has none; and unless automountServiceAccountToken is false (pod first,
// then service account) the projected volume kube-api-access-<random>
// (token, kube-root-ca.crt's ca.crt, namespace) is mounted read-only at
// TokenMountPath in every init and app container that has nothing
// mounted there.
func (s *Server) admitPodServiceAccount(ctx context.Context, obj runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok || s.byGR[serviceAccountsGR] == nil {
		return nil
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	pod.Spec.DeprecatedServiceAccount = pod.Spec.ServiceAccountName
	sa, err := s.serviceAccountForPod(ctx, pod.Namespace, pod.Spec.ServiceAccountName)
	if err != nil {
		return apierrors.NewForbidden(podsGR, pod.Name, fmt.Errorf("error looking up service account %s/%s: %w", pod.Namespace, pod.Spec.ServiceAccountName, err))
	}
	if len(pod.Spec.ImagePullSecrets) == 0 && len(sa.ImagePullSecrets) > 0 {
		pod.Spec.ImagePullSecrets = append([]corev1.LocalObjectReference(nil), sa.ImagePullSecrets...)
	}
	automount := true
	switch {
	case pod.Spec.AutomountServiceAccountToken != nil:
		automount = *pod.Spec.AutomountServiceAccountToken
	case sa.AutomountServiceAccountToken != nil:
		automount = *sa.AutomountServiceAccountToken
	}
	if automount {
		mountServiceAccountToken(pod)
	}
	return nil
}

// serviceAccountForPod looks a pod's service account up; the default
// one is looked for a few times over about a second and a half, since
// its controller creates it just after its namespace (upstream does the
// same).
func (s *Server) serviceAccountForPod(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	attempts := 1
	if name == "default" {
		attempts = 10
	}
	pause := time.Duration(100+rand.IntN(100)) * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(pause):
			}
		}
		var obj runtime.Object
		obj, err = s.lookup(ctx, serviceAccountsGR, ns, name)
		if err == nil {
			return obj.(*corev1.ServiceAccount), nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return nil, err
}

// mountServiceAccountToken adds the token volume and its mounts.
func mountServiceAccountToken(pod *corev1.Pod) {
	volName := ""
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, TokenVolumePrefix) {
			volName = v.Name
			break
		}
	}
	hasVolume := volName != ""
	if !hasVolume {
		volName = TokenVolumePrefix + utilrand.String(5)
	}
	mount := corev1.VolumeMount{Name: volName, ReadOnly: true, MountPath: TokenMountPath}
	needed := false
	add := func(cs []corev1.Container) {
		for i := range cs {
			has := false
			for _, m := range cs[i].VolumeMounts {
				has = has || m.MountPath == TokenMountPath
			}
			if !has {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, mount)
				needed = true
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	if needed && !hasVolume {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: volName, VolumeSource: corev1.VolumeSource{
			Projected: TokenVolumeSource()}})
	}
}

// TokenVolumeSource is the projected volume admission adds to pods: a
// bound token, the cluster CA and the namespace.
func TokenVolumeSource() *corev1.ProjectedVolumeSource {
	return &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To(corev1.ProjectedVolumeSourceDefaultMode),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To(int64(WarnOnlyTokenSeconds))}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}
}
