package stream

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	ts := time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)
	for _, tc := range []struct {
		line    string
		want    LogLine
		wantErr bool
	}{
		{line: "2016-10-06T00:17:09.669794202Z stdout F hello\n", want: LogLine{Time: ts, Stream: "stdout", Content: []byte("hello\n")}},
		{line: "2016-10-06T00:17:09.669794202Z stderr P part", want: LogLine{Time: ts, Stream: "stderr", Partial: true, Content: []byte("part")}},
		{line: "2016-10-06T00:17:09.669794202Z stdout P part\n", want: LogLine{Time: ts, Stream: "stdout", Partial: true, Content: []byte("part")}},
		{line: "2016-10-06T00:17:09.669794202Z stdout F \n", want: LogLine{Time: ts, Stream: "stdout", Content: []byte("\n")}},
		{line: "2016-10-06T00:17:09.669794202Z stdout F:x a b  c\n", want: LogLine{Time: ts, Stream: "stdout", Content: []byte("a b  c\n")}},
		{line: "2016-10-06T00:17:09+02:00 stdout F x\n", want: LogLine{Time: time.Date(2016, 10, 6, 0, 17, 9, 0, time.FixedZone("", 7200)), Stream: "stdout", Content: []byte("x\n")}},
		{line: "garbage\n", wantErr: true},
		{line: "2016-10-06T00:17:09Z\n", wantErr: true},
		{line: "2016-10-06T00:17:09Z stdin F x\n", wantErr: true},
		{line: "2016-10-06T00:17:09Z stdout X x\n", wantErr: true},
		{line: "2016-10-06T00:17:09Z stdout F\n", wantErr: true},
		{line: "yesterday stdout F x\n", wantErr: true},
		{line: "", wantErr: true},
	} {
		got, err := ParseLogLine([]byte(tc.line))
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v, want error %v", tc.line, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial || !bytes.Equal(got.Content, tc.want.Content) {
			t.Errorf("%q: got %+v (%q), want %+v (%q)", tc.line, got, got.Content, tc.want, tc.want.Content)
		}
	}
}

func FuzzParseLogLine(f *testing.F) {
	f.Add([]byte("2016-10-06T00:17:09.669794202Z stdout F hello\n"))
	f.Add([]byte("2016-10-06T00:17:09.669794202Z stderr P part"))
	f.Add([]byte("2016-10-06T00:17:09Z stdout F:x \n"))
	f.Add([]byte(" \n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		l, err := ParseLogLine(line)
		if err != nil {
			return
		}
		if l.Stream != "stdout" && l.Stream != "stderr" {
			t.Fatalf("stream %q accepted", l.Stream)
		}
		if len(l.Content) > len(line) {
			t.Fatalf("content %q longer than line %q", l.Content, line)
		}
		if l.Partial && bytes.HasSuffix(l.Content, []byte("\n")) && bytes.HasSuffix(line, []byte("\n")) && !bytes.HasSuffix(line, []byte("\n\n")) {
			t.Fatalf("partial content %q of %q keeps the line's newline", l.Content, line)
		}
		// writing it back gives the same line
		tag := "F"
		if l.Partial {
			tag = "P"
		}
		if !l.Partial && !bytes.HasSuffix(line, []byte("\n")) {
			return
		}
		again, err := ParseLogLine([]byte(l.Time.Format(time.RFC3339Nano) + " " + l.Stream + " " + tag + " " + string(l.Content)))
		if err != nil || !bytes.Equal(again.Content, l.Content) || again.Partial != l.Partial {
			t.Fatalf("re-encoded %q: %+v, %v", line, again, err)
		}
	})
}

// logFile writes CRI lines at second offsets from base.
func logFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func line(sec int, stream, tag, content string) string {
	return time.Date(2024, 1, 1, 0, 0, sec, 5, time.UTC).Format(time.RFC3339Nano) + " " + stream + " " + tag + " " + content + "\n"
}

