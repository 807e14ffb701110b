package segment

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
)

var ctx = context.Background()

// checkAllOffsets reads every offset of the segment back and compares the
// bytes with the source.
func checkAllOffsets(t *testing.T, g *gen, r *Reader) {
	t.Helper()
	f := r.Footer()
	var all []byte
	chunks := make([][]byte, len(f.Chunks))
	for i := range f.Chunks {
		raw, err := r.ReadChunk(ctx, i)
		if err != nil {
			t.Fatalf("ReadChunk(%d): %v", i, err)
		}
		chunks[i] = raw
		all = append(all, raw...)
	}
	if !bytes.Equal(all, g.src) {
		t.Fatalf("concatenated chunks (%d bytes) differ from the source (%d bytes)", len(all), len(g.src))
	}
	for o := g.bs[0].base; o < g.next; o++ {
		i, ok := r.Locate(o)
		if !ok {
			t.Fatalf("Locate(%d) failed", o)
		}
		sb := g.batchAt(o)
		want := g.src[sb.pos : sb.pos+sb.size]
		if got := r.BatchesFrom(chunks[i], o, 1); !bytes.Equal(got, want) {
			t.Fatalf("offset %d: BatchesFrom(1 byte) returned %d bytes, want the %d-byte batch at %d", o, len(got), len(want), sb.base)
		}
		end := int(r.rawStart[i+1])
		wantAll := g.src[sb.pos:end]
		got := r.BatchesFrom(chunks[i], o, 1<<30)
		if !bytes.Equal(got, wantAll) || !bytes.Equal(BatchesFrom(chunks[i], o, 1<<30), wantAll) {
			t.Fatalf("offset %d: BatchesFrom(all) returned %d bytes, want %d", o, len(got), len(wantAll))
		}
	}
	if _, ok := r.Locate(g.bs[0].base - 1); ok {
		t.Error("Locate below the base succeeded")
	}
	if _, ok := r.Locate(g.next); ok {
		t.Error("Locate at the next offset succeeded")
	}
}

