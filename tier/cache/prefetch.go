package cache

import (
	"context"

	"github.com/strata-io/strata/tier/segment"
)

// prefetchJob is one queued prefetch.
type prefetchJob struct {
	k    chunkKey
	load LoadFunc
}

// Prefetch schedules an asynchronous load of chunk idx of the object key
// into the cache, and reports whether it was queued. It never blocks: a
// chunk that is cached, being loaded or already queued is not queued again,
// and when the queue is full the prefetch is dropped (counted in
// PrefetchDropped). load runs later, on a prefetch worker, with a context
// that ends at Close.
func (c *ChunkCache) Prefetch(key string, idx int, load LoadFunc) bool {
	k, err := mkKey(key, idx)
	if err != nil || c.maxWorkers == 0 {
		return false
	}
	if c.contains(k) || c.flights.has(k) {
		return false
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pmu.closed {
		return false
	}
	if _, ok := c.pmu.queued[k]; ok {
		return false
	}
	if len(c.pmu.queue) >= c.queueLen {
		c.stats.prefetchDropped.Add(1)
		return false
	}
	c.pmu.queue = append(c.pmu.queue, prefetchJob{k: k, load: load})
	c.pmu.queued[k] = struct{}{}
	c.stats.prefetchIssued.Add(1)
	if c.pmu.active < c.maxWorkers {
		c.pmu.active++
		c.workers.Add(1)
		go c.prefetchWorker()
	}
	return true
}

// prefetchWorker runs queued prefetches until the queue is empty.
func (c *ChunkCache) prefetchWorker() {
	defer c.workers.Done()
	for {
		c.pmu.Lock()
		if len(c.pmu.queue) == 0 || c.pmu.closed {
			c.pmu.active--
			c.pmu.Unlock()
			return
		}
		j := c.pmu.queue[0]
		c.pmu.queue[0] = prefetchJob{}
		c.pmu.queue = c.pmu.queue[1:]
		delete(c.pmu.queued, j.k)
		c.pmu.Unlock()

		err := c.runPrefetch(j)
		if hook := c.opts.PrefetchDone; hook != nil {
			hook(j.k.key, int(j.k.idx), err)
		}
	}
}

// runPrefetch loads one chunk through the singleflight group (joining a
// demand load if there is one) and waits until it is stored.
func (c *ChunkCache) runPrefetch(j prefetchJob) error {
	if c.contains(j.k) {
		return nil
	}
	_, cl, _, _, err := c.flights.do(c.bg, j.k, true, c.loadFunc(j.k, j.load, true))
	if err != nil {
		return err
	}
	<-cl.stored
	return nil
}

// ReadChunk returns chunk i of the segment object key, read through r on a
// miss (GetOrLoad), and keeps read-ahead going (ReadAhead). The slice
// returned is read-only, as for GetOrLoad.
func (c *ChunkCache) ReadChunk(ctx context.Context, key string, r *segment.Reader, i int) ([]byte, error) {
	b, err := c.GetOrLoad(ctx, key, i, ChunkLoader(r, i))
	if err != nil {
		return nil, err
	}
	c.ReadAhead(key, r, i)
	return b, nil
}

// ReadAhead notes a read of chunk i of the segment object key and, when
// chunk i-1 of the same object was read recently (a sequential reader),
// prefetches the next ReadAheadChunks chunks of the object. Chunk 0 never
// counts as sequential (it is where random reads into small objects land);
// a caller that knows the reader is moving on to a new object (from the
// manifest) can Prefetch its first chunks itself. Callers that serve the
// chunk from elsewhere (a memory cache) call it on every read so that
// read-ahead keeps going. It reports whether the read was sequential.
func (c *ChunkCache) ReadAhead(key string, r *segment.Reader, i int) bool {
	if !c.seq.record(key, i) {
		return false
	}
	n := len(r.Footer().Chunks)
	for j := i + 1; j <= i+c.readAhead && j < n; j++ {
		c.Prefetch(key, j, ChunkLoader(r, j))
	}
	return true
}
