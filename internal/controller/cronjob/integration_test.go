package cronjob_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/cronjob"
	"github.com/skiff-sh/skiff/internal/controller/job"
)

// kubelet plays the node agent: every pod succeeds.
func kubelet(ctx context.Context, cs kubernetes.Interface) {
	for ctx.Err() == nil {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Status.Phase == corev1.PodSucceeded || p.DeletionTimestamp != nil {
					continue
				}
				p.Status.Phase = corev1.PodSucceeded
				_, _ = cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestCronJobController(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The CronJob controller reads a fake clock that the test moves a
	// minute at a time; the Job controller runs the Jobs it creates.
	clock := clocktesting.NewFakeClock(time.Now())
	factory := informers.NewSharedInformerFactory(cs, 0)
	cc, err := cronjob.New(cronjob.Config{Client: cs, Factory: factory, Clock: clock, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	jc, err := job.New(job.Config{Client: cs, Factory: factory, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, factory, both{cc, jc})
	go kubelet(ctx, cs)

	cjs := cs.BatchV1().CronJobs("default")
	cj, err := cjs.Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick"},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/1 * * * *", SuccessfulJobsHistoryLimit: ptr(int32(2)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The clock starts when the CronJob was created (whole seconds), so
	// that each step of a minute makes exactly one schedule time due.
	clock.SetTime(cj.CreationTimestamp.Time)
	var names []string
	for i := range 4 {
		// A minute passes; poke the CronJob so that the controller looks
		// at the moved clock now rather than after its real-time requeue.
		clock.Step(time.Minute)
		due := clock.Now().Truncate(time.Minute)
		name := fmt.Sprintf("tick-%d", due.Unix()/60)
		names = append(names, name)
		patch := fmt.Sprintf(`{"metadata":{"labels":{"tick":"%d"}}}`, i)
		if _, err := cjs.Patch(ctx, "tick", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		controllertest.Eventually(t, "job "+name+" created and completed", func() (bool, string) {
			j, err := cs.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				cur, cerr := cjs.Get(ctx, "tick", metav1.GetOptions{})
				if cerr != nil {
					return false, cerr.Error()
				}
				return false, fmt.Sprintf("%v; cronjob status %+v", err, cur.Status)
			}
			if ts := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; ts != due.UTC().Format(time.RFC3339) {
				return false, "scheduled timestamp " + ts
			}
			if ref := metav1.GetControllerOf(j); ref == nil || ref.UID != cj.UID {
				return false, fmt.Sprintf("owner %+v", j.OwnerReferences)
			}
			cur, err := cjs.Get(ctx, "tick", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			st := cur.Status
			ok := st.LastScheduleTime != nil && st.LastScheduleTime.Time.Equal(due) && len(st.Active) == 0 &&
				st.LastSuccessfulTime != nil && j.Status.Succeeded == 1
			return ok, fmt.Sprintf("cronjob %+v, job %+v", st, j.Status)
		})
	}
	controllertest.Eventually(t, "history pruned to the 2 newest jobs", func() (bool, string) {
		jobs, err := cs.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, j := range jobs.Items {
			got = append(got, j.Name)
		}
		slices.Sort(got)
		return slices.Equal(got, names[2:]), fmt.Sprintf("jobs %v, want %v", got, names[2:])
	})
}

// both runs two controllers that share an informer factory.
type both [2]controllertest.Runner

func (b both) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- b[1].Run(ctx) }()
	return errors.Join(b[0].Run(ctx), <-errc)
}

func ptr[T any](v T) *T { return &v }
