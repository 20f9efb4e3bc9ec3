package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Forwarder accepts TCP connections on a host address and connects each
// to a target address inside a network namespace, copying both ways.
type Forwarder struct {
	ln     net.Listener
	netns  string
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewForwarder listens on listen and forwards to target in the network
// namespace at netnsPath.
func NewForwarder(listen, netnsPath, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("lab: forwarder: %w", err)
	}
	return ForwardFrom(ln, netnsPath, target), nil
}

// ForwardFrom forwards the connections ln accepts to target in the
// network namespace at netnsPath; Close closes ln.
func ForwardFrom(ln net.Listener, netnsPath, target string) *Forwarder {
	f := &Forwarder{ln: ln, netns: netnsPath, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f
}

// Addr is the host address the forwarder listens on.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Close stops listening and closes every forwarded connection.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	err := f.ln.Close()
	f.wg.Wait()
	return err
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.forward(c)
		}()
	}
}

func (f *Forwarder) forward(c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	up, err := DialIn(ctx, f.netns, "tcp", f.target)
	cancel()
	if err != nil {
		return
	}
	defer up.Close()
	if !f.track(c) {
		return
	}
	defer f.untrack(c)
	if !f.track(up) {
		return
	}
	defer f.untrack(up)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

// DialIn dials addr from inside the network namespace at netnsPath. The
// socket is made on a thread switched into the namespace and back (the
// thread is given up only if switching back fails), so no thread dies:
// a child started with Pdeathsig from that thread would die with it.
func DialIn(ctx context.Context, netnsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsPath)
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("setns %s: %w", netnsPath, err)}
			return
		}
		// the socket is created here; connecting may block, which is fine
		// on this locked thread
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		} // else: stay locked, the thread ends with this goroutine
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}
