package batch

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateAccepts(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(CodecName(codec), func(t *testing.T) {
			recs := sampleRecords(40, false)
			b := buildT(t, BuildOptions{Codec: codec, Idempotent: true, ProducerID: 7, ProducerEpoch: 2, BaseSequence: 100, Transactional: true}, recs...)
			opts := testOpts()
			opts.RequireKeys = true
			info, err := Validate(b, opts)
			if err != nil {
				t.Fatal(err)
			}
			if info.Batches != 1 || info.Records != 40 || info.Bytes != len(b) || info.Codec != codec {
				t.Fatalf("info %+v", info)
			}
			if info.ProducerID != 7 || info.ProducerEpoch != 2 || info.BaseSequence != 100 || info.LastSequence != 139 || !info.Transactional {
				t.Fatalf("producer fields %+v", info)
			}
			if info.MaxTimestamp != testNow-100+16 || info.First != info.Last {
				t.Fatalf("max timestamp %d, first %+v last %+v", info.MaxTimestamp, info.First, info.Last)
			}
		})
	}
}

func TestValidateMultipleBatches(t *testing.T) {
	a := buildT(t, BuildOptions{}, sampleRecords(3, false)...)
	c := buildT(t, BuildOptions{Codec: CodecZstd, BaseTimestamp: testNow}, sampleRecords(5, false)...)
	b := append(append([]byte{}, a...), c...)
	info, err := Validate(b, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if info.Batches != 2 || info.Records != 8 || info.First.RecordCount != 3 || info.Last.RecordCount != 5 || info.MaxTimestamp != testNow+12 || info.ProducerID != -1 {
		t.Fatalf("info %+v", info)
	}
	opts := testOpts()
	opts.SingleBatch = true
	expectErr(t, b, opts, ErrInvalidRecord, 1, "only one record batch")

	idem := buildT(t, BuildOptions{Idempotent: true, ProducerID: 1, BaseSequence: 0}, sampleRecords(2, false)...)
	expectErr(t, append(append([]byte{}, idem...), a...), testOpts(), ErrInvalidRecord, 1, "only one record batch")
	expectErr(t, append(append([]byte{}, a...), idem...), testOpts(), ErrInvalidRecord, 1, "only one record batch")
}

func expectErr(t *testing.T, b []byte, opts ValidateOptions, kind error, batch int, substr string) {
	t.Helper()
	_, err := Validate(b, opts)
	if err == nil {
		t.Fatalf("Validate accepted; want %v", kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is %T, not *Error", err, err)
	}
	if !errors.Is(err, kind) || e.Batch != batch || !strings.Contains(err.Error(), substr) || e.Code() != CodeOf(kind) || CodeOf(err) != CodeOf(kind) {
		t.Fatalf("got %q (batch %d, code %d); want %v in batch %d containing %q", err, e.Batch, e.Code(), kind, batch, substr)
	}
}

func TestValidateRefuses(t *testing.T) {
	good := func() []byte { return buildT(t, BuildOptions{}, sampleRecords(10, false)...) }
	patch := func(f func(b []byte) []byte) []byte { return f(good()) }
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return fixCRC(b) }
	}
	setAttr := func(bits int16) func([]byte) []byte {
		return func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[offAttributes:], binary.BigEndian.Uint16(b[offAttributes:])|uint16(bits))
			return fixCRC(b)
		}
	}
	setTS := func(base, maxTS int64) func([]byte) []byte {
		return func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[offBaseTimestamp:], uint64(base))
			binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(maxTS))
			return fixCRC(b)
		}
	}
	v1 := good()
	v1[offMagic] = 1
	opts := testOpts()
	small := testOpts()
	small.MaxMessageBytes = 100
	keys := testOpts()
	keys.RequireKeys = true
	noZstd := testOpts()
	noZstd.DisallowZstd = true
	tight := testOpts()
	tight.BeforeMaxMs, tight.AfterMaxMs = 1000, 1000

	tests := []struct {
		name   string
		b      []byte
		opts   ValidateOptions
		kind   error
		batch  int
		substr string
	}{
		{"empty", nil, opts, ErrInvalidRecord, 0, "no record batch"},
		{"magic v1", v1, opts, ErrInvalidRecord, 0, "magic 1"},
		{"short header", good()[:40], opts, ErrCorrupt, 0, "truncated"},
		{"truncated", good()[:100], opts, ErrCorrupt, 0, "truncated: batch length"},
		{"trailing garbage", append(good(), 1, 2, 3), opts, ErrCorrupt, 1, "truncated"},
		{"trailing partial batch", append(good(), good()[:70]...), opts, ErrCorrupt, 1, "truncated"},
		{"length below header", patch(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offBatchLength:], 10); return b }), opts, ErrCorrupt, 0, "smaller than the header"},
		{"negative length", patch(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offBatchLength:], 0xffffffff); return b }), opts, ErrCorrupt, 0, "smaller than the header"},
		{"bad crc", patch(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), opts, ErrCorrupt, 0, "CRC mismatch: header 0x"},
		{"too large", good(), small, ErrTooLarge, 0, "exceeds max.message.bytes 100"},
		{"control", patch(setAttr(AttrControl)), opts, ErrInvalidRecord, 0, "control"},
		{"codec 5", patch(setAttr(5)), opts, ErrUnsupportedCompression, 0, "unknown compression codec 5"},
		{"zstd before v7", buildT(t, BuildOptions{Codec: CodecZstd}, sampleRecords(2, false)...), noZstd, ErrUnsupportedCompression, 0, "zstd"},
		{"log append time from producer", patch(setAttr(AttrTimestampType)), opts, ErrInvalidTimestamp, 0, "LogAppendTime"},
		{"zero count", patch(put32(offRecordCount, 0)), opts, ErrInvalidRecord, 0, "invalid record count 0"},
		{"count vs lastOffsetDelta", patch(put32(offRecordCount, 11)), opts, ErrInvalidRecord, 0, "does not match record count 11"},
		{"count vs records", patch(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[offRecordCount:], 11)
			binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 10)
			return fixCRC(b)
		}), opts, ErrInvalidRecord, 0, "record count 11 but 10 records present"},
		{"fewer declared than present", patch(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[offRecordCount:], 9)
			binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 8)
			return fixCRC(b)
		}), opts, ErrInvalidRecord, 0, "more records than the record count 9"},
		{"bad offset delta", buildBadDelta(t), opts, ErrInvalidRecord, 0, "offset delta"},
		{"negative sequence", buildT(t, BuildOptions{Idempotent: true, ProducerID: 3, BaseSequence: -1}, sampleRecords(1, false)...), opts, ErrInvalidRecord, 0, "invalid sequence number -1"},
		{"transactional without producer", buildT(t, BuildOptions{Transactional: true}, sampleRecords(1, false)...), opts, ErrInvalidRecord, 0, "without a producer id"},
		{"null key uncompressed", buildT(t, BuildOptions{}, sampleRecords(10, true)...), keys, ErrInvalidRecord, 0, "record 3 has a null key"},
		{"null key zstd", buildT(t, BuildOptions{Codec: CodecZstd}, sampleRecords(10, true)...), keys, ErrInvalidRecord, 0, "record 3 has a null key"},
		{"timestamp too old", patch(setTS(testNow-5000, testNow)), tight, ErrInvalidTimestamp, 0, "out of range"},
		{"timestamp in future", patch(setTS(testNow, testNow+5000)), tight, ErrInvalidTimestamp, 0, "out of range"},
		{"record timestamp out of window", buildT(t, BuildOptions{BaseTimestamp: testNow}, Record{Value: []byte("x")}, Record{TimestampDelta: 2000, Value: []byte("y")}), func() ValidateOptions {
			o := tight
			return o
		}(), ErrInvalidTimestamp, 0, "out of range"},
		{"corrupt zstd payload", patch2(buildT(t, BuildOptions{Codec: CodecZstd}, sampleRecords(10, false)...)), keys, ErrCorrupt, 0, "zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectErr(t, tt.b, tt.opts, tt.kind, tt.batch, tt.substr) })
	}
}

