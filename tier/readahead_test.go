package tier

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
)

// TestSequentialReplayReadAhead: a consumer reading the whole remote log in
// small steps gets every byte, loads every chunk from the store exactly
// once and (nearly) never reads a chunk back from the on-disk cache (chunks
// loaded ahead of it wait in memory), and when it nears the end of one segment
// object the first chunks of the next are loaded before it gets there.
func TestSequentialReplayReadAhead(t *testing.T) {
	ctx := context.Background()
	base := mem.New()
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(5, nil)
	g.appendTo(t, 1, 200, l)
	up, err := newTestManager(t, base, Config{}).OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Upload(ctx, l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	end := up.RemoteEndOffset()
	all, pos := localBytes(t, l, 0, end)

	counting := objstore.NewCounting(base)
	m := newTestManager(t, counting, Config{})
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	cur := p.Manifest()
	if len(cur.Entries) < 3 {
		t.Fatalf("setup: %d segment objects, want 3 or more", len(cur.Entries))
	}
	chunks, footers := 0, 0
	for i := range cur.Entries {
		e := &cur.Entries[i]
		// Read the first object's footer and chunk 0 cold; after that the
		// reader is sequential.
		if i == 1 {
			// By the time the reader reaches object 1, read-ahead has
			// opened it and loaded its first chunks: reading its first
			// batch costs no request. Wait for that (bounded).
			want := counting.Counts()
			deadline := time.Now().Add(10 * time.Second)
			// Read-ahead loads the object's first chunks in the background:
			// wait for all of them, so that none is still in flight below.
			loaded := func() bool {
				if !m.hot.has(e.Key, 0) {
					return false
				}
				r, err := p.reader(ctx, e) // cached by the read-ahead by now
				if err != nil {
					t.Fatal(err)
				}
				for i := range min(m.chunks.ReadAheadChunks(), len(r.Footer().Chunks)) {
					if !m.hot.has(e.Key, i) {
						return false
					}
				}
				return true
			}
			for !loaded() {
				if time.Now().After(deadline) {
					t.Fatalf("chunk 0 of %s was not loaded ahead of the reader; requests %s", e.Key, counting.Counts().Sub(want))
				}
				time.Sleep(time.Millisecond)
			}
			before := counting.Counts()
			if _, err := p.Read(ctx, e.BaseOffset, 1); err != nil {
				t.Fatal(err)
			}
			if diff := counting.Counts().Sub(before); diff != (objstore.Counts{}) {
				t.Fatalf("first read of %s after read-ahead made requests: %s", e.Key, diff)
			}
		}
		r, err := p.reader(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		chunks += len(r.Footer().Chunks)
		footers++
		for off := e.BaseOffset; off < e.NextOffset; {
			b, err := p.Read(ctx, off, 100) // less than a chunk: several reads per chunk
			if err != nil {
				t.Fatalf("Read(%d): %v", off, err)
			}
			h, err := batch.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			at, ok := pos[h.BaseOffset]
			if !ok || h.BaseOffset > off || !bytes.Equal(b, all[at:at+len(b)]) {
				t.Fatalf("Read(%d) returned other bytes than the local log", off)
			}
			// Step batch by batch through what was returned.
			for rest := b; len(rest) > 0; {
				h, err := batch.ParseHeader(rest)
				if err != nil {
					t.Fatal(err)
				}
				off = h.LastOffset() + 1
				rest = rest[h.Size():]
			}
		}
	}
	// Let read-ahead started by the last reads finish before counting.
	waitIdle(t, m)
	gets := counting.Counts().Get(objstore.OpGetRange).Calls
	// Each footer costs one or two ranged GETs (tail read, then the rest
	// if it did not fit) and each chunk one.
	if gets < int64(chunks+footers) || gets > int64(chunks+2*footers) {
		t.Fatalf("%d ranged GETs for %d chunks in %d objects: want each chunk loaded once", gets, chunks, footers)
	}
	st := m.chunks.Stats()
	if st.Loads != int64(chunks) {
		t.Fatalf("%d chunk loads for %d chunks", st.Loads, chunks)
	}
	// A reader that misses memory just before a prefetch lands there can
	// still find the chunk on disk (a benign race); without the memory copy
	// every prefetched chunk would be read back from disk.
	if st.Hits*5 > int64(chunks) {
		t.Fatalf("%d of %d chunks read back from the disk cache (read-ahead should keep them in memory)", st.Hits, chunks)
	}
}

// waitIdle waits (bounded) until the tier's read cache has no load running.
func waitIdle(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for stable := 0; stable < 20; {
		if m.chunks.Stats().Loading == 0 {
			stable++
		} else {
			stable = 0
		}
		if time.Now().After(deadline) {
			t.Fatal("read cache still loading after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
