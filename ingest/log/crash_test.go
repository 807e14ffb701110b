package log

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// TestPowerLossLoop appends from several producers that each wait for
// durability, crashes the file system at a random moment, recovers, and
// checks that every acknowledged batch survived intact and in order, that no
// torn batch is served, and that the log takes appends again.
func TestPowerLossLoop(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 40
	}
	rng := rand.New(rand.NewPCG(42, 7))
	cfg := Config{SegmentBytes: 2048, IndexIntervalBytes: 256}
	for it := range iterations {
		seed := rng.Uint64()
		powerLossOnce(t, it, seed, cfg)
	}
}

func powerLossOnce(t *testing.T, it int, seed uint64, cfg Config) {
	rng := rand.New(rand.NewPCG(seed, 1))
	fsys := vfs.NewCrashFS()
	syncer := NewSyncer(quietLogger(), 2)
	defer syncer.Close()
	l := mustOpen(t, fsys, "/data/p", cfg, Options{Syncer: syncer})

	var mu sync.Mutex
	acked := map[int64][]byte{} // base offset -> batch bytes, acknowledged durable
	crashed := false
	var wg sync.WaitGroup
	const writers = 3
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				b := simpleBatch(1+(i+w)%4, 20+(i*7+w)%60, byte(w*50+i))
				res, err := l.Append(b, AppendInfo{LeaderEpoch: 3})
				if err != nil {
					return
				}
				if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
					return
				}
				mu.Lock()
				if !crashed {
					acked[res.BaseOffset] = b // b was patched in place by Append
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
	mu.Lock()
	clone := fsys.CrashClone(rng)
	crashed = true
	want := make(map[int64][]byte, len(acked))
	for k, v := range acked {
		want[k] = v
	}
	mu.Unlock()
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("iteration %d: close: %v", it, err)
	}

	r := mustOpen(t, clone, "/data/p", cfg, Options{Syncer: syncer})
	if it%20 == 0 {
		t.Logf("iteration %d: %d acked, %d recovered end", it, len(want), r.EndOffset())
	}
	got := readAll(t, r)
	byBase := map[int64][]byte{}
	for _, b := range got {
		h, _ := batch.ParseHeader(b)
		byBase[h.BaseOffset] = b
	}
	for off, b := range want {
		if !bytes.Equal(byBase[off], b) {
			t.Fatalf("iteration %d (seed %d): acknowledged batch at %d lost or changed after recovery (%d batches recovered, %d acked)",
				it, seed, off, len(got), len(want))
		}
	}
	res, err := r.Append(simpleBatch(2, 10, 1), AppendInfo{LeaderEpoch: 4})
	if err != nil {
		t.Fatalf("iteration %d: append after recovery: %v", it, err)
	}
	waitDurable(t, r, res.LastOffset)
	if res.BaseOffset != r.EndOffset()-2 {
		t.Fatalf("iteration %d: append after recovery at %d, end %d", it, res.BaseOffset, r.EndOffset())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTornTailTruncated writes garbage after the last batch and checks that
// recovery truncates exactly it.
func TestTornTailTruncated(t *testing.T) {
	for _, garbage := range [][]byte{{1, 2, 3}, bytes.Repeat([]byte{0xff}, 100), simpleBatch(3, 10, 1)[:70]} {
		fsys := vfs.NewCrashFS()
		l := mustOpen(t, fsys, "/d", Config{}, Options{})
		res := mustAppend(t, l, simpleBatch(3, 10, 1))
		l.Close()
		f, err := fsys.OpenFile("/d/00000000000000000000.log", 0x401 /* O_WRONLY|O_APPEND */, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(garbage)
		f.Close()
		l = mustOpen(t, fsys, "/d", Config{}, Options{})
		if l.EndOffset() != res.LastOffset+1 {
			t.Fatalf("end %d after recovery, want %d", l.EndOffset(), res.LastOffset+1)
		}
		if got := readAll(t, l); len(got) != 1 {
			t.Fatalf("%d batches after recovery", len(got))
		}
		mustAppend(t, l, simpleBatch(1, 1, 1))
		if got := readAll(t, l); len(got) != 2 {
			t.Fatalf("%d batches after append", len(got))
		}
		l.Close()
	}
}

func TestStickyErrors(t *testing.T) {
	tests := []struct {
		name   string
		inject func(op vfs.Op, path string) error
	}{
		{"ENOSPC on write", func(op vfs.Op, _ string) error {
			if op == vfs.OpWrite || op == vfs.OpCreate {
				return syscall.ENOSPC
			}
			return nil
		}},
		{"EIO on sync", func(op vfs.Op, _ string) error {
			if op == vfs.OpSync {
				return syscall.EIO
			}
			return nil
		}},
		{"EIO on dir sync", func(op vfs.Op, _ string) error {
			if op == vfs.OpSyncDir {
				return syscall.EIO
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := vfs.NewCrashFS()
			cfg := Config{SegmentBytes: 1024}
			l := mustOpen(t, fsys, "/d", cfg, Options{})
			var want [][]byte
			var last int64
			for i := range 20 {
				b := simpleBatch(2, 40, byte(i))
				last = mustAppend(t, l, b).LastOffset
				want = append(want, b)
			}
			waitDurable(t, l, last)
			durable := l.DurableOffset()

			fsys.InjectError(tt.inject)
			var err error
			for i := 0; i < 50 && err == nil; i++ { // rolls make every fault reachable
				var res AppendResult
				res, err = l.Append(simpleBatch(2, 40, 99), AppendInfo{})
				if err == nil {
					err = l.WaitDurable(context.Background(), res.LastOffset)
				}
			}
			if !errors.Is(err, ErrStorage) {
				t.Fatalf("got %v, want ErrStorage", err)
			}
			fsys.InjectError(nil)
			if _, err := l.Append(simpleBatch(1, 1, 1), AppendInfo{}); !errors.Is(err, ErrStorage) {
				t.Fatalf("append after fault removed: %v, want sticky ErrStorage", err)
			}
			if l.Err() == nil {
				t.Fatal("Err() is nil after a fault")
			}
			if l.DurableOffset() < durable {
				t.Fatal("durable offset went back")
			}
			// Durable data is still readable.
			b, err := l.Read(0, 1<<20, l.DurableOffset())
			if err != nil || len(b) == 0 {
				t.Fatalf("read after fault: %d bytes, %v", len(b), err)
			}
			l.Close()

			r := mustOpen(t, fsys.CrashClone(rand.New(rand.NewPCG(1, 2))), "/d", cfg, Options{})
			defer r.Close()
			got := readAll(t, r)
			if len(got) < len(want) {
				t.Fatalf("recovered %d batches, want at least %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("durable batch %d changed", i)
				}
			}
			res := mustAppend(t, r, simpleBatch(1, 1, 1))
			waitDurable(t, r, res.LastOffset)
		})
	}
}

func TestDiskFullNotSticky(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{MinFreeBytes: 1 << 20}, Options{})
	defer l.Close()
	fsys.SetFreeSpace(1 << 30)
	// The first append checks (nothing appended since open counts as due).
	l.mu.Lock()
	l.mu.sinceSpace = spaceCheckBytes
	l.mu.Unlock()
	mustAppend(t, l, simpleBatch(1, 10, 1))
	fsys.SetFreeSpace(1000)
	l.mu.Lock()
	l.mu.sinceSpace = spaceCheckBytes
	l.mu.Unlock()
	if _, err := l.Append(simpleBatch(1, 10, 1), AppendInfo{}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("got %v, want ErrDiskFull", err)
	}
	if _, err := l.Append(simpleBatch(1, 10, 1), AppendInfo{}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("while still full: %v, want ErrDiskFull", err)
	}
	if l.Err() != nil {
		t.Fatalf("disk full made the log fail: %v", l.Err())
	}
	fsys.SetFreeSpace(1 << 30)
	res := mustAppend(t, l, simpleBatch(1, 10, 1))
	if res.BaseOffset != 1 {
		t.Fatalf("append after space freed at %d, want 1", res.BaseOffset)
	}
}
