package broker

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/group"
)

// TestGroupsPersist: Open creates a compacted internal __consumer_offsets
// with the configured partition count, a commit is answered once durable in
// the group's offsets partition, and a reopened broker loads it back; an
// existing topic keeps its partition count.
func TestGroupsPersist(t *testing.T) {
	dir := t.TempDir()
	open := func(parts int32) *Broker {
		b, err := Open(Config{DataDir: dir, MinFreeBytes: 1 << 20, OffsetsTopicPartitions: parts,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := open(3)
	topic, ok := b.Meta().Topic(OffsetsTopic)
	if !ok || !topic.Internal || len(topic.Partitions) != 3 || topic.Configs["cleanup.policy"] != "compact" {
		t.Fatalf("offsets topic: %+v %v", topic, ok)
	}
	if _, err := b.CreateTopic("t", 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	c, err := b.GroupCoordinator("g")
	if err != nil {
		t.Fatal(err)
	}
	ch := c.CommitOffsets(group.CommitRequest{Group: "g", Generation: -1, Offsets: []group.CommitOffset{
		{TopicPartition: group.TopicPartition{Topic: "t", Partition: 0}, Offset: 42, LeaderEpoch: 3, Metadata: "md"},
	}})
	select {
	case res := <-ch:
		if len(res) != 1 || res[0].Err != nil {
			t.Fatalf("commit: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("commit not answered")
	}
	p, err := b.Partition(OffsetsTopic, group.PartitionFor("g", 3))
	if err != nil {
		t.Fatal(err)
	}
	if hw := p.HighWatermark(); hw != 1 {
		t.Fatalf("offsets partition high watermark %d after one commit, want 1", hw)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = open(7) // the existing topic keeps 3 partitions
	defer b.Close()
	if topic, _ := b.Meta().Topic(OffsetsTopic); len(topic.Partitions) != 3 {
		t.Fatalf("offsets topic has %d partitions after reopening, want 3", len(topic.Partitions))
	}
	c, _ = b.GroupCoordinator("g")
	got, err := c.FetchOffsets("g", nil)
	if err != nil || len(got) != 1 || got[0].Offset != 42 || got[0].LeaderEpoch != 3 || got[0].Metadata != "md" {
		t.Fatalf("after reopening: %+v %v", got, err)
	}
	if err := b.CreatePartitions(OffsetsTopic, 10, false); err == nil {
		t.Fatal("__consumer_offsets grew")
	}
}
