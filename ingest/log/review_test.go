package log

import (
	"bytes"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"weak"

	"github.com/strata-io/strata/ingest/log/vfs"
)

// TestKillAfterRollThenPowerLoss: the process is killed right after a roll,
// before the sync round that seals the old segment. The restart finds the
// sealed segment without index files and rebuilds them from what the page
// cache still holds, and publishes everything as durable. A power loss after
// that restart must not lose any of it: the rebuilt segment's data has to be
// synced before its index files make it count as sealed.
func TestKillAfterRollThenPowerLoss(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1024, IndexIntervalBytes: 128}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	l.syncMu.Lock() // no sync round runs: the process dies before any
	var want [][]byte
	for i := range 12 {
		b := simpleBatch(2, 60, byte(i))
		mustAppend(t, l, b)
		want = append(want, b)
	}
	if n := len(segmentBases(l)); n < 2 {
		t.Fatalf("%d segments, want a roll", n)
	}
	killed := fsys.KillClone()
	l.syncMu.Unlock()
	l.Close()

	r := mustOpen(t, killed, "/d", cfg, Options{})
	durable := r.DurableOffset()
	if durable != r.EndOffset() || len(readAll(t, r)) != len(want) {
		t.Fatalf("restart recovered %d batches up to %d, want all %d", len(readAll(t, r)), durable, len(want))
	}
	powerLost := killed.CrashClone(nil) // power loss while r runs
	r.Close()

	p, err := Open("/d", cfg, testOptions(powerLost))
	if err != nil {
		t.Fatalf("open after power loss: %v", err)
	}
	defer p.Close()
	if p.EndOffset() < durable {
		t.Fatalf("power loss took the log back to %d, below the durable offset %d published after the restart", p.EndOffset(), durable)
	}
	got := readAll(t, p)
	for i := range want {
		if i >= len(got) || !bytes.Equal(got[i], want[i]) {
			t.Fatalf("durable batch %d lost or changed", i)
		}
	}
}

// syncDirFS records SyncDir calls.
type syncDirFS struct {
	*vfs.CrashFS
	mu     sync.Mutex
	synced []string
}

func (f *syncDirFS) SyncDir(dir string) error {
	f.mu.Lock()
	f.synced = append(f.synced, filepath.Clean(dir))
	f.mu.Unlock()
	return f.CrashFS.SyncDir(dir)
}

// TestNewLogDirectoryEntryIsSynced: a log created in a new directory must
// sync the parent directories, or a power loss can take the whole partition
// directory, with its acknowledged data, away. (CrashFS treats directories as
// durable at once, so this checks the calls.)
func TestNewLogDirectoryEntryIsSynced(t *testing.T) {
	fsys := &syncDirFS{CrashFS: vfs.NewCrashFS()}
	if err := fsys.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, fsys, "/data/logs/t-0", Config{}, Options{})
	defer l.Close()
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	for _, parent := range []string{"/data", "/data/logs"} {
		if !slices.Contains(fsys.synced, parent) {
			t.Errorf("parent %s of a new directory never synced (synced: %v)", parent, fsys.synced)
		}
	}
}

// hookFS runs a hook around Open of one path, once.
type hookFS struct {
	*vfs.CrashFS
	mu     sync.Mutex
	path   string
	before bool // run the hook before the open (else after it succeeded)
	hook   func()
}

func (f *hookFS) Open(name string) (vfs.File, error) {
	f.mu.Lock()
	hook := f.hook
	if filepath.Clean(name) == f.path {
		f.hook = nil
	} else {
		hook = nil
	}
	f.mu.Unlock()
	if hook != nil && f.before {
		hook()
	}
	file, err := f.CrashFS.Open(name)
	if hook != nil && !f.before {
		hook()
	}
	return file, err
}

