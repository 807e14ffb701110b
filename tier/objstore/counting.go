package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// OpCount is what a Counting store has seen of one operation.
type OpCount struct {
	Calls  int64 // requests made (List counts one per call, not per page)
	Errors int64 // calls that returned an error (not counting ErrNotFound from Stat/Get/GetRange, nor ErrExists)
	Bytes  int64 // payload bytes: sent by Put/PutIfAbsent, received by Get/GetRange
}

// Counts is a snapshot of a Counting store's counters, indexed by Op.
type Counts [numOps]OpCount

// Get returns the counters of op.
func (c Counts) Get(op Op) OpCount { return c[op] }

// Sub returns c - prev, for measuring an interval.
func (c Counts) Sub(prev Counts) Counts {
	for i := range c {
		c[i].Calls -= prev[i].Calls
		c[i].Errors -= prev[i].Errors
		c[i].Bytes -= prev[i].Bytes
	}
	return c
}

// String formats the non-zero counters, e.g. "put=3/0err/12B get-range=7/0err/70B".
func (c Counts) String() string {
	var s string
	for _, op := range Ops {
		oc := c[op]
		if oc == (OpCount{}) {
			continue
		}
		if s != "" {
			s += " "
		}
		s += fmt.Sprintf("%s=%d/%derr/%dB", op, oc.Calls, oc.Errors, oc.Bytes)
	}
	return s
}

// Counting wraps a Store and counts requests, errors and payload bytes per
// operation, e.g. for benchmarks that report GET/PUT counts. It forwards
// UploadJanitor calls uncounted. Safe for concurrent use.
type Counting struct {
	s Store
	c [numOps]struct{ calls, errors, bytes atomic.Int64 }
}

var (
	_ Store         = (*Counting)(nil)
	_ UploadJanitor = (*Counting)(nil)
)

// NewCounting returns a Counting store over s. Closing it closes s.
func NewCounting(s Store) *Counting { return &Counting{s: s} }

// Counts returns a snapshot of the counters.
func (c *Counting) Counts() Counts {
	var out Counts
	for i := range c.c {
		out[i] = OpCount{Calls: c.c[i].calls.Load(), Errors: c.c[i].errors.Load(), Bytes: c.c[i].bytes.Load()}
	}
	return out
}

// Reset zeroes the counters.
func (c *Counting) Reset() {
	for i := range c.c {
		c.c[i].calls.Store(0)
		c.c[i].errors.Store(0)
		c.c[i].bytes.Store(0)
	}
}

func (c *Counting) String() string {
	if st, ok := c.s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", c.s)
}

func (c *Counting) done(op Op, err error, bytes int64) {
	c.c[op].calls.Add(1)
	c.c[op].bytes.Add(bytes)
	if err != nil && !isExpected(err) {
		c.c[op].errors.Add(1)
	}
}

func isExpected(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists)
}

func (c *Counting) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := c.s.Put(ctx, key, r, size)
	c.done(OpPut, err, sentBytes(err, size))
	return err
}

func (c *Counting) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	err := c.s.PutIfAbsent(ctx, key, r, size)
	c.done(OpPutIfAbsent, err, sentBytes(err, size))
	return err
}

func sentBytes(err error, size int64) int64 {
	if err != nil {
		return 0
	}
	return size
}

func (c *Counting) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.s.Get(ctx, key)
	c.done(OpGet, err, 0)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc: rc, n: &c.c[OpGet].bytes}, nil
}

type countingReader struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }

func (c *Counting) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	b, err := c.s.GetRange(ctx, key, off, n)
	c.done(OpGetRange, err, int64(len(b)))
	return b, err
}

func (c *Counting) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	info, err := c.s.Stat(ctx, key)
	c.done(OpStat, err, 0)
	return info, err
}

func (c *Counting) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	err := c.s.List(ctx, prefix, fn)
	c.done(OpList, err, 0)
	return err
}

func (c *Counting) Delete(ctx context.Context, key string) error {
	err := c.s.Delete(ctx, key)
	c.done(OpDelete, err, 0)
	return err
}

func (c *Counting) ListIncompleteUploads(ctx context.Context, prefix string, fn func(IncompleteUpload) error) error {
	return ListIncompleteUploads(ctx, c.s, prefix, fn)
}

func (c *Counting) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	return AbortIncompleteUploads(ctx, c.s, prefix, olderThan)
}

func (c *Counting) Close() error { return c.s.Close() }
