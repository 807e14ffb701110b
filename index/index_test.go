package index

import (
	"encoding/binary"
	"errors"
	"testing"
)

func sampleOffset() *OffsetIndex {
	x := &OffsetIndex{Base: 1000}
	for i := range uint32(10) {
		x.Append(i*10, i*4096+16)
	}
	return x
}

func sampleTime() *TimeIndex {
	x := &TimeIndex{Base: 1000}
	for i := range uint32(10) {
		x.Append(int64(5000+i*100), i*10)
	}
	return x
}

func TestOffsetLookup(t *testing.T) {
	x := sampleOffset()
	tests := []struct {
		offset  int64
		wantRel uint32
		wantOK  bool
	}{
		{999, 0, false},
		{1000, 0, true},
		{1009, 0, true},
		{1010, 10, true},
		{1055, 50, true},
		{1090, 90, true},
		{5000, 90, true},
	}
	for _, tt := range tests {
		e, ok := x.Lookup(tt.offset)
		if ok != tt.wantOK || (ok && e.RelOffset != tt.wantRel) {
			t.Errorf("Lookup(%d) = %+v, %v; want rel %d, %v", tt.offset, e, ok, tt.wantRel, tt.wantOK)
		}
	}
	if x.Append(90, 1<<30) || x.Append(91, 16) {
		t.Error("Append accepted a non-increasing entry")
	}
	x.TruncateAfterPosition(2*4096 + 16)
	if len(x.Entries) != 2 {
		t.Errorf("after truncate %d entries, want 2", len(x.Entries))
	}
}

func TestTimeLookup(t *testing.T) {
	x := sampleTime()
	tests := []struct {
		ts      int64
		wantRel uint32
		wantOK  bool
	}{
		{0, 0, false},
		{5000, 0, false},
		{5001, 0, true},
		{5100, 0, true},
		{5101, 10, true},
		{1 << 40, 90, true},
	}
	for _, tt := range tests {
		e, ok := x.LookupBefore(tt.ts)
		if ok != tt.wantOK || (ok && e.RelOffset != tt.wantRel) {
			t.Errorf("LookupBefore(%d) = %+v, %v; want rel %d, %v", tt.ts, e, ok, tt.wantRel, tt.wantOK)
		}
	}
	if x.Append(5900, 100) || x.Append(9999, 90) {
		t.Error("Append accepted a non-increasing entry")
	}
	x.TruncateFromOffset(1020)
	if len(x.Entries) != 2 {
		t.Errorf("after truncate %d entries, want 2", len(x.Entries))
	}
}

func TestRoundTrip(t *testing.T) {
	o := sampleOffset()
	got, err := DecodeOffsetIndex(o.AppendEncode(nil))
	if err != nil || got.Base != o.Base || len(got.Entries) != len(o.Entries) || got.Entries[3] != o.Entries[3] {
		t.Fatalf("offset round trip: %+v, %v", got, err)
	}
	ti := sampleTime()
	gt, err := DecodeTimeIndex(ti.AppendEncode(nil))
	if err != nil || gt.Base != ti.Base || len(gt.Entries) != len(ti.Entries) || gt.Entries[9] != ti.Entries[9] {
		t.Fatalf("time round trip: %+v, %v", gt, err)
	}
	empty, err := DecodeOffsetIndex((&OffsetIndex{Base: 7}).AppendEncode(nil))
	if err != nil || empty.Base != 7 || len(empty.Entries) != 0 {
		t.Fatalf("empty round trip: %+v, %v", empty, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := sampleOffset().AppendEncode(nil)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name    string
		b       []byte
		version bool
	}{
		{"empty", nil, false},
		{"short", good[:10], false},
		{"magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), false},
		{"version", mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 9); return b }), true},
		{"entry size", mut(func(b []byte) []byte { b[7] = 12; return b }), false},
		{"count", mut(func(b []byte) []byte { b[19]++; return b }), false},
		{"crc", mut(func(b []byte) []byte { b[25] ^= 1; return b }), false},
		{"truncated", good[:len(good)-1], false},
		{"time magic", sampleTime().AppendEncode(nil), false},
	}
	for _, tt := range tests {
		_, err := DecodeOffsetIndex(tt.b)
		var ve *VersionError
		switch {
		case err == nil:
			t.Errorf("%s: no error", tt.name)
		case tt.version && !errors.As(err, &ve):
			t.Errorf("%s: %v, want VersionError", tt.name, err)
		case tt.version && ve.Version != 9:
			t.Errorf("%s: version %d", tt.name, ve.Version)
		case !tt.version && !errors.Is(err, ErrCorrupt):
			t.Errorf("%s: %v, want ErrCorrupt", tt.name, err)
		}
	}
}

// TestDecodeNonIncreasing checks that a well-framed file with out-of-order
// entries is refused.
func TestDecodeNonIncreasing(t *testing.T) {
	x := &OffsetIndex{Base: 0, Entries: []OffsetEntry{{5, 100}, {4, 200}}}
	if _, err := DecodeOffsetIndex(x.AppendEncode(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
	y := &TimeIndex{Entries: []TimeEntry{{10, 1}, {10, 2}}}
	if _, err := DecodeTimeIndex(y.AppendEncode(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
}

func FuzzDecodeOffsetIndex(f *testing.F) {
	f.Add(sampleOffset().AppendEncode(nil))
	f.Add((&OffsetIndex{}).AppendEncode(nil))
	f.Add([]byte("SOIX\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeOffsetIndex(b)
		if err != nil {
			return
		}
		again, err := DecodeOffsetIndex(x.AppendEncode(nil))
		if err != nil || len(again.Entries) != len(x.Entries) {
			t.Fatalf("re-encode: %v", err)
		}
		x.Lookup(int64(len(b)))
	})
}

func FuzzDecodeTimeIndex(f *testing.F) {
	f.Add(sampleTime().AppendEncode(nil))
	f.Add((&TimeIndex{}).AppendEncode(nil))
	f.Add([]byte("STIX\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeTimeIndex(b)
		if err != nil {
			return
		}
		again, err := DecodeTimeIndex(x.AppendEncode(nil))
		if err != nil || len(again.Entries) != len(x.Entries) {
			t.Fatalf("re-encode: %v", err)
		}
		x.LookupBefore(int64(len(b)))
	})
}
