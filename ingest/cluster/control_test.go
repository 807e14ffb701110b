package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func brokersN(n int, racks ...string) []Broker {
	var out []Broker
	for i := 0; i < n; i++ {
		b := Broker{ID: int32(i)}
		if len(racks) > 0 {
			b.Rack = racks[i%len(racks)]
		}
		out = append(out, b)
	}
	return out
}

// TestAssignReplicas: distinct replicas, leaders balanced, every broker
// following every other, racks spanned when there are racks, errors when
// rf exceeds the brokers.
func TestAssignReplicas(t *testing.T) {
	for _, tc := range []struct {
		brokers, parts, rf int
		racks              []string
	}{
		{1, 5, 1, nil}, {3, 6, 3, nil}, {5, 50, 3, nil}, {4, 12, 2, nil},
		{6, 24, 3, []string{"a", "b", "c"}}, {4, 8, 3, []string{"a", "b"}}, {5, 10, 2, []string{"a", "b"}},
		{3, 12, 3, []string{"a", "b"}}, {5, 20, 4, []string{"a", "b", "c"}},
	} {
		t.Run(fmt.Sprintf("%d-brokers-%d-parts-rf%d-racks%d", tc.brokers, tc.parts, tc.rf, len(tc.racks)), func(t *testing.T) {
			for start := 0; start < tc.brokers; start++ {
				assign, err := AssignReplicas(brokersN(tc.brokers, tc.racks...), tc.parts, tc.rf, start)
				if err != nil {
					t.Fatal(err)
				}
				leaders := map[int32]int{}
				pairs := map[[2]int32]bool{}
				for i, reps := range assign {
					if len(reps) != tc.rf {
						t.Fatalf("partition %d: %v", i, reps)
					}
					seen := map[int32]bool{}
					racks := map[string]bool{}
					for _, r := range reps {
						if seen[r] || r < 0 || int(r) >= tc.brokers {
							t.Fatalf("partition %d: replicas %v", i, reps)
						}
						seen[r] = true
						if len(tc.racks) > 0 {
							racks[tc.racks[int(r)%len(tc.racks)]] = true
						}
					}
					if want := min(tc.rf, len(tc.racks)); len(tc.racks) > 0 && len(racks) != want {
						t.Fatalf("partition %d: replicas %v span %d racks, want %d", i, reps, len(racks), want)
					}
					leaders[reps[0]]++
					for _, r := range reps[1:] {
						pairs[[2]int32{reps[0], r}] = true
					}
				}
				for id, n := range leaders {
					if d := n - tc.parts/tc.brokers; d < 0 || d > 1 {
						t.Fatalf("broker %d leads %d of %d partitions: %v", id, n, tc.parts, leaders)
					}
				}
				// With enough partitions, a broker's followers are spread
				// over all the others (Kafka's shift).
				if tc.racks == nil && tc.rf > 1 && tc.parts >= tc.brokers*(tc.brokers-1) && len(pairs) != tc.brokers*(tc.brokers-1) {
					t.Fatalf("only %d leader→follower pairs of %d", len(pairs), tc.brokers*(tc.brokers-1))
				}
			}
		})
	}
	if _, err := AssignReplicas(brokersN(2), 1, 3, 0); err == nil {
		t.Fatal("rf 3 on 2 brokers")
	}
	if _, err := AssignReplicas(brokersN(2), 0, 1, 0); err == nil {
		t.Fatal("0 partitions")
	}
}

func all(int32) bool { return true }

func TestElectLeader(t *testing.T) {
	p := Partition{Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{2, 3}}
	if l := ElectLeader(p, all, false); l != 2 {
		t.Fatalf("leader %d, want the first in-sync replica 2", l)
	}
	not2 := func(id int32) bool { return id != 2 }
	if l := ElectLeader(p, not2, false); l != 3 {
		t.Fatalf("leader %d, want 3", l)
	}
	none := func(id int32) bool { return id == 1 }
	if l := ElectLeader(p, none, false); l != NoLeader {
		t.Fatalf("clean election chose %d outside the ISR", l)
	}
	if l := ElectLeader(p, none, true); l != 1 {
		t.Fatalf("unclean election chose %d, want 1", l)
	}
}

