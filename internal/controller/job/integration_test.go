package job_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/job"
)

// kubelet plays the node agent: every pod of a Job labelled
// outcome=<phase> finishes in that phase.
func kubelet(ctx context.Context, cs kubernetes.Interface) {
	for ctx.Err() == nil {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "outcome"})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
					continue
				}
				p.Status.Phase = corev1.PodPhase(p.Labels["outcome"])
				_, _ = cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func newJob(name string, outcome corev1.PodPhase, completions, parallelism, backoffLimit int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			Completions: &completions, Parallelism: &parallelism, BackoffLimit: &backoffLimit,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"outcome": string(outcome)}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType, reason string) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue && (reason == "" || c.Reason == reason) {
			return true
		}
	}
	return false
}

func TestJobController(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	factory := informers.NewSharedInformerFactory(cs, 0)
	c, err := job.New(job.Config{Client: cs, Factory: factory, PodFailureBackoff: 50 * time.Millisecond, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, factory, c)
	go kubelet(ctx, cs)

	jobs := cs.BatchV1().Jobs("default")
	if _, err := jobs.Create(ctx, newJob("ok", corev1.PodSucceeded, 3, 2, 6), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Create(ctx, newJob("bad", corev1.PodFailed, 1, 1, 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ttl := newJob("ttl", corev1.PodSucceeded, 1, 1, 0)
	ttl.Spec.TTLSecondsAfterFinished = ptr(int32(0))
	if _, err := jobs.Create(ctx, ttl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	controllertest.Eventually(t, "job ok complete with 3 successes", func() (bool, string) {
		j, err := jobs.Get(ctx, "ok", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ok := hasCondition(j, batchv1.JobComplete, "CompletionsReached") && hasCondition(j, batchv1.JobSuccessCriteriaMet, "") &&
			j.Status.Succeeded == 3 && j.Status.Failed == 0 && j.Status.Active == 0 &&
			j.Status.StartTime != nil && j.Status.CompletionTime != nil
		return ok, fmt.Sprintf("%+v", j.Status)
	})
	controllertest.Eventually(t, "job bad failed after backoffLimit 2 (3 failures)", func() (bool, string) {
		j, err := jobs.Get(ctx, "bad", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ok := hasCondition(j, batchv1.JobFailed, "BackoffLimitExceeded") && hasCondition(j, batchv1.JobFailureTarget, "BackoffLimitExceeded") &&
			j.Status.Failed == 3 && j.Status.Succeeded == 0 && j.Status.Active == 0 && j.Status.CompletionTime == nil
		return ok, fmt.Sprintf("%+v", j.Status)
	})
	// No garbage collector runs here: the foreground deletion stops at
	// the Job's foregroundDeletion finalizer.
	controllertest.Eventually(t, "job ttl deleted after it finished", func() (bool, string) {
		j, err := jobs.Get(ctx, "ttl", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return j.DeletionTimestamp != nil && hasCondition(j, batchv1.JobComplete, ""), fmt.Sprintf("%+v %+v", j.ObjectMeta, j.Status)
	})
	// No pod is left holding the tracking finalizer; the finished Jobs
	// keep their pods (until the Jobs are deleted).
	controllertest.Eventually(t, "pods released", func() (bool, string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods.Items {
			for _, f := range p.Finalizers {
				if f == job.TrackingFinalizer {
					return false, p.Name + " still has the finalizer"
				}
			}
		}
		return len(pods.Items) == 7, fmt.Sprintf("%d pods", len(pods.Items))
	})
}

func ptr[T any](v T) *T { return &v }
