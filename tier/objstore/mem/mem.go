// Package mem is an in-memory objstore.Store for tests. It stores data for
// real, follows every rule of the objstore contract (key validation, atomic
// puts, exact ranged reads, sorted listing) and is safe for concurrent use.
// It must not be used for anything that has to survive the process.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/internal/sized"
)

type object struct {
	data    []byte // never modified after it is stored
	modTime time.Time
}

// Store is an in-memory object store.
type Store struct {
	mu struct {
		sync.Mutex
		objects map[string]object
		closed  bool
	}
}

var _ objstore.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	s := &Store{}
	s.mu.objects = make(map[string]object)
	return s
}

func (s *Store) String() string { return "mem" }

func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) error {
	if err := objstore.ValidateKey(key); err != nil {
		return err
	}
	data, err := sized.ReadAll(ctx, r, size)
	if err != nil {
		return fmt.Errorf("mem: put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: put %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return fmt.Errorf("mem: put %s: store closed", key)
	}
	if _, ok := s.mu.objects[key]; ok && ifAbsent {
		return fmt.Errorf("mem: put %s: %w", key, objstore.ErrExists)
	}
	s.mu.objects[key] = object{data: data, modTime: time.Now()}
	return nil
}

func (s *Store) lookup(ctx context.Context, op, key string) (object, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return object{}, err
	}
	if err := ctx.Err(); err != nil {
		return object{}, fmt.Errorf("mem: %s %s: %w", op, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return object{}, fmt.Errorf("mem: %s %s: store closed", op, key)
	}
	o, ok := s.mu.objects[key]
	if !ok {
		return object{}, fmt.Errorf("mem: %s %s: %w", op, key, objstore.ErrNotFound)
	}
	return o, nil
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := s.lookup(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	return sized.NewReader(ctx, io.NopCloser(bytes.NewReader(o.data)), int64(len(o.data))), nil
}

func (s *Store) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := objstore.CheckRange(off, n); err != nil {
		return nil, err
	}
	o, err := s.lookup(ctx, "get range", key)
	if err != nil {
		return nil, err
	}
	if size := int64(len(o.data)); off+n > size {
		return nil, fmt.Errorf("mem: get range %s [%d, %d) of %d bytes: %w", key, off, off+n, size, objstore.ErrShortRead)
	}
	return bytes.Clone(o.data[off : off+n : off+n]), nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	o, err := s.lookup(ctx, "stat", key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List snapshots the matching keys under the lock, then calls fn without it,
// so fn may call back into the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: list %q: %w", prefix, err)
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return fmt.Errorf("mem: list %q: store closed", prefix)
	}
	var infos []objstore.ObjectInfo
	for k, o := range s.mu.objects {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			infos = append(infos, objstore.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	s.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return fmt.Errorf("mem: list %q: %w", prefix, err)
		}
	}
	return nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := objstore.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: delete %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return fmt.Errorf("mem: delete %s: store closed", key)
	}
	delete(s.mu.objects, key)
	return nil
}

// Close marks the store closed; later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.closed = true
	return nil
}
