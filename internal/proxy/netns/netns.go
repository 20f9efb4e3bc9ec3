// Package netns creates named network namespaces with iproute2 and runs
// code inside them, for the proxy's tests and benchmark, which must never
// program the host's own namespace.
package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Create adds the namespace name (ip netns add), brings its loopback up
// and returns its path.
func Create(name string) (string, error) {
	if err := IP("netns", "add", name); err != nil {
		return "", err
	}
	if err := IP("-n", name, "link", "set", "lo", "up"); err != nil {
		_ = Delete(name)
		return "", err
	}
	return Path(name), nil
}

// Path is where iproute2 keeps the namespace name.
func Path(name string) string { return "/run/netns/" + name }

// Delete removes the namespace name.
func Delete(name string) error { return IP("netns", "del", name) }

// IP runs the ip command with args.
func IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Do runs fn on an OS thread inside the namespace at path; sockets made
// there stay in that namespace whichever thread uses them later.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Dialer dials from inside the namespace at path (for http.Transport).
func Dialer(path string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(path, func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen listens on addr inside the namespace at path.
func Listen(path, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(path, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}
