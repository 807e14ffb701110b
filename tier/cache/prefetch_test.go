package cache

import (
	"bytes"
	"context"
	"testing"
)

// prefetchDone is one PrefetchDone call.
type prefetchDone struct {
	key string
	idx int
	err error
}

func withDoneChan(opts Options) (Options, chan prefetchDone) {
	ch := make(chan prefetchDone, 1024)
	opts.PrefetchDone = func(key string, idx int, err error) { ch <- prefetchDone{key, idx, err} }
	return opts, ch
}

func TestReadChunkPrefetchesSequential(t *testing.T) {
	obj := buildSegment(t, 400, 16<<10)
	r := obj.open(t)
	nChunks := len(r.Footer().Chunks)
	if nChunks < 6 {
		t.Fatalf("object has %d chunks, want at least 6", nChunks)
	}
	opts, done := withDoneChan(Options{ReadAhead: 2})
	c := openCache(t, t.TempDir(), 1<<30, opts)
	ctx := context.Background()
	obj.store.Reset()

	// Chunk 0, then a re-read of it: not sequential, nothing prefetched.
	for range 2 {
		if _, err := c.ReadChunk(ctx, obj.key, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.PrefetchIssued != 0 || obj.gets() != 1 {
		t.Fatalf("after chunk 0: %+v, %d GETs", s, obj.gets())
	}
	// Chunk 1 follows chunk 0: chunks 2 and 3 are prefetched.
	if _, err := c.ReadChunk(ctx, obj.key, r, 1); err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for range 2 {
		d := <-done
		if d.err != nil || d.key != obj.key {
			t.Fatalf("prefetch %+v", d)
		}
		got[d.idx] = true
	}
	if !got[2] || !got[3] {
		t.Fatalf("prefetched %v, want chunks 2 and 3", got)
	}
	gets := obj.gets()
	if gets != 4 {
		t.Fatalf("%d GETs, want 4 (chunks 0-3)", gets)
	}
	// Chunk 2 is now a hit, served without a request; reading it prefetches 4.
	raw, err := c.ReadChunk(ctx, obj.key, r, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, err := r.ReadChunk(ctx, 2) // one GET, for comparison
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("chunk 2 from the cache differs from the object (%v)", err)
	}
	if d := <-done; d.idx != 4 || d.err != nil {
		t.Fatalf("prefetch %+v, want chunk 4", d)
	}
	if g := obj.gets(); g != gets+2 {
		t.Fatalf("%d GETs after reading chunk 2, want %d (the comparison read and chunk 4)", g, gets+2)
	}
	s := c.Stats()
	if s.PrefetchIssued != 3 || s.PrefetchUsed != 1 || s.PrefetchDropped != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Read on to the end: every chunk is fetched exactly once (plus the
	// comparison read), however demand reads and prefetches interleave, and
	// nothing past the last chunk is asked for.
	for i := 3; i < nChunks; i++ {
		raw, err := c.ReadChunk(ctx, obj.key, r, i)
		if err != nil {
			t.Fatal(err)
		}
		if first, _ := r.Locate(r.Footer().Chunks[i].FirstOffset); first != i || len(raw) != int(r.Footer().Chunks[i].RawLen) {
			t.Fatalf("chunk %d: %d bytes", i, len(raw))
		}
	}
	drainPrefetches(t, c)
	if g := obj.gets(); g != int64(nChunks)+1 {
		t.Fatalf("%d GETs for %d chunks, want %d", g, nChunks, nChunks+1)
	}
	s = c.Stats()
	if s.Entries != nChunks || s.LoadErrors != 0 {
		t.Fatalf("stats after the sequential read: %+v", s)
	}
	t.Logf("%d chunks: %+v", nChunks, s)
}

// drainPrefetches waits until no prefetch is queued or running.
func drainPrefetches(t testing.TB, c *ChunkCache) {
	t.Helper()
	eventually(t, "prefetch workers to finish", func() bool {
		c.pmu.Lock()
		defer c.pmu.Unlock()
		return c.pmu.active == 0
	})
}

func TestPrefetchQueueFullDrops(t *testing.T) {
	opts, done := withDoneChan(Options{PrefetchWorkers: 1, PrefetchQueue: 1})
	c := openCache(t, t.TempDir(), 1<<20, opts)
	a, b, x := newBlockingLoad([]byte("a")), newBlockingLoad([]byte("b")), newBlockingLoad([]byte("x"))
	if !c.Prefetch("obj", 0, a.load) {
		t.Fatal("first prefetch not queued")
	}
	<-a.started // the one worker is busy
	if !c.Prefetch("obj", 1, b.load) {
		t.Fatal("second prefetch not queued")
	}
	// The queue is full: dropped at once, not waited for.
	if c.Prefetch("obj", 2, x.load) {
		t.Fatal("third prefetch queued past the bound")
	}
	// Already queued or running: not queued again, not dropped either.
	if c.Prefetch("obj", 1, b.load) || c.Prefetch("obj", 0, a.load) {
		t.Fatal("duplicate prefetch queued")
	}
	s := c.Stats()
	if s.PrefetchIssued != 2 || s.PrefetchDropped != 1 {
		t.Fatalf("stats %+v", s)
	}
	close(a.release)
	close(b.release)
	for _, want := range []int{0, 1} {
		if d := <-done; d.idx != want || d.err != nil {
			t.Fatalf("prefetch done %+v, want chunk %d", d, want)
		}
	}
	wantHit(t, c, "obj", 0, []byte("a"))
	wantHit(t, c, "obj", 1, []byte("b"))
	wantMiss(t, c, "obj", 2)
	if x.Calls() != 0 {
		t.Fatal("dropped prefetch ran")
	}
	// A cached chunk is not prefetched.
	if c.Prefetch("obj", 0, a.load) {
		t.Fatal("cached chunk queued")
	}
	if s := c.Stats(); s.PrefetchUsed != 2 {
		t.Fatalf("PrefetchUsed %d, want 2", s.PrefetchUsed)
	}
}

func TestDemandReadJoinsPrefetch(t *testing.T) {
	opts, done := withDoneChan(Options{})
	c := openCache(t, t.TempDir(), 1<<20, opts)
	l := newBlockingLoad([]byte("chunk"))
	c.Prefetch("obj", 5, l.load)
	<-l.started
	res := make(chan []byte)
	go func() {
		b, err := c.GetOrLoad(context.Background(), "obj", 5, func(context.Context) ([]byte, error) {
			t.Error("demand read loaded again")
			return nil, nil
		})
		if err != nil {
			t.Error(err)
		}
		res <- b
	}()
	eventually(t, "the demand read to join", func() bool { return c.flights.waiters(chunkKey{"obj", 5}) == 2 })
	close(l.release)
	if b := <-res; string(b) != "chunk" {
		t.Fatalf("got %q", b)
	}
	<-done
	s := c.Stats()
	if s.Loads != 1 || s.PrefetchUsed != 1 || s.Joined != 1 {
		t.Fatalf("stats %+v", s)
	}
	wantHit(t, c, "obj", 5, []byte("chunk"))
	if s := c.Stats(); s.PrefetchUsed != 1 {
		t.Fatalf("prefetch counted as used twice: %+v", s)
	}
}

func TestPrefetchOffAndClose(t *testing.T) {
	c := openCache(t, t.TempDir(), 1<<20, Options{PrefetchWorkers: -1})
	if c.Prefetch("obj", 0, newBlockingLoad(nil).load) {
		t.Fatal("prefetch queued with prefetching off")
	}
	opts, done := withDoneChan(Options{})
	c2, err := Open(t.TempDir(), 1<<20, opts)
	if err != nil {
		t.Fatal(err)
	}
	l := newBlockingLoad(nil)
	c2.Prefetch("obj", 0, l.load)
	<-l.started
	c2.Close() // cancels the running prefetch and waits for its worker
	if d := <-done; d.err == nil {
		t.Fatal("prefetch cut short by Close reported no error")
	}
	if c2.Prefetch("obj", 1, l.load) {
		t.Fatal("prefetch queued after Close")
	}
	if _, err := c2.GetOrLoad(context.Background(), "obj", 1, l.load); err != ErrClosed {
		t.Fatalf("GetOrLoad after Close: %v", err)
	}
}

func TestSeqTracker(t *testing.T) {
	tr := seqTracker{max: 2}
	steps := []struct {
		key  string
		idx  int
		want bool
	}{
		{"a", 0, false}, {"a", 0, false}, {"a", 1, true}, {"a", 1, true}, {"a", 5, false},
		{"a", 2, true}, {"a", 6, true}, {"b", 3, false}, {"b", 4, true},
		{"c", 0, false}, // evicts "a" (bound 2)
		{"a", 3, false},
	}
	for i, s := range steps {
		if got := tr.record(s.key, s.idx); got != s.want {
			t.Fatalf("step %d: record(%s, %d) = %v, want %v", i, s.key, s.idx, got, s.want)
		}
	}
	if len(tr.m) != 2 {
		t.Fatalf("%d keys tracked, bound 2", len(tr.m))
	}
}
