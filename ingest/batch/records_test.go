package batch

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestRecordsRoundTrip(t *testing.T) {
	recs := sampleRecords(60, true)
	recs[1].Key = []byte{} // empty, not null
	for _, codec := range allCodecs {
		t.Run(CodecName(codec), func(t *testing.T) {
			b := buildT(t, BuildOptions{Codec: codec}, recs...)
			equalRecords(t, collect(t, b), recs)
		})
	}
}

func TestRecordsStopsOnCallbackError(t *testing.T) {
	b := buildT(t, BuildOptions{}, sampleRecords(10, false)...)
	stop := errors.New("stop")
	n := 0
	err := Records(b, 0, func(Record) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("err %v after %d records", err, n)
	}
}

func TestRecordsLimit(t *testing.T) {
	b := buildT(t, BuildOptions{Codec: CodecGzip}, Record{Value: make([]byte, 100<<10)})
	if err := Records(b, 10<<10, func(Record) error { return nil }); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v", err)
	}
}

func TestFirstAtOrAfterAndMax(t *testing.T) {
	base := testNow
	recs := []Record{
		{TimestampDelta: 5, Value: []byte("a")},
		{TimestampDelta: 2, Value: []byte("b")},
		{TimestampDelta: 9, Value: []byte("c")},
		{TimestampDelta: 9, Value: []byte("d")},
		{TimestampDelta: 7, Value: []byte("e")},
	}
	for _, codec := range []int{CodecNone, CodecSnappy} {
		b := buildT(t, BuildOptions{Codec: codec, BaseOffset: 100, BaseTimestamp: base}, recs...)
		tests := []struct {
			ts     int64
			off    int64
			at     int64
			wantOK bool
		}{
			{base, 100, base + 5, true},
			{base + 3, 100, base + 5, true},
			{base + 6, 102, base + 9, true},
			{base + 9, 102, base + 9, true},
			{base + 10, 0, 0, false},
		}
		for _, tt := range tests {
			off, at, ok, err := FirstAtOrAfter(b, tt.ts)
			if err != nil || ok != tt.wantOK || off != tt.off || at != tt.at {
				t.Errorf("%s FirstAtOrAfter(%d) = %d, %d, %v, %v; want %d, %d, %v", CodecName(codec), tt.ts, off, at, ok, err, tt.off, tt.at, tt.wantOK)
			}
		}
		off, ts, err := MaxTimestampRecord(b)
		if err != nil || off != 102 || ts != base+9 {
			t.Errorf("%s MaxTimestampRecord = %d, %d, %v", CodecName(codec), off, ts, err)
		}
		// LogAppendTime: every record carries the batch's max timestamp.
		SetLogAppendTime(b, base+1000)
		if off, at, ok, err := FirstAtOrAfter(b, base+500); err != nil || !ok || off != 100 || at != base+1000 {
			t.Errorf("LogAppendTime FirstAtOrAfter = %d, %d, %v, %v", off, at, ok, err)
		}
		if off, ts, err := MaxTimestampRecord(b); err != nil || off != 100 || ts != base+1000 {
			t.Errorf("LogAppendTime MaxTimestampRecord = %d, %d, %v", off, ts, err)
		}
	}
	if _, _, err := MaxTimestampRecord(Build(BuildOptions{})); err == nil {
		t.Error("empty batch: no error")
	}
}

func TestAssignOffsets(t *testing.T) {
	a := buildT(t, BuildOptions{}, sampleRecords(3, false)...)
	c := buildT(t, BuildOptions{Codec: CodecLZ4}, sampleRecords(4, false)...)
	b := append(append([]byte{}, a...), c...)
	if next := AssignOffsets(b, 1000, 7); next != 1007 {
		t.Fatalf("next %d", next)
	}
	info, err := Validate(b, testOpts()) // CRC still valid
	if err != nil {
		t.Fatal(err)
	}
	if info.First.BaseOffset != 1000 || info.Last.BaseOffset != 1003 || info.First.PartitionLeaderEpoch != 7 || info.Last.PartitionLeaderEpoch != 7 {
		t.Fatalf("headers %+v %+v", info.First, info.Last)
	}
	// Bad input must not panic, and stops where it stops parsing.
	if next := AssignOffsets(append(append([]byte{}, a...), 1, 2, 3), 0, 0); next != 3 {
		t.Fatalf("next %d", next)
	}
}

