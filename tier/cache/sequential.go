package cache

import (
	"container/list"
	"sync"
)

// seqTrackedObjects bounds the objects whose recent chunk reads are
// remembered for read-ahead.
const seqTrackedObjects = 4096

// seqRecent is how many recent chunk indexes are kept per object: enough
// for a few consumers reading one object at different positions.
const seqRecent = 8

// seqTracker remembers, per object key, the last few chunk indexes read,
// in a bounded LRU of keys.
type seqTracker struct {
	max int

	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *seqState, most recent at the front
}

type seqState struct {
	key    string
	recent [seqRecent]int
	n      int // valid entries in recent
	next   int // ring position of the next write
}

// record notes a read of chunk idx of key and reports whether it continues
// a sequential run: idx > 0 and idx-1 was among the recent reads.
func (t *seqTracker) record(key string, idx int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*list.Element)
	}
	var s *seqState
	if el, ok := t.m[key]; ok {
		t.lru.MoveToFront(el)
		s = el.Value.(*seqState)
	} else {
		if t.lru.Len() >= t.max {
			old := t.lru.Remove(t.lru.Back()).(*seqState)
			delete(t.m, old.key)
		}
		s = &seqState{key: key}
		t.m[key] = t.lru.PushFront(s)
	}
	sequential, seen := false, false
	for _, r := range s.recent[:s.n] {
		sequential = sequential || (idx > 0 && r == idx-1)
		seen = seen || r == idx
	}
	if !seen {
		s.recent[s.next] = idx
		s.next = (s.next + 1) % seqRecent
		s.n = min(s.n+1, seqRecent)
	}
	return sequential
}
