package cache

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/segment"
)

// OpenFunc opens a segment object's reader (one or two ranged GETs of its
// tail). It must honour ctx.
type OpenFunc func(ctx context.Context) (*segment.Reader, error)

// FooterCache keeps opened segment readers (which hold only the decoded
// footer) in memory by object key, least recently used first out, bounded
// by an estimate of their memory (ReaderSize). Opens of the same key share
// one load (singleflight) and take a slot of the load pool. Readers are
// immutable and shared by all callers. Safe for concurrent use.
type FooterCache struct {
	pool    *LoadPool
	flights group[string, *segment.Reader]

	hits, misses, opens, openErrors, evictions atomic.Int64

	mu struct {
		sync.Mutex
		limit int64
		used  int64
		m     map[string]*list.Element
		lru   list.List // of *footerEntry, most recent at the front
	}
}

type footerEntry struct {
	key  string
	r    *segment.Reader
	size int64
}

// FooterStats is a snapshot of a FooterCache's counters and gauges.
type FooterStats struct {
	Hits, Misses, Opens, OpenErrors, Evictions int64
	Entries                                    int
	Bytes, Limit                               int64
}

// NewFooterCache returns a footer cache of about maxBytes. pool bounds
// concurrent opens (nil: a pool of DefaultMaxConcurrentLoads slots of its
// own).
func NewFooterCache(maxBytes int64, pool *LoadPool) *FooterCache {
	if pool == nil {
		pool = NewLoadPool(0)
	}
	f := &FooterCache{pool: pool}
	f.mu.limit = max(maxBytes, 0)
	f.mu.m = make(map[string]*list.Element)
	f.flights.store = func(key string, r *segment.Reader, _ *call[*segment.Reader]) { f.add(key, r) }
	return f
}

// Get returns the reader of the object key, calling open on a miss.
// Concurrent misses on one key share one open; a caller whose ctx ends
// stops waiting (error wrapping ctx.Err()). Open errors are not cached.
func (f *FooterCache) Get(ctx context.Context, key string, open OpenFunc) (*segment.Reader, error) {
	if r, ok := f.lookup(key); ok {
		f.hits.Add(1)
		return r, nil
	}
	f.misses.Add(1)
	r, _, _, _, err := f.flights.do(ctx, key, false, func(ctx context.Context) (*segment.Reader, error) {
		if r, ok := f.lookup(key); ok {
			return r, nil
		}
		if err := f.pool.Acquire(ctx); err != nil {
			return nil, err
		}
		defer f.pool.Release()
		f.opens.Add(1)
		r, err := open(ctx)
		if err != nil {
			f.openErrors.Add(1)
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("cache: open footer of %s: %w", key, err)
	}
	return r, nil
}

// Open is Get with an OpenFunc that reads the object of size bytes (from
// the manifest) from store.
func (f *FooterCache) Open(ctx context.Context, store objstore.Store, key string, size int64, opts ...segment.Option) (*segment.Reader, error) {
	return f.Get(ctx, key, func(ctx context.Context) (*segment.Reader, error) {
		return segment.OpenReader(ctx, StoreFetch(store, key), size, append([]segment.Option{segment.WithName(key)}, opts...)...)
	})
}

// StoreFetch returns a segment.FetchFunc reading key from store with
// ranged GETs (which never return short data).
func StoreFetch(store objstore.Store, key string) segment.FetchFunc {
	return func(ctx context.Context, off, n int64) ([]byte, error) {
		return store.GetRange(ctx, key, off, n)
	}
}

// Forget drops the reader of key, e.g. when retention deleted the object.
func (f *FooterCache) Forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if el, ok := f.mu.m[key]; ok {
		f.removeLocked(el)
	}
}

func (f *FooterCache) lookup(key string) (*segment.Reader, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	el, ok := f.mu.m[key]
	if !ok {
		return nil, false
	}
	f.mu.lru.MoveToFront(el)
	return el.Value.(*footerEntry).r, true
}

func (f *FooterCache) add(key string, r *segment.Reader) {
	size := ReaderSize(r) + int64(len(key))
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.m[key]; ok || size > f.mu.limit {
		return
	}
	for f.mu.used+size > f.mu.limit {
		f.removeLocked(f.mu.lru.Back())
		f.evictions.Add(1)
	}
	f.mu.m[key] = f.mu.lru.PushFront(&footerEntry{key: key, r: r, size: size})
	f.mu.used += size
}

func (f *FooterCache) removeLocked(el *list.Element) {
	e := f.mu.lru.Remove(el).(*footerEntry)
	delete(f.mu.m, e.key)
	f.mu.used -= e.size
}

// Stats returns the cache's counters.
func (f *FooterCache) Stats() FooterStats {
	s := FooterStats{
		Hits: f.hits.Load(), Misses: f.misses.Load(), Opens: f.opens.Load(),
		OpenErrors: f.openErrors.Load(), Evictions: f.evictions.Load(),
	}
	f.mu.Lock()
	s.Entries, s.Bytes, s.Limit = len(f.mu.m), f.mu.used, f.mu.limit
	f.mu.Unlock()
	return s
}

// ReaderSize estimates the memory a segment reader holds: its decoded
// footer (chunk map, indexes, epochs, producer snapshot, aborted
// transactions) and per-chunk prefix sums.
func ReaderSize(r *segment.Reader) int64 {
	const overhead = 512 // Reader, Footer and slice headers, roughly
	f := r.Footer()
	return overhead +
		int64(len(f.Chunks))*int64(unsafe.Sizeof(index.Chunk{})+8) +
		int64(len(f.Offsets.Entries))*int64(unsafe.Sizeof(index.OffsetEntry{})) +
		int64(len(f.Times.Entries))*int64(unsafe.Sizeof(index.TimeEntry{})) +
		int64(len(f.Summary.Epochs))*int64(unsafe.Sizeof(index.EpochEntry{})) +
		int64(len(f.Aborted))*int64(unsafe.Sizeof(index.AbortedTxn{})) +
		int64(len(f.ProducerSnapshot))
}
