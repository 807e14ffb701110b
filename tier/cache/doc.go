// Package cache is the broker's read cache for remote (tiered) data: what
// sits between a Fetch below the local log start and the object store.
//
// It owns four things:
//
//   - ChunkCache: a bounded on-disk cache of decompressed chunks (the raw
//     record batches that segment.Reader.ReadChunk returns), keyed by
//     (object key, chunk index), evicted least recently used first by bytes.
//     Every entry carries its length and CRC-32C; an entry that does not
//     verify is a miss and is deleted, never served.
//   - Singleflight loading (ChunkCache.GetOrLoad, FooterCache.Get):
//     concurrent readers of one chunk or footer cause one remote load.
//   - Read-ahead (ChunkCache.Prefetch, ChunkCache.ReadChunk): asynchronous
//     loads of the next chunks for sequential readers on a small worker pool
//     with a bounded queue; a prefetch that does not fit is dropped, never
//     waited for.
//   - LoadPool: a bound on concurrent remote loads, so cold reads wait
//     (respecting their context) instead of piling up goroutines and
//     buffers.
//
// FooterCache keeps opened segment readers (their decoded footers) in
// memory, bounded by an estimate of their size.
//
// The package does no object-store I/O of its own except through the load
// functions callers hand it (StoreFetch adapts an objstore.Store), and knows
// nothing of manifests, partitions or Kafka requests.
//
// Locking: ChunkCache.mu guards the chunk index and LRU list, ChunkCache.pmu
// the prefetch queue, FooterCache.mu the footer LRU, and each singleflight
// group its own mutex. No two of them are ever held together, and none is
// held across file or network I/O: Get copies what it needs from the index
// under the lock and reads the file after unlocking; Put reserves room and
// picks victims under the lock, then deletes and writes without it.
package cache