// TestReadRacingRetentionAndClose: a Read that captured a sealed segment
// under the lock and opens it after retention deleted it (or the log
// closed) must neither leave the deleted file's descriptor in the shared
// FileCache (it would pin the file's disk space until LRU eviction) nor fail
// with a raw open error: the offset is now below the log start.
func TestReadRacingRetentionAndClose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		before  bool
		close   bool
		wantErr error
	}{
		{"retention before the open", true, false, ErrOffsetOutOfRange},
		{"retention after the open", false, false, ErrOffsetOutOfRange},
		{"close before the open", true, true, ErrClosed},
		{"close after the open", false, true, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &hookFS{CrashFS: vfs.NewCrashFS()}
			files := NewFileCache(8)
			l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024}, Options{Files: files})
			defer l.Close()
			fillSegments(t, l, 12)
			bases := segmentBases(l)
			if len(bases) < 3 {
				t.Fatalf("only %d segments", len(bases))
			}
			fsys.path, fsys.before = filepath.Join("/d", fileName(bases[0], logSuffix)), tc.before
			fsys.hook = func() {
				if tc.close {
					l.Close()
				} else if err := l.SetStartOffset(bases[1]); err != nil {
					t.Errorf("SetStartOffset: %v", err)
				}
			}
			_, err := l.Read(0, 1<<20, l.DurableOffset())
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Read = %v, want %v", err, tc.wantErr)
			}
			if n := files.Len(); n != 0 {
				t.Errorf("FileCache holds %d descriptors after the segment was deleted or the log closed", n)
			}
		})
	}
}

// TestOffsetForTimestampRacingRetention: retention drops segments from the
// front of the list while OffsetForTimestamp walks it; the lookup must not
// skip the segment that holds the answer.
func TestOffsetForTimestampRacingRetention(t *testing.T) {
	fsys := &hookFS{CrashFS: vfs.NewCrashFS()}
	l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024}, Options{})
	defer l.Close()
	ts := func(i int) int64 {
		switch i {
		case 0:
			return 50_000 // the first candidate segment: cut off by the start below
		case 2:
			return 60_000 // the answer, in the next segment
		case 4:
			return 70_000 // a later match that must not be returned
		}
		return 1000
	}
	var last int64
	for i := range 12 {
		b := makeBatch(batchSpec{records: 10, valSize: 30, ts: ts(i), pid: -1, seq: -1})
		last = mustAppend(t, l, b).LastOffset
	}
	waitDurable(t, l, last)
	bases := segmentBases(l)
	if len(bases) < 4 || bases[1] != 20 || bases[2] != 40 {
		t.Fatalf("segments %v, want 2 batches (20 offsets) each", bases)
	}
	// Start inside segment 0, after its 50000 batch: the first candidate
	// (max timestamp 50000) no longer holds a match.
	if err := l.SetStartOffset(10); err != nil {
		t.Fatal(err)
	}
	// While segment 0 is being scanned, the start moves to segment 1.
	fsys.path = filepath.Join("/d", fileName(bases[0], logSuffix))
	fsys.hook = func() {
		if err := l.SetStartOffset(bases[1]); err != nil {
			t.Errorf("SetStartOffset: %v", err)
		}
	}
	off, got, ok, err := l.OffsetForTimestamp(40_000)
	if err != nil || !ok || off != 20 || got != 60_000 {
		t.Fatalf("OffsetForTimestamp(40000) = %d@%d %v %v, want 20@60000", off, got, ok, err)
	}
}

// TestDeletedSegmentsNotRetained: segments deleted by retention (with their
// in-memory indexes, megabytes for a full segment) must become garbage, not
// stay reachable through the backing array of the segment list.
func TestDeletedSegmentsNotRetained(t *testing.T) {
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{SegmentBytes: 1024}, Options{})
	defer l.Close()
	fillSegments(t, l, 12)
	l.mu.Lock()
	first := weak.Make(l.mu.segments[0])
	second := l.mu.segments[1].base
	l.mu.Unlock()
	if err := l.SetStartOffset(second); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		runtime.GC()
	}
	if first.Value() != nil {
		t.Fatal("a deleted segment is still reachable")
	}
}

// TestReadAllocationsPerBatch: a Read of many batches allocates a constant
// number of times (the result buffer and a few fixed ones), not once per
// batch walked.
func TestReadAllocationsPerBatch(t *testing.T) {
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{}, Options{})
	defer l.Close()
	var last int64
	for i := range 64 {
		last = mustAppend(t, l, simpleBatch(1, 10, byte(i))).LastOffset
	}
	waitDurable(t, l, last)
	allocs := testing.AllocsPerRun(20, func() {
		b, err := l.Read(0, 1<<20, last+1)
		if err != nil || len(b) == 0 {
			t.Fatalf("Read: %d bytes, %v", len(b), err)
		}
	})
	if allocs > 8 {
		t.Fatalf("Read of 64 batches made %.0f allocations", allocs)
	}
}
