package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	streamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// WebSocket subprotocols kubectl 1.30+ asks for: exec and attach on
// channels (v5: with stream close), port-forward as SPDY tunneled in
// WebSocket messages (1.31+).
const (
	wsProtocolV5          = "v5.channel.k8s.io"
	wsProtocolPortForward = "SPDY/3.1+portforward.k8s.io"
)

// Channels of the v5 protocol.
const (
	chStdin  = 0
	chStdout = 1
	chStderr = 2
	chError  = 3
	chResize = 4
	chClose  = 255
)

// wsProtocols are the subprotocols the client offers.
func wsProtocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func offers(r *http.Request, protocol string) bool {
	for _, p := range wsProtocols(r) {
		if p == protocol {
			return true
		}
	}
	return false
}

// streamOpts are the streams an exec or attach asks for.
type streamOpts struct {
	stdin, stdout, stderr, tty bool
}

// translateExec serves a WebSocket (v5.channel.k8s.io) exec or attach by
// running it over SPDY against the node agent at loc, as upstream's stream
// translator does.
func (s *Server) translateExec(w http.ResponseWriter, r *http.Request, loc *url.URL, o streamOpts) {
	exec, err := s.spdyExecutor(loc)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{wsProtocolV5}, CheckOrigin: func(*http.Request) bool { return true },
		HandshakeTimeout: 30 * time.Second}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	ws := &wsChannels{conn: conn}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stdinR, stdinW := io.Pipe()
	sizes := &sizeQueue{ch: make(chan *remotecommand.TerminalSize, 8), done: ctx.Done()}
	go func() {
		defer cancel()
		defer stdinW.Close()
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if len(msg) == 0 {
				continue
			}
			switch msg[0] {
			case chStdin:
				if _, err := stdinW.Write(msg[1:]); err != nil {
					return
				}
			case chResize:
				var sz remotecommand.TerminalSize
				if json.Unmarshal(msg[1:], &sz) == nil {
					select {
					case sizes.ch <- &sz:
					default:
					}
				}
			case chClose:
				if len(msg) > 1 && msg[1] == chStdin {
					stdinW.Close()
				}
			}
		}
	}()
	opts := remotecommand.StreamOptions{Tty: o.tty}
	if o.stdin {
		opts.Stdin = stdinR
	}
	if o.stdout {
		opts.Stdout = ws.writer(chStdout)
	}
	if o.stderr {
		opts.Stderr = ws.writer(chStderr)
	}
	if o.tty {
		opts.TerminalSizeQueue = sizes
	}
	err = exec.StreamWithContext(ctx, opts)
	st := execStatus(err)
	if b, merr := json.Marshal(st); merr == nil {
		_ = ws.write(chError, b)
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
}

// spdyExecutor runs exec and attach against an agent over SPDY, with the
// server's kubelet client certificate.
func (s *Server) spdyExecutor(loc *url.URL) (remotecommand.Executor, error) {
	rt, err := streamspdy.NewRoundTripperWithConfig(streamspdy.RoundTripperConfig{TLS: s.kubelet.TLSClientConfig.Clone(),
		Proxier: func(*http.Request) (*url.URL, error) { return nil, nil }, PingPeriod: 5 * time.Second})
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	ex, err := remotecommand.NewSPDYExecutorForTransports(rt, rt, http.MethodPost, loc)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return ex, nil
}

// tunnelPortForward serves a WebSocket port-forward (SPDY/3.1+
// portforward.k8s.io: the client's SPDY session in binary messages) by
// upgrading to SPDY at the agent and copying the session's bytes.
func (s *Server) tunnelPortForward(w http.ResponseWriter, r *http.Request, loc *url.URL) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, loc.String(), nil)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Set("X-Stream-Protocol-Version", "portforward.k8s.io")
	resp, err := s.kubelet.RoundTrip(req)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("error dialing backend: %w", err)))
		return
	}
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 50<<10))
		resp.Body.Close()
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("port-forward: the node answered %s: %s", resp.Status, strings.TrimSpace(string(body)))))
		return
	}
	defer backend.Close()
	up := websocket.Upgrader{Subprotocols: []string{wsProtocolPortForward}, CheckOrigin: func(*http.Request) bool { return true },
		HandshakeTimeout: 30 * time.Second}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	go func() {
		defer backend.Close()
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if _, err := backend.Write(msg); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := backend.Read(buf)
		if n > 0 {
			if werr := conn.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
			return
		}
	}
}

// execStatus is the v4/v5 error channel's Status for how a command ended.
func execStatus(err error) *metav1.Status {
	st := &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}}
	var ce utilexec.CodeExitError
	switch {
	case err == nil:
		st.Status = metav1.StatusSuccess
	case errors.As(err, &ce):
		st.Status, st.Reason = metav1.StatusFailure, "NonZeroExitCode"
		st.Message = fmt.Sprintf("command terminated with non-zero exit code: %v", err)
		st.Details = &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: fmt.Sprint(ce.ExitStatus())}}}
	default:
		st.Status, st.Reason, st.Message = metav1.StatusFailure, metav1.StatusReasonInternalError, err.Error()
	}
	return st
}

// wsChannels writes v5 channel messages; writes are serialized.
type wsChannels struct {
	mu   sync.Mutex
	conn *websocket.Conn
}

func (c *wsChannels) write(ch byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := make([]byte, 1+len(p))
	msg[0] = ch
	copy(msg[1:], p)
	return c.conn.WriteMessage(websocket.BinaryMessage, msg)
}

type chanWriter struct {
	c  *wsChannels
	ch byte
}

func (w chanWriter) Write(p []byte) (int, error) {
	if err := w.c.write(w.ch, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsChannels) writer(ch byte) io.Writer { return chanWriter{c, ch} }

// sizeQueue hands terminal resizes to the SPDY executor.
type sizeQueue struct {
	ch   chan *remotecommand.TerminalSize
	done <-chan struct{}
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case sz := <-q.ch:
		return sz
	case <-q.done:
		return nil
	}
}
