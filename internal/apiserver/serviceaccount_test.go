package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/skiff-sh/skiff/internal/satoken"
)

func testSigner(t *testing.T) *satoken.Signer {
	t.Helper()
	k, err := satoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := satoken.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// asToken is a client that authenticates with a bearer token only.
func asToken(t *testing.T, ts *testServer, tok string) kubernetes.Interface {
	t.Helper()
	rc := &rest.Config{Host: ts.rest.Host, QPS: -1, BearerToken: tok,
		TLSClientConfig: rest.TLSClientConfig{CAData: ts.rest.CAData}}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func tokenPod(name, sa string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
}

// eventually polls cond until it holds; the deadline only bounds failure.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 60s: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTokenRequestAuthenticatesUntilPodOrAccountGoes(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	sa, err := ts.cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := ts.cs.CoreV1().Pods("default").Create(ctx, tokenPod("p", "bot"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ts.cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bot", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "p"}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Status.Token == "" || tr.Spec.BoundObjectRef.UID != pod.UID || *tr.Spec.ExpirationSeconds != 3600 ||
		!slices.Equal(tr.Spec.Audiences, []string{DefaultIssuer("")}) {
		t.Fatalf("token request = %+v", tr)
	}
	if d := time.Until(tr.Status.ExpirationTimestamp.Time); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("expirationTimestamp %v is not an hour away", tr.Status.ExpirationTimestamp)
	}
	bot := asToken(t, ts, tr.Status.Token)
	if _, err := bot.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods with the bound token: %v", err)
	}
	who, err := bot.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ui := who.Status.UserInfo
	if ui.Username != "system:serviceaccount:default:bot" || ui.UID != string(sa.UID) ||
		!slices.Equal(ui.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"}) ||
		!slices.Equal(ui.Extra["authentication.kubernetes.io/pod-name"], []string{"p"}) ||
		!slices.Equal(ui.Extra["authentication.kubernetes.io/pod-uid"], []string{string(pod.UID)}) {
		t.Errorf("whoami = %+v", ui)
	}
	review, err := ts.cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{})
	if err != nil || !review.Status.Authenticated || review.Status.User.Username != ui.Username {
		t.Errorf("token review = %+v, %v", review, err)
	}

	// an unbound token of the same account outlives the pod
	unbound, err := ts.cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bot", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.cs.CoreV1().Pods("default").Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	unauthorized := func(cs kubernetes.Interface) func() (bool, string) {
		return func() (bool, string) {
			_, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			return apierrors.IsUnauthorized(err), fmt.Sprint(err)
		}
	}
	eventually(t, "token of a deleted pod is refused", unauthorized(bot))
	if _, err := asToken(t, ts, unbound.Status.Token).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("unbound token after the pod went: %v", err)
	}
	if err := ts.cs.CoreV1().ServiceAccounts("default").Delete(ctx, "bot", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "token of a deleted service account is refused", unauthorized(asToken(t, ts, unbound.Status.Token)))
	// recreated under the same name: a new uid, the old token stays refused
	if _, err := ts.cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := asToken(t, ts, unbound.Status.Token).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("token of a recreated service account: %v, want 401", err)
	}
}

