package log

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// goldenBatches is the content of testdata/golden-v1: 30 idempotent batches
// of 3 records from producer 7, with leader epoch 1 for the first 15 and 4
// for the rest, rolled into several segments, and the log start moved to 9.
func goldenBatches() [][]byte {
	var out [][]byte
	for i := 0; i < 30; i++ {
		out = append(out, makeBatch(batchSpec{records: 3, valSize: 40, ts: 1_700_000_000_000 + int64(i)*1000, pid: 7, seq: int32(i * 3), fill: byte(i)}))
	}
	return out
}

func goldenEpoch(i int) int32 {
	if i < 15 {
		return 1
	}
	return 4
}

// TestGoldenV1 opens a partition directory written by format version 1 and
// checks every batch, the log start, the leader epochs, the time index and
// the producer state, so that data written by older builds stays readable.
// Regenerate it only when adding a new format version (and keep the old
// directory): STRATA_WRITE_GOLDEN=1 go test -run TestGoldenV1 ./ingest/log
func TestGoldenV1(t *testing.T) {
	src := filepath.Join("testdata", "golden-v1")
	cfg := Config{SegmentBytes: 1024, SegmentMs: 1 << 62, IndexIntervalBytes: 256, FlushMessages: 1 << 62, FlushMs: 1 << 62, ProducerIDExpirationMs: 1 << 62}
	want := goldenBatches()
	if os.Getenv("STRATA_WRITE_GOLDEN") != "" {
		if err := os.RemoveAll(src); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, vfs.Default, src, cfg, Options{})
		for i, b := range want {
			if _, err := l.Append(bytes.Clone(b), AppendInfo{LeaderEpoch: goldenEpoch(i)}); err != nil {
				t.Fatal(err)
			}
		}
		waitDurable(t, l, l.EndOffset()-1)
		if err := l.SetStartOffset(9); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Work on a copy: opening may write (e.g. rebuild an index).
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatalf("golden directory: %v", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := mustOpen(t, vfs.Default, dir, cfg, Options{})
	defer l.Close()
	if l.StartOffset() != 9 || l.EndOffset() != 90 {
		t.Fatalf("golden log spans [%d, %d), want [9, 90)", l.StartOffset(), l.EndOffset())
	}
	got := readAll(t, l)
	first := len(want) - len(got)
	for i, b := range got {
		w := bytes.Clone(want[first+i])
		assignOffsets(w, mustHeaders(t, w), int64(first+i)*3, goldenEpoch(first+i))
		if !bytes.Equal(b, w) {
			t.Fatalf("golden batch %d differs", first+i)
		}
	}
	if ep, end := l.EndOffsetForEpoch(1); ep != 1 || end != 45 {
		t.Fatalf("epoch 1 ends at (%d, %d), want (1, 45)", ep, end)
	}
	if off, ts, ok, err := l.OffsetForTimestamp(1_700_000_020_001); err != nil || !ok || off != 61 || ts != 1_700_000_020_001 {
		t.Fatalf("offset for timestamp: %d %d %v %v", off, ts, ok, err)
	}
	// The producer state came back: a retry of the last batch is a duplicate.
	res, err := l.Append(bytes.Clone(want[len(want)-1]), AppendInfo{LeaderEpoch: 4})
	if err != nil || !res.Duplicate || res.BaseOffset != 87 {
		t.Fatalf("retry of the last golden batch: %+v %v", res, err)
	}
}

func mustHeaders(t *testing.T, b []byte) []batch.Header {
	t.Helper()
	hdrs, _, err := parseBatches(b)
	if err != nil {
		t.Fatal(err)
	}
	return hdrs
}
