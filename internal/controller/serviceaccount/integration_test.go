package serviceaccount_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/serviceaccount"
)

func TestDefaultServiceAccount(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := serviceaccount.New(serviceaccount.Config{Client: cs, Factory: f, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, f, c)

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	has := func(ns string) func() (bool, string) {
		return func() (bool, string) {
			_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, serviceaccount.Name, metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		}
	}
	for _, ns := range []string{"default", "kube-system", "team"} {
		controllertest.Eventually(t, "default serviceaccount in "+ns, has(ns))
	}
	old, err := cs.CoreV1().ServiceAccounts("team").Get(ctx, serviceaccount.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ServiceAccounts("team").Delete(ctx, serviceaccount.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "default serviceaccount recreated", func() (bool, string) {
		sa, err := cs.CoreV1().ServiceAccounts("team").Get(ctx, serviceaccount.Name, metav1.GetOptions{})
		return err == nil && sa.UID != old.UID, fmt.Sprint(err)
	})
}
