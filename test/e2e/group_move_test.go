package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/group"
)

// TestCoordinatorMoves: leadership of the group's __consumer_offsets
// partition is taken away and given back several times while two franz-go
// group members consume and commit, as replication will move it. While
// resigned, FindCoordinator answers COORDINATOR_NOT_AVAILABLE and group
// requests NOT_COORDINATOR; the members ride it out (they keep fetching and
// retry their commits), no partition is ever owned twice, committed offsets
// never go backwards, and at the end every record is consumed and committed.
func TestCoordinatorMoves(t *testing.T) {
	const (
		topic      = "moving"
		groupID    = "mover"
		partitions = 4
	)
	ip := startInproc(t, "")
	ctx := ctxT(t, 3*time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	if err := ip.b.WaitGroupsLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	idx := group.PartitionFor(groupID, broker.DefaultOffsetsTopicPartitions)

	pcl := newClient(t, ip.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produced := 0
	produce := func(n int) {
		t.Helper()
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(produced % partitions), Value: []byte(fmt.Sprint(produced))})
			produced++
		}
		if err := pcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(40)

	own := newOwnership(t)
	members := []*groupMember{
		startMember(t, ip.addr, groupID, topic, "a", own),
		startMember(t, ip.addr, groupID, topic, "b", own),
	}
	waitGroupState(t, time.Minute, "two members to share the partitions", func() (bool, string) {
		return balanced(own, partitions, "a", "b")
	})

	// Commit continuously, and watch the committed offsets: they must
	// never go backwards.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var commitErrs sync.Map // error text → true
	for _, m := range members {
		wg.Add(1)
		go func(m *groupMember) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
					commitErrs.Store(err.Error(), true)
				}
			}
		}(m)
	}
	highest := map[int32]int64{}
	var backwards []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			offs, err := adm.FetchOffsets(ctx, groupID)
			if err != nil {
				continue // NOT_COORDINATOR while resigned
			}
			for p := int32(0); p < partitions; p++ {
				if o, ok := offs.Lookup(topic, p); ok && o.Err == nil {
					if o.At < highest[p] {
						backwards = append(backwards, fmt.Sprintf("partition %d: %d after %d", p, o.At, highest[p]))
					}
					highest[p] = max(highest[p], o.At)
				}
			}
		}
	}()

	raw := newClient(t, ip.addr)
	findCoordinator := func() int16 {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = groupID
		req.CoordinatorKeys = []string{groupID}      // v4 batches
		resp, err := raw.Broker(0).Request(ctx, req) // straight to the broker, no retries
		if err != nil {
			t.Fatal(err)
		}
		r := resp.(*kmsg.FindCoordinatorResponse)
		if len(r.Coordinators) == 1 {
			return r.Coordinators[0].ErrorCode
		}
		return r.ErrorCode
	}
	for round := 0; round < 4; round++ {
		produce(20)
		time.Sleep(300 * time.Millisecond)
		if err := ip.b.ResignCoordinator(idx); err != nil {
			t.Fatal(err)
		}
		if code := findCoordinator(); code != kerr.CoordinatorNotAvailable.Code {
			t.Fatalf("round %d: FindCoordinator while resigned: code %d, want COORDINATOR_NOT_AVAILABLE", round, code)
		}
		produce(20) // consumed while no coordinator runs
		time.Sleep(700 * time.Millisecond)
		if err := ip.b.ElectCoordinator(idx); err != nil {
			t.Fatal(err)
		}
		waitGroupState(t, 30*time.Second, "the coordinator to answer again", func() (bool, string) {
			code := findCoordinator()
			return code == 0, fmt.Sprintf("FindCoordinator code %d", code)
		})
	}
	waitGroupState(t, time.Minute, "every record consumed", func() (bool, string) {
		n := own.consumedCount()
		return n == produced, fmt.Sprintf("%d of %d", n, produced)
	})
	// Commits retried through the moves reach the new coordinator.
	waitGroupState(t, time.Minute, "every record committed", func() (bool, string) {
		offs, err := adm.FetchOffsets(ctx, groupID)
		if err != nil {
			return false, err.Error()
		}
		total := int64(0)
		for p := int32(0); p < partitions; p++ {
			o, _ := offs.Lookup(topic, p)
			total += o.At
		}
		return total == int64(produced), fmt.Sprintf("%d of %d committed", total, produced)
	})
	close(stop)
	wg.Wait()
	if len(backwards) > 0 {
		t.Fatalf("committed offsets went backwards: %v", backwards)
	}
	commitErrs.Range(func(k, _ any) bool {
		t.Logf("commit error seen during the moves (retried): %v", k)
		return true
	})
	_, gen := members[0].cl.GroupMetadata()
	t.Logf("generation after %d moves: %d; ownership %v", 4, gen, own.snapshot())
}
