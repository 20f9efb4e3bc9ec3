package scheduler

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/skiff-sh/skiff/internal/scheduler/plugins"
)

// Defaults of the component.
const (
	DefaultLeaseNamespace = "kube-system"
	DefaultLeaseName      = "skiff-scheduler"
	defaultBindWorkers    = 64
	defaultAssumeTTL      = 30 * time.Second
	defaultQPS            = 5000
	defaultBurst          = 10000
)

// Config configures a Scheduler. Exactly one of Client, RestConfig and
// Kubeconfig is needed; they are tried in that order.
type Config struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// RestConfig builds the client when Client is nil.
	RestConfig *rest.Config
	// Kubeconfig is a kubeconfig path used when both are nil
	// (`skiff scheduler --kubeconfig`).
	Kubeconfig string
	// QPS and Burst limit the client built from RestConfig or Kubeconfig
	// when those leave them unset; defaults 5000 and 10000.
	QPS   float32
	Burst int

	// ConfigFile is a YAML SchedulerConfiguration (see File); ignored when
	// File is set.
	ConfigFile string
	// File is the parsed configuration; nil means ConfigFile or defaults.
	File *File

	// LeaderElect runs the scheduler only while it holds the Lease
	// LeaseNamespace/LeaseName (default kube-system/skiff-scheduler).
	LeaderElect    bool
	LeaseNamespace string
	LeaseName      string
	// Identity names this instance in the Lease; default hostname + random.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election
	// (zero: upstream's 15s, 10s and 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// Logger receives the scheduler's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.WithTicker
	// Metrics, when set, receives the scheduler's Prometheus metrics.
	Metrics prometheus.Registerer
	// OnBound, when set, is called after each successful binding with the
	// time from the pod entering the queue to the binding being written.
	// Benchmarks use it to measure latency in-process.
	OnBound func(namespace, name, node string, latency time.Duration)
}

// File is the scheduler's configuration file:
//
//	apiVersion: skiff.sh/v1alpha1
//	kind: SchedulerConfiguration
//	parallelism: 16
//	percentageOfNodesToScore: 0
//	podInitialBackoffSeconds: 1
//	podMaxBackoffSeconds: 10
//	bindWorkers: 64
//	profiles:
//	- schedulerName: default-scheduler
//	  scoringStrategy: MostAllocated      # or LeastAllocated (default)
//	  resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
//	  weights: {ImageLocality: 5, TaintToleration: 3}
//	  disabled: [SelectorSpread]
type File struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	// Parallelism bounds the goroutines filtering and scoring nodes.
	Parallelism int `json:"parallelism,omitempty"`
	// PercentageOfNodesToScore is the default of profiles that set none.
	PercentageOfNodesToScore int32 `json:"percentageOfNodesToScore,omitempty"`
	PodInitialBackoffSeconds int   `json:"podInitialBackoffSeconds,omitempty"`
	PodMaxBackoffSeconds     int   `json:"podMaxBackoffSeconds,omitempty"`
	// BindWorkers bounds concurrent binding requests.
	BindWorkers int                     `json:"bindWorkers,omitempty"`
	Profiles    []plugins.ProfileConfig `json:"profiles,omitempty"`
}

// LoadFile reads and validates a configuration file. Unknown fields are
// errors, so that typos do not pass silently.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scheduler config: %w", err)
	}
	return ParseFile(data)
}

// ParseFile parses and validates configuration YAML.
func ParseFile(data []byte) (*File, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("parse scheduler config: %w", err)
	}
	if f.Kind != "" && f.Kind != "SchedulerConfiguration" {
		return nil, fmt.Errorf("scheduler config: kind %q, want SchedulerConfiguration", f.Kind)
	}
	if f.Parallelism < 0 || f.BindWorkers < 0 || f.PodInitialBackoffSeconds < 0 || f.PodMaxBackoffSeconds < 0 {
		return nil, errors.New("scheduler config: negative parallelism, bindWorkers or back-off")
	}
	if f.PodMaxBackoffSeconds > 0 && f.PodMaxBackoffSeconds < f.PodInitialBackoffSeconds {
		return nil, errors.New("scheduler config: podMaxBackoffSeconds below podInitialBackoffSeconds")
	}
	seen := map[string]bool{}
	for i := range f.Profiles {
		p := &f.Profiles[i]
		if p.SchedulerName == "" {
			p.SchedulerName = plugins.DefaultSchedulerName
		}
		if seen[p.SchedulerName] {
			return nil, fmt.Errorf("scheduler config: two profiles named %q", p.SchedulerName)
		}
		seen[p.SchedulerName] = true
		if p.PercentageOfNodesToScore == 0 {
			p.PercentageOfNodesToScore = f.PercentageOfNodesToScore
		}
		if _, err := plugins.NewProfile(*p, 1); err != nil {
			return nil, fmt.Errorf("scheduler config: %w", err)
		}
	}
	return &f, nil
}
