package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Defaults for Options.
const (
	DefaultPrefetchWorkers = 4
	DefaultPrefetchQueue   = 64
	DefaultReadAhead       = 4
)

// ErrClosed is returned by GetOrLoad and Put after Close.
var ErrClosed = errors.New("cache: closed")

// LoadFunc loads one chunk's raw batches from the object store (e.g. a
// segment.Reader's ReadChunk). It must honour ctx. The slice it returns
// becomes the cache's: the loader must not touch it afterwards.
type LoadFunc func(ctx context.Context) ([]byte, error)

// Options configure a ChunkCache. The zero value gives the defaults.
type Options struct {
	// Pool bounds concurrent remote loads; share one between caches. Nil:
	// a pool of MaxConcurrentLoads slots of this cache's own.
	Pool *LoadPool
	// MaxConcurrentLoads sizes the cache's own pool when Pool is nil
	// (0: DefaultMaxConcurrentLoads).
	MaxConcurrentLoads int
	// PrefetchWorkers is the number of goroutines that run prefetches
	// (0: DefaultPrefetchWorkers; < 0: prefetching is off). Workers start
	// when there is work and exit when the queue is empty. Prefetches take
	// slots from the same load pool as demand reads, so keep this below
	// the pool size.
	PrefetchWorkers int
	// PrefetchQueue bounds the prefetches waiting for a worker
	// (0: DefaultPrefetchQueue). Prefetch drops what does not fit.
	PrefetchQueue int
	// ReadAhead is how many chunks after the one read ReadChunk prefetches
	// for a sequential reader (0: DefaultReadAhead; < 0: none).
	ReadAhead int
	// PrefetchDone, if set, is called by the prefetch worker after each
	// prefetch it ran, with the load's error (nil also when the chunk was
	// already cached). When it is called without error, the chunk is in
	// the cache (unless it was larger than the limit or failed to write).
	// For tests and metrics; it must not block for long.
	PrefetchDone func(key string, idx int, err error)
	// Loaded, if set, is called with every chunk loaded from the object
	// store (by a demand read or a prefetch) once its readers have it and
	// before it is written to disk, e.g. to keep it in memory for the
	// reader that asked for it ahead of time. b is shared and read-only.
	// It must not block for long.
	Loaded func(key string, idx int, b []byte)
}

// ChunkCache is a bounded on-disk cache of decompressed chunks keyed by
// (object key, chunk index). It is safe for concurrent use.
//
// Bytes are counted as file sizes (data plus a header of 24 bytes plus the
// key), and the bytes of entries in the index plus those of entries being
// written never exceed the limit: a Put makes room (evicting least recently
// used entries and deleting their files) before it writes. Entries larger
// than the limit are not cached.
//
// Reads verify length and CRC-32C; an entry that fails is deleted and
// reported as a miss. Open reloads the entries a previous ChunkCache left in
// the directory (checking their headers and lengths; data CRCs are checked
// on each read), least recently written first in the LRU order, since read
// recency is not persisted. One directory must be used by one ChunkCache at
// a time.
type ChunkCache struct {
	dir        string
	opts       Options
	pool       *LoadPool
	flights    group[chunkKey, loaded]
	seq        seqTracker
	stats      counters
	gen        atomic.Uint64 // last entry file generation handed out
	bg         context.Context
	stop       context.CancelFunc
	workers    sync.WaitGroup
	writes     sync.WaitGroup // Put file writes in progress
	readAhead  int
	queueLen   int
	maxWorkers int

	mu struct {
		sync.Mutex
		limit    int64
		used     int64 // bytes of indexed entries
		reserved int64 // bytes of entries being written
		m        map[chunkKey]*entry
		lru      list.List // of *entry, most recently used at the front
		pending  map[chunkKey]struct{}
		closed   bool
	}

	pmu struct {
		sync.Mutex
		queue  []prefetchJob
		queued map[chunkKey]struct{}
		active int // running workers
		closed bool
	}
}

