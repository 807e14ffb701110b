package manifest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// memStore is an in-memory Store that really stores data: PutIfAbsent is
// atomic (the check and the insert happen under one lock), List is a
// consistent snapshot in key order. Hooks let tests inject faults and
// interleavings.
type memStore struct {
	mu struct {
		sync.Mutex
		objs map[string]memObj
		rng  *rand.Rand // nil: no jitter
	}
	// afterPut, if set, runs after a PutIfAbsent stored its object and may
	// replace the returned error (a lost response).
	afterPut func(key string) error
	// afterList, if set, runs after each List returned its snapshot.
	afterList func(prefix string)
	now       func() time.Time
}

type memObj struct {
	data []byte
	mod  time.Time
}

func newMemStore(seed uint64) *memStore {
	s := &memStore{now: time.Now}
	s.mu.objs = make(map[string]memObj)
	if seed != 0 {
		s.mu.rng = rand.New(rand.NewPCG(seed, seed))
	}
	return s
}

// jitter yields the processor at seeded random points so concurrent callers
// interleave in many ways.
func (s *memStore) jitter() {
	s.mu.Lock()
	n := 0
	if s.mu.rng != nil {
		n = s.mu.rng.IntN(4)
	}
	s.mu.Unlock()
	for range n {
		runtime.Gosched()
	}
}

func (s *memStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	s.jitter()
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(data)) != size {
		return fmt.Errorf("put %s: read %d bytes, want %d", key, len(data), size)
	}
	s.mu.Lock()
	if _, ok := s.mu.objs[key]; ok {
		s.mu.Unlock()
		return fmt.Errorf("put %s: %w", key, ErrExists)
	}
	s.mu.objs[key] = memObj{data: data, mod: s.now()}
	s.mu.Unlock()
	s.jitter()
	if s.afterPut != nil {
		return s.afterPut(key)
	}
	return nil
}

// put stores an object unconditionally (test setup, partial objects).
func (s *memStore) put(key string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.objs[key] = memObj{data: bytes.Clone(data), mod: s.now()}
}

func (s *memStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.jitter()
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.mu.objs[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

func (s *memStore) Stat(ctx context.Context, key string) (int64, error) {
	s.jitter()
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.mu.objs[key]
	if !ok {
		return 0, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	return int64(len(o.data)), nil
}

func (s *memStore) List(ctx context.Context, prefix string, fn func(string) error) error {
	s.jitter()
	keys := s.keys(prefix)
	if s.afterList != nil {
		s.afterList(prefix)
	}
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.objs, key)
}

func (s *memStore) keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.mu.objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// objects returns a listing with modification times, as PlanGC takes it.
func (s *memStore) objects(prefix string) []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Object
	for k, o := range s.mu.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Object{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	return out
}
