package log

import (
	"testing"

	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

func TestProducerStateSurvivesCrash(t *testing.T) {
	for _, tc := range []struct {
		name    string
		batches int
		segment int64
	}{
		{"replay of active segment", 8, 1 << 20},
		{"snapshot plus replay", 40, 700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := vfs.NewCrashFS()
			cfg := Config{SegmentBytes: tc.segment}
			l := mustOpen(t, fsys, "/d", cfg, Options{})
			var results []AppendResult
			var batches [][]byte
			for i := range tc.batches {
				b := makeBatch(batchSpec{records: 3, valSize: 40, ts: 1, pid: 7, pepoch: 2, seq: int32(3 * i)})
				res := mustAppend(t, l, b)
				results = append(results, res)
				batches = append(batches, b)
			}
			waitDurable(t, l, results[len(results)-1].LastOffset)
			if tc.segment < 1<<20 && len(segmentBases(l)) < 3 {
				t.Fatalf("no rolls")
			}
			l.Close() // the crash below sees only synced data anyway
			r := mustOpen(t, fsys.CrashClone(nil), "/d", cfg, Options{})
			defer r.Close()
			// Resend the last batch: it is a duplicate with its original offsets.
			last := len(batches) - 1
			dup := makeBatch(batchSpec{records: 3, valSize: 40, ts: 1, pid: 7, pepoch: 2, seq: int32(3 * last)})
			res, err := r.Append(dup, AppendInfo{LeaderEpoch: 1})
			if err != nil || !res.Duplicate || res.BaseOffset != results[last].BaseOffset || res.LastOffset != results[last].LastOffset {
				t.Fatalf("resent batch: %+v, %v; want duplicate of %+v", res, err, results[last])
			}
			// A gap is refused.
			gap := makeBatch(batchSpec{records: 1, valSize: 1, ts: 1, pid: 7, pepoch: 2, seq: int32(3*len(batches) + 5)})
			if _, err := r.Append(gap, AppendInfo{}); err == nil {
				t.Fatal("out-of-order sequence accepted after recovery")
			} else if e, ok := err.(*producer.Error); !ok || e.Code() != 45 {
				t.Fatalf("gap: %v", err)
			}
			// The next in sequence is accepted.
			next := makeBatch(batchSpec{records: 1, valSize: 1, ts: 1, pid: 7, pepoch: 2, seq: int32(3 * len(batches))})
			if res, err := r.Append(next, AppendInfo{}); err != nil || res.Duplicate {
				t.Fatalf("next batch: %+v, %v", res, err)
			}
		})
	}
}
