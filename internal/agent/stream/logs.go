package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// timeFormatOut is how a log line's timestamp is written with
// timestamps=true: RFC 3339 with nine fixed fraction digits, as the
// kubelet's.
const timeFormatOut = "2006-01-02T15:04:05.000000000Z07:00"

// LogLine is one line of a CRI log file:
// "2016-10-06T00:17:09.669794202Z stdout P content".
type LogLine struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	// Partial is true for the "P" tag: the container's line goes on in
	// the next CRI line, and Content has no newline.
	Partial bool
	// Content is what the container wrote; a full line ends in '\n'.
	Content []byte
}

// ParseLogLine decodes one CRI log line (with or without its trailing
// newline). Content aliases line.
func ParseLogLine(line []byte) (LogLine, error) {
	var l LogLine
	body, ok := bytes.CutSuffix(line, []byte("\n"))
	ts, rest, ok1 := bytes.Cut(body, []byte(" "))
	if !ok1 {
		return l, errors.New("log line has no timestamp")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return l, fmt.Errorf("log line timestamp: %w", err)
	}
	stream, rest, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok2 {
		return l, errors.New("log line has no stream")
	}
	if s := string(stream); s != "stdout" && s != "stderr" {
		return l, fmt.Errorf("log line stream %q: want stdout or stderr", s)
	}
	tags, content, ok3 := bytes.Cut(rest, []byte(" "))
	if !ok3 {
		return l, errors.New("log line has no tag")
	}
	// tags are ':'-separated; the first says partial or full
	first, _, _ := bytes.Cut(tags, []byte(":"))
	switch string(first) {
	case "P":
		l.Partial = true
	case "F":
	default:
		return l, fmt.Errorf("log line tag %q: want P or F", first)
	}
	l.Time, l.Stream = t, string(stream)
	if !l.Partial && ok {
		// a full line: the content keeps its newline
		content = line[len(line)-len(content)-1:]
	}
	l.Content = content
	return l, nil
}

// LogOptions select what ReadLogs writes (the kubelet's containerLogs
// parameters).
type LogOptions struct {
	// Since drops lines written before it (zero: none dropped).
	Since time.Time
	// TailLines, when not negative, starts at the last TailLines lines.
	TailLines int64
	// LimitBytes, when positive, stops after that many bytes.
	LimitBytes int64
	// Timestamps prefixes every line with its timestamp.
	Timestamps bool
	// Follow keeps reading as the file grows until Running says false
	// (checked every CheckInterval) or ctx ends.
	Follow        bool
	Running       func() bool
	PollInterval  time.Duration // default 100ms
	CheckInterval time.Duration // default 1s
}

// errLimit stops reading once LimitBytes are written.
var errLimit = errors.New("limit reached")

// ReadLogs writes the container log file at path to w as the kubelet
// serves it: the lines' content with an optional timestamp, stdout and
// stderr interleaved. Lines that do not parse are skipped. flush, when not
// nil, is called whenever ReadLogs would wait for more of the file.
func ReadLogs(ctx context.Context, path string, opts LogOptions, w io.Writer, flush func()) error {
	f, err := os.Open(path) //nolint:gosec // a path the agent built from CRI's answer
	if err != nil {
		return err
	}
	defer f.Close()
	if opts.TailLines >= 0 {
		off, err := tailOffset(f, opts.TailLines)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Second
	}
	lw := &logWriter{w: w, remain: opts.LimitBytes, opts: &opts, newLine: true}
	r := bufio.NewReaderSize(f, 32<<10)
	var pending []byte // a line read up to EOF but not yet to its newline
	lastCheck := time.Now()
	stopping := false
	for {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			pending = append(pending, b...)
			continue
		}
		if err == nil {
			line := b
			if len(pending) > 0 {
				line = append(pending, b...)
				pending = pending[:0]
			}
			if werr := lw.writeLine(line); werr != nil {
				if errors.Is(werr, errLimit) {
					return nil
				}
				return werr
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		pending = append(pending, b...)
		if !opts.Follow || stopping {
			return nil
		}
		if flush != nil {
			flush()
		}
		if opts.Running != nil && time.Since(lastCheck) >= opts.CheckInterval {
			lastCheck = time.Now()
			if !opts.Running() {
				// one more pass for what the container wrote before it
				// stopped
				stopping = true
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(opts.PollInterval):
		}
	}
}

// logWriter writes parsed lines as the options say.
type logWriter struct {
	w       io.Writer
	opts    *LogOptions
	remain  int64
	newLine bool // the previous line was not partial
}

func (lw *logWriter) writeLine(line []byte) error {
	l, err := ParseLogLine(line)
	if err != nil {
		return nil //nolint:nilerr // the kubelet skips lines it cannot parse
	}
	addPrefix := lw.newLine
	lw.newLine = !l.Partial
	if !lw.opts.Since.IsZero() && l.Time.Before(lw.opts.Since) {
		return nil
	}
	out := l.Content
	if lw.opts.Timestamps && addPrefix {
		out = append([]byte(l.Time.Format(timeFormatOut)+" "), out...)
	}
	if lw.opts.LimitBytes > 0 && int64(len(out)) > lw.remain {
		out = out[:lw.remain]
	}
	if _, err := lw.w.Write(out); err != nil {
		return err
	}
	if lw.opts.LimitBytes > 0 {
		lw.remain -= int64(len(out))
		if lw.remain <= 0 {
			return errLimit
		}
	}
	return nil
}

// tailOffset is the offset of the start of the last n lines of f (a final
// line without its newline counts as a line).
func tailOffset(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const block = 32 << 10
	buf := make([]byte, block)
	end := size
	// a trailing newline ends the last line; it does not start another
	skipTrailing := true
	var count int64
	for end > 0 {
		start := max(end-block, 0)
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' {
				skipTrailing = false
				continue
			}
			if skipTrailing {
				skipTrailing = false
				continue
			}
			count++
			if count == n {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
