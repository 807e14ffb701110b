package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// filterVariant is an input batch shape for the filter table.
type filterVariant struct {
	name string
	opts BuildOptions
	lat  int64 // > 0: stamp the batch with this LogAppendTime
}

var filterVariants = []filterVariant{
	{name: "plain", opts: BuildOptions{BaseOffset: 100, LeaderEpoch: 3}},
	{name: "idempotent", opts: BuildOptions{BaseOffset: 7, LeaderEpoch: 2, Transactional: true,
		Idempotent: true, ProducerID: 42, ProducerEpoch: 9, BaseSequence: 1000}},
	{name: "logappendtime", opts: BuildOptions{BaseOffset: 50, LeaderEpoch: 1}, lat: testNow + 5000},
}

var filterCases = []struct {
	name      string
	keep      func(i, n int) bool
	keepEmpty bool
}{
	{"keep-all", func(i, n int) bool { return true }, false},
	{"keep-none", func(i, n int) bool { return false }, false},
	{"keep-none-empty", func(i, n int) bool { return false }, true},
	{"keep-some", func(i, n int) bool { return i%3 != 1 }, false},
	{"keep-last-dropped", func(i, n int) bool { return i < n-1 }, true},
	{"keep-first-only", func(i, n int) bool { return i == 0 }, false},
	{"keep-last-only", func(i, n int) bool { return i == n-1 }, false},
}

// TestFilter runs every keep pattern over every codec and batch shape and
// checks the output with franz-go's kmsg and with Records.
func TestFilter(t *testing.T) {
	const n = 20
	recs := sampleRecords(n, true)
	for _, codec := range allCodecs {
		for _, v := range filterVariants {
			for _, c := range filterCases {
				t.Run(fmt.Sprintf("%s/%s/%s", CodecName(codec), v.name, c.name), func(t *testing.T) {
					o := v.opts
					o.Codec = codec
					in := buildT(t, o, recs...)
					if v.lat > 0 {
						SetLogAppendTime(in, v.lat)
					}
					var kept []int
					var seen []int64
					prefix := []byte("prefix")
					out, res, err := Filter(slices.Clone(prefix), in, func(off int64, r *Record) bool {
						i := len(seen)
						seen = append(seen, off)
						if !bytesEqualNull(r.Key, recs[i].Key) || !bytesEqualNull(r.Value, recs[i].Value) {
							t.Errorf("keep got record %+v for index %d", r, i)
						}
						if c.keep(i, n) {
							kept = append(kept, i)
							return true
						}
						return false
					}, FilterOptions{KeepEmpty: c.keepEmpty})
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.HasPrefix(out, prefix) {
						t.Fatal("dst prefix overwritten")
					}
					for i, off := range seen {
						if off != o.BaseOffset+int64(i) {
							t.Fatalf("keep call %d got offset %d", i, off)
						}
					}
					if len(seen) != n {
						t.Fatalf("keep called %d times", len(seen))
					}
					checkFiltered(t, in, recs, kept, out[len(prefix):], res, c.keepEmpty)
				})
			}
		}
	}
}

