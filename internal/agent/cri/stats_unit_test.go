package cri

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCPURate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name      string
		prev, cur cpuSample
		want      uint64
		ok        bool
	}{
		{"one core busy", cpuSample{t0, 0}, cpuSample{t0.Add(10 * time.Second), 10e9}, 1e9, true},
		{"quarter core", cpuSample{t0, 5e9}, cpuSample{t0.Add(2 * time.Second), 5.5e9}, 250e6, true},
		{"idle", cpuSample{t0, 7}, cpuSample{t0.Add(time.Second), 7}, 0, true},
		{"two cores over half a second", cpuSample{t0, 0}, cpuSample{t0.Add(500 * time.Millisecond), 1e9}, 2e9, true},
		{"same time", cpuSample{t0, 0}, cpuSample{t0, 1e9}, 0, false},
		{"time went back", cpuSample{t0, 0}, cpuSample{t0.Add(-time.Second), 1e9}, 0, false},
		{"counter reset", cpuSample{t0, 9e9}, cpuSample{t0.Add(time.Second), 1e9}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cpuRate(tc.prev, tc.cur)
			if got != tc.want || ok != tc.ok {
				t.Errorf("cpuRate = %d, %t; want %d, %t", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestStatsCacheRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var c statsCache
	steps := []struct {
		id        string
		first     cpuSample
		cur       cpuSample
		want      uint64
		wantValid bool
	}{
		// first sample of a container: the rate since its creation
		{"a", cpuSample{at: t0}, cpuSample{t0.Add(4 * time.Second), 2e9}, 500e6, true},
		// then the rate since the previous sample
		{"a", cpuSample{at: t0}, cpuSample{t0.Add(14 * time.Second), 12e9}, 1e9, true},
		{"b", cpuSample{at: t0.Add(10 * time.Second)}, cpuSample{t0.Add(14 * time.Second), 1e9}, 250e6, true},
		// a sample no newer than the last gives no rate
		{"b", cpuSample{at: t0}, cpuSample{t0.Add(14 * time.Second), 1e9}, 0, false},
	}
	for i, s := range steps {
		got, ok := c.rate(s.id, s.first, s.cur)
		if got != s.want || ok != s.wantValid {
			t.Errorf("step %d (%s): rate %d, %t; want %d, %t", i, s.id, got, ok, s.want, s.wantValid)
		}
	}
	c.keep(map[string]bool{"b": true})
	if _, ok := c.containers["a"]; ok || len(c.containers) != 1 {
		t.Errorf("after keep(b): %v", c.containers)
	}
	r, window, ok := c.nodeRate(cpuSample{at: t0}, cpuSample{t0.Add(10 * time.Second), 5e9})
	if r != 500e6 || window != 10*time.Second || !ok {
		t.Errorf("first node rate %d over %s (%t), want 500m over 10s", r, window, ok)
	}
	r, window, _ = c.nodeRate(cpuSample{at: t0}, cpuSample{t0.Add(25 * time.Second), 35e9})
	if r != 2e9 || window != 15*time.Second {
		t.Errorf("node rate %d over %s, want 2 cores over 15s", r, window)
	}
}

func TestProcFiles(t *testing.T) {
	dir := t.TempDir()
	stat := filepath.Join(dir, "stat")
	// user nice system idle iowait irq softirq steal guest guest_nice
	if err := os.WriteFile(stat, []byte("cpu  100 20 30 5000 70 1 2 3 0 0\ncpu0 100 20 30 5000 70 1 2 3 0 0\nintr 1 2\nbtime 1700000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, boot, err := procStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(156) * 10e6; busy != want || !boot.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("procStatCPU = %d, %s; want %d, 1700000000", busy, boot, want)
	}
	meminfo := filepath.Join(dir, "meminfo")
	if err := os.WriteFile(meminfo, []byte("MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nActive(file):    100 kB\nInactive(file):  300 kB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws, err := nodeMemoryWorkingSet(meminfo)
	if err != nil || ws != 500*1024 {
		t.Errorf("working set %d, %v; want %d", ws, err, 500*1024)
	}
	for name, content := range map[string]string{"no cpu line": "intr 1\n", "bad number": "cpu x 1 2 3 4 5 6 7 8 9\n"} {
		p := filepath.Join(dir, "bad")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := procStatCPU(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := os.WriteFile(meminfo, []byte("MemFree: 1 kB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeMemoryWorkingSet(meminfo); err == nil {
		t.Error("meminfo without MemTotal: no error")
	}
}
