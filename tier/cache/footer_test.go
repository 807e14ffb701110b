package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/tier/segment"
)

func TestFooterCache(t *testing.T) {
	obj := buildSegment(t, 200, 16<<10)
	fc := NewFooterCache(1<<20, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	readers := make([]*segment.Reader, 16)
	for i := range readers {
		wg.Go(func() {
			r, err := fc.Open(ctx, obj.store, obj.key, obj.size)
			if err != nil {
				t.Error(err)
			}
			readers[i] = r
		})
	}
	wg.Wait()
	for _, r := range readers {
		if r != readers[0] {
			t.Fatal("callers got different readers")
		}
	}
	// One or two tail GETs, however many callers raced.
	if g := obj.gets(); g < 1 || g > 2 {
		t.Fatalf("%d GETs to open one footer", g)
	}
	s := fc.Stats()
	if s.Opens != 1 || s.Entries != 1 || s.Bytes != ReaderSize(readers[0])+int64(len(obj.key)) {
		t.Fatalf("stats %+v", s)
	}
	before := obj.gets()
	if r, err := fc.Open(ctx, obj.store, obj.key, obj.size); err != nil || r != readers[0] || obj.gets() != before {
		t.Fatalf("cached open: %v, %d GETs", err, obj.gets()-before)
	}
	fc.Forget(obj.key)
	if s := fc.Stats(); s.Entries != 0 || s.Bytes != 0 {
		t.Fatalf("after Forget: %+v", s)
	}
	// Errors are not cached.
	if _, err := fc.Open(ctx, obj.store, "missing", 100); err == nil {
		t.Fatal("opened a missing object")
	}
	if s := fc.Stats(); s.OpenErrors != 1 || s.Entries != 0 {
		t.Fatalf("after a failed open: %+v", s)
	}
}

func TestFooterCacheEvictsBySize(t *testing.T) {
	obj := buildSegment(t, 50, 4<<10)
	r := obj.open(t)
	size := ReaderSize(r) + int64(len("k0"))
	fc := NewFooterCache(3*size+size/2, nil)
	ctx := context.Background()
	opens := 0
	open := func(context.Context) (*segment.Reader, error) { opens++; return r, nil }
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	for i, k := range keys {
		if _, err := fc.Get(ctx, k, open); err != nil {
			t.Fatal(err)
		}
		// Get hands the footer out before the cache stores it; wait for the
		// store so that the LRU order is the order of the Gets.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if s := fc.Stats(); s.Entries+int(s.Evictions) == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("footer %s not stored: %+v", k, fc.Stats())
			}
		}
		if s := fc.Stats(); s.Bytes > s.Limit {
			t.Fatalf("%d bytes, limit %d", s.Bytes, s.Limit)
		}
	}
	if s := fc.Stats(); s.Entries != 3 || s.Evictions != 2 {
		t.Fatalf("stats %+v", s)
	}
	opens = 0
	for _, k := range []string{"k2", "k3", "k4"} {
		if _, err := fc.Get(ctx, k, open); err != nil {
			t.Fatal(err)
		}
	}
	if opens != 0 {
		t.Fatalf("%d opens of cached footers", opens)
	}
	if _, err := fc.Get(ctx, "k0", open); err != nil || opens != 1 {
		t.Fatalf("evicted footer: %v, %d opens", err, opens)
	}
}

func TestFooterCacheCancelWhileWaitingForPool(t *testing.T) {
	pool := NewLoadPool(1)
	fc := NewFooterCache(1<<20, pool)
	must(t, pool.Acquire(context.Background())) // a chunk load holds the only slot
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := fc.Get(ctx, "k", func(context.Context) (*segment.Reader, error) {
			t.Error("opened without a slot")
			return nil, nil
		})
		errc <- err
	}()
	eventually(t, "the open to wait", func() bool { return fc.flights.waiters("k") == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	pool.Release()
}

// TestFooterCacheCountsAbortedTxns: a footer's aborted-transaction entries
// count in its size, and so in the cache's bound.
func TestFooterCacheCountsAbortedTxns(t *testing.T) {
	const n = 1000
	aborted := make([]index.AbortedTxn, n)
	for i := range aborted {
		aborted[i] = index.AbortedTxn{ProducerID: int64(i), FirstOffset: int64(i), LastOffset: int64(i + 5)}
	}
	plain, txn := buildSegment(t, 200, 16<<10), buildSegmentAborted(t, 200, 16<<10, aborted)
	rp, rt := plain.open(t), txn.open(t)
	if len(rt.Footer().Aborted) != n || rp.Footer().Aborted != nil {
		t.Fatalf("setup: %d and %d aborted entries", len(rp.Footer().Aborted), len(rt.Footer().Aborted))
	}
	if d := ReaderSize(rt) - ReaderSize(rp); d != n*24 {
		t.Fatalf("%d aborted entries add %d bytes to the reader size, want %d", n, d, n*24)
	}
	// A cache too small for the footer with entries keeps only the other.
	fc := NewFooterCache(ReaderSize(rp)+int64(len(plain.key))+n*12, nil)
	ctx := context.Background()
	for _, o := range []*segObject{plain, txn} {
		if _, err := fc.Open(ctx, o.store, o.key, o.size); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []*segObject{plain, txn} {
		eventually(t, "the open to finish", func() bool { return !fc.flights.has(o.key) })
	}
	if s := fc.Stats(); s.Opens != 2 || s.Entries != 1 || s.Bytes != ReaderSize(rp)+int64(len(plain.key)) || s.Evictions != 0 {
		t.Fatalf("stats %+v", s)
	}
	// One large enough holds both, counted exactly.
	fc = NewFooterCache(1<<20, nil)
	for _, o := range []*segObject{plain, txn} {
		if _, err := fc.Open(ctx, o.store, o.key, o.size); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the open to finish", func() bool { return !fc.flights.has(o.key) })
	}
	if s, want := fc.Stats(), ReaderSize(rp)+ReaderSize(rt)+int64(len(plain.key)+len(txn.key)); s.Entries != 2 || s.Bytes != want {
		t.Fatalf("stats %+v, want %d bytes", s, want)
	}
}
