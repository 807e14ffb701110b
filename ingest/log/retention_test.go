package log

import (
	"errors"
	"testing"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// fillSegments appends n batches of 10 records at timestamps 1000*i.
func fillSegments(t *testing.T, l *Log, n int) {
	t.Helper()
	var last int64
	for i := range n {
		b := makeBatch(batchSpec{records: 10, valSize: 30, ts: int64(1000 * (i + 1)), pid: -1, seq: -1})
		last = mustAppend(t, l, b).LastOffset
	}
	waitDurable(t, l, last)
}

func segmentBases(l *Log) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int64
	for _, s := range l.mu.segments {
		out = append(out, s.base)
	}
	return out
}

func TestRetentionDeletesWholeSegments(t *testing.T) {
	fsys := vfs.NewCrashFS()
	clock := &testClock{ms: 100_000}
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{Now: clock.now})
	fillSegments(t, l, 40) // timestamps 1000..40000, ~3 batches per segment
	bases := segmentBases(l)
	if len(bases) < 8 {
		t.Fatalf("only %d segments", len(bases))
	}
	// Time: everything with max timestamp older than now-retention goes.
	n, err := l.ApplyRetention(100_000-10_500, -1)
	if err != nil {
		t.Fatal(err)
	}
	after := segmentBases(l)
	if n == 0 || after[0] != l.StartOffset() || len(after) != len(bases)-n {
		t.Fatalf("deleted %d: bases %v -> %v, start %d", n, bases, after, l.StartOffset())
	}
	// Every remaining segment holds a record at or after 10000; every
	// deleted one held only older ones: start is a segment boundary.
	if off, ts, ok, _ := l.OffsetForTimestamp(0); !ok || off != l.StartOffset() || ts < 9000 {
		t.Fatalf("first record after time retention: %d@%d %v", off, ts, ok)
	}
	// Size.
	size := l.Size()
	n2, err := l.ApplyRetention(-1, size/2)
	if err != nil || n2 == 0 {
		t.Fatalf("size retention: %d, %v", n2, err)
	}
	if l.Size() < size/2 {
		t.Fatalf("size retention went below the limit: %d < %d", l.Size(), size/2)
	}
	// Everything unlimited: nothing.
	if n, _ := l.ApplyRetention(-1, -1); n != 0 {
		t.Fatalf("unlimited retention deleted %d", n)
	}
	// Never the active segment.
	l.ApplyRetention(0, 0)
	if got := segmentBases(l); len(got) != 1 {
		t.Fatalf("retention 0 left %v, want only the active segment", got)
	}
	start, end := l.StartOffset(), l.EndOffset()
	l.Close()
	l = mustOpen(t, fsys, "/d", cfg, Options{Now: clock.now})
	defer l.Close()
	if l.StartOffset() != start || l.EndOffset() != end {
		t.Fatalf("after reopen [%d, %d), want [%d, %d)", l.StartOffset(), l.EndOffset(), start, end)
	}
	names, _ := fsys.ReadDir("/d")
	for _, n := range names {
		if b, ok := parseFileName(n, logSuffix); ok && b < start && b != segmentBases(l)[0] {
			t.Fatalf("segment file %s below start %d left behind", n, start)
		}
	}
}

func TestSetStartOffset(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	fillSegments(t, l, 30)
	bases := segmentBases(l)
	mid := bases[3] + 5 // inside the fourth segment
	if err := l.SetStartOffset(mid); err != nil {
		t.Fatal(err)
	}
	if got := segmentBases(l); got[0] != bases[3] {
		t.Fatalf("segments %v after start %d, want first %d", got, mid, bases[3])
	}
	if _, err := l.Read(mid-1, 100, 1<<40); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if b, err := l.Read(mid, 100, 1<<40); err != nil || len(b) == 0 {
		t.Fatalf("read at start: %v", err)
	}
	if err := l.SetStartOffset(mid - 3); err != nil || l.StartOffset() != mid {
		t.Fatalf("moving start back: %v, start %d", err, l.StartOffset())
	}
	if err := l.SetStartOffset(l.EndOffset() + 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("start past end: %v", err)
	}
	l.Close()
	// Survives a power loss (the checkpoint is synced before deleting).
	l = mustOpen(t, fsys.CrashClone(nil), "/d", cfg, Options{})
	defer l.Close()
	if l.StartOffset() != mid {
		t.Fatalf("start after crash %d, want %d", l.StartOffset(), mid)
	}
	if got := readAll(t, l); len(got) == 0 {
		t.Fatal("nothing readable after reopen")
	}
}

// TestApplyRetentionConfig: the planner-driven retention returns the plan it
// executed (the segments deleted are the plan's, the log start its
// LogStart), RetentionInput counts what Size counts, and
// cleanup.policy=compact alone deletes nothing.
func TestApplyRetentionConfig(t *testing.T) {
	fsys := vfs.NewCrashFS()
	clock := &testClock{ms: 100_000}
	l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024}, Options{Now: clock.now})
	defer l.Close()
	fillSegments(t, l, 40)
	in := l.RetentionInput()
	var size int64
	for _, s := range in.Local {
		size += s.Bytes
	}
	if size != l.Size() || in.LogStart != 0 || in.Local[len(in.Local)-1].Sealed || !in.Local[0].Durable {
		t.Fatalf("RetentionInput: %d bytes (Size %d), %+v", size, l.Size(), in)
	}
	all := compactor.Config{CleanupPolicy: compactor.Compact, RetentionMs: 0, RetentionBytes: 0, LocalRetentionMs: -1, LocalRetentionBytes: -1}
	if plan, err := l.ApplyRetentionConfig(all); err != nil || len(plan.Local) != 0 || len(segmentBases(l)) != len(in.Local) {
		t.Fatalf("compact alone: %v, %v", plan, err)
	}
	all.CleanupPolicy = compactor.CompactDelete
	all.RetentionMs = 100_000 - 10_500
	before := segmentBases(l)
	plan, err := l.ApplyRetentionConfig(all)
	if err != nil || len(plan.Local) == 0 {
		t.Fatalf("compact,delete: %v, %v", plan, err)
	}
	for i, d := range plan.Local {
		if d.Base != before[i] {
			t.Fatalf("plan deleted %d, the log's segment %d was %d", d.Base, i, before[i])
		}
	}
	if after := segmentBases(l); after[0] != plan.LogStart || l.StartOffset() != plan.LogStart || len(after) != len(before)-len(plan.Local) {
		t.Fatalf("after: %v, start %d; plan\n%s", after, l.StartOffset(), plan)
	}
}
