package batch

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBuildReadsWithFranzGo checks that batches from Build parse with
// franz-go's kmsg and decompress with kgo's default decompressor into the
// records we put in.
func TestBuildReadsWithFranzGo(t *testing.T) {
	recs := sampleRecords(25, true)
	dec := kgo.DefaultDecompressor()
	for _, codec := range allCodecs {
		t.Run(CodecName(codec), func(t *testing.T) {
			b := buildT(t, BuildOptions{Codec: codec, BaseOffset: 10, LeaderEpoch: 4, Idempotent: true, ProducerID: 5, ProducerEpoch: 6, BaseSequence: 7}, recs...)
			var kb kmsg.RecordBatch
			if err := kb.ReadFrom(b); err != nil {
				t.Fatal(err)
			}
			if kb.FirstOffset != 10 || kb.PartitionLeaderEpoch != 4 || kb.Magic != 2 || kb.NumRecords != 25 || kb.LastOffsetDelta != 24 ||
				kb.ProducerID != 5 || kb.ProducerEpoch != 6 || kb.FirstSequence != 7 || int(kb.Attributes&7) != codec || int(kb.Length) != len(b)-LogOverhead {
				t.Fatalf("kmsg batch %+v", kb)
			}
			if uint32(kb.CRC) != crc32.Checksum(b[offAttributes:], crc32.MakeTable(crc32.Castagnoli)) {
				t.Fatal("CRC")
			}
			raw, err := dec.Decompress(kb.Records, kgo.CompressionCodecType(codec))
			if err != nil {
				t.Fatal(err)
			}
			for i := range recs {
				var kr kmsg.Record
				if err := kr.ReadFrom(raw); err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				w := recs[i]
				if kr.OffsetDelta != int32(i) || kr.TimestampDelta64 != w.TimestampDelta || !bytesEqualNull(kr.Key, w.Key) ||
					!bytesEqualNull(kr.Value, w.Value) || len(kr.Headers) != len(w.Headers) {
					t.Fatalf("record %d: %+v, want %+v", i, kr, w)
				}
				n, _ := binary.Varint(raw)
				raw = raw[int(n)+varintLen(n):]
			}
			if len(raw) != 0 {
				t.Fatalf("%d bytes left after the records", len(raw))
			}
		})
	}
}

// TestFranzGoBatchesValidate builds batches the way franz-go's producer
// does (kmsg.Record/RecordBatch AppendTo, kgo's compressor) and validates
// and reads them.
func TestFranzGoBatchesValidate(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(CodecName(codec), func(t *testing.T) {
			var raw []byte
			for i := range 30 {
				kr := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Key: []byte{byte(i)}, Value: bytes.Repeat([]byte("v"), i),
					Headers: []kmsg.Header{{Key: "h", Value: []byte("x")}}}
				kr.Length = int32(len(kr.AppendTo(nil)) - 1) // the length varint is 1 byte here
				raw = kr.AppendTo(raw)
			}
			records := raw
			if codec != CodecNone {
				comp, err := kgo.DefaultCompressor(map[int]kgo.CompressionCodec{
					CodecGzip: kgo.GzipCompression(), CodecSnappy: kgo.SnappyCompression(), CodecLZ4: kgo.Lz4Compression(), CodecZstd: kgo.ZstdCompression(),
				}[codec])
				if err != nil {
					t.Fatal(err)
				}
				out, used := comp.Compress(new(bytes.Buffer), raw)
				if int(used) != codec {
					t.Fatalf("kgo used codec %d", used)
				}
				records = append([]byte{}, out...)
			}
			kb := kmsg.RecordBatch{FirstOffset: 0, Magic: 2, Attributes: int16(codec), LastOffsetDelta: 29, FirstTimestamp: testNow,
				MaxTimestamp: testNow + 29, ProducerID: 11, ProducerEpoch: 0, FirstSequence: 0, NumRecords: 30, Records: records}
			b := kb.AppendTo(nil)
			binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-LogOverhead))
			fixCRC(b)
			o := testOpts()
			o.RequireKeys = true
			info, err := Validate(b, o)
			if err != nil {
				t.Fatal(err)
			}
			if info.Records != 30 || info.ProducerID != 11 || info.LastSequence != 29 {
				t.Fatalf("info %+v", info)
			}
			got := collect(t, b)
			if len(got) != 30 || got[29].Key[0] != 29 || len(got[29].Value) != 29 || string(got[3].Headers[0].Key) != "h" {
				t.Fatalf("records %+v", got[29])
			}
			if off, ts, err := MaxTimestampRecord(b); err != nil || off != 29 || ts != testNow+29 {
				t.Fatalf("max %d %d %v", off, ts, err)
			}
		})
	}
}