// TestFenceAndUnfence: fencing moves leadership to an in-sync replica and
// takes the broker out of the ISR, except as the last member, in which
// case the partition waits leaderless for it; unfencing restores such a
// partition; epochs grow with every change.
func TestFenceAndUnfence(t *testing.T) {
	p := Partition{Leader: 1, LeaderEpoch: 4, PartitionEpoch: 9, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}}
	q := FenceReplica(p, 1, all, false)
	if q.Leader != 2 || q.LeaderEpoch != 5 || q.PartitionEpoch <= 9 || !slices.Equal(q.ISR, []int32{2, 3}) {
		t.Fatalf("after fencing the leader: %+v", q)
	}
	if !slices.Equal(p.ISR, []int32{1, 2, 3}) {
		t.Fatalf("FenceReplica changed its input: %+v", p)
	}
	q2 := FenceReplica(q, 3, all, false)
	if q2.Leader != 2 || q2.LeaderEpoch != 5 || !slices.Equal(q2.ISR, []int32{2}) {
		t.Fatalf("after fencing a follower: %+v", q2)
	}
	q3 := FenceReplica(q2, 2, func(id int32) bool { return id != 2 }, false)
	if q3.Leader != NoLeader || !slices.Equal(q3.ISR, []int32{2}) || q3.LeaderEpoch != 6 {
		t.Fatalf("after fencing the last in-sync replica: %+v", q3)
	}
	if same := FenceReplica(q3, 7, all, false); same.PartitionEpoch != q3.PartitionEpoch {
		t.Fatalf("fencing a non-replica changed the partition: %+v", same)
	}
	if q4 := UnfenceReplica(q3, 3, func(id int32) bool { return id != 2 }, false); q4.Leader != NoLeader {
		t.Fatalf("an out-of-sync replica led after unfencing: %+v", q4)
	}
	q5 := UnfenceReplica(q3, 2, all, false)
	if q5.Leader != 2 || q5.LeaderEpoch != 7 {
		t.Fatalf("after the last in-sync replica returned: %+v", q5)
	}
	pref := PreferredLeader(Partition{Leader: 2, Replicas: []int32{1, 2}, ISR: []int32{1, 2}}, all)
	if pref.Leader != 1 || pref.LeaderEpoch != 1 {
		t.Fatalf("preferred leader: %+v", pref)
	}
	if out := PreferredLeader(Partition{Leader: 2, Replicas: []int32{1, 2}, ISR: []int32{2}}, all); out.Leader != 2 {
		t.Fatalf("preferred leader out of sync took over: %+v", out)
	}
}

func apply(t *testing.T, s *State, idx uint64, c Command) Result {
	t.Helper()
	c.V = FormatVersion
	// Commands travel as JSON: apply what decoding gives.
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var d Command
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return s.Apply(idx, d)
}

