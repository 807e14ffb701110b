// Package objstoretest holds what every objstore backend is tested with:
// AcceptanceTest, the contract as a test suite, and a Versity S3 Gateway
// harness (StartVersityGW) for testing the s3 backend against a real server.
// It is imported by tests only.
package objstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/strata-io/strata/tier/objstore"
)

// Config tells AcceptanceTest what the store under test is set up for.
type Config struct {
	// LargeSize is the size of the object in the large-object test; it
	// should exceed the backend's multipart threshold. Default 20 MiB.
	LargeSize int64
	// ListKeys is the number of keys in the paging test; it should exceed
	// the backend's list page size. Default 60.
	ListKeys int
}

// AcceptanceTest runs the objstore.Store contract against stores made by
// newStore, which is called once per subtest and must return an empty store
// (cleaned up by the caller with t.Cleanup). Every backend passes it.
func AcceptanceTest(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	AcceptanceTestConfig(t, Config{}, newStore)
}

// AcceptanceTestConfig is AcceptanceTest with explicit sizes.
func AcceptanceTestConfig(t *testing.T, cfg Config, newStore func(t *testing.T) objstore.Store) {
	if cfg.LargeSize == 0 {
		cfg.LargeSize = 20 << 20
	}
	if cfg.ListKeys == 0 {
		cfg.ListKeys = 60
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"Ranges", testRanges},
		{"List", func(t *testing.T, s objstore.Store) { testList(t, s, cfg.ListKeys) }},
		{"Delete", testDelete},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentConcurrent", testPutIfAbsentConcurrent},
		{"Large", func(t *testing.T, s objstore.Store) { testLarge(t, s, cfg.LargeSize) }},
		{"BadBody", func(t *testing.T, s objstore.Store) { testBadBody(t, s, cfg.LargeSize) }},
		{"Cancelled", testCancelled},
		{"InvalidKeys", testInvalidKeys},
		{"Probe", testProbe},
		{"Prefixed", testPrefixed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// Random returns n deterministic pseudo-random bytes.
func Random(seed uint64, n int64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// MustPut stores data under key or fails the test.
func MustPut(t testing.TB, s objstore.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// MustGet reads the whole object at key or fails the test.
func MustGet(t testing.TB, s objstore.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("get %s: read: %v", key, err)
	}
	return b
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

func checkContent(t *testing.T, s objstore.Store, key string, want []byte) {
	t.Helper()
	if got := MustGet(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("get %s: got %d bytes, want %d (content differs)", key, len(got), len(want))
	}
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("stat %s: %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(want)) || info.ModTime.IsZero() {
		t.Fatalf("stat %s: got %+v, want key %q size %d and a mod time", key, info, key, len(want))
	}
}

func testRoundTrip(t *testing.T, s objstore.Store) {
	cases := []struct {
		key  string
		size int64
	}{
		{"empty", 0},
		{"small", 1},
		{"dir/sub/object.bin", 4096},
		{"multi-mib/object", 3<<20 + 17},
		{"weird/with space/100%/a+b=c,d@e~f/q?x#frag/semi;colon:[]!$&'()*", 33},
		{"unicode/ünïcödé/日本語/😀", 10},
		{".leading/.dot/x.", 5},
		{"UPPER/lower/MiXeD-_.", 7},
	}
	for i, c := range cases {
		data := Random(uint64(i), c.size)
		MustPut(t, s, c.key, data)
		checkContent(t, s, c.key, data)
		got, err := s.GetRange(context.Background(), c.key, 0, c.size)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get range %s whole: err %v, equal %v", c.key, err, bytes.Equal(got, data))
		}
	}
	var listed []string
	if err := s.List(context.Background(), "", func(info objstore.ObjectInfo) error {
		listed = append(listed, info.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range cases {
		want = append(want, c.key)
	}
	sort.Strings(want)
	if fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Fatalf("list: got %q, want %q", listed, want)
	}
}

func testOverwrite(t *testing.T, s objstore.Store) {
	a, b := Random(1, 1000), Random(2, 300)
	MustPut(t, s, "over/write", a)
	MustPut(t, s, "over/write", b)
	checkContent(t, s, "over/write", b)
	MustPut(t, s, "over/write", nil)
	checkContent(t, s, "over/write", nil)
}

func testNotFound(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	MustPut(t, s, "present/x", []byte("x"))
	for _, key := range []string{"missing", "present/missing", "present/x/below", "nodir/x"} {
		_, err := s.Get(ctx, key)
		wantErr(t, "get "+key, err, objstore.ErrNotFound)
		_, err = s.GetRange(ctx, key, 0, 1)
		wantErr(t, "get range "+key, err, objstore.ErrNotFound)
		_, err = s.GetRange(ctx, key, 0, 0)
		wantErr(t, "get empty range "+key, err, objstore.ErrNotFound)
		_, err = s.Stat(ctx, key)
		wantErr(t, "stat "+key, err, objstore.ErrNotFound)
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("delete missing %s: %v", key, err)
		}
	}
}

func testRanges(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	const size = 1000
	data := Random(3, size)
	MustPut(t, s, "range/obj", data)
	for _, r := range [][2]int64{{0, 10}, {500, 100}, {990, 10}, {0, size}, {999, 1}, {0, 0}, {500, 0}, {size, 0}} {
		got, err := s.GetRange(ctx, "range/obj", r[0], r[1])
		if err != nil {
			t.Fatalf("get range %v: %v", r, err)
		}
		if got == nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("get range %v: got %d bytes (nil %v), want %d", r, len(got), got == nil, r[1])
		}
	}
	for _, r := range [][2]int64{{995, 10}, {0, size + 1}, {size, 1}, {2 * size, 5}, {size + 1, 0}} {
		got, err := s.GetRange(ctx, "range/obj", r[0], r[1])
		if !errors.Is(err, objstore.ErrShortRead) || got != nil {
			t.Fatalf("get range %v past the end: got %d bytes and %v, want nil and ErrShortRead", r, len(got), err)
		}
	}
	for _, r := range [][2]int64{{-1, 5}, {0, -1}} {
		if _, err := s.GetRange(ctx, "range/obj", r[0], r[1]); err == nil {
			t.Fatalf("get range %v: no error", r)
		}
	}
	MustPut(t, s, "range/empty", nil)
	if got, err := s.GetRange(ctx, "range/empty", 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty range of empty object: %d bytes, %v", len(got), err)
	}
	_, err := s.GetRange(ctx, "range/empty", 0, 1)
	wantErr(t, "range past end of empty object", err, objstore.ErrShortRead)
}

func listKeys(t *testing.T, s objstore.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(context.Background(), prefix, func(info objstore.ObjectInfo) error {
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return keys
}

func testList(t *testing.T, s objstore.Store, n int) {
	var all []string
	sizes := map[string]int64{}
	put := func(key string, size int64) {
		MustPut(t, s, key, Random(uint64(len(all)), size))
		all = append(all, key)
		sizes[key] = size
	}
	for i := 0; i < n; i++ {
		put(fmt.Sprintf("list/p/%04d", i), int64(i%7))
	}
	put("list/p-x", 1)
	put("list/pa", 2)
	put("list/p/sub/deep/er", 3)
	put("list/q/1", 4)
	put("list/P", 5)
	put("list/p.dot", 6)
	put("other/p/1", 7)
	sort.Strings(all)

	filter := func(prefix string) []string {
		var out []string
		for _, k := range all {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		return out
	}
	for _, prefix := range []string{"", "list/", "list/p/", "list/p", "list/p/00", "list/p/sub/", "list/q", "other/", "nothing/", "nothing", "list/p/0001", "list/p/0001/"} {
		got, want := listKeys(t, s, prefix), filter(prefix)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("list %q:\n got %q\nwant %q", prefix, got, want)
		}
	}
	err := s.List(context.Background(), "list/", func(info objstore.ObjectInfo) error {
		if info.Size != sizes[info.Key] || info.ModTime.IsZero() {
			return fmt.Errorf("%s: size %d, want %d; mod time %v", info.Key, info.Size, sizes[info.Key], info.ModTime)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	err = s.List(context.Background(), "list/", func(objstore.ObjectInfo) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("list stopped by fn: err %v after %d calls, want the fn's error after 3", err, calls)
	}
}

func testDelete(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	MustPut(t, s, "del/a/b", []byte("x"))
	MustPut(t, s, "del/keep", []byte("y"))
	for i := 0; i < 2; i++ {
		if err := s.Delete(ctx, "del/a/b"); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	_, err := s.Stat(ctx, "del/a/b")
	wantErr(t, "stat after delete", err, objstore.ErrNotFound)
	if got := listKeys(t, s, "del/"); fmt.Sprint(got) != "[del/keep]" {
		t.Fatalf("list after delete: %q", got)
	}
	MustPut(t, s, "del/a/b", []byte("again"))
	checkContent(t, s, "del/a/b", []byte("again"))
}

func testPutIfAbsent(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	first, second := []byte("first"), []byte("second!")
	if err := s.PutIfAbsent(ctx, "pia/key", bytes.NewReader(first), int64(len(first))); err != nil {
		t.Fatalf("first put-if-absent: %v", err)
	}
	err := s.PutIfAbsent(ctx, "pia/key", bytes.NewReader(second), int64(len(second)))
	wantErr(t, "second put-if-absent", err, objstore.ErrExists)
	checkContent(t, s, "pia/key", first)
	if err := s.Delete(ctx, "pia/key"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "pia/key", bytes.NewReader(second), int64(len(second))); err != nil {
		t.Fatalf("put-if-absent after delete: %v", err)
	}
	checkContent(t, s, "pia/key", second)
	if err := s.PutIfAbsent(ctx, "pia/empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("empty put-if-absent: %v", err)
	}
	err = s.PutIfAbsent(ctx, "pia/empty", bytes.NewReader(nil), 0)
	wantErr(t, "second empty put-if-absent", err, objstore.ErrExists)
}

func testPutIfAbsentConcurrent(t *testing.T, s objstore.Store) {
	const creators = 8
	for round := 0; round < 3; round++ {
		key := fmt.Sprintf("pia/race/%d", round)
		errs := make([]error, creators)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range creators {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := Random(uint64(100*round+i), 1000+int64(i))
				<-start
				errs[i] = s.PutIfAbsent(context.Background(), key, bytes.NewReader(body), int64(len(body)))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("%s: creators %d and %d both won", key, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, objstore.ErrExists):
				t.Fatalf("%s: creator %d: %v", key, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: nobody won", key)
		}
		checkContent(t, s, key, Random(uint64(100*round+winner), 1000+int64(winner)))
	}
}

func testLarge(t *testing.T, s objstore.Store, size int64) {
	ctx := context.Background()
	data := Random(4, size)
	MustPut(t, s, "large/obj", data)
	checkContent(t, s, "large/obj", data)
	for _, r := range [][2]int64{{5<<20 - 100, 200}, {size - 4<<20, 4 << 20}, {size/2 + 3, 1 << 20}} {
		got, err := s.GetRange(ctx, "large/obj", r[0], r[1])
		if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("get range %v of large object: err %v", r, err)
		}
	}
	err := s.PutIfAbsent(ctx, "large/obj", bytes.NewReader(data), size)
	wantErr(t, "large put-if-absent over existing", err, objstore.ErrExists)
	if err := s.PutIfAbsent(ctx, "large/new", bytes.NewReader(data), size); err != nil {
		t.Fatalf("large put-if-absent: %v", err)
	}
	checkContent(t, s, "large/new", data)
	checkNoIncompleteUploads(t, s)
}

func checkNoIncompleteUploads(t *testing.T, s objstore.Store) {
	t.Helper()
	var left []objstore.IncompleteUpload
	err := objstore.ListIncompleteUploads(context.Background(), s, "", func(u objstore.IncompleteUpload) error {
		left = append(left, u)
		return nil
	})
	if err != nil {
		t.Fatalf("list incomplete uploads: %v", err)
	}
	if len(left) > 0 {
		t.Fatalf("incomplete uploads left behind: %+v", left)
	}
}

// errReader yields n bytes of data and then fails.
type errReader struct {
	data []byte
	n    int
}

var errBody = errors.New("body read failed")

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errBody
	}
	k := copy(p, r.data[:min(len(r.data), r.n)])
	r.data, r.n = r.data[k:], r.n-k
	return k, nil
}

// testBadBody checks that a body that is short, long or failing stores
// nothing: the previous object, if any, stays as it was, and no multipart
// upload is left behind.
func testBadBody(t *testing.T, s objstore.Store, large int64) {
	ctx := context.Background()
	old := []byte("old content")
	MustPut(t, s, "bad/existing", old)
	for _, size := range []int64{100, large} {
		data := Random(5, size)
		for _, key := range []string{"bad/existing", "bad/new"} {
			bodies := map[string]io.Reader{
				"short": bytes.NewReader(data[:size-1]),
				"long":  io.MultiReader(bytes.NewReader(data), strings.NewReader("x")),
				// Seekable readers (files) may be sent without buffering.
				"long-seekable":    bytes.NewReader(append(bytes.Clone(data), 'x')),
				"short-unseekable": io.MultiReader(bytes.NewReader(data[:size-1])),
				"failing":          &errReader{data: data, n: int(size * 2 / 3)},
			}
			for name, body := range bodies {
				if err := s.Put(ctx, key, body, size); err == nil {
					t.Fatalf("put %s of %d bytes with a %s body: no error", key, size, name)
				}
				if key == "bad/existing" {
					checkContent(t, s, key, old)
				} else {
					_, err := s.Stat(ctx, key)
					wantErr(t, fmt.Sprintf("stat %s after put with a %s body", key, name), err, objstore.ErrNotFound)
				}
			}
		}
	}
	if err := s.PutIfAbsent(ctx, "bad/new", &errReader{data: old, n: 3}, int64(len(old))); err == nil {
		t.Fatal("put-if-absent with a failing body: no error")
	}
	if err := s.PutIfAbsent(ctx, "bad/new", bytes.NewReader(old), int64(len(old))); err != nil {
		t.Fatalf("put-if-absent after a failed one: %v", err)
	}
	checkNoIncompleteUploads(t, s)
}

func testCancelled(t *testing.T, s objstore.Store) {
	MustPut(t, s, "ctx/obj", Random(6, 100000))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		wantErr(t, op+" with a cancelled context", err, context.Canceled)
	}
	check("put", s.Put(ctx, "ctx/new", bytes.NewReader([]byte("x")), 1))
	check("put-if-absent", s.PutIfAbsent(ctx, "ctx/new", bytes.NewReader([]byte("x")), 1))
	_, err := s.Get(ctx, "ctx/obj")
	check("get", err)
	_, err = s.GetRange(ctx, "ctx/obj", 0, 10)
	check("get range", err)
	_, err = s.Stat(ctx, "ctx/obj")
	check("stat", err)
	check("list", s.List(ctx, "ctx/", func(objstore.ObjectInfo) error { return nil }))
	check("delete", s.Delete(ctx, "ctx/obj"))
	if _, err := s.Stat(context.Background(), "ctx/new"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("cancelled put stored an object: stat %v", err)
	}

	// A body opened before cancellation stops delivering data after it.
	ctx, cancel = context.WithCancel(context.Background())
	rc, err := s.Get(ctx, "ctx/obj")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cancel()
	if _, err := io.ReadAll(rc); err == nil {
		t.Fatal("reading a body after its context was cancelled: no error")
	}
}

func testInvalidKeys(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	for _, key := range []string{"", "/abs", "trail/", "a//b", "..", "../up", "a/../b", "a/./b", ".", "nul\x00byte", "ctl\x01", "bad\xffutf8", strings.Repeat("k", objstore.MaxKeyLen+1)} {
		err := s.Put(ctx, key, bytes.NewReader([]byte("x")), 1)
		wantErr(t, fmt.Sprintf("put %q", key), err, objstore.ErrInvalidKey)
		err = s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("x")), 1)
		wantErr(t, fmt.Sprintf("put-if-absent %q", key), err, objstore.ErrInvalidKey)
		_, err = s.Get(ctx, key)
		wantErr(t, fmt.Sprintf("get %q", key), err, objstore.ErrInvalidKey)
		_, err = s.GetRange(ctx, key, 0, 1)
		wantErr(t, fmt.Sprintf("get range %q", key), err, objstore.ErrInvalidKey)
		_, err = s.Stat(ctx, key)
		wantErr(t, fmt.Sprintf("stat %q", key), err, objstore.ErrInvalidKey)
		err = s.Delete(ctx, key)
		wantErr(t, fmt.Sprintf("delete %q", key), err, objstore.ErrInvalidKey)
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("invalid keys stored something: %q", keys)
	}
}

func testProbe(t *testing.T, s objstore.Store) {
	if err := objstore.ProbeConditionalCreate(context.Background(), s, "tier"); err != nil {
		t.Fatal(err)
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("probe left objects behind: %q", keys)
	}
}

func testPrefixed(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	p := objstore.WithPrefix(s, "/tenant/a/")
	MustPut(t, p, "x/1", []byte("one"))
	MustPut(t, s, "tenant/b/x/1", []byte("other"))
	checkContent(t, s, "tenant/a/x/1", []byte("one"))
	checkContent(t, p, "x/1", []byte("one"))
	if got := listKeys(t, p, ""); fmt.Sprint(got) != "[x/1]" {
		t.Fatalf("prefixed list: %q", got)
	}
	if _, err := p.Get(ctx, "../b/x/1"); !errors.Is(err, objstore.ErrInvalidKey) {
		t.Fatalf("prefixed get of ../b/x/1: %v, want ErrInvalidKey", err)
	}
	if err := p.Delete(ctx, "x/1"); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, s, ""); fmt.Sprint(got) != "[tenant/b/x/1]" {
		t.Fatalf("list after prefixed delete: %q", got)
	}
}
