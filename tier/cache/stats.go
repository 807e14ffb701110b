package cache

import "sync/atomic"

// Stats is a snapshot of a ChunkCache's counters (cumulative since Open)
// and gauges.
type Stats struct {
	Hits     int64 // Get/GetOrLoad/ReadChunk served from disk
	HitBytes int64
	Misses   int64 // lookups the cache could not serve (including corrupt entries)

	Loads       int64 // remote loads run (demand and prefetch)
	LoadErrors  int64
	LoadedBytes int64
	Joined      int64 // GetOrLoad callers that shared a load already running

	Puts      int64 // entries written
	PutBytes  int64 // data bytes written
	PutErrors int64 // writes that failed (e.g. disk full)
	Skipped   int64 // chunks not cached: larger than the limit or no room left by writers

	Evictions    int64 // entries evicted (LRU, Shrink, SetLimit, Open over the limit)
	EvictedBytes int64
	Corrupt      int64 // entries that failed verification and were deleted
	ReadErrors   int64 // entries that could not be read (I/O errors) and were dropped

	PrefetchIssued  int64 // prefetches queued
	PrefetchDropped int64 // prefetches dropped because the queue was full
	PrefetchUsed    int64 // prefetched chunks later read by a demand reader

	Entries int   // entries in the index now
	Bytes   int64 // bytes of indexed entries now (file sizes)
	Limit   int64
	Loading int // load-pool slots in use now
}

type counters struct {
	hits, hitBytes, misses                        atomic.Int64
	loads, loadErrors, loadedBytes, joined        atomic.Int64
	puts, putBytes, putErrors, skipped            atomic.Int64
	evictions, evictedBytes, corrupt, readErrors  atomic.Int64
	prefetchIssued, prefetchDropped, prefetchUsed atomic.Int64
}

// Stats returns the cache's counters.
func (c *ChunkCache) Stats() Stats {
	s := Stats{
		Hits: c.stats.hits.Load(), HitBytes: c.stats.hitBytes.Load(), Misses: c.stats.misses.Load(),
		Loads: c.stats.loads.Load(), LoadErrors: c.stats.loadErrors.Load(),
		LoadedBytes: c.stats.loadedBytes.Load(), Joined: c.stats.joined.Load(),
		Puts: c.stats.puts.Load(), PutBytes: c.stats.putBytes.Load(),
		PutErrors: c.stats.putErrors.Load(), Skipped: c.stats.skipped.Load(),
		Evictions: c.stats.evictions.Load(), EvictedBytes: c.stats.evictedBytes.Load(),
		Corrupt: c.stats.corrupt.Load(), ReadErrors: c.stats.readErrors.Load(),
		PrefetchIssued: c.stats.prefetchIssued.Load(), PrefetchDropped: c.stats.prefetchDropped.Load(),
		PrefetchUsed: c.stats.prefetchUsed.Load(),
		Loading:      c.pool.InUse(),
	}
	c.mu.Lock()
	s.Entries, s.Bytes, s.Limit = len(c.mu.m), c.mu.used, c.mu.limit
	c.mu.Unlock()
	return s
}
