package plugins

import (
	"context"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// ImageLocalityName is the plugin's name.
const ImageLocalityName = "ImageLocality"

// Thresholds of image size that bound the score, as upstream.
const (
	mb                    int64 = 1024 * 1024
	minImageThreshold           = 23 * mb
	maxContainerThreshold       = 1000 * mb
)

// ImageLocality prefers nodes that already hold the pod's images, weighing
// each image by its size and by how few nodes hold it (so that a popular
// image does not pull every pod to the same nodes).
type ImageLocality struct{}

// Name implements framework.Plugin.
func (ImageLocality) Name() string { return ImageLocalityName }

const imageLocalityKey = "PreScore" + ImageLocalityName

// imageState maps each of the pod's normalized images to the fraction of
// nodes that hold it.
type imageState struct {
	spread     map[string]float64
	containers int
}

func (s *imageState) Clone() framework.StateData { return s }

// PreScore implements framework.PreScorePlugin.
func (ImageLocality) PreScore(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, snap *framework.Snapshot, _ []*framework.NodeInfo) *framework.Status {
	s := &imageState{spread: map[string]float64{}}
	for _, cs := range [][]string{containerImages(pod), initImages(pod)} {
		for _, img := range cs {
			s.spread[framework.NormalizeImageName(img)] = 0
			s.containers++
		}
	}
	nodes := snap.Nodes()
	if len(nodes) == 0 || len(s.spread) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	for img := range s.spread {
		n := 0
		for _, ni := range nodes {
			if _, ok := ni.Images[img]; ok {
				n++
			}
		}
		s.spread[img] = float64(n) / float64(len(nodes))
	}
	state.Write(imageLocalityKey, s)
	return nil
}

// Score implements framework.ScorePlugin.
func (ImageLocality) Score(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	s, _ := state.Read(imageLocalityKey).(*imageState)
	if s == nil {
		return 0, nil
	}
	var sum int64
	for _, cs := range [][]string{containerImages(pod), initImages(pod)} {
		for _, img := range cs {
			name := framework.NormalizeImageName(img)
			if size, ok := node.Images[name]; ok {
				sum += int64(float64(size) * s.spread[name])
			}
		}
	}
	maxThreshold := maxContainerThreshold * int64(s.containers)
	sum = max(minImageThreshold, min(sum, maxThreshold))
	return framework.MaxNodeScore * (sum - minImageThreshold) / (maxThreshold - minImageThreshold), nil
}

func containerImages(pod *framework.PodInfo) []string {
	out := make([]string, 0, len(pod.Pod.Spec.Containers))
	for _, c := range pod.Pod.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

func initImages(pod *framework.PodInfo) []string {
	out := make([]string, 0, len(pod.Pod.Spec.InitContainers))
	for _, c := range pod.Pod.Spec.InitContainers {
		out = append(out, c.Image)
	}
	return out
}