// checkFiltered checks Filter's output for input in (built from recs with
// offset deltas 0..n-1) when the records at indexes kept were retained.
func checkFiltered(t *testing.T, in []byte, recs []Record, kept []int, out []byte, res FilterResult, keepEmpty bool) {
	t.Helper()
	hIn, err := ParseHeader(in)
	if err != nil {
		t.Fatal(err)
	}
	lat := hIn.LogAppendTime()
	tsOf := func(i int) int64 {
		if lat {
			return hIn.MaxTimestamp
		}
		return hIn.BaseTimestamp + recs[i].TimestampDelta
	}
	wantMax, wantMaxOff := int64(-1), int64(-1)
	for j, i := range kept {
		if j == 0 || tsOf(i) > wantMax {
			wantMax, wantMaxOff = tsOf(i), hIn.BaseOffset+int64(i)
		}
	}
	if res.RecordsIn != len(recs) || res.RecordsKept != len(kept) || res.BytesIn != len(in) || res.BytesOut != len(out) ||
		res.MaxTimestamp != wantMax || res.MaxTimestampOffset != wantMaxOff {
		t.Fatalf("result %+v; want %d in, %d kept, %d bytes in, %d out, max %d at %d", res, len(recs), len(kept), len(in), len(out), wantMax, wantMaxOff)
	}
	all, none := len(kept) == len(recs), len(kept) == 0
	if res.Unchanged != all || res.Dropped != (none && !keepEmpty) || res.Empty != (none && keepEmpty) {
		t.Fatalf("result %+v", res)
	}
	switch {
	case all:
		if !bytes.Equal(out, in) {
			t.Fatal("keep-all output differs from the input")
		}
		return
	case none && !keepEmpty:
		if len(out) != 0 {
			t.Fatalf("dropped batch wrote %d bytes", len(out))
		}
		return
	}

	// Header, as franz-go reads it.
	kb, krecs := kmsgBatch(t, out)
	wantAttrs := hIn.Attributes
	wantBase, wantMaxTS := int64(-1), hIn.MaxTimestamp // the empty batch
	if none {
		wantAttrs &^= AttrCompressionMask
	} else {
		wantBase, wantMaxTS = tsOf(kept[0]), wantMax
	}
	if kb.FirstOffset != hIn.BaseOffset || kb.LastOffsetDelta != hIn.LastOffsetDelta || kb.PartitionLeaderEpoch != hIn.PartitionLeaderEpoch ||
		kb.Magic != 2 || kb.Attributes != wantAttrs || kb.ProducerID != hIn.ProducerID || kb.ProducerEpoch != hIn.ProducerEpoch ||
		kb.FirstSequence != hIn.BaseSequence || kb.NumRecords != int32(len(kept)) || int(kb.Length) != len(out)-LogOverhead ||
		kb.FirstTimestamp != wantBase || kb.MaxTimestamp != wantMaxTS {
		t.Fatalf("output header %+v\ninput header %+v", kb, hIn)
	}
	if uint32(kb.CRC) != crc32.Checksum(out[offAttributes:], crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatal("output CRC does not match")
	}
	if none {
		if len(kb.Records) != 0 {
			t.Fatalf("empty batch has a %d-byte records section", len(kb.Records))
		}
	}

	// Records, as franz-go reads them.
	if len(krecs) != len(kept) {
		t.Fatalf("kmsg: %d records, want %d", len(krecs), len(kept))
	}
	for j, i := range kept {
		kr, w := krecs[j], recs[i]
		if kr.OffsetDelta != int32(i) || !bytesEqualNull(kr.Key, w.Key) || !bytesEqualNull(kr.Value, w.Value) ||
			len(kr.Headers) != len(w.Headers) || kr.Attributes != w.Attributes {
			t.Fatalf("kmsg record %d: %+v, want %+v", j, kr, w)
		}
		for x, hd := range w.Headers {
			if kr.Headers[x].Key != string(hd.Key) || !bytesEqualNull(kr.Headers[x].Value, hd.Value) {
				t.Fatalf("kmsg record %d header %d: %+v", j, x, kr.Headers[x])
			}
		}
		if got := kb.FirstTimestamp + kr.TimestampDelta64; !lat && got != tsOf(i) {
			t.Fatalf("kmsg record %d: timestamp %d, want %d", j, got, tsOf(i))
		}
	}

	// Records, as this package reads them.
	got := collect(t, out)
	if len(got) != len(kept) {
		t.Fatalf("Records: %d records, want %d", len(got), len(kept))
	}
	hOut, err := ParseHeader(out)
	if err != nil {
		t.Fatal(err)
	}
	for j, i := range kept {
		g, w := got[j], recs[i]
		if g.OffsetDelta != int32(i) || hOut.BaseTimestamp+g.TimestampDelta != tsOf(i) || !bytesEqualNull(g.Key, w.Key) ||
			!bytesEqualNull(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %+v, want %+v", j, g, w)
		}
	}
}

