package segment

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// benchSource returns about 32 MiB of batches of the given kind, with
// batches of about 16 KiB as a busy producer sends them.
func benchSource(b *testing.B, k dataKind) []byte {
	b.Helper()
	g := newGen(11, 0)
	for len(g.src) < 32<<20 {
		n := 100
		if k == incompressible {
			n = 60
		}
		g.add(k, n)
	}
	return g.src
}

// BenchmarkBuild measures Build throughput (MB/s of raw batches) and
// reports the stored/raw ratio.
func BenchmarkBuild(b *testing.B) {
	for _, k := range []dataKind{compressible, incompressible, producerZstd, producerLZ4} {
		b.Run(k.String(), func(b *testing.B) {
			src := benchSource(b, k)
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			var res BuildResult
			for b.Loop() {
				var err error
				res, err = Build(io.Discard, bytes.NewReader(src), BuildOptions{})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.Footer.Summary.StoredSize)/float64(len(src)), "stored/raw")
			b.ReportMetric(float64(res.Size-res.Footer.Summary.StoredSize), "footer-bytes")
		})
	}
}

// BenchmarkReadChunk measures ReadChunk throughput (MB/s of raw batches
// returned) from an in-memory object: CRC, decompression, framing check.
func BenchmarkReadChunk(b *testing.B) {
	for _, k := range []dataKind{compressible, incompressible} {
		b.Run(k.String(), func(b *testing.B) {
			src := benchSource(b, k)
			var buf bytes.Buffer
			if _, err := Build(&buf, bytes.NewReader(src), BuildOptions{}); err != nil {
				b.Fatal(err)
			}
			obj := buf.Bytes()
			fetch := func(_ context.Context, off, n int64) ([]byte, error) { return obj[off : off+n], nil }
			r, err := OpenReader(context.Background(), fetch, int64(len(obj)))
			if err != nil {
				b.Fatal(err)
			}
			chunks := r.Footer().Chunks
			b.SetBytes(int64(chunks[0].RawLen))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := r.ReadChunk(context.Background(), i%(len(chunks)-1)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
