package cache

import (
	"context"
	"sync"
)

// group runs one call per key at a time and hands its result to every
// caller that asks for the key meanwhile (singleflight).
//
// The call runs in its own goroutine, with a context that keeps the first
// caller's values but not its deadline or cancellation: it is cancelled
// when every caller waiting for the result has given up, so one impatient
// caller does not fail the others, and a load nobody wants any more stops.
// After the call returns, its result goes to the waiters first, then the
// group's store function runs (e.g. writing the chunk to disk) while the
// call stays registered, so that callers arriving in between get the
// result instead of starting a second load.
type group[K comparable, V any] struct {
	// store, if set, runs after each successful call, before the call is
	// forgotten.
	store func(K, V, *call[V])

	mu sync.Mutex
	m  map[K]*call[V]
}

// call is one execution of a group's function.
type call[V any] struct {
	done   chan struct{} // closed when val and err are set
	stored chan struct{} // closed after store ran and the call left the map
	val    V
	err    error
	cancel context.CancelFunc

	// Guarded by group.mu.
	waiters   int
	abandoned bool // every waiter left before the result; not in the map
	// prefetch: started by a prefetch and not yet joined by a demand
	// reader (ChunkCache's prefetch-used counter).
	prefetch bool
}

// has reports whether a call for key is running.
func (g *group[K, V]) has(key K) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.m[key]
	return ok
}

// do returns the result of fn for key, starting fn unless a call for key
// is already running, and waiting for it until ctx ends. joined reports
// whether the caller shared a call someone else started; wasPrefetch that
// it was the first demand caller to join a prefetch's call. The returned
// call lets the caller wait for stored.
func (g *group[K, V]) do(ctx context.Context, key K, prefetch bool, fn func(context.Context) (V, error)) (v V, c *call[V], joined, wasPrefetch bool, err error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[K]*call[V])
	}
	c, joined = g.m[key]
	if joined {
		if c.prefetch && !prefetch {
			c.prefetch, wasPrefetch = false, true
		}
	} else {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call[V]{done: make(chan struct{}), stored: make(chan struct{}), cancel: cancel, prefetch: prefetch}
		g.m[key] = c
		go g.run(fctx, key, c, fn)
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
	default:
		select {
		case <-c.done:
		case <-ctx.Done():
			g.leave(key, c)
			return v, c, joined, wasPrefetch, ctx.Err()
		}
	}
	g.mu.Lock()
	c.waiters--
	g.mu.Unlock()
	return c.val, c, joined, wasPrefetch, c.err
}

// leave records that a waiter gave up; the last one out cancels the call.
func (g *group[K, V]) leave(key K, c *call[V]) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if c.waiters > 0 || c.abandoned {
		return
	}
	select {
	case <-c.done:
		return // finished anyway; let it store
	default:
	}
	c.abandoned = true
	if g.m[key] == c {
		delete(g.m, key)
	}
	c.cancel()
}

func (g *group[K, V]) run(ctx context.Context, key K, c *call[V], fn func(context.Context) (V, error)) {
	defer close(c.stored)
	defer c.cancel()
	v, err := fn(ctx)
	c.val, c.err = v, err
	if err != nil {
		// Failures are not shared with callers arriving later: they retry.
		g.mu.Lock()
		if g.m[key] == c {
			delete(g.m, key)
		}
		g.mu.Unlock()
	}
	close(c.done)
	if err == nil && g.store != nil {
		g.store(key, v, c)
	}
	g.mu.Lock()
	if g.m[key] == c {
		delete(g.m, key)
	}
	g.mu.Unlock()
}

// takePrefetch reports whether c was started by a prefetch and not yet
// joined by a demand reader, and clears that, so the prefetch is counted as
// used at most once.
func (g *group[K, V]) takePrefetch(c *call[V]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := c.prefetch
	c.prefetch = false
	return p
}

// waiters returns the number of callers waiting for key's call.
func (g *group[K, V]) waiters(key K) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.m[key]; ok {
		return c.waiters
	}
	return 0
}
