package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
	"github.com/strata-io/strata/tier/segment"
)

// data returns n deterministic bytes for chunk idx of key.
func data(key string, idx, n int) []byte {
	b := make([]byte, n)
	seed := byte(len(key)*31 + idx*7)
	for i := range b {
		b[i] = seed + byte(i*13+i>>8)
	}
	return b
}

func openCache(t testing.TB, dir string, limit int64, opts Options) *ChunkCache {
	t.Helper()
	c, err := Open(dir, limit, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustPut(t testing.TB, c *ChunkCache, key string, idx int, b []byte) {
	t.Helper()
	if err := c.Put(key, idx, b); err != nil {
		t.Fatalf("Put(%s, %d): %v", key, idx, err)
	}
}

func wantHit(t testing.TB, c *ChunkCache, key string, idx int, want []byte) {
	t.Helper()
	got, ok := c.Get(key, idx)
	if !ok {
		t.Fatalf("Get(%s, %d): miss, want hit", key, idx)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s, %d): %d bytes differ from the %d put", key, idx, len(got), len(want))
	}
}

func wantMiss(t testing.TB, c *ChunkCache, key string, idx int) {
	t.Helper()
	if _, ok := c.Get(key, idx); ok {
		t.Fatalf("Get(%s, %d): hit, want miss", key, idx)
	}
}

// entryFiles returns the entry files in dir with their total size.
func entryFiles(t testing.TB, dir string) (names []string, total int64) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		info, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, de.Name())
		total += info.Size()
	}
	return names, total
}

// entryPath returns the file of the cached chunk.
func entryPath(t testing.TB, c *ChunkCache, key string, idx int) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.mu.m[chunkKey{key: key, idx: uint32(idx)}]
	if e == nil {
		t.Fatalf("%s#%d not in the index", key, idx)
	}
	return filepath.Join(c.dir, entryName(e.gen))
}

// eventually polls cond (a state another goroutine reaches) until it holds
// or 10 s pass. It waits for progress; it does not assert timing.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockingLoad is a LoadFunc that signals when it starts and returns its
// bytes when released (or ctx's error).
type blockingLoad struct {
	b       []byte
	started chan struct{}
	release chan struct{}
	once    sync.Once
	calls   int
	mu      sync.Mutex
	ctxErr  error
}

func newBlockingLoad(b []byte) *blockingLoad {
	return &blockingLoad{b: b, started: make(chan struct{}), release: make(chan struct{})}
}

func (l *blockingLoad) load(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	l.once.Do(func() { close(l.started) })
	select {
	case <-l.release:
		return bytes.Clone(l.b), nil
	case <-ctx.Done():
		l.mu.Lock()
		l.ctxErr = ctx.Err()
		l.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (l *blockingLoad) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// segObject is a segment object in a mem store with a counting view.
type segObject struct {
	store *objstore.Counting
	key   string
	size  int64
	src   []byte // the raw batches
}

// buildSegment writes a segment object of about nBatches small batches
// with chunks of about chunkTarget raw bytes.
func buildSegment(t testing.TB, nBatches, chunkTarget int) *segObject {
	t.Helper()
	return buildSegmentAborted(t, nBatches, chunkTarget, nil)
}

// buildSegmentAborted is buildSegment with aborted-transaction entries in
// the footer.
func buildSegmentAborted(t testing.TB, nBatches, chunkTarget int, aborted []index.AbortedTxn) *segObject {
	t.Helper()
	var src []byte
	next := int64(0)
	for i := range nBatches {
		recs := make([]batch.Record, 10)
		for j := range recs {
			recs[j] = batch.Record{TimestampDelta: int64(j), Key: fmt.Appendf(nil, "k%d", j),
				Value: fmt.Appendf(nil, `{"batch":%d,"record":%d,"pad":"%0100d"}`, i, j, i*j)}
		}
		b := batch.Build(batch.BuildOptions{BaseOffset: next, BaseTimestamp: 1_700_000_000_000 + int64(i)}, recs...)
		src = append(src, b...)
		next += int64(len(recs))
	}
	var obj bytes.Buffer
	res, err := segment.Build(&obj, bytes.NewReader(src), segment.BuildOptions{ChunkTarget: chunkTarget, Aborted: aborted})
	if err != nil {
		t.Fatalf("segment.Build: %v", err)
	}
	store := objstore.NewCounting(mem.New())
	key := "topic-x/0/00000000000000000000-e1-a1.seg"
	if aborted != nil {
		key = "topic-x/0/00000000000000000000-e1-a2.seg"
	}
	if err := store.Put(context.Background(), key, bytes.NewReader(obj.Bytes()), res.Size); err != nil {
		t.Fatal(err)
	}
	store.Reset()
	return &segObject{store: store, key: key, size: res.Size, src: src}
}

func (o *segObject) open(t testing.TB) *segment.Reader {
	t.Helper()
	r, err := segment.OpenReader(context.Background(), StoreFetch(o.store, o.key), o.size, segment.WithName(o.key))
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	return r
}

func (o *segObject) gets() int64 { return o.store.Counts().Get(objstore.OpGetRange).Calls }

// waitStored waits until no load of the chunk is running (its result, if
// any, is then in the cache).
func waitStored(t testing.TB, c *ChunkCache, key string, idx int) {
	t.Helper()
	eventually(t, "the load to be stored", func() bool { return !c.flights.has(chunkKey{key, uint32(idx)}) })
}
