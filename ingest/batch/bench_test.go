package batch

import (
	"bytes"
	"testing"
)

func benchBatch(b *testing.B, codec int) []byte {
	var recs []Record
	size := 0
	for i := 0; size < 16<<10; i++ {
		r := Record{TimestampDelta: int64(i), Key: []byte("key"), Value: bytes.Repeat([]byte{byte(i)}, 100)}
		recs = append(recs, r)
		size += 110
	}
	return buildT(b, BuildOptions{Codec: codec}, recs...)
}

func BenchmarkValidate(b *testing.B) {
	for _, bc := range []struct {
		name  string
		codec int
		keys  bool
	}{
		{"none-16KiB", CodecNone, false},
		{"zstd", CodecZstd, false},
		{"zstd-requirekeys", CodecZstd, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			batch := benchBatch(b, bc.codec)
			o := testOpts()
			o.RequireKeys = bc.keys
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Validate(batch, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecompress(b *testing.B) {
	p := bytes.Repeat([]byte("benchmark payload "), 4<<10)
	for _, codec := range allCodecs[1:] {
		b.Run(CodecName(codec), func(b *testing.B) {
			c, _ := Compress(codec, p, nil)
			dst := make([]byte, 0, len(p))
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = Decompress(codec, c, dst[:0], 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
