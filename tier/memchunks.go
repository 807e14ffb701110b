package tier

import (
	"container/list"
	"sync"
)

// memChunks keeps the most recently read decompressed chunks in memory,
// bounded by bytes. A sequential consumer fetches a ~4 MiB chunk in several
// smaller Fetches; without it each one would read the whole chunk back from
// the on-disk cache.
type memChunks struct {
	max int64
	mu  struct {
		sync.Mutex
		used int64
		lru  *list.List // front: most recent; values *memChunk
		m    map[memKey]*list.Element
	}
}

type memKey struct {
	key string
	idx int
}

type memChunk struct {
	k   memKey
	raw []byte
}

func newMemChunks(max int64) *memChunks {
	c := &memChunks{max: max}
	c.mu.lru = list.New()
	c.mu.m = map[memKey]*list.Element{}
	return c
}

// get returns the chunk, shared: callers must not modify it.
func (c *memChunks) get(key string, idx int) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.mu.m[memKey{key, idx}]
	if el == nil {
		return nil, false
	}
	c.mu.lru.MoveToFront(el)
	return el.Value.(*memChunk).raw, true
}

// has reports whether the chunk is held, without counting as a use.
func (c *memChunks) has(key string, idx int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.m[memKey{key, idx}] != nil
}

// put remembers raw, evicting the least recently used chunks beyond max.
func (c *memChunks) put(key string, idx int, raw []byte) {
	n := int64(len(raw))
	if n > c.max {
		return
	}
	k := memKey{key, idx}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.mu.m[k]; el != nil {
		c.mu.lru.MoveToFront(el)
		return
	}
	c.mu.m[k] = c.mu.lru.PushFront(&memChunk{k: k, raw: raw})
	c.mu.used += n
	for c.mu.used > c.max {
		back := c.mu.lru.Back()
		e := back.Value.(*memChunk)
		c.mu.lru.Remove(back)
		delete(c.mu.m, e.k)
		c.mu.used -= int64(len(e.raw))
	}
}

// forget drops every chunk of an object (it was deleted).
func (c *memChunks) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.mu.m {
		if k.key == key {
			c.mu.used -= int64(len(el.Value.(*memChunk).raw))
			c.mu.lru.Remove(el)
			delete(c.mu.m, k)
		}
	}
}