// patch2 flips a byte in the middle of the compressed records and fixes the CRC.
func patch2(b []byte) []byte {
	b[HeaderSize+(len(b)-HeaderSize)/2] ^= 0xff
	return fixCRC(b)
}

// buildBadDelta builds a two-record batch whose second record says offset
// delta 5.
func buildBadDelta(t *testing.T) []byte {
	var raw []byte
	raw = appendRecord(raw, &Record{Value: []byte("a")}, 0)
	raw = appendRecord(raw, &Record{Value: []byte("b")}, 5)
	h := Header{Magic: 2, LastOffsetDelta: 1, RecordCount: 2, BaseTimestamp: testNow, MaxTimestamp: testNow, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	b, err := appendBatch(nil, &h, CodecNone, raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidateTimestampWindow(t *testing.T) {
	b := buildT(t, BuildOptions{BaseTimestamp: testNow - 1000}, Record{Value: []byte("x")}, Record{TimestampDelta: 2000, Value: []byte("y")})
	tests := []struct {
		before, after int64
		tsType        TimestampType
		ok            bool
	}{
		{1000, 1000, CreateTime, true},
		{999, 1000, CreateTime, false},
		{1000, 999, CreateTime, false},
		{-1, -1, CreateTime, true},
		{math.MaxInt64, math.MaxInt64, CreateTime, true},
		{0, 0, LogAppendTime, true}, // LogAppendTime topics do not check
	}
	for _, tt := range tests {
		o := testOpts()
		o.BeforeMaxMs, o.AfterMaxMs, o.TimestampType = tt.before, tt.after, tt.tsType
		_, err := Validate(b, o)
		if (err == nil) != tt.ok {
			t.Errorf("before %d after %d type %d: err %v, want ok %v", tt.before, tt.after, tt.tsType, err, tt.ok)
		}
	}
	// -1 means "no timestamp" and is never out of range.
	none := buildT(t, BuildOptions{BaseTimestamp: -1}, Record{Value: []byte("x")})
	o := testOpts()
	o.BeforeMaxMs, o.AfterMaxMs = 0, 0
	if _, err := Validate(none, o); err != nil {
		t.Fatalf("no-timestamp batch: %v", err)
	}
	// Extreme values must not overflow the window arithmetic.
	o.NowMs, o.BeforeMaxMs, o.AfterMaxMs = math.MaxInt64-5, 10, 10
	if _, err := Validate(buildT(t, BuildOptions{BaseTimestamp: math.MaxInt64 - 1}, Record{Value: []byte("x")}), o); err != nil {
		t.Fatalf("near MaxInt64: %v", err)
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	b := buildT(t, BuildOptions{Codec: CodecLZ4}, sampleRecords(20, false)...)
	before := append([]byte{}, b...)
	o := testOpts()
	o.RequireKeys = true
	if _, err := Validate(b, o); err != nil {
		t.Fatal(err)
	}
	if string(before) != string(b) {
		t.Fatal("Validate modified its input")
	}
}

func TestValidateDecompressLimit(t *testing.T) {
	recs := []Record{{Key: []byte("k"), Value: make([]byte, 1<<20)}}
	b := buildT(t, BuildOptions{Codec: CodecZstd}, recs...)
	o := testOpts()
	o.RequireKeys = true
	o.MaxDecompressedBytes = 64 << 10
	expectErr(t, b, o, ErrTooLarge, 0, "exceeds 65536 bytes")
	o.MaxDecompressedBytes = 2 << 20
	if _, err := Validate(b, o); err != nil {
		t.Fatal(err)
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		code int16
	}{
		{nil, 0},
		{errors.New("x"), CodeUnknownServerError},
		{ErrCorrupt, 2},
		{ErrTooLarge, 10},
		{ErrInvalidTimestamp, 32},
		{ErrUnsupportedCompression, 76},
		{ErrInvalidRecord, 87},
		{batchErr(ErrTooLarge, 3, "x"), 10},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.code {
			t.Errorf("CodeOf(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
	if got := batchErr(ErrCorrupt, 0, "CRC mismatch: header 0x%08x computed 0x%08x", 1, 2).Error(); got != "batch 0: CORRUPT_MESSAGE: CRC mismatch: header 0x00000001 computed 0x00000002" {
		t.Errorf("message %q", got)
	}
}
