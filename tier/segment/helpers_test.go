package segment

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
)

// dataKind is the shape of generated record data.
type dataKind int

const (
	compressible   dataKind = iota // JSON-like values, uncompressed batches
	incompressible                 // random values, uncompressed batches
	producerZstd                   // compressible values in zstd batches
	producerLZ4                    // compressible values in lz4 batches
)

func (k dataKind) String() string {
	return [...]string{"compressible", "random", "producer-zstd", "producer-lz4"}[k]
}

const t0 = int64(1_700_000_000_000)

// srcBatch is where one generated batch sits in the source bytes.
type srcBatch struct {
	base, last int64
	pos, size  int
}

// gen builds record batches with batch.Build. Timestamps mostly rise but
// jitter (records within a batch go back and forth, some batches start
// earlier than the previous one ended) so time lookups are exercised.
type gen struct {
	rng    *rand.Rand
	src    []byte
	bs     []srcBatch
	next   int64
	epoch  int32
	ts     int64
	tsJump int64
}

func newGen(seed uint64, base int64) *gen {
	return &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), next: base, ts: t0}
}

func (g *gen) value(k dataKind, i int) []byte {
	if k == incompressible {
		v := make([]byte, 100+g.rng.IntN(300))
		for j := range v {
			v[j] = byte(g.rng.Uint32())
		}
		return v
	}
	return fmt.Appendf(nil, `{"user":%d,"event":"page_view","page":"/products/%d","referrer":"https://example.com/search?q=item-%d","session":"%08x","ok":true}`,
		g.rng.IntN(5000), g.rng.IntN(300), i%97, g.rng.Uint32()&0xffff)
}

// add appends one batch of n records.
func (g *gen) add(k dataKind, n int) {
	recs := make([]batch.Record, n)
	for i := range recs {
		recs[i] = batch.Record{
			TimestampDelta: int64(g.rng.IntN(40)),
			Key:            fmt.Appendf(nil, "key-%d", g.rng.IntN(1000)),
			Value:          g.value(k, i),
		}
	}
	codec := batch.CodecNone
	switch k {
	case producerZstd:
		codec = batch.CodecZstd
	case producerLZ4:
		codec = batch.CodecLZ4
	}
	b := batch.Build(batch.BuildOptions{BaseOffset: g.next, LeaderEpoch: g.epoch, Codec: codec, BaseTimestamp: g.ts}, recs...)
	g.addRaw(b)
	g.ts += int64(g.rng.IntN(30)) - 5 + g.tsJump
}

func (g *gen) addRaw(b []byte) {
	h, err := batch.ParseHeader(b)
	if err != nil {
		panic(err)
	}
	g.bs = append(g.bs, srcBatch{base: h.BaseOffset, last: h.LastOffset(), pos: len(g.src), size: len(b)})
	g.src = append(g.src, b...)
	g.next = h.LastOffset() + 1
}

// batchAt returns the source batch holding offset.
func (g *gen) batchAt(offset int64) srcBatch {
	for _, b := range g.bs {
		if b.last >= offset {
			return b
		}
	}
	panic(fmt.Sprintf("offset %d past the end", offset))
}

// firstAtOrAfter finds the first record with timestamp >= ts by decoding
// every record.
func (g *gen) firstAtOrAfter(t testing.TB, ts int64) (int64, int64, bool) {
	for _, sb := range g.bs {
		b := g.src[sb.pos : sb.pos+sb.size]
		h, _ := batch.ParseHeader(b)
		var off, rts int64
		found := false
		err := batch.Records(b, 0, func(r batch.Record) error {
			if t := h.BaseTimestamp + r.TimestampDelta; !found && t >= ts {
				off, rts, found = h.BaseOffset+int64(r.OffsetDelta), t, true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if found {
			return off, rts, true
		}
	}
	return -1, -1, false
}

// maxTimestamp finds the first record with the largest timestamp.
func (g *gen) maxTimestamp(t testing.TB) (int64, int64) {
	off, max := int64(-1), int64(-1)
	for _, sb := range g.bs {
		b := g.src[sb.pos : sb.pos+sb.size]
		h, _ := batch.ParseHeader(b)
		err := batch.Records(b, 0, func(r batch.Record) error {
			if t := h.BaseTimestamp + r.TimestampDelta; t > max {
				off, max = h.BaseOffset+int64(r.OffsetDelta), t
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return off, max
}

// object is an in-memory object with a counting ranged fetch.
type object struct {
	b     []byte
	calls atomic.Int64
}

func (o *object) fetch(_ context.Context, off, n int64) ([]byte, error) {
	o.calls.Add(1)
	if off < 0 || n < 0 || off+n > int64(len(o.b)) {
		return nil, fmt.Errorf("range [%d, %d) outside object of %d bytes", off, off+n, len(o.b))
	}
	return bytes.Clone(o.b[off : off+n]), nil
}

func buildObject(t testing.TB, src []byte, opts BuildOptions) (*object, BuildResult) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Build(&buf, bytes.NewReader(src), opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if res.Size != int64(buf.Len()) {
		t.Fatalf("Build reported %d bytes, wrote %d", res.Size, buf.Len())
	}
	return &object{b: buf.Bytes()}, res
}

func openObject(t testing.TB, o *object, opts ...Option) *Reader {
	t.Helper()
	r, err := OpenReader(context.Background(), o.fetch, int64(len(o.b)), opts...)
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	return r
}
