package index

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// sampleFooter returns a valid footer with every section populated.
func sampleFooter() *Footer {
	f := &Footer{
		Summary: Summary{
			TopicID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Partition: 4,
			BaseOffset: 1000, NextOffset: 1300, RecordCount: 300, BatchCount: 30,
			FirstTimestamp: 5000, MaxTimestamp: 9000, MaxTimestampOffset: 1250,
			RawSize: 3 * 40000, StoredSize: 50000, CreatedMs: 1_700_000_000_000, UploaderEpoch: 7,
			Epochs: []EpochEntry{{Epoch: 5, StartOffset: 1000}, {Epoch: 7, StartOffset: 1200}},
		},
		Chunks: []Chunk{
			{FirstOffset: 1000, LastOffset: 1099, Position: 0, StoredLen: 10000, RawLen: 40000, MaxTimestamp: 6000, CRC: 0xdeadbeef, Codec: 4},
			{FirstOffset: 1100, LastOffset: 1199, Position: 10000, StoredLen: 30000, RawLen: 40000, MaxTimestamp: 9000, CRC: 1, Codec: 4},
			{FirstOffset: 1200, LastOffset: 1299, Position: 40000, StoredLen: 10000, RawLen: 40000, MaxTimestamp: 8000, CRC: 2, Codec: 0},
		},
		Offsets:          OffsetIndex{Base: 1000, Entries: []OffsetEntry{{10, 4000}, {20, 8000}, {150, 60000}}},
		Times:            TimeIndex{Base: 1000, Entries: []TimeEntry{{5500, 10}, {6000, 20}, {9000, 250}}},
		ProducerSnapshot: []byte("STPS-opaque-bytes"),
		Aborted:          []AbortedTxn{{ProducerID: 9, FirstOffset: 1010, LastOffset: 1020}},
	}
	return f
}

func TestFooterRoundTrip(t *testing.T) {
	for name, f := range map[string]*Footer{
		"full": sampleFooter(),
		"minimal": {
			Summary: Summary{BaseOffset: 0, NextOffset: 1, BatchCount: 1, RecordCount: 1, MaxTimestamp: -1, MaxTimestampOffset: -1, FirstTimestamp: -1, RawSize: 70, StoredSize: 70},
			Chunks:  []Chunk{{FirstOffset: 0, LastOffset: 0, StoredLen: 70, RawLen: 70, MaxTimestamp: -1}},
		},
	} {
		if err := f.Validate(); err != nil {
			t.Fatalf("%s: sample invalid: %v", name, err)
		}
		b := f.AppendEncode(nil)
		got, err := DecodeFooter(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("%s: round trip\n got %+v\nwant %+v", name, got, f)
		}
	}
}

func TestTrailer(t *testing.T) {
	f := sampleFooter()
	tail := f.AppendTail([]byte("chunks…"))
	tail = tail[len("chunks…"):]
	tr, err := DecodeTrailer(tail)
	if err != nil {
		t.Fatal(err)
	}
	footer := tail[:len(tail)-TrailerSize]
	if tr.Major != FormatMajor || tr.Minor != FormatMinor || int(tr.FooterLen) != len(footer) {
		t.Fatalf("trailer %+v", tr)
	}
	if err := tr.CheckFooter(footer); err != nil {
		t.Fatal(err)
	}
	if f.ObjectSize(len(footer)) != f.Summary.StoredSize+int64(len(tail)) {
		t.Fatal("ObjectSize")
	}
	bad := append([]byte(nil), footer...)
	bad[7] ^= 1
	if err := tr.CheckFooter(bad); !errors.Is(err, ErrFooterCorrupt) {
		t.Fatalf("flipped footer: %v", err)
	}
	if err := tr.CheckFooter(footer[1:]); !errors.Is(err, ErrFooterCorrupt) {
		t.Fatalf("short footer: %v", err)
	}

	mut := func(fn func(b []byte)) []byte {
		b := append([]byte(nil), tail[len(tail)-TrailerSize:]...)
		fn(b)
		return b
	}
	recrc := func(b []byte) { binary.BigEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli)) }
	for _, tc := range []struct {
		name    string
		b       []byte
		version bool
	}{
		{"short", tail[len(tail)-TrailerSize+1:], false},
		{"magic", mut(func(b []byte) { b[23] = 'X' }), false},
		{"crc", mut(func(b []byte) { b[5] ^= 1 }), false},
		{"footer too large", mut(func(b []byte) { binary.BigEndian.PutUint32(b[4:], MaxFooterSize+1); recrc(b) }), false},
		{"major 2", mut(func(b []byte) { binary.BigEndian.PutUint16(b[12:], 2); recrc(b) }), true},
		{"major 0", mut(func(b []byte) { binary.BigEndian.PutUint16(b[12:], 0) }), true},
	} {
		_, err := DecodeTrailer(tc.b)
		var ve *FormatVersionError
		switch {
		case err == nil:
			t.Errorf("%s: no error", tc.name)
		case tc.version && (!errors.As(err, &ve) || !strings.Contains(err.Error(), "version")):
			t.Errorf("%s: %v, want a FormatVersionError", tc.name, err)
		case !tc.version && !errors.Is(err, ErrFooterCorrupt):
			t.Errorf("%s: %v, want ErrFooterCorrupt", tc.name, err)
		}
	}
	// A later minor version of the same major is read.
	if tr, err := DecodeTrailer(mut(func(b []byte) { binary.BigEndian.PutUint16(b[14:], 9); recrc(b) })); err != nil || tr.Minor != 9 {
		t.Errorf("minor 9: %+v, %v", tr, err)
	}
}