// entry is one cached chunk in the index.
type entry struct {
	k    chunkKey
	gen  uint64
	size int64 // file size
	elem *list.Element
	// prefetched: written by a prefetch and not yet read.
	prefetched bool
}

// loaded is a singleflight result: the chunk and whether it came from the
// cache rather than the object store (then there is nothing to store).
type loaded struct {
	b         []byte
	fromCache bool
}

// Open opens (creating it if needed) a cache directory with a limit of
// maxBytes, reloading the entries found there. Leftover temporary files and
// entries that do not check out are deleted; if the entries found exceed
// maxBytes, the oldest are evicted.
func Open(dir string, maxBytes int64, opts Options) (*ChunkCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", dir, err)
	}
	c := &ChunkCache{dir: dir, opts: opts, pool: opts.Pool}
	if c.pool == nil {
		c.pool = NewLoadPool(opts.MaxConcurrentLoads)
	}
	c.readAhead = cmpDefault(opts.ReadAhead, DefaultReadAhead)
	c.queueLen = cmpDefault(opts.PrefetchQueue, DefaultPrefetchQueue)
	c.maxWorkers = cmpDefault(opts.PrefetchWorkers, DefaultPrefetchWorkers)
	c.bg, c.stop = context.WithCancel(context.Background())
	c.flights.store = c.storeLoaded
	c.seq.max = seqTrackedObjects
	c.mu.limit = max(maxBytes, 0)
	c.mu.m = make(map[chunkKey]*entry)
	c.mu.pending = make(map[chunkKey]struct{})
	c.pmu.queued = make(map[chunkKey]struct{})
	if err := c.reload(); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// cmpDefault maps 0 to def and negative values to 0.
