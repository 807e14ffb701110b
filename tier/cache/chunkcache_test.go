package cache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPutGetRoundTrip(t *testing.T) {
	c := openCache(t, t.TempDir(), 1<<20, Options{})
	wantMiss(t, c, "a/b", 0)
	for idx, n := range []int{0, 1, 100, 64 << 10} {
		mustPut(t, c, "a/b", idx, data("a/b", idx, n))
	}
	for idx, n := range []int{0, 1, 100, 64 << 10} {
		wantHit(t, c, "a/b", idx, data("a/b", idx, n))
	}
	wantMiss(t, c, "a/b", 4)
	wantMiss(t, c, "a/c", 0)
	if !c.Contains("a/b", 3) || c.Contains("a/b", 4) {
		t.Fatal("Contains disagrees with Get")
	}
	// A second Put of a cached chunk is a no-op.
	mustPut(t, c, "a/b", 1, data("a/b", 1, 1))
	s := c.Stats()
	if s.Puts != 4 || s.Entries != 4 || s.Hits != 4 || s.Misses != 3 {
		t.Fatalf("stats %+v", s)
	}
	// The returned slice is the caller's.
	got, _ := c.Get("a/b", 2)
	clear(got)
	wantHit(t, c, "a/b", 2, data("a/b", 2, 100))
	// Invalid keys.
	for _, bad := range []struct {
		key string
		idx int
	}{{"", 0}, {"k", -1}, {strings.Repeat("k", maxKeyLen+1), 0}} {
		if err := c.Put(bad.key, bad.idx, []byte("x")); err == nil {
			t.Errorf("Put(%q, %d) succeeded", bad.key, bad.idx)
		}
		wantMiss(t, c, bad.key, bad.idx)
	}
}

func TestLRUEvictionRespectsLimit(t *testing.T) {
	dir := t.TempDir()
	const n = 1000
	size := entrySize("obj", n)
	limit := 5*size + size/2 // room for 5 entries
	c := openCache(t, dir, limit, Options{})
	for i := range 5 {
		mustPut(t, c, "obj", i, data("obj", i, n))
	}
	wantHit(t, c, "obj", 0, data("obj", 0, n)) // 0 is now the most recent; 1 the least
	for i := 5; i < 40; i++ {
		mustPut(t, c, "obj", i, data("obj", i, n))
		s := c.Stats()
		if s.Bytes > limit {
			t.Fatalf("after put %d: %d bytes cached, limit %d", i, s.Bytes, limit)
		}
		if _, total := entryFiles(t, dir); total > limit {
			t.Fatalf("after put %d: %d bytes on disk, limit %d", i, total, limit)
		}
		if i == 5 {
			wantHit(t, c, "obj", 0, data("obj", 0, n))
			wantMiss(t, c, "obj", 1)
		}
	}
	s := c.Stats()
	if s.Entries != 5 || s.Evictions != 35 || s.EvictedBytes != 35*size {
		t.Fatalf("stats %+v", s)
	}
	for i := 35; i < 40; i++ {
		wantHit(t, c, "obj", i, data("obj", i, n))
	}
	if names, _ := entryFiles(t, dir); len(names) != 5 {
		t.Fatalf("files %v, want 5", names)
	}
	// An entry larger than the limit is not cached and evicts nothing.
	mustPut(t, c, "big", 0, make([]byte, limit))
	wantMiss(t, c, "big", 0)
	if s := c.Stats(); s.Entries != 5 || s.Skipped != 1 {
		t.Fatalf("stats after oversized put %+v", s)
	}
}

func TestCorruptEntryIsAMiss(t *testing.T) {
	b := data("k", 0, 4096)
	hl := int(headerLen(len("k")))
	for _, tc := range []struct {
		name   string
		damage func(path string) error
	}{
		{"flip data byte", func(p string) error { return flip(p, hl+100) }},
		{"flip last byte", func(p string) error { return flip(p, hl+len(b)-1) }},
		{"flip header key", func(p string) error { return flip(p, fixedHeader) }},
		{"flip header length", func(p string) error { return flip(p, 12) }},
		{"truncate data", func(p string) error { return os.Truncate(p, int64(hl+len(b)-1)) }},
		{"truncate into header", func(p string) error { return os.Truncate(p, 10) }},
		{"empty", func(p string) error { return os.Truncate(p, 0) }},
		{"extend", func(p string) error { return appendTo(p, []byte{0}) }},
		{"deleted", os.Remove},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := openCache(t, t.TempDir(), 1<<20, Options{})
			mustPut(t, c, "k", 0, b)
			path := entryPath(t, c, "k", 0)
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}
			wantMiss(t, c, "k", 0)
			if c.Contains("k", 0) {
				t.Fatal("damaged entry still indexed")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("damaged entry file still there (%v)", err)
			}
			s := c.Stats()
			if s.Bytes != 0 || s.Entries != 0 {
				t.Fatalf("stats %+v", s)
			}
			if tc.name != "deleted" && s.Corrupt != 1 {
				t.Fatalf("Corrupt = %d, want 1", s.Corrupt)
			}
			// It can be cached again.
			mustPut(t, c, "k", 0, b)
			wantHit(t, c, "k", 0, b)
		})
	}
}

func flip(path string, at int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[at] ^= 0x40
	return os.WriteFile(path, b, 0o644)
}

