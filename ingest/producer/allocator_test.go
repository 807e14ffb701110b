package producer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func openAlloc(t *testing.T, path string, block int64) *Allocator {
	t.Helper()
	a, err := OpenAllocator(path, block)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func nextN(t *testing.T, a *Allocator, n int) []int64 {
	t.Helper()
	ids := make([]int64, 0, n)
	for range n {
		id, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func persistedEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end, err := decodeAllocatorFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return end
}

func TestAllocatorIncreasesAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producer-ids")
	var all []int64
	for round := range 4 {
		a := openAlloc(t, path, 3)
		all = append(all, nextN(t, a, 5+round)...)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Next(); !errors.Is(err, ErrAllocatorClosed) {
			t.Fatalf("Next after Close: %v", err)
		}
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("ids not strictly increasing: %v", all)
		}
	}
	if all[0] != 0 {
		t.Fatalf("first id = %d, want 0", all[0])
	}
}

func TestAllocatorPersistsBeforeHandingOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producer-ids")
	a := openAlloc(t, path, 10)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file written before any id was needed: %v", err)
	}
	for i := range 25 {
		id, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		if end := persistedEnd(t, path); id >= end {
			t.Fatalf("step %d: id %d handed out beyond persisted end %d", i, id, end)
		}
	}
	if end := persistedEnd(t, path); end != 30 {
		t.Fatalf("persisted end = %d, want 30", end)
	}
}

// TestAllocatorCrash reopens without Close, as after a crash, at every point
// of a block, including with a stale temporary file left behind.
func TestAllocatorCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producer-ids")
	seen := map[int64]bool{}
	maxSeen := int64(-1)
	for crash := range 12 {
		a := openAlloc(t, path, 4)
		for _, id := range nextN(t, a, crash) {
			if seen[id] || id <= maxSeen {
				t.Fatalf("crash %d: id %d repeated or not increasing", crash, id)
			}
			seen[id] = true
			maxSeen = id
		}
		if crash%3 == 0 {
			if err := os.WriteFile(path+".tmp", []byte("half-written"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// a is abandoned without Close.
	}
}

func TestAllocatorConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producer-ids")
	a := openAlloc(t, path, 7)
	const workers, per = 8, 200
	results := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range per {
				id, err := a.Next()
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], id)
			}
		})
	}
	wg.Wait()
	all := slices.Concat(results...)
	slices.Sort(all)
	if len(all) != workers*per {
		t.Fatalf("%d ids, want %d", len(all), workers*per)
	}
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			t.Fatalf("id %d handed out twice", all[i])
		}
	}
	for w, ids := range results {
		if !slices.IsSorted(ids) {
			t.Fatalf("worker %d saw ids out of order: %v", w, ids)
		}
	}
	if end := persistedEnd(t, path); end < all[len(all)-1]+1 {
		t.Fatalf("persisted end %d below handed out id %d", end, all[len(all)-1])
	}
}

func TestAllocatorStickyError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a := openAlloc(t, filepath.Join(dir, "producer-ids"), 2)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	_, err := a.Next()
	if err == nil {
		t.Fatal("Next succeeded without a directory")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err2 := a.Next(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("error not sticky: first %v, then %v", err, err2)
	}
}

func TestAllocatorExhausted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "producer-ids")
	if err := os.WriteFile(path, encodeAllocatorFile(math.MaxInt64-3), 0o644); err != nil {
		t.Fatal(err)
	}
	a := openAlloc(t, path, 5)
	if _, err := a.Next(); !errors.Is(err, ErrProducerIDsUsedUp) {
		t.Fatalf("err = %v, want ErrProducerIDsUsedUp", err)
	}
	a = openAlloc(t, path, 3)
	if ids := nextN(t, a, 3); ids[2] != math.MaxInt64-1 {
		t.Fatalf("ids = %v", ids)
	}
}

