package stream

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// DialInNetNS returns a Dial that opens its connections from the network
// namespace at path (/run/netns/NAME): for a containerd that runs in a
// namespace of its own, whose streaming server listens on that namespace's
// loopback. It needs CAP_SYS_ADMIN.
func DialInNetNS(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		// a goroutine of its own: if switching back fails its thread is
		// dropped with it (a locked thread that exits is not reused)
		go func() {
			c, err := dialIn(ctx, path, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

func dialIn(ctx context.Context, path, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("own network namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(path) //nolint:gosec // the agent's configured namespace
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	// the socket belongs to the namespace it is created in; the connect
	// that follows may finish on any thread
	d := net.Dialer{}
	c, dialErr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// leave the thread locked: it dies with this goroutine
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leave network namespace %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	return c, dialErr
}
