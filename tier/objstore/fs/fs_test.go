package fs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
)

func newStore(t *testing.T) *Store {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAcceptance(t *testing.T) {
	objstoretest.AcceptanceTest(t, func(t *testing.T) objstore.Store { return newStore(t) })
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, seg := range []string{"a", ".x", "x.", "100%", "a b", "ü", "%", "x%", "-_~=,+@", "?#*:"} {
		esc := escapeSegment(seg)
		if len(esc) > 0 && esc[len(esc)-1] == '%' {
			t.Fatalf("escape(%q) = %q ends in %%", seg, esc)
		}
		got, ok := unescapeSegment(esc)
		if !ok || got != seg {
			t.Fatalf("unescape(escape(%q)=%q) = %q, %v", seg, esc, got, ok)
		}
	}
	for _, bad := range []string{".tmp", "%", "%4", "%zz", "a%2f", "a b"} {
		if got, ok := unescapeSegment(bad); ok {
			t.Fatalf("unescape(%q) = %q, want not ok", bad, got)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"a", ".", "%41", "a/b", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		esc := escapeSegment(seg)
		got, ok := unescapeSegment(esc)
		if !ok || got != seg {
			t.Fatalf("unescape(escape(%q)=%q) = %q, %v", seg, esc, got, ok)
		}
		if seg != "" {
			if _, err := relPath(seg); err == nil && (esc == ".tmp" || esc[0] == '.') {
				t.Fatalf("segment %q escapes to hidden name %q", seg, esc)
			}
		}
	})
}

// An object and a "directory" of the same name coexist, as in S3.
func TestFileAndDirectorySameName(t *testing.T) {
	s := newStore(t)
	objstoretest.MustPut(t, s, "a", []byte("file"))
	objstoretest.MustPut(t, s, "a/b", []byte("below"))
	if got := objstoretest.MustGet(t, s, "a"); string(got) != "file" {
		t.Fatalf("a = %q", got)
	}
	var keys []string
	if err := s.List(context.Background(), "", func(i objstore.ObjectInfo) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != "a" || keys[1] != "a/b" {
		t.Fatalf("list = %q", keys)
	}
}

func TestLayoutAndCleanup(t *testing.T) {
	s := newStore(t)
	objstoretest.MustPut(t, s, "topic/0/seg one", []byte("x"))
	want := filepath.Join(s.Root(), "topic", "0", "seg%20one%")
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("object file: %v", err)
	}
	if err := s.Delete(context.Background(), "topic/0/seg one"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "topic")); !os.IsNotExist(err) {
		t.Fatalf("empty directories not pruned: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir))
	if len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
	// Stale temp files from a crash are removed on open; foreign files are
	// not listed.
	stale := filepath.Join(s.Root(), tmpDir, "put-stale")
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root(), "README"), []byte("not an object"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := New(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temp file kept: %v", err)
	}
	n := 0
	if err := s2.List(context.Background(), "", func(objstore.ObjectInfo) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("list of store with foreign file: %d keys, %v", n, err)
	}
}

// Concurrent puts and deletes in one directory do not fail each other
// (Delete prunes directories that Put is about to use).
func TestConcurrentPutDelete(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	done := make(chan error, 2)
	for w := 0; w < 2; w++ {
		go func() {
			for i := 0; i < 200; i++ {
				key := "d/e/f/" + string(rune('a'+w))
				if err := s.Put(ctx, key, bytes.NewReader([]byte("x")), 1); err != nil {
					done <- err
					return
				}
				if err := s.Delete(ctx, key); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
