package server

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// replacingRegisterer registers collectors on a registry shared with
// the API server; a collector that is already registered (by an earlier
// instance of a component restarted after it lost its Lease) is replaced
// instead of failing the new instance.
type replacingRegisterer struct{ reg prometheus.Registerer }

func (r replacingRegisterer) Register(c prometheus.Collector) error {
	err := r.reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		r.reg.Unregister(are.ExistingCollector)
		return r.reg.Register(c)
	}
	return err
}

func (r replacingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r replacingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }
