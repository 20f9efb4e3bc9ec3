// Package bench runs skiff's benchmark scenarios and reports their
// figures as a table or as one JSON object.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// Figure is one measured value.
type Figure struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Result is what a scenario measured.
type Result struct {
	Scenario string            `json:"scenario"`
	Commit   string            `json:"commit"`
	Figures  map[string]Figure `json:"figures"`
	// Notes are printed under the table (not part of the JSON contract).
	Notes []string `json:"-"`
}

// Write prints r as a table, or as JSON when asJSON is set.
func (r Result) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "scenario %s (commit %s)\n", r.Scenario, r.Commit)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tUNIT")
	names := make([]string, 0, len(r.Figures))
	for n := range r.Figures {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := r.Figures[n]
		fmt.Fprintf(tw, "%s\t%.2f\t%s\n", n, f.Value, f.Unit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
