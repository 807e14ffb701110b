package objstore

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// WithPrefix returns a Store that keeps every key of s under prefix: key k of
// the returned store is key prefix+"/"+k of s. Keys in ObjectInfo and
// IncompleteUpload are reported without the prefix. prefix must itself be a
// valid key (surrounding slashes are trimmed); an empty prefix returns s.
// Closing the returned store closes s.
func WithPrefix(s Store, prefix string) Store {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return s
	}
	return &prefixed{s: s, prefix: prefix + "/"}
}

type prefixed struct {
	s      Store
	prefix string
}

var (
	_ Store         = (*prefixed)(nil)
	_ UploadJanitor = (*prefixed)(nil)
)

func (p *prefixed) String() string {
	name := fmt.Sprintf("%T", p.s)
	if st, ok := p.s.(fmt.Stringer); ok {
		name = st.String()
	}
	return name + " prefix " + p.prefix
}

// key validates k before prefixing, so that "../x" cannot climb out.
func (p *prefixed) key(k string) (string, error) {
	if err := ValidateKey(k); err != nil {
		return "", err
	}
	return p.prefix + k, nil
}

func (p *prefixed) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := p.key(key)
	if err != nil {
		return err
	}
	return p.s.Put(ctx, k, r, size)
}

func (p *prefixed) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := p.key(key)
	if err != nil {
		return err
	}
	return p.s.PutIfAbsent(ctx, k, r, size)
}

func (p *prefixed) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := p.key(key)
	if err != nil {
		return nil, err
	}
	return p.s.Get(ctx, k)
}

func (p *prefixed) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	k, err := p.key(key)
	if err != nil {
		return nil, err
	}
	return p.s.GetRange(ctx, k, off, n)
}

func (p *prefixed) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	k, err := p.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := p.s.Stat(ctx, k)
	info.Key = strings.TrimPrefix(info.Key, p.prefix)
	return info, err
}

func (p *prefixed) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return p.s.List(ctx, p.prefix+prefix, func(info ObjectInfo) error {
		info.Key = strings.TrimPrefix(info.Key, p.prefix)
		return fn(info)
	})
}

func (p *prefixed) Delete(ctx context.Context, key string) error {
	k, err := p.key(key)
	if err != nil {
		return err
	}
	return p.s.Delete(ctx, k)
}

func (p *prefixed) ListIncompleteUploads(ctx context.Context, prefix string, fn func(IncompleteUpload) error) error {
	return ListIncompleteUploads(ctx, p.s, p.prefix+prefix, func(u IncompleteUpload) error {
		u.Key = strings.TrimPrefix(u.Key, p.prefix)
		return fn(u)
	})
}

func (p *prefixed) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	return AbortIncompleteUploads(ctx, p.s, p.prefix+prefix, olderThan)
}

func (p *prefixed) Close() error { return p.s.Close() }
