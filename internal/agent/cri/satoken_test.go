package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestTokenCacheRefresh(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	var requests []*authenticationv1.TokenRequest
	failing := false
	cs := fake.NewClientset()
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		if ca.GetSubresource() != "token" {
			return false, nil, nil
		}
		if failing {
			return true, nil, errors.New("api down")
		}
		tr := ca.GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		requests = append(requests, tr)
		tr.Status = authenticationv1.TokenRequestStatus{Token: fmt.Sprintf("tok-%d", len(requests)),
			ExpirationTimestamp: metav1.NewTime(now.Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second))}
		return true, tr, nil
	})
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"}, Spec: corev1.PodSpec{ServiceAccountName: "bot"}}
	hour := int64(3600)
	day2 := int64(48 * 3600)
	var c tokenCache
	get := func(proj *corev1.ServiceAccountTokenProjection) string {
		t.Helper()
		tok, err := c.token(context.Background(), cs, p, proj, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	short := &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &hour}
	long := &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &day2, Audience: "vault"}
	steps := []struct {
		name   string
		at     time.Duration
		proj   *corev1.ServiceAccountTokenProjection
		fail   bool
		forget bool
		want   string
	}{
		{name: "first request", proj: short, want: "tok-1"},
		{name: "cached before 80%", at: 47 * time.Minute, proj: short, want: "tok-1"},
		{name: "renewed after 80%", at: 48*time.Minute + time.Second, proj: short, want: "tok-2"},
		{name: "another audience is another token", at: 48*time.Minute + time.Second, proj: long, want: "tok-3"},
		{name: "old token kept while the API fails", at: 100 * time.Minute, proj: short, fail: true, want: "tok-2"},
		{name: "long token renewed after a day", at: 24*time.Hour + 48*time.Minute + 2*time.Second, proj: long, want: "tok-4"},
		{name: "pod forgotten", at: 24*time.Hour + 48*time.Minute + 2*time.Second, proj: short, forget: true, want: "tok-5"},
	}
	for _, s := range steps {
		now = t0.Add(s.at)
		failing = s.fail
		if s.forget {
			c.forget(p.UID)
		}
		if got := get(s.proj); got != s.want {
			t.Errorf("%s: token %s, want %s", s.name, got, s.want)
		}
	}
	for _, r := range requests {
		ref := r.Spec.BoundObjectRef
		if ref == nil || ref.Kind != "Pod" || ref.Name != "p" || ref.UID != "uid-1" || ref.APIVersion != "v1" {
			t.Errorf("request not bound to the pod: %+v", r.Spec)
		}
	}
	if auds := requests[2].Spec.Audiences; len(auds) != 1 || auds[0] != "vault" {
		t.Errorf("audiences %v, want [vault]", auds)
	}
	if auds := requests[0].Spec.Audiences; len(auds) != 0 {
		t.Errorf("audiences %v, want the API server's default", auds)
	}
	failing = true
	c.forget(p.UID)
	if _, err := c.token(context.Background(), cs, p, short, now); err == nil {
		t.Error("no token and the API fails: no error")
	}
}
