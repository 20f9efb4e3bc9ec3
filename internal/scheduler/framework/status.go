package framework

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Code is the outcome of a plugin call.
type Code int

// The codes, as upstream's.
const (
	// Success: the node passes or the score is valid.
	Success Code = iota
	// Error: an internal error; the pod is retried with back-off.
	Error
	// Unschedulable: the node does not fit, but removing pods might help.
	Unschedulable
	// UnschedulableAndUnresolvable: the node does not fit and preemption
	// cannot change that.
	UnschedulableAndUnresolvable
	// Skip: returned by PreFilter or PreScore when the plugin has nothing to
	// do for this pod; its Filter or Score is then not called.
	Skip
)

// Status is a plugin's verdict; nil means Success.
type Status struct {
	code    Code
	reasons []string
	err     error
	plugin  string
}

// NewStatus returns a status with code and reasons.
func NewStatus(code Code, reasons ...string) *Status {
	return &Status{code: code, reasons: reasons}
}

// AsStatus wraps an internal error.
func AsStatus(err error) *Status {
	return &Status{code: Error, err: err, reasons: []string{err.Error()}}
}

// Code returns the code; Success for nil.
func (s *Status) Code() Code {
	if s == nil {
		return Success
	}
	return s.code
}

// IsSuccess reports whether the status is Success.
func (s *Status) IsSuccess() bool { return s.Code() == Success }

// IsRejected reports Unschedulable or UnschedulableAndUnresolvable.
func (s *Status) IsRejected() bool {
	c := s.Code()
	return c == Unschedulable || c == UnschedulableAndUnresolvable
}

// Reasons returns the reasons.
func (s *Status) Reasons() []string {
	if s == nil {
		return nil
	}
	return s.reasons
}

// Message joins the reasons.
func (s *Status) Message() string {
	if s == nil {
		return ""
	}
	return strings.Join(s.reasons, ", ")
}

// Plugin returns the plugin that produced the status.
func (s *Status) Plugin() string {
	if s == nil {
		return ""
	}
	return s.plugin
}

// WithPlugin records the plugin name and returns s.
func (s *Status) WithPlugin(name string) *Status {
	if s != nil {
		s.plugin = name
	}
	return s
}

// AsError returns the status as an error; nil for success and rejections.
func (s *Status) AsError() error {
	if s.Code() != Error {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return errors.New(s.Message())
}

// ErrNoNodesAvailable is returned when the cluster has no nodes.
var ErrNoNodesAvailable = errors.New("no nodes available to schedule pods")

// Diagnosis records why each node was rejected.
type Diagnosis struct {
	// NodeToStatus holds the rejection of each evaluated node.
	NodeToStatus map[string]*Status
	// UnschedulablePlugins names the plugins that rejected some node.
	UnschedulablePlugins map[string]struct{}
	// PreFilterMsg is set when a PreFilter rejected the pod outright.
	PreFilterMsg string
	// PostFilterMsg is the preemption outcome.
	PostFilterMsg string
}

// FitError is returned when no node fits the pod.
type FitError struct {
	Pod         *v1.Pod
	NumAllNodes int
	Diagnosis   Diagnosis
}

// Error formats the error exactly as kube-scheduler does:
// "0/5 nodes are available: 2 node(s) didn't match Pod's node
// affinity/selector, 3 Insufficient cpu. preemption: ...".
func (f *FitError) Error() string {
	msg := fmt.Sprintf("0/%d nodes are available:", f.NumAllNodes)
	if f.Diagnosis.PreFilterMsg != "" {
		msg += " " + f.Diagnosis.PreFilterMsg + "."
	} else if h := histogram(f.Diagnosis.NodeToStatus); len(h) > 0 {
		msg += " " + strings.Join(h, ", ") + "."
	}
	if f.Diagnosis.PostFilterMsg != "" {
		msg += " " + f.Diagnosis.PostFilterMsg + "."
	}
	return msg
}

// histogram counts each reason over nodes and returns "N reason" strings
// sorted as strings, which is upstream's order.
func histogram(statuses map[string]*Status) []string {
	counts := map[string]int{}
	for _, s := range statuses {
		for _, r := range s.Reasons() {
			counts[r]++
		}
	}
	out := make([]string, 0, len(counts))
	for r, n := range counts {
		out = append(out, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(out)
	return out
}
