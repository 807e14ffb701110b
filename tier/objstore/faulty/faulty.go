// Package faulty wraps an objstore.Store and injects faults: errors before or
// after the real call, latency, truncated or failing bodies. Faults are
// programmed per operation and key prefix with Rules, and drawn from a
// seeded generator so a failing test can be replayed: with the same seed,
// rules and sequence of calls, the same calls fail. (Concurrent callers make
// the sequence, and so the outcome, depend on scheduling.)
//
// It is a test facility; it must not be wired into production paths.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strata-io/strata/tier/objstore"
)

// ErrInjected is the default injected error.
var ErrInjected = errors.New("faulty: injected fault")

// Kind is what a Rule does to a call it fires on.
type Kind int

const (
	// Error fails the call with Rule.Err without calling the inner store.
	Error Kind = iota
	// ErrorAfter makes the call on the inner store, then reports Rule.Err
	// anyway: the operation took effect but the caller cannot know (a lost
	// response). Readers returned by Get are closed.
	ErrorAfter
	// Latency delays the call by Rule.Latency (or until ctx is done).
	Latency
	// Truncate cuts read bodies short: Get's body fails after Rule.Bytes
	// bytes (a random point below 4 KiB if Bytes is 0) with an error
	// wrapping io.ErrUnexpectedEOF (or Rule.Err); GetRange fails with an
	// error wrapping objstore.ErrShortRead. Both are what a conforming
	// backend reports when a connection drops mid-body.
	Truncate
	// FailAfterBytes makes a streamed body fail with Rule.Err after
	// Rule.Bytes bytes: the body Put/PutIfAbsent read from the caller, or
	// the body a Get returns.
	FailAfterBytes
	// SilentTruncate breaks the Store contract on purpose, to test checks
	// above the store (checksums, footers): Get's body ends with a clean
	// io.EOF after Rule.Bytes bytes, GetRange returns its data cut to
	// Rule.Bytes bytes with no error.
	SilentTruncate
)

// Rule programs one fault.
type Rule struct {
	Kind Kind
	// Ops the rule applies to; empty means every operation.
	Ops []objstore.Op
	// KeyPrefix restricts the rule to keys (or List prefixes) starting with it.
	KeyPrefix string
	// Prob is the fraction of matching calls the rule fires on; 0 means all.
	Prob float64
	// Count is how many times the rule fires at most; 0 means no limit.
	Count int
	// Err is the injected error; nil means ErrInjected (io.ErrUnexpectedEOF
	// for Truncate).
	Err error
	// Latency is the delay of a Latency rule.
	Latency time.Duration
	// Bytes is where Truncate, FailAfterBytes and SilentTruncate cut.
	Bytes int64
}

func (r *Rule) matches(op objstore.Op, key string) bool {
	return (len(r.Ops) == 0 || slices.Contains(r.Ops, op)) && strings.HasPrefix(key, r.KeyPrefix)
}

func (r *Rule) err() error {
	if r.Err != nil {
		return r.Err
	}
	if r.Kind == Truncate {
		return io.ErrUnexpectedEOF
	}
	return ErrInjected
}

// Store is the fault-injecting wrapper. Safe for concurrent use.
type Store struct {
	inner objstore.Store
	mu    struct {
		sync.Mutex
		rng      *rand.Rand
		rules    []Rule
		fired    []int // per rule
		injected int
	}
}

var (
	_ objstore.Store         = (*Store)(nil)
	_ objstore.UploadJanitor = (*Store)(nil)
)

// New wraps inner with no rules (every call passes through) and a
// generator seeded with seed. Closing the Store closes inner.
func New(inner objstore.Store, seed uint64) *Store {
	s := &Store{inner: inner}
	s.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return s
}

// SetRules replaces the rules. Rules are checked in order; every rule that
// fires applies (e.g. Latency and then Error).
func (s *Store) SetRules(rules ...Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.rules = slices.Clone(rules)
	s.mu.fired = make([]int, len(rules))
}

// AddRule appends a rule.
func (s *Store) AddRule(r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.rules = append(s.mu.rules, r)
	s.mu.fired = append(s.mu.fired, 0)
}

// Clear removes every rule: the store behaves like inner again.
func (s *Store) Clear() { s.SetRules() }

// Injected returns how many faults have fired so far.
func (s *Store) Injected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.injected
}

// Inner returns the wrapped store.
func (s *Store) Inner() objstore.Store { return s.inner }

func (s *Store) String() string {
	if st, ok := s.inner.(fmt.Stringer); ok {
		return "faulty(" + st.String() + ")"
	}
	return fmt.Sprintf("faulty(%T)", s.inner)
}

// fire returns the rules that fire for this call.
func (s *Store) fire(op objstore.Op, key string) []Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Rule
	for i := range s.mu.rules {
		r := &s.mu.rules[i]
		if !r.matches(op, key) || (r.Count > 0 && s.mu.fired[i] >= r.Count) {
			continue
		}
		if r.Prob > 0 && s.mu.rng.Float64() >= r.Prob {
			continue
		}
		s.mu.fired[i]++
		s.mu.injected++
		rc := *r
		if (rc.Kind == Truncate) && rc.Bytes == 0 && op == objstore.OpGet {
			rc.Bytes = s.mu.rng.Int64N(4096)
		}
		out = append(out, rc)
	}
	return out
}