// kmsgBatch parses b with franz-go and decompresses and decodes its records.
func kmsgBatch(t *testing.T, b []byte) (kmsg.RecordBatch, []kmsg.Record) {
	t.Helper()
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(b); err != nil {
		t.Fatalf("kmsg: %v", err)
	}
	raw := kb.Records
	if codec := kb.Attributes & AttrCompressionMask; codec != 0 {
		var err error
		if raw, err = kgo.DefaultDecompressor().Decompress(raw, kgo.CompressionCodecType(codec)); err != nil {
			t.Fatalf("kgo decompress: %v", err)
		}
	}
	var out []kmsg.Record
	for len(raw) > 0 {
		n, w := binary.Varint(raw)
		if w <= 0 || int(n)+w > len(raw) {
			t.Fatalf("record length %d in %d bytes", n, len(raw))
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(raw[:int(n)+w]); err != nil {
			t.Fatalf("kmsg record %d: %v", len(out), err)
		}
		out = append(out, kr)
		raw = raw[int(n)+w:]
	}
	return kb, out
}

func keepAll(int64, *Record) bool  { return true }
func keepNone(int64, *Record) bool { return false }

// keepOffsets keeps the records at the given offsets.
func keepOffsets(offs ...int64) func(int64, *Record) bool {
	return func(off int64, _ *Record) bool { return slices.Contains(offs, off) }
}

// TestFilterRefilter filters an already filtered batch (offset gaps): the
// gaps survive, keep-all returns it unchanged, an empty batch filters to an
// empty batch again.
func TestFilterRefilter(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(CodecName(codec), func(t *testing.T) {
			in := buildT(t, BuildOptions{Codec: codec, BaseOffset: 10, Idempotent: true, ProducerID: 1, BaseSequence: 5}, sampleRecords(10, false)...)
			once, _, err := Filter(nil, in, keepOffsets(11, 13, 14, 18), FilterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			twice, res, err := Filter(nil, once, keepOffsets(13, 18), FilterOptions{})
			if err != nil || res.RecordsIn != 4 || res.RecordsKept != 2 {
				t.Fatalf("%v %+v", err, res)
			}
			var offs []int64
			h, _ := ParseHeader(twice)
			if err := Records(twice, 0, func(r Record) error { offs = append(offs, h.BaseOffset+int64(r.OffsetDelta)); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(offs, []int64{13, 18}) || h.LastOffsetDelta != 9 || h.BaseSequence != 5 {
				t.Fatalf("offsets %v, header %+v", offs, h)
			}
			same, res, err := Filter(nil, twice, keepAll, FilterOptions{})
			if err != nil || !res.Unchanged || !bytes.Equal(same, twice) {
				t.Fatalf("keep-all of a filtered batch: %v %+v", err, res)
			}
			empty, res, err := Filter(nil, twice, keepNone, FilterOptions{KeepEmpty: true})
			if err != nil || !res.Empty {
				t.Fatalf("%v %+v", err, res)
			}
			again, res, err := Filter(nil, empty, keepAll, FilterOptions{KeepEmpty: true})
			if err != nil || !res.Empty || res.RecordsIn != 0 || !bytes.Equal(again, empty) {
				t.Fatalf("empty batch refiltered: %v %+v", err, res)
			}
			if _, res, err := Filter(nil, empty, keepAll, FilterOptions{}); err != nil || !res.Dropped {
				t.Fatalf("empty batch without KeepEmpty: %v %+v", err, res)
			}
			if h, _ := ParseHeader(empty); h.LastOffsetDelta != 9 || h.RecordCount != 0 || h.Codec() != CodecNone || h.Size() != HeaderSize {
				t.Fatalf("empty batch header %+v", h)
			}
		})
	}
}

// TestFilterErrors: bad input appends nothing and returns a typed error.
func TestFilterErrors(t *testing.T) {
	good := buildT(t, BuildOptions{Codec: CodecGzip}, sampleRecords(50, false)...)
	badCRC := slices.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	// Offset deltas out of order, under a valid CRC.
	swapped := Build(BuildOptions{BaseTimestamp: testNow},
		Record{Key: []byte("a"), Value: []byte("1")}, Record{Key: []byte("b"), Value: []byte("2")})
	var raw []byte
	raw = appendRecord(raw, &Record{Key: []byte("a")}, 1)
	raw = appendRecord(raw, &Record{Key: []byte("b")}, 0)
	h, _ := ParseHeader(swapped)
	swapped, _ = appendBatch(nil, &h, CodecNone, raw)
	cases := []struct {
		name  string
		b     []byte
		limit int
		kind  error
	}{
		{"bad-crc", badCRC, 0, ErrCorrupt},
		{"truncated", good[:len(good)-1], 0, ErrCorrupt},
		{"header-only", good[:HeaderSize-1], 0, ErrCorrupt},
		{"empty", nil, 0, ErrCorrupt},
		{"decompress-limit", good, 100, ErrTooLarge},
		{"offset-order", swapped, 0, ErrInvalidRecord},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte("keep")
			called := 0
			out, _, err := Filter(dst, c.b, func(int64, *Record) bool { called++; return false }, FilterOptions{KeepEmpty: true, DecompressLimit: c.limit})
			if !errors.Is(err, c.kind) || CodeOf(err) <= 0 {
				t.Fatalf("err %v, want %v", err, c.kind)
			}
			if string(out) != "keep" {
				t.Fatalf("dst became %q", out)
			}
			if c.name == "bad-crc" && called != 0 {
				t.Fatal("keep called for a batch with a bad CRC")
			}
		})
	}
}

// TestFilterIgnoresTrailingBytes: only the first batch is filtered.
func TestFilterIgnoresTrailingBytes(t *testing.T) {
	one := buildT(t, BuildOptions{}, sampleRecords(3, false)...)
	two := append(slices.Clone(one), one...)
	out, res, err := Filter(nil, two, keepAll, FilterOptions{})
	if err != nil || !res.Unchanged || !bytes.Equal(out, one) || res.RecordsIn != 3 {
		t.Fatalf("%v %+v", err, res)
	}
}

// TestFilterControlBatch: control batches are filtered like any other,
// keeping the control and transactional bits.
func TestFilterControlBatch(t *testing.T) {
	commit := Record{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}
	in := buildT(t, BuildOptions{Control: true, Transactional: true, Idempotent: true, ProducerID: 3, BaseOffset: 40}, commit)
	var called []int64
	out, res, err := Filter(nil, in, func(off int64, r *Record) bool { called = append(called, off); return true }, FilterOptions{})
	if err != nil || !res.Unchanged || !bytes.Equal(out, in) || !slices.Equal(called, []int64{40}) {
		t.Fatalf("%v %+v %v", err, res, called)
	}
	out, res, err = Filter(nil, in, keepNone, FilterOptions{KeepEmpty: true})
	if err != nil || !res.Empty {
		t.Fatalf("%v %+v", err, res)
	}
	if h, _ := ParseHeader(out); !h.IsControl() || !h.IsTransactional() || h.ProducerID != 3 || h.RecordCount != 0 {
		t.Fatalf("empty control batch %+v", h)
	}
}

// TestFilterDeleteHorizon: with the delete-horizon bit the base timestamp
// is the horizon and stays; record timestamps are kept.
func TestFilterDeleteHorizon(t *testing.T) {
	recs := sampleRecords(6, false)
	in := buildT(t, BuildOptions{Codec: CodecLZ4, BaseTimestamp: testNow}, recs...)
	binary.BigEndian.PutUint16(in[offAttributes:], uint16(CodecLZ4|AttrDeleteHorizon))
	fixCRC(in)
	out, res, err := Filter(nil, in, keepOffsets(2, 4), FilterOptions{})
	if err != nil || res.RecordsKept != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	h, _ := ParseHeader(out)
	if h.BaseTimestamp != testNow || h.Attributes != CodecLZ4|AttrDeleteHorizon {
		t.Fatalf("header %+v", h)
	}
	got := collect(t, out)
	for j, i := range []int{2, 4} {
		if got[j].TimestampDelta != recs[i].TimestampDelta {
			t.Fatalf("record %d: delta %d, want %d", j, got[j].TimestampDelta, recs[i].TimestampDelta)
		}
	}
	if want := testNow + max(recs[2].TimestampDelta, recs[4].TimestampDelta); h.MaxTimestamp != want || res.MaxTimestamp != want {
		t.Fatalf("max timestamp %d / %d, want %d", h.MaxTimestamp, res.MaxTimestamp, want)
	}
	out, _, err = Filter(nil, in, keepNone, FilterOptions{KeepEmpty: true})
	if h, _ := ParseHeader(out); err != nil || h.Attributes != 0 || h.BaseTimestamp != -1 {
		t.Fatalf("%v: empty batch %+v", err, h)
	}
}

// TestFilterRecordUnchangedByKeep: a keep that scribbles on the Record's
// fields (not its bytes) does not change the output.
func TestFilterRecordUnchangedByKeep(t *testing.T) {
	recs := sampleRecords(5, false)
	in := buildT(t, BuildOptions{}, recs...)
	out, _, err := Filter(nil, in, func(off int64, r *Record) bool {
		r.Key, r.TimestampDelta, r.OffsetDelta, r.Headers = nil, 99, 0, nil
		return off != 0
	}, FilterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, out)
	if len(got) != 4 {
		t.Fatalf("%d records", len(got))
	}
	for j, g := range got {
		w := recs[j+1]
		if g.OffsetDelta != int32(j+1) || !bytesEqualNull(g.Key, w.Key) || len(g.Headers) != len(w.Headers) ||
			g.TimestampDelta != w.TimestampDelta-recs[1].TimestampDelta {
			t.Fatalf("record %d: %+v, want %+v", j, g, w)
		}
	}
}
