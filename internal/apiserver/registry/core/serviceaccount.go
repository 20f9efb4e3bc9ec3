package core

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// serviceAccountStrategy implements service accounts; only metadata is
// validated.
type serviceAccountStrategy struct{ registry.Base }

// Columns returns NAME, SECRETS, AGE.
func (serviceAccountStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Secrets", Type: "string", Description: "Number of secrets listed in the service account."},
		registry.AgeColumn(),
	}
}

// Row returns the service account's cells.
func (serviceAccountStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	sa := obj.(*corev1.ServiceAccount)
	return []interface{}{sa.Name, int64(len(sa.Secrets)), registry.Age(sa.CreationTimestamp, now)}
}