// before applies Latency and Error rules; it returns the rules left to
// apply around the call, or the error to report instead of making it.
func before(ctx context.Context, op objstore.Op, key string, rules []Rule) ([]Rule, error) {
	var rest []Rule
	for _, r := range rules {
		switch r.Kind {
		case Latency:
			t := time.NewTimer(r.Latency)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("faulty: %s %s: %w", op, key, ctx.Err())
			}
		case Error:
			return nil, fmt.Errorf("faulty: %s %s: %w", op, key, r.err())
		default:
			rest = append(rest, r)
		}
	}
	return rest, nil
}

// after returns the ErrorAfter error among rules, if any.
func after(op objstore.Op, key string, rules []Rule) error {
	for _, r := range rules {
		if r.Kind == ErrorAfter {
			return fmt.Errorf("faulty: %s %s (after applying): %w", op, key, r.err())
		}
	}
	return nil
}

func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, objstore.OpPut, key, r, size, s.inner.Put)
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, objstore.OpPutIfAbsent, key, r, size, s.inner.PutIfAbsent)
}

func (s *Store) put(ctx context.Context, op objstore.Op, key string, r io.Reader, size int64,
	call func(context.Context, string, io.Reader, int64) error) error {
	rules, err := before(ctx, op, key, s.fire(op, key))
	if err != nil {
		return err
	}
	for _, rule := range rules {
		if rule.Kind == FailAfterBytes {
			r = &failingReader{r: r, left: rule.Bytes, err: rule.err()}
		}
	}
	if err := call(ctx, key, r, size); err != nil {
		return err
	}
	return after(op, key, rules)
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rules, err := before(ctx, objstore.OpGet, key, s.fire(objstore.OpGet, key))
	if err != nil {
		return nil, err
	}
	rc, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := after(objstore.OpGet, key, rules); err != nil {
		rc.Close()
		return nil, err
	}
	for _, rule := range rules {
		switch rule.Kind {
		case Truncate, FailAfterBytes:
			rc = &failingReadCloser{failingReader{r: rc, left: rule.Bytes, err: rule.err()}, rc}
		case SilentTruncate:
			rc = &failingReadCloser{failingReader{r: rc, left: rule.Bytes, err: io.EOF}, rc}
		}
	}
	return rc, nil
}

func (s *Store) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	rules, err := before(ctx, objstore.OpGetRange, key, s.fire(objstore.OpGetRange, key))
	if err != nil {
		return nil, err
	}
	b, err := s.inner.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	if err := after(objstore.OpGetRange, key, rules); err != nil {
		return nil, err
	}
	for _, rule := range rules {
		switch rule.Kind {
		case Truncate, FailAfterBytes:
			return nil, fmt.Errorf("faulty: get-range %s [%d, %d): %w: %w", key, off, off+n, objstore.ErrShortRead, rule.err())
		case SilentTruncate:
			if int64(len(b)) > rule.Bytes {
				b = b[:rule.Bytes]
			}
		}
	}
	return b, nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	rules, err := before(ctx, objstore.OpStat, key, s.fire(objstore.OpStat, key))
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	info, err := s.inner.Stat(ctx, key)
	if err != nil {
		return info, err
	}
	return info, after(objstore.OpStat, key, rules)
}

func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	rules, err := before(ctx, objstore.OpList, prefix, s.fire(objstore.OpList, prefix))
	if err != nil {
		return err
	}
	if err := s.inner.List(ctx, prefix, fn); err != nil {
		return err
	}
	return after(objstore.OpList, prefix, rules)
}

func (s *Store) Delete(ctx context.Context, key string) error {
	rules, err := before(ctx, objstore.OpDelete, key, s.fire(objstore.OpDelete, key))
	if err != nil {
		return err
	}
	if err := s.inner.Delete(ctx, key); err != nil {
		return err
	}
	return after(objstore.OpDelete, key, rules)
}

// ListIncompleteUploads forwards to the inner store without faults.
func (s *Store) ListIncompleteUploads(ctx context.Context, prefix string, fn func(objstore.IncompleteUpload) error) error {
	return objstore.ListIncompleteUploads(ctx, s.inner, prefix, fn)
}

// AbortIncompleteUploads forwards to the inner store without faults.
func (s *Store) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	return objstore.AbortIncompleteUploads(ctx, s.inner, prefix, olderThan)
}

func (s *Store) Close() error { return s.inner.Close() }

// failingReader passes through left bytes, then returns err.
type failingReader struct {
	r    io.Reader
	left int64
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		if f.err == io.EOF {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("faulty: body cut: %w", f.err)
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	return n, err
}

type failingReadCloser struct {
	failingReader
	c io.Closer
}

func (f *failingReadCloser) Close() error { return f.c.Close() }
