package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
)

// TestTieredLocalCleanerKeepsTombstonesAndBoundaries: on a tiered compacted
// topic the local cleaner keeps every tombstone (older values of the key
// may be in the bucket, or the segment may be uploaded without it) and
// never merges segments (the uploader continues at segment boundaries),
// even for tombstones far older than delete.retention.ms and on passes that
// rewrite the clean part again.
func TestTieredLocalCleanerKeepsTombstonesAndBoundaries(t *testing.T) {
	b := openPlanBroker(t, true)
	cfg := map[string]string{
		"cleanup.policy": "compact", "remote.storage.enable": "true", "segment.bytes": "2048",
		"min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000",
	}
	if _, err := b.CreateTopic("tiered-compact", 1, 1, cfg, false); err != nil {
		t.Fatal(err)
	}
	p, err := b.Partition("tiered-compact", 0)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour).UnixMilli()
	produce := func(key string, value []byte) {
		rec := batch.Record{Key: []byte(key), Value: value}
		if _, err := p.Produce(batch.Build(batch.BuildOptions{BaseTimestamp: old}, rec), true); err != nil {
			t.Fatal(err)
		}
	}
	deleted := map[string]bool{} // keys whose last record is a tombstone
	for round := range 3 {
		for i := range 40 {
			produce("k", make([]byte, 100))
			if i%4 == 0 {
				key := fmt.Sprintf("t%d-%d", round, i)
				produce(key, make([]byte, 100))
				produce(key, nil) // a delete, two days old
				deleted[key] = round < 2
			}
			produce(string(rune('a'+i%20)), make([]byte, 100))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.WaitDurable(ctx, p.LogEndOffset()-1)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		before := p.log.Segments()
		if n := b.CleanPass(context.Background()); n != 1 {
			t.Fatalf("round %d: cleaned %d partitions, want 1", round, n)
		}
		after := p.log.Segments()
		if len(after) != len(before) {
			t.Fatalf("round %d: %d segments became %d: the cleaner merged segments of a tiered log", round, len(before), len(after))
		}
		for i := range after {
			if after[i].Base != before[i].Base || after[i].Next != before[i].Next {
				t.Fatalf("round %d: segment %d moved from [%d, %d) to [%d, %d)", round, i, before[i].Base, before[i].Next, after[i].Base, after[i].Next)
			}
		}
	}
	// Every tombstone of the first rounds (compacted three times, in the
	// clean part, far past delete.retention.ms) is still there.
	found := map[string]bool{}
	for off := p.LogStartOffset(); off < p.HighWatermark(); {
		bs, err := p.Read(context.Background(), off, 1<<20, false)
		if err != nil {
			t.Fatal(err)
		}
		for len(bs) > 0 {
			h, err := batch.ParseHeader(bs)
			if err != nil {
				t.Fatal(err)
			}
			err = batch.Records(bs[:h.Size()], 0, func(r batch.Record) error {
				if r.Value == nil {
					found[string(r.Key)] = true
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			off, bs = h.LastOffset()+1, bs[h.Size():]
		}
	}
	for key, check := range deleted {
		if check && !found[key] {
			t.Fatalf("the local cleaner of a tiered log dropped the tombstone of %s", key)
		}
	}
}