// TestStateApply: registration epochs, fencing by epoch, AlterPartition's
// checks, versions, and the snapshot round trip.
func TestStateApply(t *testing.T) {
	s := NewState()
	idx := uint64(0)
	next := func(c Command) Result { idx++; return apply(t, s, idx, c) }
	next(Command{Type: CmdInit, ClusterID: "c1"})
	for id := int32(1); id <= 3; id++ {
		r := next(Command{Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: id}}})
		if r.Value != int64(idx) || !s.Brokers[id].Fenced {
			t.Fatalf("register %d: %+v %+v", id, r, s.Brokers[id])
		}
		if r := next(Command{Type: CmdUnfenceBroker, BrokerID: id, Epoch: s.Brokers[id].Epoch}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := next(Command{Type: CmdFenceBroker, BrokerID: 1, Epoch: 1}); !errors.Is(r.Err, ErrStaleBrokerEpoch) {
		t.Fatalf("fence with a stale epoch: %v", r.Err)
	}
	id := NewTopicID()
	top := TopicRecord{Name: "t", ID: id, Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}}}}
	if r := next(Command{Type: CmdCreateTopic, Topic: &top}); r.Err != nil || len(r.Events) != 1 {
		t.Fatalf("create: %+v", r)
	}
	if r := next(Command{Type: CmdCreateTopic, Topic: &top}); !errors.Is(r.Err, ErrTopicExists) {
		t.Fatalf("create twice: %v", r.Err)
	}
	alter := func(a AlterPartition) error { return next(Command{Type: CmdAlterPartition, Alter: &a}).Err }
	a := AlterPartition{TopicID: id, Partition: 0, Leader: 1, LeaderEpoch: 0, PartitionEpoch: 0, ISR: []int32{1, 2}}
	for _, tc := range []struct {
		mod  func(*AlterPartition)
		want error
	}{
		{func(a *AlterPartition) { a.Leader = 2 }, ErrNotLeader},
		{func(a *AlterPartition) { a.LeaderEpoch = 3 }, ErrFencedLeaderEpoch},
		{func(a *AlterPartition) { a.PartitionEpoch = 3 }, ErrInvalidUpdateVersion},
		{func(a *AlterPartition) { a.ISR = []int32{2} }, ErrIneligibleReplica},
		{func(a *AlterPartition) { a.ISR = []int32{1, 9} }, ErrIneligibleReplica},
		{func(a *AlterPartition) { a.ISR = []int32{1, 1} }, ErrIneligibleReplica},
		{func(a *AlterPartition) { a.Partition = 5 }, ErrUnknownTopicPartition},
		{func(a *AlterPartition) { a.TopicID = NewTopicID() }, ErrUnknownTopicPartition},
	} {
		b := a
		b.ISR = slices.Clone(a.ISR)
		tc.mod(&b)
		if err := alter(b); !errors.Is(err, tc.want) {
			t.Fatalf("alter %+v: %v, want %v", b, err, tc.want)
		}
	}
	if err := alter(a); err != nil {
		t.Fatal(err)
	}
	if p := s.Topics["t"].Partitions[0]; !slices.Equal(p.ISR, []int32{1, 2}) || p.PartitionEpoch != 1 {
		t.Fatalf("after shrinking: %+v", p)
	}
	// A fenced broker cannot be added back.
	next(Command{Type: CmdFenceBroker, BrokerID: 3, Epoch: s.Brokers[3].Epoch})
	a.PartitionEpoch, a.ISR = 1, []int32{1, 2, 3}
	if err := alter(a); !errors.Is(err, ErrIneligibleReplica) {
		t.Fatalf("expand with a fenced broker: %v", err)
	}
	// Fencing the leader moves leadership; re-registering it (a restart)
	// does the same.
	next(Command{Type: CmdFenceBroker, BrokerID: 1, Epoch: s.Brokers[1].Epoch})
	if p := s.Topics["t"].Partitions[0]; p.Leader != 2 || p.LeaderEpoch != 1 {
		t.Fatalf("after fencing the leader: %+v", p)
	}
	next(Command{Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: 2}}})
	if p := s.Topics["t"].Partitions[0]; p.Leader != NoLeader || !slices.Equal(p.ISR, []int32{2}) {
		t.Fatalf("after the last in-sync leader re-registered: %+v", p)
	}
	next(Command{Type: CmdUnfenceBroker, BrokerID: 2, Epoch: s.Brokers[2].Epoch})
	if p := s.Topics["t"].Partitions[0]; p.Leader != 2 {
		t.Fatalf("after it was unfenced: %+v", p)
	}
	if r := s.Apply(99, Command{V: FormatVersion + 1, Type: CmdInit}); !errors.Is(r.Err, ErrUnsupportedCommand) {
		t.Fatalf("newer version: %v", r.Err)
	}
	if r := s.Apply(99, Command{V: FormatVersion, Type: "nope"}); !errors.Is(r.Err, ErrUnsupportedCommand) {
		t.Fatalf("unknown type: %v", r.Err)
	}
	if r := next(Command{Type: CmdAllocateProducerIDs, Count: 10}); r.Value != 0 || s.NextProducerID != 10 {
		t.Fatalf("allocate: %+v", r)
	}

	raw, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSnapshot(raw)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.MarshalSnapshot()
	if string(again) != string(raw) || back.ClusterID != "c1" || back.NextProducerID != 10 || back.ByID[id] != "t" {
		t.Fatalf("snapshot round trip:\n%s\n%s", raw, again)
	}
	if _, err := UnmarshalSnapshot([]byte(`{"v":2}`)); !errors.Is(err, ErrUnsupportedCommand) {
		t.Fatalf("newer snapshot: %v", err)
	}
}

