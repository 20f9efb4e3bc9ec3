package up

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress shows steps as they run: on a terminal one line per step that
// is redrawn with the elapsed time and a detail, then ends with ✓ or ✗;
// elsewhere (a log, a pipe) a start line and an end line per step.
type progress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu     sync.Mutex
	title  string
	detail string
	start  time.Time
}

func newProgress(w io.Writer, now func() time.Time) *progress {
	p := &progress{w: w, now: now}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// step runs f as the step called title. f may call set to show what it is
// waiting for; the step's line ends with the last detail.
func (p *progress) step(title string, f func(set func(detail string)) error) error {
	p.mu.Lock()
	p.title, p.detail, p.start = title, "", p.now()
	p.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if p.tty {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				p.draw("…")
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		}()
	} else {
		fmt.Fprintf(p.w, "  … %s\n", title)
	}
	err := f(func(d string) {
		p.mu.Lock()
		p.detail = d
		p.mu.Unlock()
	})
	close(done)
	wg.Wait()
	mark := "✓"
	if err != nil {
		mark = "✗"
	}
	p.draw(mark)
	if p.tty {
		fmt.Fprintln(p.w)
	}
	return err
}

// redrawWidth bounds a line that is redrawn in place (a terminal is at
// least 80 columns wide).
const redrawWidth = 79

// draw prints the current step's line with mark.
func (p *progress) draw(mark string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("  %s %s (%s)", mark, p.title, elapsed(p.now().Sub(p.start)))
	if p.detail != "" {
		line += ": " + p.detail
	}
	if p.tty {
		if r := []rune(line); mark == "…" && len(r) > redrawWidth {
			// a wrapped line cannot be redrawn in place
			line = string(r[:redrawWidth-1]) + "…"
		}
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	if mark != "…" {
		fmt.Fprintln(p.w, line)
	}
}

// elapsed formats d as 0.4s, 12.3s or 1m05s.
func elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
