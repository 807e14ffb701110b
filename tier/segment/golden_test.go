package segment

import (
	"bytes"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
)

var update = flag.Bool("update", false, "rewrite testdata/segment-v1.bin")

const goldenPath = "testdata/segment-v1.bin"

// goldenObject builds the object stored in testdata: two compressible
// chunks (zstd), one random chunk (stored raw), three leader epochs and a
// producer snapshot.
func goldenObject(t *testing.T) []byte {
	g := newGen(42, 5000)
	st := producer.NewState()
	for i := range 30 {
		g.epoch = int32(3 + i/12)
		k := compressible
		if i >= 20 {
			k = incompressible
		}
		g.add(k, 4)
	}
	b := batch.Build(batch.BuildOptions{BaseOffset: g.next, LeaderEpoch: g.epoch, BaseTimestamp: t0 + 1000, Idempotent: true,
		ProducerID: 77, ProducerEpoch: 2, BaseSequence: 0}, batch.Record{Key: []byte("k"), Value: []byte("v")})
	h, _ := batch.ParseHeader(b)
	st.Update(&h, t0+1000)
	g.addRaw(b)
	var buf bytes.Buffer
	_, err := Build(&buf, bytes.NewReader(g.src), BuildOptions{
		TopicID: [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 1}, Partition: 3, ChunkTarget: 6 << 10, IndexInterval: 1024,
		ProducerSnapshot: st.AppendSnapshot(nil, g.next), UploaderEpoch: 5, Now: time.UnixMilli(t0 + 5000),
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGoldenV1 reads an object written by format 1.0 (go test -run Golden
// -update rewrites it; never do that once a release has shipped it). The
// expected values are written out here, not recomputed, so that a change
// of the format or of the generator cannot pass silently.
func TestGoldenV1(t *testing.T) {
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, goldenObject(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	o := &object{b: b}
	r := openObject(t, o, WithName(goldenPath))
	if major, minor := r.Version(); major != 1 || minor != 0 {
		t.Errorf("version %d.%d", major, minor)
	}
	f := r.Footer()
	s := f.Summary
	want := index.Summary{
		TopicID: [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 1}, Partition: 3, BaseOffset: 5000, NextOffset: 5121,
		RecordCount: 121, BatchCount: 31, FirstTimestamp: t0, MaxTimestamp: goldenMaxTs, MaxTimestampOffset: 5120,
		RawSize: goldenRawSize, StoredSize: goldenStoredSize, CreatedMs: t0 + 5000, UploaderEpoch: 5,
	}
	s.Epochs = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("summary\n got %+v\nwant %+v", s, want)
	}
	if e := f.Summary.Epochs; !equalEpochs(e, []index.EpochEntry{{Epoch: 3, StartOffset: 5000}, {Epoch: 4, StartOffset: 5048}, {Epoch: 5, StartOffset: 5096}}) {
		t.Errorf("epochs %v", e)
	}
	codecs := ""
	var raw []byte
	for i, c := range f.Chunks {
		codecs += batch.CodecName(int(c.Codec)) + " "
		chunk, err := r.ReadChunk(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, chunk...)
	}
	if codecs != goldenCodecs {
		t.Errorf("chunk codecs %q, want %q", codecs, goldenCodecs)
	}
	if got := crc32.Checksum(raw, castagnoli); got != goldenRawCRC {
		t.Errorf("raw batches CRC %08x, want %08x", got, goldenRawCRC)
	}
	if len(f.Offsets.Entries) != goldenOffsetEntries || len(f.Times.Entries) == 0 {
		t.Errorf("%d offset and %d time index entries", len(f.Offsets.Entries), len(f.Times.Entries))
	}
	st, next, err := producer.DecodeSnapshot(f.ProducerSnapshot)
	if err != nil || next != 5121 || st.Len() != 1 {
		t.Errorf("producer snapshot: %v, next %d", err, next)
	}
	if off, _, ok, err := r.OffsetForTimestamp(ctx, t0+1000); err != nil || !ok || off != 5120 {
		t.Errorf("OffsetForTimestamp: %d, %v, %v", off, ok, err)
	}
	if *update {
		t.Logf("golden: max ts %d, raw %d, stored %d, codecs %q, raw CRC %08x, %d offset entries, %d bytes",
			s.MaxTimestamp, s.RawSize, s.StoredSize, codecs, crc32.Checksum(raw, castagnoli), len(f.Offsets.Entries), len(b))
	}
}

// Values of testdata/segment-v1.bin.
const (
	goldenMaxTs         = t0 + 1000
	goldenRawSize       = 24881
	goldenStoredSize    = 13786
	goldenCodecs        = "zstd zstd zstd none none "
	goldenRawCRC        = 0x5c112cd0
	goldenOffsetEntries = 17
)