func checkSummary(t *testing.T, g *gen, f *index.Footer, opts BuildOptions) {
	t.Helper()
	s := f.Summary
	var records int64
	for _, sb := range g.bs {
		h, _ := batch.ParseHeader(g.src[sb.pos:])
		records += int64(h.RecordCount)
	}
	wantOff, wantTs := g.maxTimestamp(t)
	h0, _ := batch.ParseHeader(g.src)
	switch {
	case s.TopicID != opts.TopicID || s.Partition != opts.Partition || s.UploaderEpoch != opts.UploaderEpoch:
		t.Errorf("identity %x/%d/%d", s.TopicID, s.Partition, s.UploaderEpoch)
	case s.BaseOffset != g.bs[0].base || s.NextOffset != g.next:
		t.Errorf("offsets [%d, %d), want [%d, %d)", s.BaseOffset, s.NextOffset, g.bs[0].base, g.next)
	case s.BatchCount != int64(len(g.bs)) || s.RecordCount != records:
		t.Errorf("%d batches, %d records; want %d, %d", s.BatchCount, s.RecordCount, len(g.bs), records)
	case s.RawSize != int64(len(g.src)):
		t.Errorf("raw size %d, want %d", s.RawSize, len(g.src))
	case s.MaxTimestamp != wantTs || s.MaxTimestampOffset != wantOff:
		t.Errorf("max timestamp %d at %d, want %d at %d", s.MaxTimestamp, s.MaxTimestampOffset, wantTs, wantOff)
	case s.FirstTimestamp != h0.BaseTimestamp:
		t.Errorf("first timestamp %d, want %d", s.FirstTimestamp, h0.BaseTimestamp)
	}
	if last, ok := f.Times.Last(); !ok || last.Timestamp != s.MaxTimestamp {
		t.Errorf("last time index entry %+v, want the max timestamp %d", last, s.MaxTimestamp)
	}
	// Offset index entries are batch aligned and about IndexInterval apart.
	for _, e := range f.Offsets.Entries {
		sb := g.batchAt(s.BaseOffset + int64(e.RelOffset))
		if sb.base != s.BaseOffset+int64(e.RelOffset) || sb.pos != int(e.Position) {
			t.Fatalf("offset index entry %+v is not batch %d at %d", e, sb.base, sb.pos)
		}
	}
	interval := max(opts.IndexInterval, 1)
	if n := len(f.Offsets.Entries); len(g.src) > 4*interval && n < len(g.src)/interval/4 {
		t.Errorf("only %d offset index entries for %d bytes at interval %d", n, len(g.src), interval)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, k := range []dataKind{compressible, incompressible, producerZstd, producerLZ4} {
		t.Run(k.String(), func(t *testing.T) {
			g := newGen(uint64(k)+1, 1000)
			for range 300 {
				n := 1 + g.rng.IntN(20)
				if k == producerZstd || k == producerLZ4 {
					n = 50 + g.rng.IntN(100) // producers batch more than 16 KiB
				}
				g.add(k, n)
			}
			opts := BuildOptions{TopicID: [16]byte{1, 2, 3}, Partition: 7, ChunkTarget: 64 << 10, IndexInterval: 4096, UploaderEpoch: 3}
			o, res := buildObject(t, g.src, opts)
			r := openObject(t, o)
			if o.calls.Load() != 1 {
				t.Errorf("open took %d fetches, want 1", o.calls.Load())
			}
			f := r.Footer()
			if len(f.Chunks) < 3 {
				t.Fatalf("%d chunks; want several", len(f.Chunks))
			}
			checkSummary(t, g, f, opts)
			checkAllOffsets(t, g, r)
			codecs := map[uint8]int{}
			for _, c := range f.Chunks {
				codecs[c.Codec]++
				if c.Codec == batch.CodecZstd && c.StoredLen > c.RawLen-c.RawLen/minSavings {
					t.Errorf("chunk of %d raw bytes stored compressed to %d", c.RawLen, c.StoredLen)
				}
			}
			ratio := float64(f.Summary.StoredSize) / float64(f.Summary.RawSize)
			t.Logf("%d batches, %d chunks, %d raw bytes, stored/raw %.3f, codecs %v, footer+trailer %d bytes",
				len(g.bs), len(f.Chunks), len(g.src), ratio, codecs, res.Size-f.Summary.StoredSize)
			switch k {
			case compressible:
				if codecs[batch.CodecZstd] != len(f.Chunks) || ratio > 0.5 {
					t.Errorf("compressible data: codecs %v, ratio %.3f", codecs, ratio)
				}
			case incompressible, producerZstd:
				if codecs[batch.CodecNone] != len(f.Chunks) {
					t.Errorf("%s data stored compressed: codecs %v", k, codecs)
				}
			}
		})
	}
}

func TestBigBatchIsItsOwnChunk(t *testing.T) {
	g := newGen(9, 0)
	for range 20 {
		g.add(compressible, 10)
	}
	g.add(incompressible, 3000) // about 750 KiB
	big := g.bs[len(g.bs)-1]
	for range 20 {
		g.add(compressible, 10)
	}
	const target = 32 << 10
	o, _ := buildObject(t, g.src, BuildOptions{ChunkTarget: target})
	r := openObject(t, o)
	i, _ := r.Locate(big.base)
	c := r.Footer().Chunks[i]
	if c.FirstOffset != big.base || c.LastOffset != big.last || int(c.RawLen) != big.size {
		t.Errorf("big batch [%d, %d] of %d bytes: chunk %+v", big.base, big.last, big.size, c)
	}
	for j, c := range r.Footer().Chunks {
		if j != i && c.RawLen > target {
			t.Errorf("chunk %d holds %d raw bytes, above the target", j, c.RawLen)
		}
	}
	checkAllOffsets(t, g, r)
}

func TestOffsetForTimestamp(t *testing.T) {
	g := newGen(3, 500)
	g.tsJump = 20
	for range 400 {
		g.add(compressible, 1+g.rng.IntN(10))
	}
	o, _ := buildObject(t, g.src, BuildOptions{ChunkTarget: 16 << 10, IndexInterval: 1024})
	r := openObject(t, o)
	_, maxTs := g.maxTimestamp(t)
	for ts := t0 - 10; ts <= maxTs+2; ts += 1 + ts%7 {
		wantOff, wantTs, wantOK := g.firstAtOrAfter(t, ts)
		before := o.calls.Load()
		off, rts, ok, err := r.OffsetForTimestamp(ctx, ts)
		if err != nil {
			t.Fatal(err)
		}
		if ok != wantOK || off != wantOff || rts != wantTs {
			t.Fatalf("OffsetForTimestamp(%d) = %d, %d, %v; want %d, %d, %v", ts, off, rts, ok, wantOff, wantTs, wantOK)
		}
		if n := o.calls.Load() - before; (ok && n != 1) || (!ok && n != 0) {
			t.Fatalf("OffsetForTimestamp(%d) took %d fetches", ts, n)
		}
	}
}

func TestFetchCount(t *testing.T) {
	g := newGen(4, 0)
	for range 2000 {
		g.add(compressible, 5)
	}
	o, _ := buildObject(t, g.src, BuildOptions{ChunkTarget: 32 << 10, IndexInterval: 512})
	r := openObject(t, o, WithTailSize(4096))
	if n := o.calls.Load(); n != 2 {
		t.Errorf("open with a footer larger than the tail took %d fetches, want 2", n)
	}
	t.Logf("footer+trailer %d bytes for %d raw bytes", len(o.b)-int(r.Footer().Summary.StoredSize), len(g.src))
	for i := range 200 {
		offset := g.bs[0].base + int64((i*7919)%int(g.next-g.bs[0].base))
		before := o.calls.Load()
		ci, _ := r.Locate(offset)
		raw, err := r.ReadChunk(ctx, ci)
		if err != nil {
			t.Fatal(err)
		}
		got := r.BatchesFrom(raw, offset, 1)
		sb := g.batchAt(offset)
		if !bytes.Equal(got, g.src[sb.pos:sb.pos+sb.size]) {
			t.Fatalf("offset %d: wrong batch", offset)
		}
		if n := o.calls.Load() - before; n != 1 {
			t.Fatalf("a random read took %d fetches, want 1", n)
		}
	}
	// A caller that knows the footer size opens with exactly one fetch.
	o2 := &object{b: o.b}
	tail := int64(len(o.b)) - r.Footer().Summary.StoredSize
	openObject(t, o2, WithTailSize(tail))
	if n := o2.calls.Load(); n != 1 {
		t.Errorf("open with the exact tail size took %d fetches", n)
	}
}

func smallObject(t *testing.T) (*gen, *object) {
	g := newGen(5, 100)
	for range 60 {
		g.add(compressible, 8)
	}
	o, _ := buildObject(t, g.src, BuildOptions{ChunkTarget: 8 << 10})
	return g, o
}

func TestCorruptChunk(t *testing.T) {
	g, o := smallObject(t)
	r := openObject(t, o)
	c := r.Footer().Chunks[1]
	o.b[c.Position+int64(c.StoredLen)/2] ^= 0x10
	if _, err := r.ReadChunk(ctx, 1); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("flipped chunk byte: %v", err)
	}
	raw, err := r.ReadChunk(ctx, 0)
	if err != nil || !bytes.Equal(raw, g.src[:r.Footer().Chunks[0].RawLen]) {
		t.Fatalf("intact chunk 0: %v", err)
	}
	// A flipped footer byte fails the footer CRC at open.
	o.b[c.Position+int64(c.StoredLen)/2] ^= 0x10
	o.b[r.Footer().Summary.StoredSize+10] ^= 1
	if _, err := OpenReader(ctx, o.fetch, int64(len(o.b))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped footer byte: %v", err)
	}
}

