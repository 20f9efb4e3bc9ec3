package cri

import "time"

// SetImageMinAge sets how long image garbage collection keeps an image it
// has just seen (negative: not at all).
func SetImageMinAge(r *Runtime, d time.Duration) { r.gc.imageMinAge = d }
