package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseCompacted(t *testing.T) {
	line := `time=2026-11-25T16:13:30.071Z level=INFO msg=compacted topic=compact-tput partition=0 from=0 to=32649 ` +
		`reason="dirty ratio above min.cleanable.dirty.ratio" dirty_ratio=0.6986190089358245 records_kept=1000 ` +
		`records_removed=3144 tombstones_removed=0 segments_in=4 segments_out=3 bytes_read=139967 bytes_written=23450 duration=9.780914ms`
	p, err := parseCompacted(line)
	if err != nil {
		t.Fatal(err)
	}
	want := cleanerPass{
		at: time.Date(2026, 11, 25, 16, 13, 30, 71e6, time.UTC), topic: "compact-tput", from: 0, to: 32649,
		recordsKept: 1000, recordsRemoved: 3144, segmentsIn: 4, segmentsOut: 3,
		bytesRead: 139967, bytesWritten: 23450, duration: 9780914 * time.Nanosecond,
	}
	if !p.at.Equal(want.at) {
		t.Errorf("at = %v, want %v", p.at, want.at)
	}
	p.at = want.at
	if p != want {
		t.Errorf("pass = %+v\nwant   %+v", p, want)
	}
	if !p.start().Equal(want.at.Add(-want.duration)) {
		t.Errorf("start = %v", p.start())
	}
	if _, err := parseCompacted(`time=2026-11-25T16:13:30.071Z msg=compacted topic=x bytes_read=lots`); err == nil {
		t.Error("no error for a line without the numbers")
	}
}

func TestFindPass(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "broker.log")
	lines := []string{
		`time=2026-11-25T16:00:00.000Z level=INFO msg="strata broker started"`,
		`time=2026-11-25T16:00:01.000Z level=INFO msg=compacted topic=compact-backlog-limited partition=0 from=0 to=5 records_kept=1 records_removed=4 segments_in=1 segments_out=1 bytes_read=10 bytes_written=2 duration=1ms`,
		`time=2026-11-25T16:00:02.000Z level=INFO msg=compacted topic=compact-backlog partition=0 from=0 to=9 records_kept=2 records_removed=7 segments_in=1 segments_out=1 bytes_read=20 bytes_written=4 duration=2ms`,
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := findPass(path, "compact-backlog", time.Time{})
	if err != nil || p == nil || p.to != 9 {
		t.Fatalf("pass = %+v, %v; want the compact-backlog line", p, err)
	}
	if p, err := findPass(path, "compact-backlog", p.at); p != nil || err != nil {
		t.Errorf("pass after the last line = %+v, %v", p, err)
	}
	failed := `time=2026-11-25T16:00:03.000Z level=WARN msg=compaction topic=compact-tput partition=0 err="disk full"`
	if err := os.WriteFile(path, []byte(failed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findPass(path, "compact-tput", time.Time{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failed pass: err = %v", err)
	}
}

func TestSealedBytes(t *testing.T) {
	dir := t.TempDir()
	write := func(part, name string, n int) {
		d := filepath.Join(dir, "logs", part)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compact-backlog-0.abc", "00000000000000000000.log", 100)
	write("compact-backlog-0.abc", "00000000000000000100.log", 50)
	write("compact-backlog-0.abc", "00000000000000000200.log", 7) // active
	write("compact-backlog-0.abc", "00000000000000000000.index", 1000)
	write("compact-backlog-limited-0.def", "00000000000000000000.log", 1000)
	write("compact-backlog-limited-0.def", "00000000000000000100.log", 1000)
	if n, err := sealedBytes(dir, "compact-backlog"); err != nil || n != 150 {
		t.Errorf("sealed bytes = %d, %v; want 150", n, err)
	}
	if _, err := sealedBytes(dir, "nope"); err == nil {
		t.Error("no error for a topic without a log directory")
	}
}

func TestOverlapNote(t *testing.T) {
	ws := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	we := ws.Add(10 * time.Second)
	for _, c := range []struct {
		ps, pe time.Duration
		want   string
	}{
		{-time.Second, 4 * time.Second, "pass of 5.0 s, from -1.0 s to +4.0 s of the window: 40 % of it"},
		{2 * time.Second, 12 * time.Second, "pass of 10.0 s, from +2.0 s to +12.0 s of the window: 80 % of it"},
		{-2 * time.Second, -time.Second, "pass of 1.0 s, from -2.0 s to -1.0 s of the window: 0 % of it"},
	} {
		if got := overlapNote(ws.Add(c.ps), ws.Add(c.pe), ws, we); got != c.want {
			t.Errorf("overlap = %q, want %q", got, c.want)
		}
	}
}

func TestSummarizeSamples(t *testing.T) {
	t0 := time.Now()
	var s []latSample
	for i := range 100 {
		s = append(s, latSample{sent: t0.Add(time.Duration(i) * time.Millisecond), lat: time.Duration(i) * time.Millisecond})
	}
	if all := summarizeSamples(s, time.Time{}, time.Time{}); all.n != 100 || all.p50 != 49*time.Millisecond {
		t.Errorf("all = %+v", all)
	}
	in := summarizeSamples(s, t0.Add(90*time.Millisecond), t0.Add(200*time.Millisecond))
	if in.n != 10 || in.p50 != 94*time.Millisecond || in.p99 != 99*time.Millisecond {
		t.Errorf("window = %+v", in)
	}
}

func TestParseFlagsCompact(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil || !cfg.compact || cfg.compactMB != 256 || cfg.compactKeys != 100000 || cfg.compactValueBytes != 200 {
		t.Errorf("-all config = %+v, %v", cfg, err)
	}
	if _, err := parseFlags([]string{"-compact", "-strata", ""}); err == nil {
		t.Error("-compact without a broker binary accepted")
	}
	if _, err := parseFlags([]string{"-compact", "-strata", "/bin/true", "-compact-keys", "0"}); err == nil {
		t.Error("zero keys accepted")
	}
}

// TestCompactPhase runs the whole phase, small, against $STRATA_BIN.
func TestCompactPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the broker for about 20 s")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN not set")
	}
	cfg := config{strataBin: bin, duration: time.Second, partitions: 2,
		compactMB: 8, compactKeys: 2000, compactValueBytes: 100, compactSegBytes: 1 << 20}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := runCompact(ctx, cfg, t.TempDir())
	if errs := res.errs(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(res.passes) != 3 || len(res.lats) != 3 {
		t.Fatalf("%d passes, %d latency rows; want 3 and 3", len(res.passes), len(res.lats))
	}
	for i, p := range res.passes {
		if p.pass == nil || p.pass.bytesRead <= 0 || p.pass.recordsKept <= 0 || p.pass.recordsKept > 2000 {
			t.Errorf("pass %d (%s): %+v", i, p.name, p.pass)
		}
	}
	for _, l := range res.lats {
		if l.lat.n == 0 || l.st.records == 0 {
			t.Errorf("%s: no latencies (%+v)", l.name, l.st)
		}
	}
	md := (&report{cfg: cfg, compact: &res}).markdown()
	for _, want := range []string{"### Compaction", "idle broker", "io-max-bytes-per-second"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