// futureFooter encodes f the way a later minor version might: an unknown
// section first, every array entry and section grown by extra bytes.
func futureFooter(f *Footer) []byte {
	grow := func(sec []byte, entryAt int, n, oldSize, extra int) []byte {
		// Re-lay an array of n entries of oldSize at entryAt with extra
		// trailing bytes per entry and a new entry size.
		out := append([]byte(nil), sec[:entryAt]...)
		binary.BigEndian.PutUint16(out[entryAt-2:], uint16(oldSize+extra))
		for i := range n {
			out = append(out, sec[entryAt+i*oldSize:entryAt+(i+1)*oldSize]...)
			out = append(out, make([]byte, extra)...)
		}
		out = append(out, sec[entryAt+n*oldSize:]...)
		return append(out, 0xAA, 0xBB) // new trailing fields
	}
	sum := f.appendSummary(nil)
	sections := []struct {
		typ  uint16
		body []byte
	}{
		{99, []byte("a section from the future")},
		{SectionSummary, grow(sum, len(sum)-len(f.Summary.Epochs)*epochEntrySize, len(f.Summary.Epochs), epochEntrySize, 4)},
		{SectionChunkMap, grow(f.appendChunks(nil), 6, len(f.Chunks), chunkEntrySize, 16)},
		{SectionOffsetIndex, grow(f.appendOffsets(nil), 6, len(f.Offsets.Entries), OffsetEntrySize, 8)},
		{SectionTimeIndex, grow(f.appendTimes(nil), 6, len(f.Times.Entries), TimeEntrySize, 4)},
		{SectionProducerSnapshot, append(f.appendSnapshot(nil), 1, 2, 3)},
		{SectionAbortedTxns, grow(f.appendAborted(nil), 6, len(f.Aborted), abortedEntrySize, 8)},
		{SectionKeyHashIndex, []byte("reserved")},
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(sections)))
	off := 4 + len(sections)*dirEntrySize
	for _, s := range sections {
		b = binary.BigEndian.AppendUint16(b, s.typ)
		b = binary.BigEndian.AppendUint16(b, 0x8000) // a flag 1.0 does not know
		b = binary.BigEndian.AppendUint32(b, uint32(off))
		b = binary.BigEndian.AppendUint32(b, uint32(len(s.body)))
		off += len(s.body)
	}
	for _, s := range sections {
		b = append(b, s.body...)
	}
	return b
}

func TestFooterForwardCompatible(t *testing.T) {
	f := sampleFooter()
	got, err := DecodeFooter(futureFooter(f))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("future footer\n got %+v\nwant %+v", got, f)
	}
	// Optional sections missing: empty.
	min := &Footer{Summary: f.Summary, Chunks: f.Chunks}
	b := binary.BigEndian.AppendUint32(nil, 2)
	s1, s2 := min.appendSummary(nil), min.appendChunks(nil)
	b = binary.BigEndian.AppendUint16(b, SectionChunkMap)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, 28)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s2)))
	b = binary.BigEndian.AppendUint16(b, SectionSummary)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(28+len(s2)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(s1)))
	b = append(append(b, s2...), s1...)
	got, err = DecodeFooter(b)
	if err != nil {
		t.Fatal(err)
	}
	min.Offsets.Base, min.Times.Base = f.Summary.BaseOffset, f.Summary.BaseOffset
	if !reflect.DeepEqual(got, min) {
		t.Fatalf("sparse footer\n got %+v\nwant %+v", got, min)
	}
}

