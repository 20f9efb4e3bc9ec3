package core

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// wantErr names one expected validation error.
type wantErr struct {
	typ  field.ErrorType
	path string
}

func (w wantErr) String() string { return fmt.Sprintf("%s %s", w.path, w.typ) }

// checkErrs fails unless errs holds exactly want (in any order).
func checkErrs(t *testing.T, errs field.ErrorList, want ...wantErr) {
	t.Helper()
	got := make([]string, 0, len(errs))
	for _, e := range errs {
		got = append(got, wantErr{e.Type, e.Field}.String())
	}
	rest := append([]string(nil), got...)
	var missing []string
	for _, w := range want {
		found := false
		for i, g := range rest {
			if g == w.String() {
				rest = append(rest[:i], rest[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, w.String())
		}
	}
	if len(missing) > 0 || len(rest) > 0 {
		t.Errorf("errors mismatch\n missing: %v\n unexpected: %v\n all: %s", missing, rest, errs.ToAggregate())
	}
}

func errMessages(errs field.ErrorList) string {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return strings.Join(msgs, "\n")
}
