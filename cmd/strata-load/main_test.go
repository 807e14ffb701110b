package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDD(t *testing.T) {
	out := "512+0 records in\n512+0 records out\n536870912 bytes (537 MB, 512 MiB) copied, 0.5 s, 1.1 GB/s\n"
	mbps, note, err := parseDD(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := 536870912 / 0.5 / 1e6; mbps != want {
		t.Errorf("mbps = %v, want %v", mbps, want)
	}
	if note != "dd says 1.1 GB/s" {
		t.Errorf("note = %q", note)
	}
	if _, _, err := parseDD("dd: error writing: No space left on device\n"); err == nil {
		t.Error("no error for output without a summary")
	}
}

func TestParseStatusField(t *testing.T) {
	status := "Name:\tstrata\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n"
	for field, want := range map[string]int64{"VmHWM": 200 << 20, "VmRSS": 100 << 20, "Threads": 12} {
		got, err := parseStatusField(bufio.NewScanner(strings.NewReader(status)), field)
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", field, got, err, want)
		}
	}
	if _, err := parseStatusField(bufio.NewScanner(strings.NewReader(status)), "VmSwap"); err == nil {
		t.Error("no error for a missing field")
	}
}

func TestSummarize(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(1000-i) * time.Millisecond // reversed: summarize sorts
	}
	s := summarize(lat)
	if s.p50 != 500*time.Millisecond || s.p99 != 990*time.Millisecond || s.p999 != 999*time.Millisecond || s.n != 1000 {
		t.Errorf("summary = %+v", s)
	}
	if s := summarize(nil); s.n != 0 {
		t.Errorf("empty summary = %+v", s)
	}
	if p := percentile([]time.Duration{7}, 0.999); p != 7 {
		t.Errorf("single-element percentile = %v", p)
	}
}

func TestIdleLayout(t *testing.T) {
	l := idleLayout(250, 100)
	if len(l) != 3 || l[0].partitions != 100 || l[2].partitions != 50 || l[2].name != "idle-0002" {
		t.Errorf("layout = %+v", l)
	}
	if l := idleLayout(0, 100); len(l) != 0 {
		t.Errorf("empty layout = %+v", l)
	}
}

func TestCell(t *testing.T) {
	if got := cell("a|b\nc", 0); got != `a\|b c` {
		t.Errorf("cell = %q", got)
	}
	if got := cell("abcdef", 3); got != "abc…" {
		t.Errorf("cut cell = %q", got)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.idlePartitions != 10000 || !cfg.disk || !cfg.load || cfg.timeout <= cfg.duration {
		t.Errorf("-all config = %+v", cfg)
	}
	cfg, err = parseFlags([]string{"-strata", ""})
	if err != nil || cfg.idlePartitions != 0 || cfg.disk {
		t.Errorf("default config = %+v, %v", cfg, err)
	}
	if _, err := parseFlags([]string{"-strata", "", "-idle-partitions", "5"}); err == nil {
		t.Error("idle phase without a broker binary accepted")
	}
	if _, err := parseFlags([]string{"-duration", "0s"}); err == nil {
		t.Error("zero duration accepted")
	}
}

func TestStartBrokerThatExits(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake-strata")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho refusing to start >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := startBroker(context.Background(), bin, t.TempDir(), "x")
	if err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("err = %v, want the broker's last log line", err)
	}
}

// TestKfakeLoadSuite runs the whole load suite, briefly, against kfake.
func TestKfakeLoadSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("produces for a few seconds")
	}
	cfg := config{duration: 300 * time.Millisecond, recordSize: 100, partitions: 2}
	res := runKfakeLoad(context.Background(), cfg)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.rows) != 5 {
		t.Fatalf("%d rows, want 5: %+v", len(res.rows), res.rows)
	}
	for _, r := range res.rows {
		if r.err != nil || r.recps <= 0 {
			t.Errorf("%s: %.0f records/s, err %v", r.test, r.recps, r.err)
		}
		if strings.Contains(r.test, "50%") && (r.lat == nil || r.lat.n == 0 || r.lat.p50 <= 0) {
			t.Errorf("%s: no latencies", r.test)
		}
	}
	rep := &report{cfg: cfg, loads: []loadResult{res}}
	if md := rep.markdown(); !strings.Contains(md, "| kfake | consume from offset 0") {
		t.Errorf("report lacks the consume row:\n%s", md)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (strata (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1 2 3"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("cpu = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("no error for garbage")
	}
}

func TestParseBusy(t *testing.T) {
	got, err := parseBusy("cpu  100 10 50 9999 77 5 3 2 0 0")
	if err != nil || got != 170*time.Second/clockTicks {
		t.Errorf("busy = %v, %v", got, err)
	}
	if _, err := parseBusy("intr 1 2 3"); err == nil {
		t.Error("no error for a non-cpu line")
	}
}
