package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/txn"
)

// TestWriteTxnMarkerErrors: a marker a partition led here refuses comes back
// as the Kafka error a remote leader would answer, so the coordinator can
// tell a fenced write (stop) from a retriable one; a marker of a producer's
// newer epoch is taken and fences the older epoch's produce.
func TestWriteTxnMarkerErrors(t *testing.T) {
	b, err := Open(Config{DataDir: t.TempDir(), MinFreeBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.CreateTopic("m", 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	p, err := b.Partition("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := func(epoch int16, seq int32) []byte {
		return batch.Build(batch.BuildOptions{BaseTimestamp: time.Now().UnixMilli(), Transactional: true, Idempotent: true,
			ProducerID: 9, ProducerEpoch: epoch, BaseSequence: seq}, batch.Record{Value: []byte("v")})
	}
	if _, err := p.Produce(data(2, 0), true); err != nil {
		t.Fatal(err)
	}
	// The coordinator at epoch 5 aborts with a bumped producer epoch.
	if err := b.WriteTxnMarker(ctx, "m", 0, 9, 3, batch.Marker{CoordinatorEpoch: 5}); err != nil {
		t.Fatalf("abort marker at a newer producer epoch: %v", err)
	}
	if _, err := p.Produce(data(2, 1), true); err == nil {
		t.Fatal("produce at the fenced epoch was taken")
	}
	for _, tc := range []struct {
		name  string
		epoch int16
		coord int32
		want  error
	}{
		{"older producer epoch", 2, 5, kerr.InvalidProducerEpoch},
		{"older coordinator epoch", 3, 4, kerr.TransactionCoordinatorFenced},
	} {
		err := b.WriteTxnMarker(ctx, "m", 0, 9, tc.epoch, batch.Marker{Commit: true, CoordinatorEpoch: tc.coord})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := b.WriteTxnMarker(ctx, "nope", 0, 9, 3, batch.Marker{}); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Errorf("unknown partition: %v (want a retriable NOT_LEADER_OR_FOLLOWER)", err)
	}

	// Through WriteMarkers, as the coordinator calls it: a topic gone from
	// the metadata is dropped at once, the fenced partition reported.
	var got map[txn.TopicPartition]error
	var wg sync.WaitGroup
	wg.Add(1)
	b.WriteMarkers(txn.Markers{ProducerID: 9, ProducerEpoch: 2, CoordinatorEpoch: 5,
		Partitions: []txn.TopicPartition{{Topic: "m", Partition: 0}, {Topic: "gone", Partition: 0}}},
		func(m map[txn.TopicPartition]error) { got = m; wg.Done() })
	wg.Wait()
	if err := got[txn.TopicPartition{Topic: "m", Partition: 0}]; !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Errorf("WriteMarkers, fenced partition: %v", err)
	}
	if err := got[txn.TopicPartition{Topic: "gone", Partition: 0}]; !errors.Is(err, txn.ErrPartitionDeleted) {
		t.Errorf("WriteMarkers, deleted topic: %v", err)
	}
}