func TestTokenRequestChecks(t *testing.T) {
	ts := startTestServerIn(t, t.TempDir(), func(c *Config) { c.ServiceAccountMaxTokenExpiration = 48 * time.Hour })
	ctx := context.Background()
	sas := ts.cs.CoreV1().ServiceAccounts("default")
	for _, name := range []string{"bot", "other"} {
		if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod, err := ts.cs.CoreV1().Pods("default").Create(ctx, tokenPod("p", "bot"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := ts.cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref := func(kind, name string, uid types.UID) *authenticationv1.BoundObjectReference {
		return &authenticationv1.BoundObjectReference{Kind: kind, APIVersion: "v1", Name: name, UID: uid}
	}
	tests := []struct {
		name     string
		sa       string
		spec     authenticationv1.TokenRequestSpec
		wantCode int32
		// wantExp is the token's lifetime and wantWarn whether it has a
		// warnafter claim, for successful requests
		wantExp  time.Duration
		wantWarn bool
	}{
		{name: "defaults", sa: "bot", wantExp: time.Hour},
		{name: "ten minutes", sa: "bot", spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}, wantExp: 10 * time.Minute},
		{name: "too short", sa: "bot", spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(599))}, wantCode: http.StatusUnprocessableEntity},
		{name: "clamped to the maximum", sa: "bot", spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(100 * 3600))}, wantExp: 48 * time.Hour},
		{name: "no such account", sa: "ghost", wantCode: http.StatusNotFound},
		{name: "bound to a pod", sa: "bot", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("Pod", "p", pod.UID)}, wantExp: time.Hour},
		{name: "pod token of 3607s is extended", sa: "bot", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("Pod", "p", ""),
			ExpirationSeconds: ptr.To(int64(WarnOnlyTokenSeconds))}, wantExp: ExtendedTokenSeconds * time.Second, wantWarn: true},
		{name: "bound to a secret", sa: "bot", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("Secret", "s", sec.UID)}, wantExp: time.Hour},
		{name: "pod uid differs", sa: "bot", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("Pod", "p", "not-it")}, wantCode: http.StatusConflict},
		{name: "no such pod", sa: "bot", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("Pod", "gone", "")}, wantCode: http.StatusNotFound},
		{name: "pod runs as another account", sa: "other", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("Pod", "p", "")}, wantCode: http.StatusBadRequest},
		{name: "unsupported kind", sa: "bot", spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref("ConfigMap", "c", "")}, wantCode: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := sas.CreateToken(ctx, tc.sa, &authenticationv1.TokenRequest{Spec: tc.spec}, metav1.CreateOptions{})
			if tc.wantCode != 0 {
				var se apierrors.APIStatus
				if !errors.As(err, &se) || se.Status().Code != tc.wantCode {
					t.Fatalf("err = %v, want %d", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := satoken.Parse(tr.Status.Token)
			if err != nil {
				t.Fatal(err)
			}
			c := tok.Claims
			if got := time.Duration(c.Expiry-c.IssuedAt) * time.Second; got != tc.wantExp {
				t.Errorf("token lifetime %v, want %v", got, tc.wantExp)
			}
			if (c.Kubernetes.WarnAfter != nil) != tc.wantWarn {
				t.Errorf("warnafter = %v, want set: %v", c.Kubernetes.WarnAfter, tc.wantWarn)
			}
			if tc.wantWarn && *c.Kubernetes.WarnAfter != c.IssuedAt+WarnOnlyTokenSeconds {
				t.Errorf("warnafter %d, want iat+3607", *c.Kubernetes.WarnAfter)
			}
			if c.Subject != "system:serviceaccount:default:"+tc.sa || c.Kubernetes.Namespace != "default" || c.ID == "" {
				t.Errorf("claims = %+v", c)
			}
			if _, err := asToken(t, ts, tr.Status.Token).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
				t.Errorf("token not accepted: %v", err)
			}
		})
	}

	// a token for another audience is not the API server's, but a
	// TokenReview for that audience accepts it
	tr, err := sas.CreateToken(ctx, "bot", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asToken(t, ts, tr.Status.Token).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("token for audience vault used on the API: %v, want 401", err)
	}
	for _, tc := range []struct {
		auds []string
		want bool
	}{{[]string{"vault"}, true}, {nil, false}, {[]string{"other"}, false}} {
		rv, err := ts.cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token, Audiences: tc.auds}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rv.Status.Authenticated != tc.want || tc.want && !slices.Equal(rv.Status.Audiences, []string{"vault"}) {
			t.Errorf("review for %v = %+v, want authenticated %v", tc.auds, rv.Status, tc.want)
		}
	}
	// a forged token is refused
	other := testSigner(t)
	forged, err := other.Sign(satoken.Claims{Issuer: DefaultIssuer(""), Subject: "system:serviceaccount:default:bot",
		Audience: satoken.Audience{DefaultIssuer("")}, Expiry: time.Now().Add(time.Hour).Unix(),
		Kubernetes: &satoken.Private{Namespace: "default", ServiceAccount: satoken.Ref{Name: "bot", UID: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asToken(t, ts, forged).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("forged token: %v, want 401", err)
	}
}

func TestPodServiceAccountAdmission(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	for _, sa := range []*corev1.ServiceAccount{
		{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, AutomountServiceAccountToken: ptr.To(false)},
		{ObjectMeta: metav1.ObjectMeta{Name: "puller"}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}},
	} {
		if _, err := ts.cs.CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	withInit := tokenPod("init", "")
	withInit.Spec.InitContainers = []corev1.Container{{Name: "i", Image: "img"}}
	ownMount := tokenPod("own", "")
	ownMount.Spec.Volumes = []corev1.Volume{{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	ownMount.Spec.Containers = append(ownMount.Spec.Containers, corev1.Container{Name: "d", Image: "img",
		VolumeMounts: []corev1.VolumeMount{{Name: "mine", MountPath: TokenMountPath}}})
	podOptOut := tokenPod("optout", "quiet")
	podOptIn := tokenPod("optin", "quiet")
	podOptIn.Spec.AutomountServiceAccountToken = ptr.To(true)
	noAutomount := tokenPod("noauto", "")
	noAutomount.Spec.AutomountServiceAccountToken = ptr.To(false)
	tests := []struct {
		name        string
		pod         *corev1.Pod
		wantSA      string
		wantMounted []string // containers with the token mount
		wantPull    []string
		wantErr     string
	}{
		{name: "default account and volume", pod: tokenPod("plain", ""), wantSA: "default", wantMounted: []string{"c"}},
		{name: "init containers too", pod: withInit, wantSA: "default", wantMounted: []string{"i", "c"}},
		{name: "own mount at the path kept", pod: ownMount, wantSA: "default", wantMounted: []string{"c"}},
		{name: "account opts out", pod: podOptOut, wantSA: "quiet"},
		{name: "pod overrides the account", pod: podOptIn, wantSA: "quiet", wantMounted: []string{"c"}},
		{name: "pod opts out", pod: noAutomount, wantSA: "default"},
		{name: "pull secrets from the account", pod: tokenPod("pull", "puller"), wantSA: "puller", wantMounted: []string{"c"}, wantPull: []string{"regcred"}},
		{name: "no such account", pod: tokenPod("ghost", "ghost"), wantErr: "error looking up service account default/ghost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ts.cs.CoreV1().Pods("default").Create(ctx, tc.pod, metav1.CreateOptions{})
			if tc.wantErr != "" {
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want 403 with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Spec.ServiceAccountName != tc.wantSA || got.Spec.DeprecatedServiceAccount != tc.wantSA {
				t.Errorf("serviceAccountName %q (serviceAccount %q), want %q", got.Spec.ServiceAccountName, got.Spec.DeprecatedServiceAccount, tc.wantSA)
			}
			var vol *corev1.Volume
			for i := range got.Spec.Volumes {
				if strings.HasPrefix(got.Spec.Volumes[i].Name, TokenVolumePrefix) {
					vol = &got.Spec.Volumes[i]
				}
			}
			if (vol != nil) != (len(tc.wantMounted) > 0) {
				t.Fatalf("token volume %v, want one: %v", vol, len(tc.wantMounted) > 0)
			}
			var mounted []string
			for _, c := range append(append([]corev1.Container(nil), got.Spec.InitContainers...), got.Spec.Containers...) {
				for _, m := range c.VolumeMounts {
					if vol != nil && m.Name == vol.Name {
						if m.MountPath != TokenMountPath || !m.ReadOnly {
							t.Errorf("container %s mounts the token at %s read-only %v", c.Name, m.MountPath, m.ReadOnly)
						}
						mounted = append(mounted, c.Name)
					}
				}
			}
			if !slices.Equal(mounted, tc.wantMounted) {
				t.Errorf("containers mounting the token %v, want %v", mounted, tc.wantMounted)
			}
			if vol != nil {
				if len(vol.Name) != len(TokenVolumePrefix)+5 {
					t.Errorf("volume name %q", vol.Name)
				}
				src := vol.Projected
				if src == nil || len(src.Sources) != 3 || src.Sources[0].ServiceAccountToken == nil ||
					*src.Sources[0].ServiceAccountToken.ExpirationSeconds != WarnOnlyTokenSeconds || src.Sources[0].ServiceAccountToken.Path != "token" ||
					src.Sources[1].ConfigMap == nil || src.Sources[1].ConfigMap.Name != RootCAConfigMap ||
					src.Sources[2].DownwardAPI == nil || src.Sources[2].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.namespace" {
					t.Errorf("token volume = %+v", vol)
				}
			}
			var pull []string
			for _, s := range got.Spec.ImagePullSecrets {
				pull = append(pull, s.Name)
			}
			if !slices.Equal(pull, tc.wantPull) {
				t.Errorf("imagePullSecrets %v, want %v", pull, tc.wantPull)
			}
		})
	}
}
