package segment

import (
	"bytes"
	"flag"
	"hash/crc32"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
)

var updateTxn = flag.Bool("update-txn", false, "rewrite testdata/segment-v1-txn.bin")

const goldenTxnPath = "testdata/segment-v1-txn.bin"

// goldenTxnObject builds the object of testdata/segment-v1-txn.bin:
// transactional batches of two producers with their markers (producer 9
// aborts one transaction and leaves the next open past the segment's end,
// producer 11 commits), plain batches between them, and the aborted
// transactions as the uploader passes them (one starting below the
// segment, one ending past it: both clipped). The aborted-transaction
// section exists in format 1.0 (empty until transactions existed), so
// filling it changes no version.
func goldenTxnObject(t *testing.T) []byte {
	g := newGen(43, 8000)
	g.epoch = 4
	st := producer.NewState()
	seq := map[int64]int32{}
	txn := func(pid int64, n int) {
		recs := make([]batch.Record, n)
		for i := range recs {
			recs[i] = batch.Record{TimestampDelta: int64(i), Key: []byte{byte('a' + i)}, Value: g.value(compressible, i)}
		}
		b := batch.Build(batch.BuildOptions{BaseOffset: g.next, LeaderEpoch: g.epoch, BaseTimestamp: g.ts, Transactional: true,
			Idempotent: true, ProducerID: pid, ProducerEpoch: 1, BaseSequence: seq[pid]}, recs...)
		seq[pid] += int32(n)
		h, _ := batch.ParseHeader(b)
		st.Update(&h, g.ts)
		g.addRaw(b)
		g.ts += 7
	}
	marker := func(pid int64, commit bool) {
		b := batch.AppendMarker(nil, batch.MarkerOptions{ProducerID: pid, ProducerEpoch: 1, LeaderEpoch: g.epoch, TimestampMs: g.ts,
			Marker: batch.Marker{Commit: commit, CoordinatorEpoch: 2}})
		batch.SetBaseOffset(b, g.next)
		h, _ := batch.ParseHeader(b)
		st.Update(&h, g.ts)
		g.addRaw(b)
		g.ts += 7
	}
	txn(9, 3)              // 8000-8002: producer 9's aborted transaction, begun below (entry from 7990)
	g.add(compressible, 4) // 8003-8006
	txn(11, 2)             // 8007-8008
	marker(9, false)       // 8009: abort
	txn(9, 2)              // 8010-8011: aborted
	txn(11, 3)             // 8012-8014
	marker(11, true)       // 8015: commit
	g.add(compressible, 2) // 8016-8017
	marker(9, false)       // 8018: abort
	txn(9, 4)              // 8019-8022: open at the end, aborted later at 8100
	var buf bytes.Buffer
	_, err := Build(&buf, bytes.NewReader(g.src), BuildOptions{
		TopicID: [16]byte{0xfe, 0xed, 15: 2}, Partition: 1, ChunkTarget: 1 << 10, IndexInterval: 512,
		Aborted: []index.AbortedTxn{
			{ProducerID: 9, FirstOffset: 7990, LastOffset: 8009},
			{ProducerID: 9, FirstOffset: 8010, LastOffset: 8018},
			{ProducerID: 9, FirstOffset: 8019, LastOffset: 8100},
		},
		ProducerSnapshot: st.AppendSnapshot(nil, g.next), UploaderEpoch: 4, Now: time.UnixMilli(t0 + 9000),
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGoldenV1Txn reads an object of format 1.0 holding transactions and
// aborted-transaction entries (go test -run GoldenV1Txn -update-txn
// rewrites it; never once a release has shipped it). Expected values are
// written out, not recomputed.
func TestGoldenV1Txn(t *testing.T) {
	if *updateTxn {
		if err := os.WriteFile(goldenTxnPath, goldenTxnObject(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(goldenTxnPath)
	if err != nil {
		t.Fatal(err)
	}
	r := openObject(t, &object{b: b}, WithName(goldenTxnPath))
	if major, minor := r.Version(); major != 1 || minor != 0 {
		t.Errorf("version %d.%d", major, minor)
	}
	f := r.Footer()
	s := f.Summary
	if s.BaseOffset != 8000 || s.NextOffset != 8023 || s.BatchCount != 10 || s.RecordCount != 23 || len(f.Chunks) != goldenTxnChunks {
		t.Errorf("summary [%d, %d), %d batches, %d records, %d chunks", s.BaseOffset, s.NextOffset, s.BatchCount, s.RecordCount, len(f.Chunks))
	}
	want := []index.AbortedTxn{
		{ProducerID: 9, FirstOffset: 8000, LastOffset: 8009},
		{ProducerID: 9, FirstOffset: 8010, LastOffset: 8018},
		{ProducerID: 9, FirstOffset: 8019, LastOffset: 8022},
	}
	if !slices.Equal(f.Aborted, want) {
		t.Errorf("aborted\n got %v\nwant %v", f.Aborted, want)
	}
	var raw []byte
	for i := range f.Chunks {
		c, err := r.ReadChunk(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, c...)
	}
	if got := crc32.Checksum(raw, castagnoli); got != goldenTxnRawCRC {
		t.Errorf("raw batches CRC %08x, want %08x", got, goldenTxnRawCRC)
	}
	var markers []int64
	for pos := 0; pos < len(raw); {
		h, err := batch.ParseHeader(raw[pos:])
		if err != nil {
			t.Fatal(err)
		}
		if h.IsControl() {
			m, err := batch.ParseMarker(raw[pos : pos+h.Size()])
			if err != nil || m.Commit != (h.BaseOffset == 8015) || h.ProducerID != map[bool]int64{true: 11, false: 9}[m.Commit] {
				t.Errorf("marker at %d: %+v, producer %d, %v", h.BaseOffset, m, h.ProducerID, err)
			}
			markers = append(markers, h.BaseOffset)
		}
		pos += h.Size()
	}
	if !slices.Equal(markers, []int64{8009, 8015, 8018}) {
		t.Errorf("markers at %v", markers)
	}
	st, next, err := producer.DecodeSnapshot(f.ProducerSnapshot)
	if err != nil || next != 8023 {
		t.Fatalf("producer snapshot: %v, next %d", err, next)
	}
	if p, ok := st.Producer(9); !ok || p.CurrentTxnFirstOffset != 8019 {
		t.Errorf("producer 9 in the snapshot: %+v", p)
	}
	if *updateTxn {
		t.Logf("golden txn: %d chunks, raw CRC %08x, %d bytes", len(f.Chunks), crc32.Checksum(raw, castagnoli), len(b))
	}
}

// Values of testdata/segment-v1-txn.bin.
const (
	goldenTxnChunks = 5
	goldenTxnRawCRC = 0xd0297446
)
