package tier

import (
	"testing"
	"time"

	"github.com/strata-io/strata/tier/objstore/mem"
)

// TestUploadAndGCDuringRemoteCompaction: a compaction pass does its object
// I/O without the partition's work lock, so an upload completes while a
// (rate-limited, long) pass is still running, GC during the pass does not
// take its fresh objects for orphans even past the grace period, and the
// pass still publishes: the manifest then holds the compacted run and the
// new upload.
func TestUploadAndGCDuringRemoteCompaction(t *testing.T) {
	e := newCompactEnv(t, mem.New(), 6, 40, 150)
	opts := compactCfg(time.Hour)
	opts.RateLimit = 16 << 10 // seconds for this history
	done := make(chan error, 1)
	go func() {
		_, err := e.p.Compact(e.ctx, opts)
		done <- err
	}()
	// Wait (bounded) until the pass has uploaded an object.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		e.p.mu.Lock()
		n := len(e.p.mu.rewriting)
		e.p.mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the pass ended (%v) before uploading anything: make it slower", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the pass uploaded nothing in 30 s")
		}
	}
	e.g.appendTo(t, e.l, 20, false)
	if _, err := e.l.Roll(); err != nil {
		t.Fatal(err)
	}
	before := e.p.RemoteEndOffset()
	if _, err := e.p.Upload(e.ctx, e.l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(e.clock.Now().Add(2 * compactGrace)) // the pass's objects are "old"
	if _, err := e.p.GC(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the upload waited for the whole compaction pass (pass: %v)", err)
	default:
	}
	if e.p.RemoteEndOffset() <= before {
		t.Fatalf("upload during the pass did not move the remote end (%d)", before)
	}
	if err := <-done; err != nil {
		t.Fatalf("compaction: %v", err)
	}
	m := e.p.Manifest()
	if m.CleanerPoint == 0 || m.EndOffset() <= before {
		t.Fatalf("after the pass: cleaner point %d, end %d (upload reached %d)", m.CleanerPoint, m.EndOffset(), before)
	}
	for _, en := range m.Entries {
		if _, err := e.store.Stat(e.ctx, en.Key); err != nil {
			t.Fatalf("the manifest names %s: %v", en.Key, err)
		}
	}
}
