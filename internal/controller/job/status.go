package job

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// setCondition sets the condition t to True with reason and message; it
// reports whether anything changed.
func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, reason, message string, now time.Time) bool {
	if c := findCondition(st.Conditions, t); c != nil {
		if c.Status == corev1.ConditionTrue && c.Reason == reason && c.Message == message {
			return false
		}
		if c.Status != corev1.ConditionTrue {
			c.LastTransitionTime = metav1.NewTime(now)
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = corev1.ConditionTrue, reason, message, metav1.NewTime(now)
		return true
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason,
		Message: message, LastProbeTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)})
	return true
}

func findCondition(conds []batchv1.JobCondition, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

func statusEqual(a, b *batchv1.JobStatus) bool { return equality.Semantic.DeepEqual(a, b) }

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return b, nil
}

// ParseIndexes parses a completedIndexes string ("1,3-5,7") into sorted
// indexes below completions; malformed parts are skipped.
func ParseIndexes(s string, completions int32) []int32 {
	var out []int32
	if s == "" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 32)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 32); err != nil {
				continue
			}
		}
		for i := a; i <= b && i < int64(completions); i++ {
			if i >= 0 && !slices.Contains(out, int32(i)) {
				out = append(out, int32(i))
			}
		}
	}
	slices.Sort(out)
	return out
}

// FormatIndexes formats indexes as upstream does: sorted, runs of
// consecutive indexes as "a-b".
func FormatIndexes(idx []int32) string {
	idx = slices.Clone(idx)
	slices.Sort(idx)
	idx = slices.Compact(idx)
	var b strings.Builder
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(idx[i])))
		if j > i {
			b.WriteString("-" + strconv.Itoa(int(idx[j])))
		}
		i = j + 1
	}
	return b.String()
}