func TestOpenAllocatorErrors(t *testing.T) {
	dir := t.TempDir()
	good := encodeAllocatorFile(100)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := func(i int, b []byte) []byte { b = slices.Clone(b); b[i] ^= 1; return b }
	tests := []struct {
		name    string
		path    string
		block   int64
		want    error
		message string
	}{
		{"zero block", filepath.Join(dir, "x"), 0, errAllocatorBlockSize, "positive"},
		{"missing directory", filepath.Join(dir, "nope", "x"), 1, os.ErrNotExist, "nope"},
		{"empty file", write("empty", nil), 1, ErrAllocatorCorrupt, "shorter"},
		{"bad magic", write("magic", flip(0, good)), 1, ErrAllocatorCorrupt, "magic"},
		{"unknown version", write("version", flip(5, good)), 1, ErrAllocatorVersion, "version 0"},
		{"version 3", write("version3", append([]byte("STPI\x00\x03"), good[6:]...)), 1, ErrAllocatorVersion, "version 3"},
		{"flipped bit", write("crc", flip(9, good)), 1, ErrAllocatorCorrupt, "CRC"},
		{"truncated", write("short", good[:17]), 1, ErrAllocatorCorrupt, "bytes"},
		{"negative end", write("neg", encodeAllocatorFile(-5)), 1, ErrAllocatorCorrupt, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := OpenAllocator(tt.path, tt.block)
			if !errors.Is(err, tt.want) || a != nil {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err %q does not mention %q", err, tt.message)
			}
		})
	}
}

// TestAllocatorGoldenV1 keeps version 1 allocator files readable.
func TestAllocatorGoldenV1(t *testing.T) {
	golden := filepath.Join("testdata", "allocator-v1.bin")
	if *update {
		if err := os.WriteFile(golden, encodeAllocatorFile(1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "producer-ids")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if id := nextN(t, openAlloc(t, path, 10), 1)[0]; id != 1000 {
		t.Fatalf("first id after golden file = %d, want 1000", id)
	}
}

func FuzzDecodeAllocatorFile(f *testing.F) {
	f.Add(encodeAllocatorFile(0))
	f.Add(encodeAllocatorFile(math.MaxInt64))
	f.Add(encodeAllocatorFile(-1))
	f.Add([]byte("STPI\x00\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		end, err := decodeAllocatorFile(b)
		if err != nil {
			return
		}
		if end < 0 || !slices.Equal(encodeAllocatorFile(end), b) {
			t.Fatalf("decoded %d from %x, which does not re-encode", end, b)
		}
	})
}

// TestQuorumAllocator: blocks come from the reservation function, ids are
// handed out in order within a block, and a failed reservation is returned
// and retried rather than sticky.
func TestQuorumAllocator(t *testing.T) {
	next := int64(500)
	fail := false
	a, err := NewQuorumAllocator(3, func(n int64) (int64, error) {
		if fail {
			return 0, errors.New("no controller")
		}
		first := next
		next += n
		return first, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for i := 0; i < 4; i++ {
		id, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if fmt.Sprint(got) != "[500 501 502 503]" {
		t.Fatalf("ids %v", got)
	}
	a.Next()
	a.Next() // block [503,506) used up
	fail = true
	if _, err := a.Next(); err == nil {
		t.Fatal("no error from a failed reservation")
	}
	fail = false
	if id, err := a.Next(); err != nil || id != 506 {
		t.Fatalf("after the failure: %d %v", id, err)
	}
	if _, err := NewQuorumAllocator(0, nil); err == nil {
		t.Fatal("block size 0 accepted")
	}
}

// TestTryNextDoesNotWait: TryNext never waits for a reservation; a used-up
// block is refilled in the background and ids keep never repeating.
func TestTryNextDoesNotWait(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	next := int64(0)
	a, err := NewQuorumAllocator(2, func(n int64) (int64, error) {
		calls.Add(1)
		<-release
		first := next
		next += n
		return first, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first block is being reserved (and blocks): TryNext answers
	// at once, twice, starting one reservation only.
	for range 2 {
		if _, ok, err := a.TryNext(); ok || err != nil {
			t.Fatalf("TryNext with no block: ok %v err %v", ok, err)
		}
	}
	close(release)
	seen := map[int64]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("TryNext handed out %d ids in 10 s", len(seen))
		}
		id, ok, err := a.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			time.Sleep(time.Millisecond)
			continue
		}
		if seen[id] {
			t.Fatalf("id %d handed out twice", id)
		}
		seen[id] = true
	}
	if n := calls.Load(); n < 4 {
		t.Fatalf("%d reservations for 7 ids in blocks of 2", n)
	}
	a.Close()
	if _, _, err := a.TryNext(); !errors.Is(err, ErrAllocatorClosed) {
		t.Fatalf("TryNext after Close: %v", err)
	}
}