func TestFooterDecodeErrors(t *testing.T) {
	good := sampleFooter().AppendEncode(nil)
	// Every truncation fails cleanly.
	for n := range len(good) {
		if _, err := DecodeFooter(good[:n]); !errors.Is(err, ErrFooterCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	invalid := func(fn func(f *Footer)) []byte {
		f := sampleFooter()
		fn(f)
		return f.AppendEncode(nil)
	}
	mut := func(fn func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		fn(b)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"huge section count", mut(func(b []byte) { binary.BigEndian.PutUint32(b, 1<<31) })},
		{"section past the end", mut(func(b []byte) { binary.BigEndian.PutUint32(b[4+8:], 1<<30) })},
		{"section inside the directory", mut(func(b []byte) { binary.BigEndian.PutUint32(b[4+4:], 2) })},
		{"duplicate section", mut(func(b []byte) { binary.BigEndian.PutUint16(b[4+12:], SectionSummary) })},
		{"summary missing", mut(func(b []byte) { binary.BigEndian.PutUint16(b[4:], 200) })},
		{"huge chunk count", mut(func(b []byte) {
			off := binary.BigEndian.Uint32(b[4+12+4:])
			binary.BigEndian.PutUint32(b[off:], 1<<30)
		})},
		{"small entry size", mut(func(b []byte) {
			off := binary.BigEndian.Uint32(b[4+12+4:])
			binary.BigEndian.PutUint16(b[off+4:], 47)
		})},
		{"no chunks", invalid(func(f *Footer) { f.Chunks = nil })},
		{"chunk gap", invalid(func(f *Footer) { f.Chunks[1].Position++ })},
		{"chunk offsets overlap", invalid(func(f *Footer) { f.Chunks[1].FirstOffset = 1050 })},
		{"first chunk not at base", invalid(func(f *Footer) { f.Chunks[0].FirstOffset = 1001 })},
		{"last chunk short of next", invalid(func(f *Footer) { f.Summary.NextOffset = 1301 })},
		{"raw size", invalid(func(f *Footer) { f.Summary.RawSize++ })},
		{"stored size", invalid(func(f *Footer) { f.Summary.StoredSize-- })},
		{"chunk max ts", invalid(func(f *Footer) { f.Chunks[0].MaxTimestamp = 9001 })},
		{"max ts offset", invalid(func(f *Footer) { f.Summary.MaxTimestampOffset = 1300 })},
		{"offset index order", invalid(func(f *Footer) { f.Offsets.Entries[1].RelOffset = 5 })},
		{"offset index past raw", invalid(func(f *Footer) { f.Offsets.Entries[2].Position = 120000 })},
		{"time index order", invalid(func(f *Footer) { f.Times.Entries[1].Timestamp = 5500 })},
		{"epoch order", invalid(func(f *Footer) { f.Summary.Epochs[1].Epoch = 5 })},
		{"epoch outside", invalid(func(f *Footer) { f.Summary.Epochs[1].StartOffset = 1300 })},
		{"aborted outside", invalid(func(f *Footer) { f.Aborted[0].LastOffset = 2000 })},
		{"offsets too wide", invalid(func(f *Footer) { f.Summary.BaseOffset = -1 })},
	} {
		if _, err := DecodeFooter(tc.b); !errors.Is(err, ErrFooterCorrupt) {
			t.Errorf("%s: %v, want ErrFooterCorrupt", tc.name, err)
		}
	}
}

// randomFooter returns a valid footer drawn from rng.
func randomFooter(rng *rand.Rand) *Footer {
	base := rng.Int64N(1 << 40)
	f := &Footer{}
	s := &f.Summary
	for i := range s.TopicID {
		s.TopicID[i] = byte(rng.Uint32())
	}
	s.Partition, s.UploaderEpoch, s.CreatedMs = rng.Int32(), rng.Int32N(100), rng.Int64()
	s.BaseOffset, s.FirstTimestamp, s.MaxTimestamp, s.MaxTimestampOffset = base, -1, -1, -1
	next, pos, ts := base, int64(0), int64(1000)
	for range 1 + rng.IntN(8) {
		c := Chunk{FirstOffset: next + rng.Int64N(3), Position: pos, StoredLen: 1 + rng.Uint32N(1000), RawLen: 1 + rng.Uint32N(5000),
			MaxTimestamp: ts + rng.Int64N(100), CRC: rng.Uint32(), Codec: uint8(rng.IntN(2) * 4)}
		if len(f.Chunks) == 0 {
			c.FirstOffset = base
		}
		c.LastOffset = c.FirstOffset + rng.Int64N(50)
		f.Chunks = append(f.Chunks, c)
		next, pos, ts = c.LastOffset+1, pos+int64(c.StoredLen), ts+50
		s.RawSize += int64(c.RawLen)
		s.MaxTimestamp = max(s.MaxTimestamp, c.MaxTimestamp)
		s.BatchCount += 1 + rng.Int64N(5)
	}
	s.NextOffset, s.StoredSize, s.RecordCount = next, pos, next-base
	s.MaxTimestampOffset = base + rng.Int64N(next-base)
	f.Offsets.Base, f.Times.Base = base, base
	for rel, p := uint32(1+rng.Uint32N(4)), uint32(1+rng.Uint32N(100)); int64(rel) < next-base && int64(p) < s.RawSize; rel, p = rel+1+rng.Uint32N(4), p+1+rng.Uint32N(100) {
		f.Offsets.Entries = append(f.Offsets.Entries, OffsetEntry{RelOffset: rel, Position: p})
	}
	for rel, t := uint32(rng.Uint32N(3)), int64(900); int64(rel) < next-base && t <= s.MaxTimestamp; rel, t = rel+1+rng.Uint32N(5), t+1+rng.Int64N(20) {
		f.Times.Entries = append(f.Times.Entries, TimeEntry{Timestamp: t, RelOffset: rel})
	}
	for e, o := int32(rng.IntN(3)), base; o < next; e, o = e+1+rng.Int32N(3), o+1+rng.Int64N(40) {
		s.Epochs = append(s.Epochs, EpochEntry{Epoch: e, StartOffset: o})
	}
	if rng.IntN(2) == 0 {
		f.ProducerSnapshot = make([]byte, 1+rng.IntN(100))
	}
	for range rng.IntN(3) {
		a := base + rng.Int64N(next-base)
		f.Aborted = append(f.Aborted, AbortedTxn{ProducerID: rng.Int64(), FirstOffset: a, LastOffset: a + rng.Int64N(next-a)})
	}
	return f
}

func TestFooterRandomRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		f := randomFooter(rng)
		if err := f.Validate(); err != nil {
			t.Fatalf("%d: generated footer invalid: %v", i, err)
		}
		got, err := DecodeFooter(f.AppendEncode(nil))
		if err != nil || !reflect.DeepEqual(got, f) {
			t.Fatalf("%d: round trip: %v\n got %+v\nwant %+v", i, err, got, f)
		}
	}
}