func TestTruncatedObject(t *testing.T) {
	_, o := smallObject(t)
	n := len(o.b)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"last byte cut", o.b[:n-1]},
		{"half", o.b[:n/2]},
		{"trailer only", o.b[n-index.TrailerSize:]},
		{"first byte cut", o.b[1:]},
		{"padded", append(bytes.Clone(o.b[:n-index.TrailerSize]), append(make([]byte, 3), o.b[n-index.TrailerSize:]...)...)},
		{"tiny", o.b[:10]},
		{"empty", nil},
	} {
		x := &object{b: tc.b}
		_, err := OpenReader(ctx, x.fetch, int64(len(tc.b)), WithName("t/0/obj"))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "t/0/obj") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// A fetch that returns short data is refused, not trusted.
	short := func(ctx context.Context, off, n int64) ([]byte, error) { return o.b[off : off+n-1], nil }
	if _, err := OpenReader(ctx, short, int64(n)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short fetch: %v", err)
	}
}

func TestUnknownMajorVersion(t *testing.T) {
	_, o := smallObject(t)
	tr := o.b[len(o.b)-index.TrailerSize:]
	binary.BigEndian.PutUint16(tr[12:], 2)
	binary.BigEndian.PutUint16(tr[14:], 3)
	binary.BigEndian.PutUint32(tr, crc32.Checksum(tr[4:], castagnoli))
	_, err := OpenReader(ctx, o.fetch, int64(len(o.b)), WithName("topic/0/00000000000000000100"))
	var verr *index.FormatVersionError
	if !errors.As(err, &verr) || verr.Major != 2 || !strings.Contains(err.Error(), "version 2.3") ||
		!strings.Contains(err.Error(), "00000000000000000100") {
		t.Fatalf("major version 2: %v", err)
	}
	t.Log(err)
}

