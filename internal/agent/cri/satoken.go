package cri

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Token refresh as the kubelet's token manager does it: a token is
// renewed once 80% of its lifetime has passed or it is a day old, less
// up to tokenJitter so that many pods do not all ask at once.
const (
	tokenMaxAge = 24 * time.Hour
	tokenJitter = 10 * time.Second
)

// tokenCache holds the service-account tokens of pods' projected
// serviceAccountToken sources, so that rewriting a volume (every
// volumeRefresh) asks the API server for a new token only when the old
// one is due for renewal. The zero value is ready to use.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[tokenKey]cachedToken
}

// tokenKey is what a token is requested for.
type tokenKey struct {
	pod      types.UID
	account  string
	audience string
	seconds  int64
}

type cachedToken struct {
	token string
	// issued and expires are the request's lifetime as the API server
	// reported it (expirationTimestamp less expirationSeconds).
	issued, expires time.Time
}

// due says whether t should be renewed at now.
func (t cachedToken) due(now time.Time, jitter time.Duration) bool {
	life := t.expires.Sub(t.issued)
	return !now.Before(t.issued.Add(tokenMaxAge-jitter)) || !now.Before(t.expires.Add(-life/5-jitter))
}

// token returns a token for the projection, bound to the pod, requesting
// one (TokenRequest with boundObjectRef Pod) when none is cached or the
// cached one is due.
func (c *tokenCache) token(ctx context.Context, client kubernetes.Interface, p *corev1.Pod, proj *corev1.ServiceAccountTokenProjection, now time.Time) (string, error) {
	seconds := int64(3600)
	if proj.ExpirationSeconds != nil {
		seconds = *proj.ExpirationSeconds
	}
	key := tokenKey{pod: p.UID, account: p.Spec.ServiceAccountName, audience: proj.Audience, seconds: seconds}
	c.mu.Lock()
	cur, ok := c.tokens[key]
	c.mu.Unlock()
	if ok && !cur.due(now, time.Duration(rand.Float64()*float64(tokenJitter))) {
		return cur.token, nil
	}
	if client == nil {
		return "", errors.New("the runtime has no API client to request service-account tokens")
	}
	var auds []string
	if proj.Audience != "" {
		auds = []string{proj.Audience}
	}
	tr, err := client.CoreV1().ServiceAccounts(p.Namespace).CreateToken(ctx, p.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: auds, ExpirationSeconds: &seconds,
			BoundObjectRef: &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		if ok && now.Before(cur.expires) {
			// keep the old token while it is valid; the next refresh retries
			return cur.token, nil
		}
		return "", fmt.Errorf("service account %q token: %w", p.Spec.ServiceAccountName, err)
	}
	life := seconds
	if tr.Spec.ExpirationSeconds != nil {
		life = *tr.Spec.ExpirationSeconds
	}
	exp := tr.Status.ExpirationTimestamp.Time
	t := cachedToken{token: tr.Status.Token, expires: exp, issued: exp.Add(-time.Duration(life) * time.Second)}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[tokenKey]cachedToken{}
	}
	c.tokens[key] = t
	c.mu.Unlock()
	return t.token, nil
}

// forget drops a pod's tokens (its volumes are gone).
func (c *tokenCache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.tokens {
		if k.pod == uid {
			delete(c.tokens, k)
		}
	}
}