func TestReadLogs(t *testing.T) {
	p := logFile(t, line(1, "stdout", "F", "one"), line(2, "stderr", "F", "two"), line(3, "stdout", "P", "thr"),
		line(4, "stdout", "F", "ee"), "not a log line\n", line(5, "stdout", "F", "five"))
	for _, tc := range []struct {
		name string
		opts LogOptions
		want string
	}{
		{"all", LogOptions{TailLines: -1}, "one\ntwo\nthree\nfive\n"},
		{"tail 2", LogOptions{TailLines: 2}, "five\n"}, // the unparsable line counts, as the kubelet's tail
		{"tail 3", LogOptions{TailLines: 3}, "ee\nfive\n"},
		{"tail 0", LogOptions{TailLines: 0}, ""},
		{"tail 100", LogOptions{TailLines: 100}, "one\ntwo\nthree\nfive\n"},
		{"since", LogOptions{TailLines: -1, Since: time.Date(2024, 1, 1, 0, 0, 2, 0, time.UTC)}, "two\nthree\nfive\n"},
		{"limitBytes", LogOptions{TailLines: -1, LimitBytes: 6}, "one\ntw"},
		{"timestamps", LogOptions{TailLines: -1, Timestamps: true, Since: time.Date(2024, 1, 1, 0, 0, 3, 0, time.UTC)},
			"2024-01-01T00:00:03.000000005Z three\n2024-01-01T00:00:05.000000005Z five\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := ReadLogs(context.Background(), p, tc.opts, &buf, nil); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Errorf("got %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

func TestTailWithoutFinalNewline(t *testing.T) {
	p := logFile(t, line(1, "stdout", "F", "a"), line(2, "stdout", "F", "b"), strings.TrimSuffix(line(3, "stdout", "F", "c"), "\n"))
	var buf bytes.Buffer
	if err := ReadLogs(context.Background(), p, LogOptions{TailLines: 2}, &buf, nil); err != nil {
		t.Fatal(err)
	}
	// the last line is still being written: not served yet
	if buf.String() != "b\n" {
		t.Errorf("got %q", buf.String())
	}
}

// syncBuffer is a buffer the test reads while ReadLogs writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestReadLogsFollow(t *testing.T) {
	p := logFile(t, line(1, "stdout", "F", "one"))
	var running atomic.Bool
	running.Store(true)
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- ReadLogs(context.Background(), p, LogOptions{TailLines: -1, Follow: true, Running: running.Load,
			PollInterval: 5 * time.Millisecond, CheckInterval: 5 * time.Millisecond}, out, nil)
	}()
	waitFor(t, out, "one\n")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// a line written in two pieces is served once complete
	l := line(2, "stdout", "F", "two")
	if _, err := f.WriteString(l[:10]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := f.WriteString(l[10:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "one\ntwo\n")
	// the container stops after a last line: it is served, then ReadLogs ends
	if _, err := f.WriteString(line(3, "stdout", "F", "last")); err != nil {
		t.Fatal(err)
	}
	running.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
	if out.String() != "one\ntwo\nlast\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestReadLogsFollowEndsWithContext(t *testing.T) {
	p := logFile(t, line(1, "stdout", "F", "one"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ReadLogs(ctx, p, LogOptions{TailLines: -1, Follow: true, PollInterval: 5 * time.Millisecond}, &syncBuffer{}, nil)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}

func waitFor(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for b.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("got %q, want %q", b.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLogAttemptsAndPrevious(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"0.log", "1.log", "10.log", "2.log", "x.log", "3.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := logAttempts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{10, 2, 1, 0}; len(got) != len(want) || got[0] != 10 || got[1] != 2 || got[3] != 0 {
		t.Errorf("attempts %v, want %v", got, want)
	}
	if got, err := logAttempts(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("missing dir: %v, %v", got, err)
	}
}

func TestLogOptions(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 1, 0, 0, time.UTC)
	for _, tc := range []struct {
		query   string
		check   func(LogOptions) bool
		wantErr string
	}{
		{"", func(o LogOptions) bool { return o.TailLines == -1 && !o.Follow && o.Since.IsZero() }, ""},
		{"tailLines=5&follow=true&timestamps=1&limitBytes=9", func(o LogOptions) bool {
			return o.TailLines == 5 && o.Follow && o.Timestamps && o.LimitBytes == 9
		}, ""},
		{"sinceSeconds=60", func(o LogOptions) bool { return o.Since.Equal(now.Add(-time.Minute)) }, ""},
		{"sinceTime=2024-01-01T00:00:30Z", func(o LogOptions) bool { return o.Since.Equal(now.Add(-30 * time.Second)) }, ""},
		{"tailLines=-1", nil, "tailLines: must be greater than or equal to 0"},
		{"tailLines=x", nil, "not an integer"},
		{"limitBytes=0", nil, "limitBytes: must be greater than 0"},
		{"sinceSeconds=0", nil, "sinceSeconds: must be greater than 0"},
		{"sinceSeconds=5&sinceTime=2024-01-01T00:00:30Z", nil, "at most one of"},
		{"sinceTime=yesterday", nil, "sinceTime"},
	} {
		q, _ := url.ParseQuery(tc.query)
		o, err := logOptions(q, now)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.query, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !tc.check(o) {
			t.Errorf("%q: %+v, %v", tc.query, o, err)
		}
	}
}