func TestBuildRefusesBadSource(t *testing.T) {
	g, _ := smallObject(t)
	good := g.src
	dup := append(bytes.Clone(good), good[g.bs[len(g.bs)-1].pos:]...) // last batch twice
	flip := bytes.Clone(good)
	flip[g.bs[3].pos+batch.HeaderSize+5] ^= 1
	magic := bytes.Clone(good)
	magic[g.bs[2].pos+16] = 1
	shortLen := bytes.Clone(good)
	binary.BigEndian.PutUint32(shortLen[g.bs[1].pos+8:], 10)
	hugeLen := bytes.Clone(good)
	binary.BigEndian.PutUint32(hugeLen[g.bs[1].pos+8:], 1<<30)
	for _, tc := range []struct {
		name string
		src  []byte
		want error
	}{
		{"empty", nil, ErrEmpty},
		{"truncated batch", good[:len(good)-5], ErrCorrupt},
		{"truncated header", good[:g.bs[1].pos+7], ErrCorrupt},
		{"flipped record byte", flip, ErrCorrupt},
		{"repeated offsets", dup, ErrCorrupt},
		{"magic 1", magic, ErrCorrupt},
		{"length below header", shortLen, ErrCorrupt},
		{"length past the end", hugeLen, ErrCorrupt},
	} {
		var buf bytes.Buffer
		_, err := Build(&buf, bytes.NewReader(tc.src), BuildOptions{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk on fire")
	}
	return len(p), nil
}

func TestBuildWriteError(t *testing.T) {
	g, _ := smallObject(t)
	_, err := Build(&failWriter{n: 10000}, bytes.NewReader(g.src), BuildOptions{ChunkTarget: 4096})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("got %v", err)
	}
}

func TestEpochs(t *testing.T) {
	g := newGen(6, 10)
	for _, e := range []int32{2, 2, 5, 5, 5, 7} {
		g.epoch = e
		g.add(compressible, 10)
	}
	// Derived from the batches.
	o, _ := buildObject(t, g.src, BuildOptions{})
	r := openObject(t, o)
	want := eps(2, 10, 5, 30, 7, 60)
	if got := r.Footer().Summary.Epochs; !equalEpochs(got, want) {
		t.Fatalf("derived epochs %v, want %v", got, want)
	}
	for _, tc := range []struct {
		epoch int32
		found int32
		end   int64
		ok    bool
	}{
		{1, -1, -1, false},
		{2, 2, 30, true},
		{3, 2, 30, true},
		{5, 5, 60, true},
		{6, 5, 60, true},
		{7, 7, 70, true},
		{9, 7, 70, true},
	} {
		e, end, ok := r.EndOffsetForEpoch(tc.epoch)
		if e != tc.found || end != tc.end || ok != tc.ok {
			t.Errorf("EndOffsetForEpoch(%d) = %d, %d, %v; want %d, %d, %v", tc.epoch, e, end, ok, tc.found, tc.end, tc.ok)
		}
	}
	// Given by the caller: clamped to the segment.
	hist := eps(0, 0, 1, 5, 2, 8, 5, 30, 7, 60, 8, 70, 9, 200)
	o, _ = buildObject(t, g.src, BuildOptions{Epochs: hist})
	r = openObject(t, o)
	if got, want := r.Footer().Summary.Epochs, eps(2, 10, 5, 30, 7, 60); !equalEpochs(got, want) {
		t.Fatalf("clamped epochs %v, want %v", got, want)
	}
	// A history that is not increasing is refused.
	var buf bytes.Buffer
	if _, err := Build(&buf, bytes.NewReader(g.src), BuildOptions{Epochs: eps(5, 10, 3, 30)}); err == nil {
		t.Fatal("decreasing epochs accepted")
	}
}

func equalEpochs(a, b []index.EpochEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProducerSnapshot(t *testing.T) {
	g := newGen(7, 0)
	st := producer.NewState()
	for i := range 5 {
		b := batch.Build(batch.BuildOptions{BaseOffset: g.next, BaseTimestamp: t0, Idempotent: true,
			ProducerID: int64(100 + i%2), ProducerEpoch: 1, BaseSequence: int32(i / 2 * 3)},
			batch.Record{Value: []byte("a")}, batch.Record{Value: []byte("b")}, batch.Record{Value: []byte("c")})
		h, _ := batch.ParseHeader(b)
		st.Update(&h, t0)
		g.addRaw(b)
	}
	snap := st.AppendSnapshot(nil, g.next)
	o, _ := buildObject(t, g.src, BuildOptions{ProducerSnapshot: snap, Now: time.UnixMilli(t0)})
	r := openObject(t, o)
	if !bytes.Equal(r.Footer().ProducerSnapshot, snap) || r.Footer().Summary.CreatedMs != t0 {
		t.Fatal("snapshot or creation time not carried")
	}
	got, next, err := producer.DecodeSnapshot(r.Footer().ProducerSnapshot)
	if err != nil || next != g.next || got.Len() != 2 {
		t.Fatalf("decoded snapshot: %v, next %d, %d producers", err, next, got.Len())
	}
	var buf bytes.Buffer
	if _, err := Build(&buf, bytes.NewReader(g.src), BuildOptions{ProducerSnapshot: st.AppendSnapshot(nil, g.next-1)}); err == nil {
		t.Fatal("snapshot at the wrong offset accepted")
	}
	if _, err := Build(&buf, bytes.NewReader(g.src), BuildOptions{ProducerSnapshot: []byte("garbage!")}); err == nil {
		t.Fatal("garbage snapshot accepted")
	}
}

// TestConcurrentReads reads chunks from many goroutines (run with -race).
func TestConcurrentReads(t *testing.T) {
	g, o := smallObject(t)
	r := openObject(t, o)
	done := make(chan error)
	for w := range 4 {
		go func() {
			for i := range r.Footer().Chunks {
				raw, err := r.ReadChunk(ctx, (i+w)%len(r.Footer().Chunks))
				if err == nil && len(raw) == 0 {
					err = errors.New("empty chunk")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	_ = g
}

// eps makes an epoch list from (epoch, start offset) pairs.
func eps(pairs ...int64) []index.EpochEntry {
	var out []index.EpochEntry
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, index.EpochEntry{Epoch: int32(pairs[i]), StartOffset: pairs[i+1]})
	}
	return out
}

// TestLargeChunksProbe covers the compression probe on chunks large enough
// to be sampled: compressible data is still compressed, random data is not.
func TestLargeChunksProbe(t *testing.T) {
	for k, want := range map[dataKind]uint8{compressible: batch.CodecZstd, incompressible: batch.CodecNone} {
		g := newGen(12, 0)
		for len(g.src) < 3<<20 {
			g.add(k, 50)
		}
		o, _ := buildObject(t, g.src, BuildOptions{ChunkTarget: 1 << 20})
		r := openObject(t, o)
		for i, c := range r.Footer().Chunks {
			if c.RawLen >= 4*probeSize && c.Codec != want {
				t.Errorf("%s chunk %d of %d bytes: codec %d, want %d", k, i, c.RawLen, c.Codec, want)
			}
		}
		checkAllOffsets(t, g, r)
	}
}

// TestAbortedClipped: the caller's aborted transactions are clipped to the
// segment, those outside it dropped, the rest written ordered by first
// offset and read back; a segment without any has an empty section.
func TestAbortedClipped(t *testing.T) {
	g := newGen(8, 100)
	for range 10 {
		g.add(compressible, 5)
	}
	// The segment holds [100, 150).
	in := []index.AbortedTxn{
		{ProducerID: 7, FirstOffset: 140, LastOffset: 160}, // runs past the end
		{ProducerID: 1, FirstOffset: 10, LastOffset: 99},   // ends below the base
		{ProducerID: 2, FirstOffset: 50, LastOffset: 100},  // ends at the base
		{ProducerID: 3, FirstOffset: 110, LastOffset: 120}, // inside
		{ProducerID: 4, FirstOffset: 150, LastOffset: 170}, // starts at the next offset
		{ProducerID: 5, FirstOffset: 90, LastOffset: 400},  // covers the segment
		{ProducerID: 6, FirstOffset: 130, LastOffset: 125}, // nonsense: dropped
		{ProducerID: 8, FirstOffset: 149, LastOffset: 149}, // the last offset
	}
	o, res := buildObject(t, g.src, BuildOptions{Aborted: in})
	want := []index.AbortedTxn{
		{ProducerID: 2, FirstOffset: 100, LastOffset: 100},
		{ProducerID: 5, FirstOffset: 100, LastOffset: 149},
		{ProducerID: 3, FirstOffset: 110, LastOffset: 120},
		{ProducerID: 7, FirstOffset: 140, LastOffset: 149},
		{ProducerID: 8, FirstOffset: 149, LastOffset: 149},
	}
	if got := res.Footer.Aborted; !slices.Equal(got, want) {
		t.Fatalf("built footer aborted\n got %v\nwant %v", got, want)
	}
	r := openObject(t, o)
	if got := r.Footer().Aborted; !slices.Equal(got, want) {
		t.Fatalf("read back aborted\n got %v\nwant %v", got, want)
	}
	if in[0].LastOffset != 160 {
		t.Fatal("Build modified the caller's entries")
	}
	checkAllOffsets(t, g, r) // the data is untouched

	for _, none := range [][]index.AbortedTxn{nil, {{ProducerID: 1, FirstOffset: 0, LastOffset: 99}}} {
		o, _ = buildObject(t, g.src, BuildOptions{Aborted: none})
		if got := openObject(t, o).Footer().Aborted; got != nil {
			t.Fatalf("aborted %v, want none", got)
		}
	}
}
