package lab

import (
	"fmt"
	"syscall"
	"time"
)

// KillAgent kills node i's agent with SIGKILL, as a crash would, and waits
// until it is gone. The node's containerd and containers keep running; the
// next agent (StartAgent) takes them over.
func (l *Lab) KillAgent(i int) error {
	st := l.State()
	if i < 0 || i >= len(st.Nodes) {
		return fmt.Errorf("lab: no node %d", i)
	}
	p := st.Nodes[i].Agent
	if !alive(p) {
		return fmt.Errorf("lab: the agent of node %s is not running", st.Nodes[i].Name)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("lab: kill the agent of node %s: %w", st.Nodes[i].Name, err)
	}
	deadline := time.Now().Add(WaitTimeout)
	for alive(p) {
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: the agent of node %s (pid %d) outlived SIGKILL for %s", st.Nodes[i].Name, p.PID, WaitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// StartAgent starts node i's agent again, after KillAgent, with the same
// command line and data directory.
func (l *Lab) StartAgent(i int) error {
	st := l.State()
	if i < 0 || i >= len(st.Nodes) {
		return fmt.Errorf("lab: no node %d", i)
	}
	if alive(st.Nodes[i].Agent) {
		return fmt.Errorf("lab: the agent of node %s is still running", st.Nodes[i].Name)
	}
	return l.startAgent(i)
}