func TestSetLogAppendTime(t *testing.T) {
	for _, codec := range allCodecs {
		b := buildT(t, BuildOptions{Codec: codec, BaseTimestamp: 5000}, sampleRecords(8, false)...)
		size0 := len(b)
		b = append(b, buildT(t, BuildOptions{BaseTimestamp: 6000}, sampleRecords(2, false)...)...)
		recs := append([]byte{}, b[HeaderSize:size0]...)
		SetLogAppendTime(b, 123456)
		// Validate refuses producer LogAppendTime batches; check the CRC
		// and fields directly.
		for i, batch := range splitBatches(t, b) {
			h, _ := ParseHeader(batch)
			if crcOf(batch) != h.CRC {
				t.Fatalf("%s batch %d: CRC not recomputed", CodecName(codec), i)
			}
			if !h.LogAppendTime() || h.MaxTimestamp != 123456 || h.Codec() != []int{codec, CodecNone}[i] {
				t.Fatalf("%s batch %d: header %+v", CodecName(codec), i, h)
			}
			if want := []int64{5000, 6000}[i]; h.BaseTimestamp != want {
				t.Fatalf("base timestamp %d changed", h.BaseTimestamp)
			}
		}
		if string(b[HeaderSize:size0]) != string(recs) {
			t.Fatal("records changed")
		}
	}
}

func splitBatches(t *testing.T, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		h, err := ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b[:h.Size()])
		b = b[h.Size():]
	}
	return out
}

func TestRecompress(t *testing.T) {
	recs := sampleRecords(30, true)
	for _, from := range allCodecs {
		for _, to := range allCodecs {
			src := buildT(t, BuildOptions{Codec: from, BaseOffset: 42, LeaderEpoch: 3, Idempotent: true, ProducerID: 9, ProducerEpoch: 1, BaseSequence: 77, Transactional: true}, recs...)
			out, err := Recompress(src, to)
			if err != nil {
				t.Fatalf("%s->%s: %v", CodecName(from), CodecName(to), err)
			}
			if _, err := Validate(out, testOpts()); err != nil {
				t.Fatalf("%s->%s: %v", CodecName(from), CodecName(to), err)
			}
			hs, _ := ParseHeader(src)
			ho, _ := ParseHeader(out)
			if ho.Codec() != to {
				t.Fatalf("codec %d", ho.Codec())
			}
			hs.Attributes, ho.Attributes = hs.Attributes&^7, ho.Attributes&^7
			hs.BatchLength, ho.BatchLength, hs.CRC, ho.CRC = 0, 0, 0, 0
			if hs != ho {
				t.Fatalf("%s->%s header changed:\n%+v\n%+v", CodecName(from), CodecName(to), hs, ho)
			}
			equalRecords(t, collect(t, out), recs)
		}
	}
	// Records that do not match the count are refused, not rewritten.
	bad := buildT(t, BuildOptions{}, sampleRecords(3, false)...)
	binary.BigEndian.PutUint32(bad[offRecordCount:], 4)
	if _, err := Recompress(bad, CodecZstd); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("bad count: %v", err)
	}
	if _, err := Recompress(bad, 9); !errors.Is(err, ErrUnsupportedCompression) {
		t.Fatalf("codec 9: %v", err)
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good := appendRecord(nil, &Record{Key: []byte("k"), Value: []byte("v"), Headers: []RecordHeader{{Key: []byte("h"), Value: []byte("x")}}}, 0)
	body := good[1:] // after the 1-byte length varint
	withLen := func(b []byte) []byte { return append(binary.AppendVarint(nil, int64(len(b))), b...) }
	tests := map[string][]byte{
		"empty":           {},
		"negative length": binary.AppendVarint(nil, -2),
		"length too long": append(binary.AppendVarint(nil, 100), body...),
		"trailing bytes":  withLen(append(append([]byte{}, body...), 0)),
		"no attributes":   withLen(nil),
		"key too long":    withLen([]byte{0, 0, 0, 40}),
		"bad key length":  withLen([]byte{0, 0, 0, 3}), // -2
		"header count":    withLen([]byte{0, 0, 0, 1, 1, 1}),
		"null header key": withLen([]byte{0, 0, 0, 1, 1, 2, 1, 1}),
		"overlong varint": withLen([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),
		"offset overflow": withLen([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x7f}),
	}
	for name, b := range tests {
		var r Record
		if _, err := decodeRecord(b, &r, true); err == nil {
			t.Errorf("%s: decoded %x", name, b)
		}
	}
	var r Record
	if rest, err := decodeRecord(good, &r, true); err != nil || len(rest) != 0 || string(r.Headers[0].Key) != "h" {
		t.Fatalf("good: %v %+v", err, r)
	}
}
