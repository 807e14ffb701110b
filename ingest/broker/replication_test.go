package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/cluster"
)

// TestRoleChangeStopsAppends: once a partition's metadata names another
// leader, a client append is refused (NOT_LEADER_OR_FOLLOWER) rather than
// landing with the old epoch; an acks=all wait in progress fails the same
// way; a stale state (older epoch) is ignored; and becoming leader again
// records the new epoch at the log end before any append.
func TestRoleChangeStopsAppends(t *testing.T) {
	b, err := Open(Config{DataDir: t.TempDir(), MinFreeBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateTopic("t", 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	p, err := b.Partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := func() []byte {
		data, err := batch.AppendBuild(nil, batch.BuildOptions{BaseTimestamp: time.Now().UnixMilli()}, batch.Record{Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if _, err := p.Produce(rec(), true); err != nil {
		t.Fatal(err)
	}
	st := *p.state.Load()
	// Pretend the partition has a follower and a pending write: the wait
	// must end when leadership moves.
	two := cluster.Partition{Leader: 0, LeaderEpoch: st.LeaderEpoch + 1, PartitionEpoch: st.PartitionEpoch + 1, Replicas: []int32{0, 7}, ISR: []int32{0, 7}}
	b.applyState(p, two)
	res, err := p.Produce(rec(), true)
	if err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- p.WaitDurable(context.Background(), res.LastOffset) }()
	time.Sleep(50 * time.Millisecond)
	moved := cluster.Partition{Leader: 7, LeaderEpoch: two.LeaderEpoch + 1, PartitionEpoch: two.PartitionEpoch + 1, Replicas: []int32{0, 7}, ISR: []int32{0, 7}}
	b.applyState(p, moved)
	select {
	case err := <-waitErr:
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("acks=all wait after leadership moved: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("acks=all wait did not end when leadership moved")
	}
	end := p.log.EndOffset()
	if _, err := p.Produce(rec(), true); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append after leadership moved: %v", err)
	}
	if p.log.EndOffset() != end {
		t.Fatal("the refused append reached the log")
	}
	// A stale state does not take the role back.
	b.applyState(p, two)
	if p.LeaderEpoch() != moved.LeaderEpoch {
		t.Fatalf("epoch went back to %d", p.LeaderEpoch())
	}
	// Leading again at a newer epoch: the epoch starts at the log end.
	again := cluster.Partition{Leader: 0, LeaderEpoch: moved.LeaderEpoch + 1, PartitionEpoch: moved.PartitionEpoch + 1, Replicas: []int32{0, 7}, ISR: []int32{0}}
	b.applyState(p, again)
	if e, o := p.log.EndOffsetForEpoch(moved.LeaderEpoch); e != two.LeaderEpoch || o != end {
		t.Fatalf("end of epoch %d on the new leader: (%d, %d), want (%d, %d)", moved.LeaderEpoch, e, o, two.LeaderEpoch, end)
	}
	if _, err := p.Produce(rec(), true); err != nil {
		t.Fatalf("append after leading again: %v", err)
	}
}
