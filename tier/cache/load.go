package cache

import (
	"context"
	"fmt"

	"github.com/strata-io/strata/tier/segment"
)

// GetOrLoad returns chunk idx of the object key from the cache or, on a
// miss, from load, storing what it loads. Concurrent callers for the same
// chunk share one load (singleflight); the load waits for a slot of the
// load pool. A caller whose ctx ends stops waiting and gets an error
// wrapping ctx.Err(); the load goes on for the others and is cancelled
// when no caller is left.
//
// The slice returned may be shared with other callers of the same chunk
// and is being written to the cache: treat it as read-only.
func (c *ChunkCache) GetOrLoad(ctx context.Context, key string, idx int, load LoadFunc) ([]byte, error) {
	k, err := mkKey(key, idx)
	if err != nil {
		return nil, err
	}
	if b, ok := c.get(k, true, true); ok {
		return b, nil
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	v, _, joined, wasPrefetch, err := c.flights.do(ctx, k, false, c.loadFunc(k, load, false))
	if joined {
		c.stats.joined.Add(1)
	}
	if wasPrefetch {
		c.stats.prefetchUsed.Add(1)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: load %s: %w", k, err)
	}
	return v.b, nil
}

// ChunkLoader returns a LoadFunc reading chunk i through r.
func ChunkLoader(r *segment.Reader, i int) LoadFunc {
	return func(ctx context.Context) ([]byte, error) { return r.ReadChunk(ctx, i) }
}

func (c *ChunkCache) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// loadFunc is the singleflight body for chunk k: look again (a call that
// finished just before ours may have stored it), then take a pool slot and
// load.
func (c *ChunkCache) loadFunc(k chunkKey, load LoadFunc, prefetch bool) func(context.Context) (loaded, error) {
	return func(ctx context.Context) (loaded, error) {
		if b, ok := c.get(k, false, !prefetch); ok {
			return loaded{b: b, fromCache: true}, nil
		}
		if err := c.pool.Acquire(ctx); err != nil {
			return loaded{}, err
		}
		defer c.pool.Release()
		c.stats.loads.Add(1)
		b, err := load(ctx)
		if err != nil {
			c.stats.loadErrors.Add(1)
			return loaded{}, err
		}
		c.stats.loadedBytes.Add(int64(len(b)))
		return loaded{b: b}, nil
	}
}

// storeLoaded writes a loaded chunk to the cache (the group's store hook).
func (c *ChunkCache) storeLoaded(k chunkKey, v loaded, cl *call[loaded]) {
	if v.fromCache {
		return
	}
	if hook := c.opts.Loaded; hook != nil {
		hook(k.key, int(k.idx), v.b)
	}
	// A failed write is counted in PutErrors; the reader already has its
	// bytes, and the next reader loads again.
	_ = c.put(k, v.b, c.flights.takePrefetch(cl))
}
