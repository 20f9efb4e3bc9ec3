package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestDurability kills the server with SIGKILL while clients write and
// checks that every acknowledged write is there after the restart.
func TestDurability(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	cs := s.Clientset(t)
	const ns = "durable"
	newNamespace(t, cs, ns)
	cms := cs.CoreV1().ConfigMaps(ns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var mu sync.Mutex
	acked := map[string]string{} // name -> data value acknowledged last
	for i := range 50 {
		name := fmt.Sprintf("seq-%03d", i)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "0"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		acked[name] = "0"
	}

	// writers: each creates configmaps and bumps its own counter until the server dies
	const writers = 4
	var total atomic.Int64
	var wg sync.WaitGroup
	writeCtx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	for w := range writers {
		counter := fmt.Sprintf("counter-%d", w)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: counter}, Data: map[string]string{"v": "0"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		acked[counter] = "0"
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; writeCtx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-%05d", w, i)
				if _, err := cms.Create(writeCtx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": strconv.Itoa(i)}}, metav1.CreateOptions{}); err != nil {
					return
				}
				mu.Lock()
				acked[name] = strconv.Itoa(i)
				mu.Unlock()
				patch := fmt.Sprintf(`{"data":{"v":"%d"}}`, i)
				if _, err := cms.Patch(writeCtx, counter, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
					return
				}
				mu.Lock()
				acked[counter] = strconv.Itoa(i)
				mu.Unlock()
				total.Add(2)
			}
		}()
	}
	poll(t, "writers under way", 2*time.Minute, func() (bool, string) {
		n := total.Load()
		return n >= 400, fmt.Sprintf("%d writes acknowledged", n)
	})
	s.Kill(t)
	wg.Wait()
	stopWriters()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d objects acknowledged before SIGKILL", len(acked))

	s.Start(t)
	cs = s.Clientset(t)
	l, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, cm := range l.Items {
		stored[cm.Name] = cm.Data["v"]
	}
	lost := 0
	for name, v := range acked {
		got, ok := stored[name]
		switch {
		case !ok:
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged %s is gone after SIGKILL and restart", name)
			}
		case len(name) > 8 && name[:8] == "counter-":
			// the counter may hold one more write, sent but not acknowledged
			a, _ := strconv.Atoi(v)
			g, _ := strconv.Atoi(got)
			if g != a && g != a+1 {
				t.Errorf("%s holds %s, acknowledged %s", name, got, v)
			}
		case got != v:
			t.Errorf("%s holds %s, acknowledged %s", name, got, v)
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged objects lost", lost, len(acked))
	}
}
