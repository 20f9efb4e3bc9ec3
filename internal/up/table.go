package up

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// tableAccept asks the API server for its kubectl columns.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// podsWide returns the pods of ns as `kubectl get pods -o wide` shows
// them: the server's table with every column.
func podsWide(ctx context.Context, c kubernetes.Interface, ns string) (string, error) {
	raw, err := c.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").
		SetHeader("Accept", tableAccept).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("listing pods: %w", err)
	}
	var t metav1.Table
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", fmt.Errorf("listing pods: %w", err)
	}
	return formatTable(&t), nil
}

// formatTable lays a table out as kubectl does: upper-case headers, columns
// three spaces apart, <none> for empty cells.
func formatTable(t *metav1.Table) string {
	if len(t.Rows) == 0 {
		return "No resources found.\n"
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 8, 3, ' ', 0)
	heads := make([]string, 0, len(t.ColumnDefinitions))
	for _, c := range t.ColumnDefinitions {
		heads = append(heads, strings.ToUpper(c.Name))
	}
	fmt.Fprintln(w, strings.Join(heads, "\t"))
	for _, r := range t.Rows {
		cells := make([]string, 0, len(r.Cells))
		for _, c := range r.Cells {
			s := fmt.Sprint(c)
			if c == nil || s == "" {
				s = "<none>"
			}
			cells = append(cells, s)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
	return b.String()
}
