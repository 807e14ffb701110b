package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGetOrLoadSingleflight(t *testing.T) {
	c := openCache(t, t.TempDir(), 1<<20, Options{})
	want := data("obj", 3, 10000)
	l := newBlockingLoad(want)
	const n = 32
	var wg sync.WaitGroup
	results := make([][]byte, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = c.GetOrLoad(context.Background(), "obj", 3, l.load)
		})
	}
	<-l.started
	eventually(t, "every caller to join the load", func() bool { return c.flights.waiters(chunkKey{"obj", 3}) == n })
	close(l.release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !bytes.Equal(results[i], want) {
			t.Fatalf("caller %d: %d bytes, %v", i, len(results[i]), errs[i])
		}
	}
	if l.Calls() != 1 {
		t.Fatalf("%d loads, want 1", l.Calls())
	}
	// The chunk is written to the cache after the callers have it.
	waitStored(t, c, "obj", 3)
	// The loaded chunk is now cached; further reads do not load.
	b, err := c.GetOrLoad(context.Background(), "obj", 3, func(context.Context) ([]byte, error) {
		t.Fatal("loaded a cached chunk")
		return nil, nil
	})
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("second GetOrLoad: %v", err)
	}
	s := c.Stats()
	if s.Loads != 1 || s.Puts != 1 || s.Hits != 1 || s.Misses != n || s.Joined != n-1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGetOrLoadErrorsAreNotCached(t *testing.T) {
	c := openCache(t, t.TempDir(), 1<<20, Options{})
	boom := errors.New("boom")
	_, err := c.GetOrLoad(context.Background(), "obj", 0, func(context.Context) ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	b, err := c.GetOrLoad(context.Background(), "obj", 0, func(context.Context) ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(b) != "ok" {
		t.Fatalf("retry: %q %v", b, err)
	}
	waitStored(t, c, "obj", 0)
	if s := c.Stats(); s.Loads != 2 || s.LoadErrors != 1 || s.Entries != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGetOrLoadCancelledWaiterDoesNotFailOthers(t *testing.T) {
	c := openCache(t, t.TempDir(), 1<<20, Options{})
	want := data("obj", 0, 100)
	l := newBlockingLoad(want)
	done := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "obj", 0, l.load)
		done <- err
	}()
	<-l.started
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "obj", 0, l.load)
		impatient <- err
	}()
	eventually(t, "the second caller to join", func() bool { return c.flights.waiters(chunkKey{"obj", 0}) == 2 })
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(l.release)
	if err := <-done; err != nil {
		t.Fatalf("patient caller: %v", err)
	}
	if l.ctxErr != nil || l.Calls() != 1 {
		t.Fatalf("load cancelled (%v) or repeated (%d)", l.ctxErr, l.Calls())
	}
}

func TestGetOrLoadLastWaiterLeavingCancelsLoad(t *testing.T) {
	c := openCache(t, t.TempDir(), 1<<20, Options{})
	l := newBlockingLoad(nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "obj", 0, l.load)
		errc <- err
	}()
	<-l.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	eventually(t, "the load to see its context cancelled", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.ctxErr != nil
	})
	// A new caller starts a new load rather than joining the abandoned one.
	l2 := newBlockingLoad([]byte("fresh"))
	close(l2.release)
	b, err := c.GetOrLoad(context.Background(), "obj", 0, l2.load)
	if err != nil || string(b) != "fresh" {
		t.Fatalf("after abandon: %q %v", b, err)
	}
}

func TestContextCancelWhileWaitingForLoadPool(t *testing.T) {
	pool := NewLoadPool(1)
	c := openCache(t, t.TempDir(), 1<<20, Options{Pool: pool})
	hold := newBlockingLoad([]byte("first"))
	first := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "obj", 0, hold.load)
		first <- err
	}()
	<-hold.started // the only slot is taken
	if pool.InUse() != 1 {
		t.Fatalf("pool in use %d", pool.InUse())
	}

	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	waiting := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "obj", 1, func(context.Context) ([]byte, error) {
			ran.Store(true)
			return []byte("second"), nil
		})
		waiting <- err
	}()
	eventually(t, "the second load to wait for the pool", func() bool { return c.flights.has(chunkKey{"obj", 1}) })
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting caller: %v", err)
	}
	eventually(t, "the abandoned flight to end", func() bool { return !c.flights.has(chunkKey{"obj", 1}) })
	close(hold.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Fatal("the cancelled load ran")
	}
	if s := c.Stats(); s.Loads != 1 {
		t.Fatalf("stats %+v", s)
	}
	eventually(t, "the slot to be released", func() bool { return pool.InUse() == 0 })

	// LoadPool on its own.
	must(t, pool.Acquire(context.Background()))
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := pool.Acquire(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire on a full pool with a cancelled ctx: %v", err)
	}
	pool.Release()
}

func TestLoadPoolBoundsConcurrentLoads(t *testing.T) {
	const slots = 3
	c := openCache(t, t.TempDir(), 1<<30, Options{MaxConcurrentLoads: slots})
	var running, peak atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := c.GetOrLoad(context.Background(), "obj", i, func(context.Context) ([]byte, error) {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				<-release
				running.Add(-1)
				return []byte{byte(i)}, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, "the pool to fill", func() bool { return running.Load() == slots })
	close(release)
	wg.Wait()
	if peak.Load() != slots {
		t.Fatalf("peak concurrent loads %d, want %d", peak.Load(), slots)
	}
}

// TestConcurrentUse drives random Get/GetOrLoad/Put/Prefetch/Shrink from
// many goroutines on a small cache (run with -race) and checks that every
// byte served is the chunk asked for and the limit holds.
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	const n = 2000
	limit := 8 * entrySize("obj-0", n)
	c := openCache(t, dir, limit, Options{MaxConcurrentLoads: 4, PrefetchQueue: 4})
	var wg sync.WaitGroup
	var loads atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				key := fmt.Sprintf("obj-%d", rng.IntN(3))
				idx := rng.IntN(8)
				want := data(key, idx, n)
				load := func(context.Context) ([]byte, error) { loads.Add(1); return data(key, idx, n), nil }
				switch op := rng.IntN(10); {
				case op < 4:
					if b, ok := c.Get(key, idx); ok && !bytes.Equal(b, want) {
						t.Errorf("Get(%s, %d): wrong bytes", key, idx)
					}
				case op < 7:
					b, err := c.GetOrLoad(context.Background(), key, idx, load)
					if err != nil || !bytes.Equal(b, want) {
						t.Errorf("GetOrLoad(%s, %d): %v", key, idx, err)
					}
				case op < 8:
					if err := c.Put(key, idx, want); err != nil {
						t.Error(err)
					}
				case op < 9:
					c.Prefetch(key, idx, load)
				default:
					c.Shrink(int64(rng.IntN(int(limit))))
				}
				if s := c.Stats(); s.Bytes > limit {
					t.Errorf("%d bytes cached, limit %d", s.Bytes, limit)
				}
			}
		})
	}
	wg.Wait()
	c.Close()
	if _, total := entryFiles(t, dir); total > limit {
		t.Fatalf("%d bytes on disk, limit %d", total, limit)
	}
	c2 := openCache(t, dir, limit, Options{})
	c2.mu.Lock()
	keys := make([]chunkKey, 0, len(c2.mu.m))
	for k := range c2.mu.m {
		keys = append(keys, k)
	}
	c2.mu.Unlock()
	for _, k := range keys {
		wantHit(t, c2, k.key, int(k.idx), data(k.key, int(k.idx), n))
	}
	t.Logf("loads %d, stats %+v", loads.Load(), c.Stats())
}
