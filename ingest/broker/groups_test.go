package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

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
	if err := b.WaitGroupsLoaded(context.Background()); err != nil {
		t.Fatal(err)
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

// commitOne commits one offset of t-0 for a simple (memberless) group and
// returns the commit's error.
func commitOne(t *testing.T, c *group.Coordinator, groupID string, off int64) error {
	t.Helper()
	ch := c.CommitOffsets(group.CommitRequest{Group: groupID, Generation: -1, Offsets: []group.CommitOffset{
		{TopicPartition: group.TopicPartition{Topic: "t", Partition: 0}, Offset: off, LeaderEpoch: -1},
	}})
	select {
	case res := <-ch:
		return res[0].Err
	case <-time.After(10 * time.Second):
		t.Fatal("commit not answered")
		return nil
	}
}

// TestCoordinatorElectResign moves leadership of an offsets partition away
// and back, as replication will: after ResignCoordinator the partition's
// groups get NOT_COORDINATOR and FindCoordinator stops naming the broker,
// other partitions keep serving, and ElectCoordinator loads the partition
// back from the log with every commit made before, including ones made
// between resignations. A load abandoned by a resignation does not make
// the coordinator answer.
func TestCoordinatorElectResign(t *testing.T) {
	b, err := Open(Config{DataDir: t.TempDir(), MinFreeBytes: 1 << 20, OffsetsTopicPartitions: 4,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateTopic("t", 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitGroupsLoaded(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Two groups on different offsets partitions.
	ga, gb := "a", ""
	for i := 0; gb == ""; i++ {
		if g := fmt.Sprintf("b%d", i); group.PartitionFor(g, 4) != group.PartitionFor(ga, 4) {
			gb = g
		}
	}
	idx := group.PartitionFor(ga, 4)
	ca, _ := b.GroupCoordinator(ga)
	cb, _ := b.GroupCoordinator(gb)
	for i := int64(1); i <= 50; i++ {
		if err := commitOne(t, ca, ga, i); err != nil {
			t.Fatal(err)
		}
	}
	fetched := func(c *group.Coordinator, g string) (int64, error) {
		got, err := c.FetchOffsets(g, nil)
		if err != nil || len(got) == 0 {
			return -1, err
		}
		return got[0].Offset, nil
	}
	for round := 0; round < 3; round++ {
		if err := b.ResignCoordinator(idx); err != nil {
			t.Fatal(err)
		}
		if b.LeadsCoordinator(ga) || !b.LeadsCoordinator(gb) {
			t.Fatalf("round %d: leads %q %v, %q %v after resigning %d", round, ga, b.LeadsCoordinator(ga), gb, b.LeadsCoordinator(gb), idx)
		}
		if err := commitOne(t, ca, ga, 1000); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("round %d: commit after resigning: %v, want NOT_COORDINATOR", round, err)
		}
		if _, err := fetched(ca, ga); !errors.Is(err, kerr.NotCoordinator) {
			t.Fatalf("round %d: fetch after resigning: %v, want NOT_COORDINATOR", round, err)
		}
		if err := commitOne(t, cb, gb, int64(round)); err != nil {
			t.Fatalf("round %d: the other partition's group: %v", round, err)
		}
		if err := b.ElectCoordinator(idx); err != nil {
			t.Fatal(err)
		}
		if !b.LeadsCoordinator(ga) {
			t.Fatalf("round %d: not leading after ElectCoordinator", round)
		}
		var off int64
		deadline := time.Now().Add(10 * time.Second)
		for {
			off, err = fetched(ca, ga)
			if !errors.Is(err, kerr.CoordinatorLoadInProgress) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if want := int64(50 + round); err != nil || off != want {
			t.Fatalf("round %d: after electing again: offset %d, %v; want %d", round, off, err, want)
		}
		if err := commitOne(t, ca, ga, int64(51+round)); err != nil {
			t.Fatal(err)
		}
	}
	// A load overtaken by a resignation leaves the partition unowned.
	if err := b.ElectCoordinator(idx); err != nil {
		t.Fatal(err)
	}
	if err := b.ResignCoordinator(idx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the abandoned load finishes
	if _, err := fetched(ca, ga); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("after an abandoned load: %v, want NOT_COORDINATOR", err)
	}
	if err := b.ElectCoordinator(99); !errors.Is(err, ErrUnknownTopicOrPartition) {
		t.Fatalf("electing a missing partition: %v", err)
	}
}
