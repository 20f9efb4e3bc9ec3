package rootcacert_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/rootcacert"
)

func TestPublishesRootCA(t *testing.T) {
	rc, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := rootcacert.New(rootcacert.Config{Client: cs, Factory: f, RootCA: rc.CAData, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, f, c)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	published := func(ns string) func() (bool, string) {
		return func() (bool, string) {
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, rootcacert.Name, metav1.GetOptions{})
			return err == nil && cm.Data[rootcacert.Key] == string(rc.CAData), fmt.Sprint(err)
		}
	}
	for _, ns := range []string{"default", "kube-system", "team"} {
		controllertest.Eventually(t, "kube-root-ca.crt in "+ns, published(ns))
	}
	cm, err := cs.CoreV1().ConfigMaps("team").Get(ctx, rootcacert.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[rootcacert.Key] = "tampered"
	if _, err := cs.CoreV1().ConfigMaps("team").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "kube-root-ca.crt restored", published("team"))
	if err := cs.CoreV1().ConfigMaps("team").Delete(ctx, rootcacert.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "kube-root-ca.crt recreated", published("team"))
}
