package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Forward is a further forwarder of the lab: a loopback address of the
// host whose connections are dialled to Target from node 0's namespace
// (the node runs the service proxy, so Target may be a service's
// LoadBalancer or cluster IP).
type Forward struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Target string `json:"target"`
	// Process is the `skiff lab forward` process of a detached lab.
	Process Process `json:"process,omitempty"`
}

// Alive reports whether p is still the process the lab started.
func (p Process) Alive() bool { return alive(p) }

// Forward makes (or keeps) the forwarder called name from listen (a
// loopback host:port; port 0 picks a free one) to target as dialled from
// node 0's namespace, in the same way as the API forwarder: in this
// process, or, detached, in a `skiff lab forward` process that Down stops.
// A forwarder of that name that is running to the same target is kept; one
// to another target is replaced, on its old address when listen's port is
// 0. It returns the host address.
func (l *Lab) Forward(name, listen, target string) (string, error) {
	if host, _, err := net.SplitHostPort(listen); err != nil || !net.ParseIP(host).IsLoopback() {
		return "", fmt.Errorf("lab: forward %s: listen %q: want a loopback host:port", name, listen)
	}
	st := l.State()
	ns := netnsPath(st.Nodes[0].Netns)
	l.mu.Lock()
	idx := -1
	for i, f := range l.state.Forwards {
		if f.Name == name {
			idx = i
		}
	}
	var old Forward
	if idx >= 0 {
		old = l.state.Forwards[idx]
	}
	inproc := l.extra[name]
	l.mu.Unlock()
	if idx >= 0 {
		running := inproc != nil || old.Process.Alive()
		if running && old.Target == target {
			return old.Addr, nil
		}
		if inproc != nil {
			_ = inproc.Close()
		}
		stopAll([]Process{old.Process}, 10*time.Second)
		if _, port, _ := net.SplitHostPort(listen); port == "0" {
			listen = old.Addr
		}
	}
	f := Forward{Name: name, Target: target}
	if l.cfg.Detach {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return "", fmt.Errorf("lab: forward %s: %w", name, err)
		}
		defer ln.Close()
		lf, err := ln.(*net.TCPListener).File()
		if err != nil {
			return "", fmt.Errorf("lab: forward %s: %w", name, err)
		}
		defer lf.Close()
		p, err := l.startDetached(filepath.Join(l.cfg.Dir, "forward-"+name+".log"), []*os.File{lf},
			"lab", "forward", "--listen-fd", "3", "--netns", ns, "--to", target)
		if err != nil {
			return "", err
		}
		f.Addr, f.Process = ln.Addr().String(), p
	} else {
		fw, err := NewForwarder(listen, ns, target)
		if err != nil {
			return "", err
		}
		f.Addr = fw.Addr()
		l.mu.Lock()
		if l.extra == nil {
			l.extra = map[string]*Forwarder{}
		}
		l.extra[name] = fw
		l.mu.Unlock()
	}
	l.mu.Lock()
	if idx >= 0 {
		l.state.Forwards[idx] = f
	} else {
		l.state.Forwards = append(l.state.Forwards, f)
	}
	l.mu.Unlock()
	return f.Addr, l.save()
}

// ForwardOf returns the forwarder called name, if the lab has one.
func (l *Lab) ForwardOf(name string) (Forward, bool) {
	for _, f := range l.State().Forwards {
		if f.Name == name {
			return f, true
		}
	}
	return Forward{}, false
}