// FuzzApplyCommand: any bytes decoded as a command and applied to a small
// state never panic, and a snapshot of the result decodes again.
func FuzzApplyCommand(f *testing.F) {
	id := NewTopicID()
	for _, c := range []Command{
		{V: 1, Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: 1}}},
		{V: 1, Type: CmdCreateTopic, Topic: &TopicRecord{Name: "x", ID: id, Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}},
		{V: 1, Type: CmdAlterPartition, Alter: &AlterPartition{TopicID: id, Leader: 1, ISR: []int32{1}}},
		{V: 1, Type: CmdCreatePartitions, Name: "x", Adds: []PartitionRec{{Leader: -1}}},
		{V: 1, Type: CmdFenceBroker, BrokerID: 1, Epoch: 1},
	} {
		raw, _ := json.Marshal(c)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := NewState()
		s.Apply(1, Command{V: 1, Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: 1}}})
		s.Apply(2, Command{V: 1, Type: CmdUnfenceBroker, BrokerID: 1, Epoch: 1})
		tr := TopicRecord{Name: "t", ID: NewTopicID(), Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}
		s.Apply(3, Command{V: 1, Type: CmdCreateTopic, Topic: &tr})
		var c Command
		if json.Unmarshal(raw, &c) != nil {
			return
		}
		s.Apply(4, c)
		s.Apply(5, Command{V: 1, Type: CmdFenceBroker, BrokerID: 1, Epoch: 1})
		snap, err := s.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalSnapshot(snap); err != nil {
			t.Fatalf("snapshot of an applied state does not decode: %v", err)
		}
	})
}

