package log

import (
	"container/list"
	"fmt"
	"sync"

	"github.com/strata-io/strata/ingest/log/vfs"
)

// FileCache is a bounded LRU of read-only descriptors for sealed segments,
// shared by every log of a broker. Handles are reference counted: a file is
// closed only when it is evicted (over the bound, or its segment deleted) and
// no reader holds it. The bound can be exceeded while more than maxOpen
// files are in use at once. Safe for concurrent use.
type FileCache struct {
	max int
	mu  struct {
		sync.Mutex
		lru   *list.List // of *cachedFile, front = most recently used
		files map[cacheKey]*cachedFile
		// evictions counts evict calls. A descriptor opened while one ran
		// may be of the file the eviction was for (the cleaner renames a
		// new segment file over an old one's path) and is not cached.
		evictions uint64
	}
}

type cacheKey struct {
	fs   vfs.FS
	path string
}

type cachedFile struct {
	key  cacheKey
	f    vfs.File
	refs int
	elem *list.Element // nil once evicted
}

// NewFileCache returns a cache holding at most maxOpen idle descriptors open
// (at least 1).
func NewFileCache(maxOpen int) *FileCache {
	c := &FileCache{max: max(maxOpen, 1)}
	c.mu.lru = list.New()
	c.mu.files = map[cacheKey]*cachedFile{}
	return c
}

// Len is the number of descriptors the cache holds open.
func (c *FileCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.files)
}

// acquire returns an open read descriptor for path and a release function
// that must be called exactly once when the caller is done with it.
func (c *FileCache) acquire(fsys vfs.FS, path string) (vfs.File, func(), error) {
	key := cacheKey{fs: fsys, path: path}
	c.mu.Lock()
	if cf := c.mu.files[key]; cf != nil {
		cf.refs++
		c.mu.lru.MoveToFront(cf.elem)
		c.mu.Unlock()
		return cf.f, func() { c.releaseFile(cf) }, nil
	}
	evictions := c.mu.evictions
	c.mu.Unlock()

	f, err := fsys.Open(path) // no lock held across the open
	if err != nil {
		return nil, nil, fmt.Errorf("open segment %s: %w", path, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.evictions != evictions {
		// Possibly the old file behind a replaced path: this caller checks
		// its segment after acquire, others must not find it in the cache.
		return f, func() { _ = f.Close() }, nil // read-only descriptor, nothing to lose
	}
	if cf := c.mu.files[key]; cf != nil { // lost a race: use the winner's
		_ = f.Close() // read-only descriptor, nothing to lose
		cf.refs++
		c.mu.lru.MoveToFront(cf.elem)
		return cf.f, func() { c.releaseFile(cf) }, nil
	}
	cf := &cachedFile{key: key, f: f, refs: 1}
	cf.elem = c.mu.lru.PushFront(cf)
	c.mu.files[key] = cf
	c.trimLocked()
	return f, func() { c.releaseFile(cf) }, nil
}

// releaseFile drops one reference.
func (c *FileCache) releaseFile(cf *cachedFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cf.refs--
	if cf.refs == 0 && cf.elem == nil {
		_ = cf.f.Close() // read-only descriptor, nothing to lose
		return
	}
	c.trimLocked()
}

// trimLocked closes idle descriptors, least recently used first, until the
// cache is within its bound.
func (c *FileCache) trimLocked() {
	for e := c.mu.lru.Back(); e != nil && c.mu.lru.Len() > c.max; {
		prev := e.Prev()
		cf := e.Value.(*cachedFile)
		if cf.refs == 0 {
			c.removeLocked(cf)
		}
		e = prev
	}
}

func (c *FileCache) removeLocked(cf *cachedFile) {
	c.mu.lru.Remove(cf.elem)
	cf.elem = nil
	delete(c.mu.files, cf.key)
	if cf.refs == 0 {
		_ = cf.f.Close() // read-only descriptor, nothing to lose
	}
}

// evict forgets path (its segment is being deleted); the descriptor closes
// when its last reader releases it.
func (c *FileCache) evict(fsys vfs.FS, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.evictions++
	if cf := c.mu.files[cacheKey{fs: fsys, path: path}]; cf != nil {
		c.removeLocked(cf)
	}
}