func cmpDefault(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// reload indexes the entries in the directory.
func (c *ChunkCache) reload() error {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("cache: open %s: %w", c.dir, err)
	}
	var found []*entry
	var maxGen uint64
	for _, de := range des {
		name := de.Name()
		path := filepath.Join(c.dir, name)
		if strings.HasSuffix(name, tmpSuffix) {
			removeFile(path) // a write cut short by a crash
			continue
		}
		gen, ok := parseEntryName(name)
		if !ok || !de.Type().IsRegular() {
			continue // not ours; leave it alone
		}
		maxGen = max(maxGen, gen)
		h, err := readHeader(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing (a late eviction)
		}
		if err != nil {
			if !errors.Is(err, errCorruptEntry) {
				return fmt.Errorf("cache: open %s: %w", c.dir, err)
			}
			c.stats.corrupt.Add(1)
			removeFile(path)
			continue
		}
		found = append(found, &entry{k: h.k, gen: gen, size: h.hdrLen + h.dataLen})
	}
	c.gen.Store(maxGen)
	// Newest first; a key written twice (not possible through Put, but
	// cheap to handle) keeps its newest file.
	slices.SortFunc(found, func(a, b *entry) int { return -cmpUint(a.gen, b.gen) })
	c.mu.Lock()
	for _, e := range found {
		if _, dup := c.mu.m[e.k]; dup {
			removeFile(filepath.Join(c.dir, entryName(e.gen)))
			continue
		}
		e.elem = c.mu.lru.PushBack(e)
		c.mu.m[e.k] = e
		c.mu.used += e.size
	}
	victims := c.evictLocked(c.mu.limit)
	c.mu.Unlock()
	c.removeVictims(victims)
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func mkKey(key string, idx int) (chunkKey, error) {
	if key == "" || len(key) > maxKeyLen || idx < 0 || int64(idx) > math.MaxUint32 {
		return chunkKey{}, fmt.Errorf("cache: invalid chunk key %q #%d", key, idx)
	}
	return chunkKey{key: key, idx: uint32(idx)}, nil
}

// Get returns chunk idx of the object key if the cache holds it and it
// verifies. The slice is the caller's.
func (c *ChunkCache) Get(key string, idx int) ([]byte, bool) {
	k, err := mkKey(key, idx)
	if err != nil {
		return nil, false
	}
	return c.get(k, true, true)
}

// Contains reports whether the index holds the chunk, without reading it.
func (c *ChunkCache) Contains(key string, idx int) bool {
	k, err := mkKey(key, idx)
	return err == nil && c.contains(k)
}

func (c *ChunkCache) contains(k chunkKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.mu.m[k]
	return ok
}

// get reads an entry: the index under the lock, the file outside it.
// count: update the hit/miss counters; consume: this read uses a
// prefetched entry (clears its flag, counts PrefetchUsed).
func (c *ChunkCache) get(k chunkKey, count, consume bool) ([]byte, bool) {
	c.mu.Lock()
	e := c.mu.m[k]
	if e == nil || c.mu.closed {
		c.mu.Unlock()
		if count {
			c.stats.misses.Add(1)
		}
		return nil, false
	}
	c.mu.lru.MoveToFront(e.elem)
	gen, size := e.gen, e.size
	prefetched := consume && e.prefetched
	if prefetched {
		e.prefetched = false
	}
	c.mu.Unlock()

	b, err := readEntry(c.dir, gen, k, size)
	if err != nil {
		// Missing (evicted since we looked, or deleted behind our back),
		// corrupt or unreadable: a miss either way, and an entry that
		// cannot be read goes.
		if errors.Is(err, errCorruptEntry) {
			c.stats.corrupt.Add(1)
		} else if !errors.Is(err, fs.ErrNotExist) {
			c.stats.readErrors.Add(1)
		}
		c.drop(k, gen)
		if count {
			c.stats.misses.Add(1)
		}
		return nil, false
	}
	if count {
		c.stats.hits.Add(1)
		c.stats.hitBytes.Add(int64(len(b)))
	}
	if prefetched {
		c.stats.prefetchUsed.Add(1)
	}
	return b, true
}

// drop removes entry gen of k from the index, if it is still there, and
// deletes its file.
func (c *ChunkCache) drop(k chunkKey, gen uint64) {
	c.mu.Lock()
	e := c.mu.m[k]
	if e == nil || e.gen != gen {
		c.mu.Unlock()
		return
	}
	c.removeLocked(e)
	c.mu.Unlock()
	removeFile(filepath.Join(c.dir, entryName(gen)))
}

func (c *ChunkCache) removeLocked(e *entry) {
	c.mu.lru.Remove(e.elem)
	delete(c.mu.m, e.k)
	c.mu.used -= e.size
}

// Put stores chunk idx of the object key. It does nothing if the chunk is
// cached or being stored already, or is larger than the limit. Errors
// (e.g. a full disk) leave the cache as it was; callers may ignore them,
// the cache being only a cache. Put does not keep raw.
func (c *ChunkCache) Put(key string, idx int, raw []byte) error {
	k, err := mkKey(key, idx)
	if err != nil {
		return err
	}
	return c.put(k, raw, false)
}

func (c *ChunkCache) put(k chunkKey, raw []byte, prefetched bool) error {
	if int64(len(raw)) > math.MaxUint32 {
		c.stats.skipped.Add(1)
		return nil
	}
	size := entrySize(k.key, len(raw))
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	_, cached := c.mu.m[k]
	_, pending := c.mu.pending[k]
	if cached || pending || size > c.mu.limit {
		c.mu.Unlock()
		if !cached && !pending {
			c.stats.skipped.Add(1)
		}
		return nil
	}
	if c.mu.reserved+size > c.mu.limit {
		// Other writers hold the room; evicting would not make enough.
		c.mu.Unlock()
		c.stats.skipped.Add(1)
		return nil
	}
	victims := c.evictLocked(c.mu.limit - size)
	c.mu.reserved += size
	c.mu.pending[k] = struct{}{}
	c.writes.Add(1) // under mu with closed false: Close waits for it
	c.mu.Unlock()
	defer c.writes.Done()
	c.removeVictims(victims)

	gen := c.gen.Add(1)
	err := writeEntry(c.dir, gen, k, raw)

	c.mu.Lock()
	c.mu.reserved -= size
	delete(c.mu.pending, k)
	if err != nil {
		c.mu.Unlock()
		c.stats.putErrors.Add(1)
		return err
	}
	if c.mu.closed {
		c.mu.Unlock()
		removeFile(filepath.Join(c.dir, entryName(gen)))
		return ErrClosed
	}
	e := &entry{k: k, gen: gen, size: size, prefetched: prefetched}
	e.elem = c.mu.lru.PushFront(e)
	c.mu.m[k] = e
	c.mu.used += size
	// The limit may have been lowered while we wrote.
	victims = c.evictLocked(c.mu.limit)
	c.mu.Unlock()
	c.removeVictims(victims)
	c.stats.puts.Add(1)
	c.stats.putBytes.Add(int64(len(raw)))
	return nil
}

// evictLocked removes least recently used entries from the index until the
// indexed and reserved bytes are at most target (or nothing indexed is
// left) and returns them; the caller deletes their files after unlocking.
func (c *ChunkCache) evictLocked(target int64) []*entry {
	var victims []*entry
	for c.mu.used+c.mu.reserved > target {
		back := c.mu.lru.Back()
		if back == nil {
			break
		}
		e := back.Value.(*entry)
		c.removeLocked(e)
		victims = append(victims, e)
	}
	return victims
}

func (c *ChunkCache) removeVictims(victims []*entry) {
	for _, e := range victims {
		removeFile(filepath.Join(c.dir, entryName(e.gen)))
		c.stats.evictions.Add(1)
		c.stats.evictedBytes.Add(e.size)
	}
}

// removeFile deletes a cache file. A failure is not reported: the file is
// no longer indexed, and the next Open indexes or deletes it again.
func removeFile(path string) {
	_ = os.Remove(path)
}

// Shrink evicts least recently used entries until the cache holds at most
// to bytes (bytes being written cannot be evicted) and returns the bytes
// freed. The limit stays as it was: use it to give disk space back at once
// (e.g. before the log would be refused writes); use SetLimit to keep the
// cache small.
func (c *ChunkCache) Shrink(to int64) int64 {
	c.mu.Lock()
	victims := c.evictLocked(max(to, 0))
	c.mu.Unlock()
	c.removeVictims(victims)
	var freed int64
	for _, e := range victims {
		freed += e.size
	}
	return freed
}

// SetLimit changes the limit, evicting at once down to it, and returns the
// bytes freed. A limit of 0 turns caching off.
func (c *ChunkCache) SetLimit(maxBytes int64) int64 {
	c.mu.Lock()
	c.mu.limit = max(maxBytes, 0)
	c.mu.Unlock()
	return c.Shrink(maxBytes)
}

// Limit returns the current limit in bytes.
func (c *ChunkCache) Limit() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.limit
}

// ReadAheadChunks is the number of chunks a sequential reader's read-ahead
// covers (0 when read-ahead is off).
func (c *ChunkCache) ReadAheadChunks() int {
	if c.maxWorkers == 0 {
		return 0
	}
	return c.readAhead
}

// Dir returns the cache directory.
func (c *ChunkCache) Dir() string { return c.dir }

// Close stops prefetching (cancelling running prefetches) and waits for the
// prefetch workers. Entries stay on disk for the next Open. Afterwards Get
// misses, Put and GetOrLoad return ErrClosed, and Prefetch queues nothing;
// loads already started by GetOrLoad callers finish but are not stored.
// Close does not close a shared Pool.
func (c *ChunkCache) Close() error {
	c.mu.Lock()
	c.mu.closed = true
	c.mu.Unlock()
	// Writes that started before Close finish (or undo themselves) first,
	// so the directory is quiet once Close returns.
	c.writes.Wait()
	c.pmu.Lock()
	c.pmu.closed = true
	c.pmu.queue = nil
	clear(c.pmu.queued)
	c.pmu.Unlock()
	c.stop()
	c.workers.Wait()
	return nil
}