// FuzzUnmarshalSnapshot: any bytes either decode or fail cleanly.
func FuzzUnmarshalSnapshot(f *testing.F) {
	s := NewState()
	s.Apply(1, Command{V: 1, Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: 1}}})
	raw, _ := s.MarshalSnapshot()
	f.Add(raw)
	f.Add([]byte(`{"v":1,"topics":[{"name":"a","id":"00000000000000000000000000000001","partitions":[{}]}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := UnmarshalSnapshot(raw)
		if err != nil {
			return
		}
		if _, err := st.MarshalSnapshot(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStateLimits: a CreatePartitions planned against another partition
// count is refused (two concurrent requests cannot both add), and sizes
// that would make a snapshot unreadable or overflow producer ids are
// refused.
func TestStateLimits(t *testing.T) {
	s := NewState()
	id := NewTopicID()
	top := TopicRecord{Name: "t", ID: id, Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}
	if r := apply(t, s, 1, Command{Type: CmdCreateTopic, Topic: &top}); r.Err != nil {
		t.Fatal(r.Err)
	}
	add := []PartitionRec{{Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}
	if r := apply(t, s, 2, Command{Type: CmdCreatePartitions, Name: "t", Adds: add, Count: 1}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := apply(t, s, 3, Command{Type: CmdCreatePartitions, Name: "t", Adds: add, Count: 1}); !errors.Is(r.Err, ErrInvalidPartition) {
		t.Fatalf("second add planned for 1 partition: %v", r.Err)
	}
	if n := len(s.Topics["t"].Partitions); n != 2 {
		t.Fatalf("%d partitions, want 2", n)
	}
	big := TopicRecord{Name: "big", ID: NewTopicID(), Partitions: make([]PartitionRec, maxPartitions+1)}
	if r := apply(t, s, 4, Command{Type: CmdCreateTopic, Topic: &big}); !errors.Is(r.Err, ErrInvalidPartition) {
		t.Fatalf("topic beyond the snapshot limit: %v", r.Err)
	}
	if r := apply(t, s, 5, Command{Type: CmdAllocateProducerIDs, Count: 1 << 40}); !errors.Is(r.Err, ErrUnsupportedCommand) {
		t.Fatalf("huge producer id block: %v", r.Err)
	}
}

// stateWith returns a state with brokers 1..n registered and unfenced.
func stateWith(t *testing.T, n int32) (*State, func(Command) Result) {
	t.Helper()
	s := NewState()
	idx := uint64(0)
	next := func(c Command) Result { idx++; return apply(t, s, idx, c) }
	for id := int32(1); id <= n; id++ {
		next(Command{Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: id}}})
		if r := next(Command{Type: CmdUnfenceBroker, BrokerID: id, Epoch: s.Brokers[id].Epoch}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	return s, next
}

func TestElectIfLeaderless(t *testing.T) {
	p := Partition{Leader: NoLeader, LeaderEpoch: 3, PartitionEpoch: 5, Replicas: []int32{1, 2, 3}, ISR: []int32{1}}
	not1 := func(id int32) bool { return id != 1 }
	if q := ElectIfLeaderless(p, not1, false); q.Leader != NoLeader || q.PartitionEpoch != 5 {
		t.Fatalf("clean: %+v", q)
	}
	q := ElectIfLeaderless(p, not1, true)
	if q.Leader != 2 || q.LeaderEpoch != 4 || !slices.Equal(q.ISR, []int32{2}) || !slices.Equal(p.ISR, []int32{1}) {
		t.Fatalf("unclean: %+v (input %+v)", q, p)
	}
	led := Partition{Leader: 3, Replicas: []int32{1, 3}, ISR: []int32{3}}
	if q := ElectIfLeaderless(led, all, true); q.Leader != 3 || q.LeaderEpoch != 0 {
		t.Fatalf("a led partition changed: %+v", q)
	}
}

// TestStateUncleanElection: with the ISR down to a dead broker and another
// replica alive, the partition stays leaderless while
// unclean.leader.election.enable is off, is led by that replica as soon as
// the config is turned on (or at fencing, if it was on already), and never
// on a tiered topic even if its configs ask for it.
func TestStateUncleanElection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		configs map[string]string // set before broker 1 dies
		later   map[string]string // set after
		want    int32
	}{
		{"off", nil, nil, NoLeader},
		{"turned-on-later", nil, map[string]string{"unclean.leader.election.enable": "true"}, 2},
		{"on-at-fencing", map[string]string{"unclean.leader.election.enable": "true"}, nil, 2},
		{"tiered", map[string]string{"unclean.leader.election.enable": "true", "remote.storage.enable": "true"}, nil, NoLeader},
		{"tiered-later", map[string]string{"remote.storage.enable": "true"}, map[string]string{"unclean.leader.election.enable": "true", "remote.storage.enable": "true"}, NoLeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, next := stateWith(t, 3)
			top := TopicRecord{Name: "t", ID: NewTopicID(), Configs: tc.configs,
				Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1}}}}
			if r := next(Command{Type: CmdCreateTopic, Topic: &top}); r.Err != nil {
				t.Fatal(r.Err)
			}
			next(Command{Type: CmdFenceBroker, BrokerID: 1, Epoch: s.Brokers[1].Epoch})
			if tc.later != nil {
				if r := next(Command{Type: CmdSetConfigs, Name: "t", Configs: tc.later}); r.Err != nil {
					t.Fatal(r.Err)
				}
			}
			p := s.Topics["t"].Partitions[0]
			if p.Leader != tc.want {
				t.Fatalf("leader %d, want %d: %+v", p.Leader, tc.want, p)
			}
			if tc.want != NoLeader && (!slices.Equal(p.ISR, []int32{tc.want}) || p.LeaderEpoch == 0) {
				t.Fatalf("unclean leader: %+v", p)
			}
			// A follower coming back elects uncleanly too where allowed.
			next(Command{Type: CmdFenceBroker, BrokerID: 2, Epoch: s.Brokers[2].Epoch})
			next(Command{Type: CmdFenceBroker, BrokerID: 3, Epoch: s.Brokers[3].Epoch})
			next(Command{Type: CmdUnfenceBroker, BrokerID: 3, Epoch: s.Brokers[3].Epoch})
			p = s.Topics["t"].Partitions[0]
			if want := map[bool]int32{true: NoLeader, false: 3}[tc.want == NoLeader]; p.Leader != want {
				t.Fatalf("after 3 came back: %+v, want leader %d", p, want)
			}
		})
	}
}

// TestStateShutdownFence: a controlled shutdown's fencing is not undone by
// a heartbeat of the same incarnation (its unfence is refused); a new
// registration starts afresh.
func TestStateShutdownFence(t *testing.T) {
	s, next := stateWith(t, 2)
	top := TopicRecord{Name: "t", ID: NewTopicID(), Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}}}}
	next(Command{Type: CmdCreateTopic, Topic: &top})
	e := s.Brokers[1].Epoch
	next(Command{Type: CmdFenceBroker, BrokerID: 1, Epoch: e, Shutdown: true})
	if r := next(Command{Type: CmdUnfenceBroker, BrokerID: 1, Epoch: e}); !errors.Is(r.Err, ErrShuttingDown) {
		t.Fatalf("unfence after a controlled shutdown: %v", r.Err)
	}
	if b := s.Brokers[1]; !b.Fenced || !b.ShuttingDown || s.Topics["t"].Partitions[0].Leader != 2 {
		t.Fatalf("after the refused unfence: %+v %+v", b, s.Topics["t"].Partitions[0])
	}
	next(Command{Type: CmdRegisterBroker, Broker: &Registration{Broker: Broker{ID: 1}}})
	if r := next(Command{Type: CmdUnfenceBroker, BrokerID: 1, Epoch: s.Brokers[1].Epoch}); r.Err != nil || s.Brokers[1].Fenced || s.Brokers[1].ShuttingDown {
		t.Fatalf("the new incarnation: %v %+v", r.Err, s.Brokers[1])
	}
}

// TestStateRequestIDs: a command carrying a request id already applied
// (a retry after a lost answer) changes nothing and gets the first result,
// errors included; the results survive a snapshot, and only the latest
// maxRemembered are kept.
func TestStateRequestIDs(t *testing.T) {
	s, next := stateWith(t, 1)
	first := next(Command{Type: CmdAllocateProducerIDs, Count: 10, ReqID: "a"})
	again := next(Command{Type: CmdAllocateProducerIDs, Count: 10, ReqID: "a"})
	if first.Err != nil || again.Value != first.Value || s.NextProducerID != 10 {
		t.Fatalf("allocate twice: %+v %+v, next %d", first, again, s.NextProducerID)
	}
	rec := func() *TopicRecord {
		return &TopicRecord{Name: "t", ID: NewTopicID(), Partitions: []PartitionRec{{Leader: 1, Replicas: []int32{1}, ISR: []int32{1}}}}
	}
	if r := next(Command{Type: CmdCreateTopic, Topic: rec(), ReqID: "b"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	// Planned again by another controller, with another topic id.
	if r := next(Command{Type: CmdCreateTopic, Topic: rec(), ReqID: "b"}); r.Err != nil || len(s.ByID) != 1 {
		t.Fatalf("retried create: %v, %d topic ids", r.Err, len(s.ByID))
	}
	if r := next(Command{Type: CmdCreateTopic, Topic: rec(), ReqID: "c"}); !errors.Is(r.Err, ErrTopicExists) {
		t.Fatalf("another create: %v", r.Err)
	}
	if r := next(Command{Type: CmdCreateTopic, Topic: rec(), ReqID: "c"}); !errors.Is(r.Err, ErrTopicExists) {
		t.Fatalf("its retry: %v", r.Err)
	}
	raw, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSnapshot(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r := back.Apply(100, Command{V: FormatVersion, Type: CmdAllocateProducerIDs, Count: 10, ReqID: "a"}); r.Value != first.Value || back.NextProducerID != 10 {
		t.Fatalf("retry after a snapshot: %+v, next %d", r, back.NextProducerID)
	}
	for i := range maxRemembered {
		next(Command{Type: CmdAllocateProducerIDs, Count: 1, ReqID: fmt.Sprint("x", i)})
	}
	if _, ok := s.Remembered("a"); ok || len(s.Recent) != maxRemembered {
		t.Fatalf("%d remembered, the oldest still there: %v", len(s.Recent), ok)
	}
}

// TestStateConfirmLeader: only the registered, unfenced leader at its
// broker epoch and exactly the leader epoch is confirmed.
func TestStateConfirmLeader(t *testing.T) {
	s, next := stateWith(t, 2)
	id := NewTopicID()
	top := TopicRecord{Name: "t", ID: id, Partitions: []PartitionRec{{Leader: 1, LeaderEpoch: 4, Replicas: []int32{1, 2}, ISR: []int32{1, 2}}}}
	next(Command{Type: CmdCreateTopic, Topic: &top})
	e1 := s.Brokers[1].Epoch
	if err := s.ConfirmLeader(1, e1, id, 0, 4); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		broker      int32
		epoch       int64
		topic       TopicID
		part, lepoc int32
		also        error
	}{
		{1, e1, id, 0, 3, nil},
		{1, e1, id, 0, 5, nil},
		{2, s.Brokers[2].Epoch, id, 0, 4, nil},
		{1, e1 + 1, id, 0, 4, ErrStaleBrokerEpoch},
		{7, 1, id, 0, 4, ErrUnknownBroker},
		{1, e1, id, 1, 4, ErrUnknownTopicPartition},
		{1, e1, NewTopicID(), 0, 4, ErrUnknownTopicPartition},
	} {
		err := s.ConfirmLeader(tc.broker, tc.epoch, tc.topic, tc.part, tc.lepoc)
		if !errors.Is(err, ErrNotConfirmed) || tc.also != nil && !errors.Is(err, tc.also) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
	next(Command{Type: CmdFenceBroker, BrokerID: 1, Epoch: e1})
	if err := s.ConfirmLeader(1, e1, id, 0, 4); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("fenced: %v", err)
	}
}

// TestErrKinds: errors keep every sentinel they wrap across the
// controller connection, written the same way every time.
func TestErrKinds(t *testing.T) {
	err := fmt.Errorf("%w: %w: x", ErrNotConfirmed, ErrUnknownTopicPartition)
	msg, kind := encodeErr(err)
	for range 10 {
		if _, k := encodeErr(err); k != kind {
			t.Fatalf("kinds %q then %q", kind, k)
		}
	}
	back := decodeErr(msg, kind)
	if !errors.Is(back, ErrNotConfirmed) || !errors.Is(back, ErrUnknownTopicPartition) || back.Error() != err.Error() {
		t.Fatalf("decoded %v (kind %q)", back, kind)
	}
	if back := decodeErr(ErrTopicExists.Error(), "topic_exists"); back != ErrTopicExists {
		t.Fatalf("plain sentinel: %v", back)
	}
}
