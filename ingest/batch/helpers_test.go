package batch

import (
	"bytes"
	"fmt"
	"testing"
)

var allCodecs = []int{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

const testNow = int64(1_700_000_000_000)

// sampleRecords returns n records with keys, values, headers, a null key
// every 7th record when nullKeys, and varied timestamp deltas.
func sampleRecords(n int, nullKeys bool) []Record {
	recs := make([]Record, n)
	for i := range recs {
		r := &recs[i]
		r.TimestampDelta = int64(i * 3 % 17)
		if !(nullKeys && i%7 == 3) {
			r.Key = []byte(fmt.Sprintf("key-%d", i))
		}
		r.Value = bytes.Repeat([]byte{byte('a' + i%26)}, 10+i%50)
		if i%5 == 0 {
			r.Headers = []RecordHeader{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n"), Value: nil}}
		}
		if i%11 == 4 {
			r.Value = nil
		}
	}
	return recs
}

func testOpts() ValidateOptions {
	o := DefaultValidateOptions()
	o.NowMs = testNow
	return o
}

func buildT(t testing.TB, opts BuildOptions, recs ...Record) []byte {
	t.Helper()
	if opts.BaseTimestamp == 0 {
		opts.BaseTimestamp = testNow - 100
	}
	return Build(opts, recs...)
}

// collect returns copies of the records of the batch at the start of b.
func collect(t testing.TB, b []byte) []Record {
	t.Helper()
	var out []Record
	err := Records(b, 0, func(r Record) error {
		c := Record{Attributes: r.Attributes, TimestampDelta: r.TimestampDelta, OffsetDelta: r.OffsetDelta,
			Key: clone(r.Key), Value: clone(r.Value)}
		for _, h := range r.Headers {
			c.Headers = append(c.Headers, RecordHeader{Key: clone(h.Key), Value: clone(h.Value)})
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	return out
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func equalRecords(t testing.TB, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.OffsetDelta != int32(i) || g.TimestampDelta != w.TimestampDelta ||
			!bytesEqualNull(g.Key, w.Key) || !bytesEqualNull(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: got %+v, want %+v", i, g, w)
		}
		for j := range w.Headers {
			if !bytes.Equal(g.Headers[j].Key, w.Headers[j].Key) || !bytesEqualNull(g.Headers[j].Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: got %+v, want %+v", i, j, g.Headers[j], w.Headers[j])
			}
		}
	}
}

// bytesEqualNull compares contents and nullness.
func bytesEqualNull(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// fixCRC recomputes the CRC of the single batch b after a test edited it.
func fixCRC(b []byte) []byte {
	be := b[offCRC:]
	c := crcOf(b)
	be[0], be[1], be[2], be[3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return b
}