// FuzzDecodeFooter checks that decoding never panics, and that whatever
// decodes re-encodes to a footer that decodes to the same value. Inputs
// starting with 0xF0 are instead used as a seed for a valid random footer,
// which must round-trip exactly.
func FuzzDecodeFooter(f *testing.F) {
	f.Add(sampleFooter().AppendEncode(nil))
	f.Add(futureFooter(sampleFooter()))
	f.Add([]byte{0xF0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 9 && b[0] == 0xF0 {
			x := randomFooter(rand.New(rand.NewPCG(binary.BigEndian.Uint64(b[1:]), 0)))
			got, err := DecodeFooter(x.AppendEncode(nil))
			if err != nil || !reflect.DeepEqual(got, x) {
				t.Fatalf("valid footer round trip: %v", err)
			}
		}
		x, err := DecodeFooter(b)
		if err != nil {
			if !errors.Is(err, ErrFooterCorrupt) {
				t.Fatalf("error does not wrap ErrFooterCorrupt: %v", err)
			}
			return
		}
		again, err := DecodeFooter(x.AppendEncode(nil))
		if err != nil || !reflect.DeepEqual(again, x) {
			t.Fatalf("re-encode: %v\n got %+v\nwant %+v", err, again, x)
		}
		x.Offsets.Lookup(x.Summary.BaseOffset + int64(len(b)))
		x.Times.LookupBefore(int64(len(b)))
	})
}

func FuzzDecodeTrailer(f *testing.F) {
	f.Add(Trailer{FooterLen: 100, FooterCRC: 7, Major: 1}.AppendEncode(nil))
	f.Add(Trailer{FooterLen: 100, FooterCRC: 7, Major: 2, Minor: 1}.AppendEncode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := DecodeTrailer(b)
		if err != nil {
			return
		}
		if got, err := DecodeTrailer(tr.AppendEncode(nil)); err != nil || got != tr {
			t.Fatalf("re-encode: %+v, %v", got, err)
		}
	})
}
