package batch

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// seedBatches returns valid batches of every codec, plus truncated and
// bad-CRC variants.
func seedBatches(t testing.TB) [][]byte {
	var out [][]byte
	for _, codec := range allCodecs {
		b := buildT(t, BuildOptions{Codec: codec}, sampleRecords(6, true)...)
		out = append(out, b, b[:len(b)-3], b[:HeaderSize])
		bad := append([]byte{}, b...)
		bad[len(bad)-1] ^= 0x55
		out = append(out, bad)
	}
	two := buildT(t, BuildOptions{}, sampleRecords(2, false)...)
	out = append(out, append(append([]byte{}, two...), two...))
	return out
}

func FuzzValidate(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, keys bool) {
		o := testOpts()
		o.RequireKeys = keys
		o.MaxDecompressedBytes = 1 << 20
		info, err := Validate(b, o)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || CodeOf(err) <= 0 {
				t.Fatalf("untyped error %T %v", err, err)
			}
			return
		}
		if info.Bytes != len(b) || info.Batches < 1 {
			t.Fatalf("info %+v for %d bytes", info, len(b))
		}
		// Whatever validates must survive the rewrites and stay valid.
		c := append([]byte{}, b...)
		if next := AssignOffsets(c, 5, 1); next != 5+info.Records {
			t.Fatalf("next %d, records %d", next, info.Records)
		}
		if _, err := Validate(c, o); err != nil {
			t.Fatalf("after AssignOffsets: %v", err)
		}
		SetLogAppendTime(c, 99)
		for len(c) > 0 {
			h, _ := ParseHeader(c)
			if crcOf(c[:h.Size()]) != h.CRC || h.MaxTimestamp != 99 {
				t.Fatal("SetLogAppendTime left a bad batch")
			}
			c = c[h.Size():]
		}
	})
}

func FuzzRecords(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := Records(b, 1<<20, func(r Record) error { n++; return nil })
		if err != nil && CodeOf(err) <= 0 {
			t.Fatalf("untyped error %v", err)
		}
		_, _, _, _ = FirstAtOrAfter(b, testNow)
		_, _, _ = MaxTimestampRecord(b)
		out, rerr := Recompress(b, CodecZstd)
		if err == nil && rerr == nil {
			// A recompressed batch holds the same records, under a valid CRC.
			m := 0
			if err := Records(out, 1<<20, func(Record) error { m++; return nil }); err != nil || m != n {
				t.Fatalf("recompressed: %v, %d records vs %d", err, m, n)
			}
			// (A batch already in zstd comes back as is, CRC unchecked.)
			if hb, _ := ParseHeader(b); hb.Codec() != CodecZstd {
				if h, _ := ParseHeader(out); crcOf(out) != h.CRC {
					t.Fatal("recompressed batch has a bad CRC")
				}
			}
		}
	})
}

func FuzzDecompress(f *testing.F) {
	for _, codec := range allCodecs {
		for _, p := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("ab"), 5000)} {
			c, _ := Compress(codec, p, nil)
			f.Add(uint8(codec), c)
		}
	}
	f.Add(uint8(CodecSnappy), append([]byte{}, xerialMagic...))
	f.Fuzz(func(t *testing.T, codec uint8, src []byte) {
		const limit = 64 << 10
		out, err := Decompress(int(codec%8), src, nil, limit)
		if err != nil {
			if CodeOf(err) <= 0 {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("%d bytes past the limit", len(out))
		}
		// What decodes must round-trip through our encoder.
		c, err := Compress(int(codec%8), out, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decompress(int(codec%8), c, nil, limit)
		if err != nil || !bytes.Equal(back, out) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzFilter(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(b, uint64(0), false, false)
		f.Add(b, ^uint64(0), false, true)
		f.Add(b, uint64(0x5a5a5a5a5a5a5a5a), true, true)
	}
	lat := buildT(f, BuildOptions{Codec: CodecZstd, Idempotent: true, ProducerID: 9, BaseSequence: 3}, sampleRecords(9, true)...)
	SetLogAppendTime(lat, testNow)
	f.Add(lat, uint64(0b1011), true, true)
	f.Fuzz(func(t *testing.T, b []byte, mask uint64, keepEmpty, fixInputCRC bool) {
		const limit = 1 << 20
		if fixInputCRC && len(b) >= HeaderSize {
			// Let mutations reach the records, past the CRC check.
			if h, err := ParseHeader(b); err == nil && h.Size() <= len(b) {
				b = append([]byte{}, b...)
				fixCRC(b[:h.Size()])
			}
		}
		prefix := []byte("dst")
		var offsets []int64
		keep := func(off int64, r *Record) bool {
			k := mask>>(len(offsets)%64)&1 == 1
			if k {
				offsets = append(offsets, off)
			}
			return k
		}
		out, res, err := Filter(append([]byte{}, prefix...), b, keep, FilterOptions{KeepEmpty: keepEmpty, DecompressLimit: limit})
		if !bytes.HasPrefix(out, prefix) {
			t.Fatal("dst prefix overwritten")
		}
		out = out[len(prefix):]
		if err != nil {
			if CodeOf(err) <= 0 {
				t.Fatalf("untyped error %v", err)
			}
			if len(out) != 0 {
				t.Fatalf("error %v but %d bytes appended", err, len(out))
			}
			return
		}
		if res.BytesOut != len(out) || res.RecordsKept != len(offsets) || res.RecordsKept > res.RecordsIn {
			t.Fatalf("result %+v, %d bytes out, %d kept", res, len(out), len(offsets))
		}
		if res.Dropped {
			if len(out) != 0 || res.RecordsKept != 0 || keepEmpty {
				t.Fatalf("dropped: %+v, %d bytes", res, len(out))
			}
			return
		}
		in, _ := ParseHeader(b)
		h, err := ParseHeader(out)
		if err != nil || h.Size() != len(out) || crcOf(out) != h.CRC {
			t.Fatalf("output header %+v: %v", h, err)
		}
		if h.BaseOffset != in.BaseOffset || h.LastOffsetDelta != in.LastOffsetDelta || h.ProducerID != in.ProducerID ||
			h.BaseSequence != in.BaseSequence || int(h.RecordCount) != res.RecordsKept {
			t.Fatalf("output header %+v, input %+v", h, in)
		}
		if res.Unchanged && !bytes.Equal(out, b[:in.Size()]) {
			t.Fatal("unchanged output differs from the input")
		}
		// The kept records read back at their offsets. Re-encoded timestamp
		// deltas may take more bytes than the input's.
		var got []int64
		err = Records(out, 4*limit, func(r Record) error { got = append(got, h.BaseOffset+int64(r.OffsetDelta)); return nil })
		if err != nil || !slices.Equal(got, offsets) {
			t.Fatalf("output records: %v, offsets %v, want %v", err, got, offsets)
		}
	})
}