func appendTo(path string, p []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(p); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestReopenReloadsEntries(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, 1<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"t/0/a", "t/0/b", "t/1/a"}
	for _, k := range keys {
		for i := range 3 {
			mustPut(t, c, k, i, data(k, i, 1000+i))
		}
	}
	corruptPath := entryPath(t, c, "t/1/a", 2)
	c.Close()

	// A crash leaves a temporary file; a torn write leaves a bad entry;
	// foreign files are not ours.
	must(t, os.WriteFile(filepath.Join(dir, tmpName(999)), []byte("partial"), 0o644))
	must(t, flip(corruptPath, int(headerLen(len("t/1/a")))+5)) // data: caught on read
	must(t, os.WriteFile(filepath.Join(dir, entryName(1000)), []byte("STCC garbage"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "README"), []byte("keep me"), 0o644))

	c = openCache(t, dir, 1<<20, Options{})
	if s := c.Stats(); s.Entries != 9 || s.Corrupt != 1 {
		t.Fatalf("after reopen: %+v", s)
	}
	for _, k := range keys {
		for i := range 3 {
			if k == "t/1/a" && i == 2 {
				wantMiss(t, c, k, i)
				continue
			}
			wantHit(t, c, k, i, data(k, i, 1000+i))
		}
	}
	names, _ := entryFiles(t, dir)
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) || n == entryName(1000) {
			t.Errorf("%s survived Open", n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	// New entries do not reuse file names.
	mustPut(t, c, "new", 0, []byte("x"))
	if p := entryPath(t, c, "new", 0); filepath.Base(p) <= entryName(1000) {
		t.Errorf("new entry %s reuses an old generation", p)
	}
	c.Close()

	// Reopening with a smaller limit evicts the oldest writes.
	size := entrySize("t/0/a", 1000)
	c2 := openCache(t, dir, 3*size+size/2, Options{})
	s := c2.Stats()
	if s.Bytes > s.Limit || s.Entries != 4 { // "new" (tiny) and the three next most recent
		t.Fatalf("reopen with a smaller limit: %+v", s)
	}
	wantHit(t, c2, "new", 0, []byte("x"))
	wantHit(t, c2, "t/1/a", 1, data("t/1/a", 1, 1001))
	wantMiss(t, c2, "t/0/a", 0)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestShrinkAndSetLimit(t *testing.T) {
	dir := t.TempDir()
	const n = 4000
	size := entrySize("obj", n)
	c := openCache(t, dir, 100*size, Options{})
	for i := range 10 {
		mustPut(t, c, "obj", i, data("obj", i, n))
	}
	wantHit(t, c, "obj", 0, data("obj", 0, n))
	freed := c.Shrink(4 * size)
	if freed != 6*size {
		t.Fatalf("Shrink freed %d, want %d", freed, 6*size)
	}
	if s := c.Stats(); s.Bytes != 4*size || s.Limit != 100*size {
		t.Fatalf("after Shrink: %+v", s)
	}
	if _, total := entryFiles(t, dir); total != 4*size {
		t.Fatalf("%d bytes on disk after Shrink, want %d", total, 4*size)
	}
	wantHit(t, c, "obj", 0, data("obj", 0, n)) // recently used: kept
	wantMiss(t, c, "obj", 1)

	if freed := c.SetLimit(2 * size); freed != 2*size {
		t.Fatalf("SetLimit freed %d", freed)
	}
	mustPut(t, c, "obj", 20, data("obj", 20, n))
	if s := c.Stats(); s.Bytes != 2*size || s.Limit != 2*size || s.Entries != 2 {
		t.Fatalf("after SetLimit: %+v", s)
	}
	c.SetLimit(0)
	mustPut(t, c, "obj", 21, data("obj", 21, n))
	if names, total := entryFiles(t, dir); total != 0 {
		t.Fatalf("limit 0 left files %v", names)
	}
	if c.Shrink(0) != 0 {
		t.Fatal("Shrink of an empty cache freed bytes")
	}
}

func TestPutWriteErrorLeavesCacheConsistent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c := openCache(t, dir, 1<<20, Options{})
	mustPut(t, c, "k", 0, []byte("kept"))
	must(t, os.Rename(dir, dir+".moved")) // writes now fail
	if err := c.Put("k", 1, []byte("lost")); err == nil {
		t.Fatal("Put into a missing directory succeeded")
	}
	s := c.Stats()
	if s.PutErrors != 1 || s.Entries != 1 || c.mu.reserved != 0 || len(c.mu.pending) != 0 {
		t.Fatalf("after a failed write: %+v reserved=%d", s, c.mu.reserved)
	}
	must(t, os.Rename(dir+".moved", dir))
	mustPut(t, c, "k", 1, []byte("now"))
	wantHit(t, c, "k", 1, []byte("now"))
}

func TestEntryHeaderRoundTrip(t *testing.T) {
	for _, k := range []chunkKey{{"a", 0}, {strings.Repeat("é", maxKeyLen/2), 1<<32 - 1}, {"x/y z%", 7}} {
		d := []byte(fmt.Sprint(k))
		b := appendHeader(nil, k, d)
		if int64(len(b)) != headerLen(len(k.key)) {
			t.Fatalf("header of %d bytes, want %d", len(b), headerLen(len(k.key)))
		}
		h, err := decodeHeader(append(b, d...))
		if err != nil || h.k != k || h.dataLen != int64(len(d)) || h.hdrLen != int64(len(b)) {
			t.Fatalf("decode %v: %+v %v", k, h, err)
		}
		for i := range b {
			bad := bytes.Clone(b)
			bad[i] ^= 1
			if _, err := decodeHeader(bad); err == nil {
				t.Fatalf("%v: flipped header byte %d decodes", k, i)
			}
		}
	}
}
