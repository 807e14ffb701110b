package log

import (
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// A tombstone in the dirty part must survive the pass that first maps it
// (as the planner's DropsTombstones and the dry run say, and Kafka does),
// even when older than delete.retention.ms: a consumer that had read the
// old value before the pass must still see the delete.
func TestCleanKeepsTombstonesOnFirstPass(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/firstpass", Config{SegmentBytes: 4096, IndexIntervalBytes: 256, SegmentMs: 1 << 50}, Options{})
	defer l.Close()
	old := time.Now().Add(-48 * time.Hour).UnixMilli()
	app := func(k string, v []byte) {
		mustAppend(t, l, keyedBatch([]kv{{[]byte(k), v, old}}, nil, batch.CodecNone))
		if _, err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	app("k", []byte("V")) // 0
	app("k", nil)         // 1
	app("j", []byte("x")) // 2
	waitDurable(t, l, l.EndOffset()-1)
	// The consumer reads offset 0 and sees k=V.
	if b, err := l.Read(0, 1<<20, 1<<62); err != nil || len(b) == 0 {
		t.Fatal(err)
	}
	segs := l.Segments()
	res, err := l.Clean(CleanOptions{From: 0, To: segs[len(segs)-1].Base, TombstoneHorizon: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// It goes on from offset 1.
	var sawTomb bool
	for off := int64(1); off < segs[len(segs)-1].Base; {
		b, err := l.Read(off, 1<<20, 1<<62)
		if err != nil || len(b) == 0 {
			t.Fatalf("read %d: %v", off, err)
		}
		h, _ := batch.ParseHeader(b)
		_ = batch.Records(b[:h.Size()], 0, func(r batch.Record) error {
			if string(r.Key) == "k" && r.Value == nil {
				sawTomb = true
			}
			return nil
		})
		off = h.LastOffset() + 1
	}
	if !sawTomb {
		t.Fatalf("first pass over a dirty log removed %d tombstone(s): a consumer that read k=V at 0 never learns of the delete", res.TombstonesRemoved)
	}
}
