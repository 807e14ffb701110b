package tier

import (
	"bytes"
	"context"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/objstore/mem"
)

// TestCompactedSegmentsUploadAndRead: local segments compacted by the
// cleaner begin and may continue with offset gaps; uploaded, they are read
// back exactly as the local log serves them, and a read at an offset
// compacted away (such as a segment's base) returns the next batch, as
// Kafka does, never OFFSET_OUT_OF_RANGE.
func TestCompactedSegmentsUploadAndRead(t *testing.T) {
	ctx := context.Background()
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(11, nil)
	g.appendTo(t, 1, 150, l) // keys k0..k6: nearly everything is superseded
	segs := l.Segments()
	to := segs[len(segs)-1].Base // every sealed segment
	if _, err := l.Clean(plog.CleanOptions{From: l.StartOffset(), To: to}); err != nil {
		t.Fatal(err)
	}
	p, err := newTestManager(t, mem.New(), Config{}).OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Upload(ctx, l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	m := p.Manifest()
	if len(m.Entries) < 3 || m.EndOffset() != to {
		t.Fatalf("uploaded %d objects up to %d, want the compacted segments up to %d", len(m.Entries), m.EndOffset(), to)
	}
	gaps := 0
	for _, e := range m.Entries {
		b, err := p.Read(ctx, e.BaseOffset, 1)
		if err != nil {
			t.Fatalf("read at the base %d of %s: %v", e.BaseOffset, e.Key, err)
		}
		h, _ := batch.ParseHeader(b)
		if h.LastOffset() < e.BaseOffset || h.BaseOffset >= e.NextOffset {
			t.Fatalf("read at %d returned the batch [%d, %d]", e.BaseOffset, h.BaseOffset, h.LastOffset())
		}
		if h.BaseOffset > e.BaseOffset {
			gaps++
		}
	}
	if gaps == 0 {
		t.Fatal("setup: no segment starts with a compacted-away gap")
	}
	// Every offset, gap or not, reads what the local log serves.
	for off := l.StartOffset(); off < to; off++ {
		want, err := l.Read(off, 1, to)
		if err != nil {
			t.Fatalf("local read %d: %v", off, err)
		}
		got, err := p.Read(ctx, off, 1)
		if err != nil {
			t.Fatalf("remote read %d: %v", off, err)
		}
		hw, _ := batch.ParseHeader(want)
		hg, _ := batch.ParseHeader(got)
		if !bytes.Equal(got[:hg.Size()], want[:hw.Size()]) {
			t.Fatalf("read %d: remote batch [%d, %d], local [%d, %d]", off, hg.BaseOffset, hg.LastOffset(), hw.BaseOffset, hw.LastOffset())
		}
	}
}
