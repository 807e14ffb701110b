package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func quietLogger() *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openSingle(t *testing.T, dir string, imp func() (Imported, error)) *Raft {
	t.Helper()
	q, err := OpenRaft(RaftConfig{Dir: dir, Self: Broker{ID: 1, Host: "127.0.0.1", Port: 9092}, Import: imp, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestRaftSingleVoter: a one-node quorum (make run's path) creates, changes
// and deletes topics, keeps them across a restart (with a new broker epoch
// and a bumped leader epoch, since a restarted broker is a new incarnation),
// and imports an older single-node metadata file once.
func TestRaftSingleVoter(t *testing.T) {
	dir := t.TempDir()
	local, err := OpenLocal(dir+"/old", Broker{ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	old, err := local.CreateTopic(Topic{Name: "old", Partitions: make([]Partition, 2), Configs: map[string]string{"retention.ms": "5"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	imports := 0
	imp := func() (Imported, error) {
		imports++
		return Imported{ClusterID: local.ClusterID(), Topics: local.Topics(), NextProducerID: 7000}, nil
	}
	q := openSingle(t, dir+"/raft", imp)
	if q.ClusterID() != local.ClusterID() || imports != 1 {
		t.Fatalf("cluster id %q (imports %d), want the imported %q", q.ClusterID(), imports, local.ClusterID())
	}
	if got, ok := q.Topic("old"); !ok || got.ID != old.ID || got.Configs["retention.ms"] != "5" || len(got.Partitions) != 2 {
		t.Fatalf("imported topic: %+v %v", got, ok)
	}
	if q.ControllerID() != 1 || len(q.Brokers()) != 1 {
		t.Fatalf("controller %d, brokers %v", q.ControllerID(), q.Brokers())
	}
	var events []Event
	var evMu sync.Mutex
	q.Watch(func(e Event) { evMu.Lock(); events = append(events, e); evMu.Unlock() })
	tp, err := q.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 3)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range tp.Partitions {
		if p.Leader != 1 || !slices.Equal(p.Replicas, []int32{1}) || !slices.Equal(p.ISR, []int32{1}) {
			t.Fatalf("partition %d: %+v", i, p)
		}
	}
	if _, err := q.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 1)}, 1); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := q.CreateTopic(Topic{Name: "r3", Partitions: make([]Partition, 1)}, 3); !errors.Is(err, ErrInvalidReplication) {
		t.Fatalf("rf 3 on one broker: %v", err)
	}
	if tp, err = q.CreatePartitions("t", 5); err != nil || len(tp.Partitions) != 5 {
		t.Fatalf("create partitions: %v %d", err, len(tp.Partitions))
	}
	if tp, err = q.SetConfigs("t", map[string]string{"cleanup.policy": "compact"}); err != nil || tp.Configs["cleanup.policy"] != "compact" {
		t.Fatalf("set configs: %v %v", err, tp.Configs)
	}
	if _, err := q.DeleteTopic("old"); err != nil {
		t.Fatal(err)
	}
	first, err := q.AllocateProducerIDs(1000)
	if err != nil || first != 7000 {
		t.Fatalf("first producer id %d (%v), want the imported 7000", first, err)
	}
	evMu.Lock()
	if len(events) != 4 || !events[3].Deleted || events[3].Topic != "old" {
		t.Fatalf("events: %+v", events)
	}
	evMu.Unlock()
	epoch := q.BrokerEpoch()
	leaderEpoch := tp.Partitions[0].LeaderEpoch
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openSingle(t, dir+"/raft", imp)
	defer q.Close()
	if imports != 1 {
		t.Fatal("imported again on restart")
	}
	if q.BrokerEpoch() <= epoch {
		t.Fatalf("broker epoch %d after restart, was %d", q.BrokerEpoch(), epoch)
	}
	tp, ok := q.Topic("t")
	if !ok || len(tp.Partitions) != 5 || tp.Configs["cleanup.policy"] != "compact" {
		t.Fatalf("after restart: %+v %v", tp, ok)
	}
	if p := tp.Partitions[0]; p.Leader != 1 || p.LeaderEpoch <= leaderEpoch {
		t.Fatalf("after restart partition 0 is %+v; want led by 1 at an epoch above %d", p, leaderEpoch)
	}
	if _, ok := q.Topic("old"); ok {
		t.Fatal("deleted topic came back")
	}
	next, err := q.AllocateProducerIDs(1)
	if err != nil || next != first+1000 {
		t.Fatalf("producer ids after restart start at %d (%v), want %d", next, err, first+1000)
	}
}

// freeAddrs returns n loopback addresses with ports free right now.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

type testQuorum struct {
	t      *testing.T
	dirs   map[int32]string
	addrs  map[int32]string
	voters map[int32]string
	nodes  map[int32]*Raft
	// trailingLogs, when set, is the raft log kept after a snapshot.
	trailingLogs uint64
	rebalance    time.Duration
	// heartbeat and session override 100ms and 1s.
	heartbeat, session time.Duration
	// net, when set, carries the nodes' links (see testNet).
	net *testNet
}

func (tq *testQuorum) cfg(id int32) RaftConfig {
	c := RaftConfig{
		Dir: tq.dirs[id], Self: Broker{ID: id, Host: "127.0.0.1", Port: 9000 + id, Rack: fmt.Sprintf("r%d", id%2)},
		ControllerAddr: tq.addrs[id], Voters: tq.voters,
		HeartbeatInterval: 100 * time.Millisecond, SessionTimeout: time.Second,
		StartTimeout: 30 * time.Second, Logger: quietLogger().With("node", id),
		trailingLogs: tq.trailingLogs, LeaderRebalanceInterval: tq.rebalance,
	}
	if tq.heartbeat > 0 {
		c.HeartbeatInterval, c.SessionTimeout = tq.heartbeat, tq.session
	}
	if tq.net != nil {
		c.Dial = tq.net.dialer(id)
	}
	return c
}

// testNet carries the links between a test quorum's nodes: a link can be
// cut (dials fail, open connections are closed) and a node's outgoing
// connections closed, as a reset would.
type testNet struct {
	mu     sync.Mutex
	byAddr map[string]int32
	cut    map[[2]int32]bool
	conns  map[*testConn]bool
	// loseAnswer makes the next request from a node whose frame contains
	// the string lose its answer.
	loseAnswer map[int32]string
}

type testConn struct {
	net.Conn
	n        *testNet
	from, to int32
	// lose is set when a request this connection wrote is to lose its
	// answer: the next read closes the connection instead.
	lose atomic.Bool
}

func (c *testConn) Write(p []byte) (int, error) {
	c.n.mu.Lock()
	if m := c.n.loseAnswer[c.from]; m != "" && bytes.Contains(p, []byte(m)) {
		delete(c.n.loseAnswer, c.from)
		c.lose.Store(true)
	}
	c.n.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *testConn) Read(p []byte) (int, error) {
	if c.lose.Load() {
		time.Sleep(100 * time.Millisecond) // let the controller serve it
		c.Close()
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errors.New("answer lost by the test")}
	}
	return c.Conn.Read(p)
}

func (c *testConn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}

func newTestNet(tq *testQuorum) *testNet {
	n := &testNet{byAddr: map[string]int32{}, cut: map[[2]int32]bool{}, conns: map[*testConn]bool{}, loseAnswer: map[int32]string{}}
	for id, a := range tq.addrs {
		n.byAddr[a] = id
	}
	tq.net = n
	return n
}

func (n *testNet) dialer(from int32) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		to := n.byAddr[addr]
		blocked := n.cut[[2]int32{from, to}]
		n.mu.Unlock()
		if blocked {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("link cut by the test")}
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &testConn{Conn: c, n: n, from: from, to: to}
		n.mu.Lock()
		n.conns[tc] = true
		n.mu.Unlock()
		return tc, nil
	}
}

// closeConns closes the open connections for which match is true.
func (n *testNet) closeConns(match func(c *testConn) bool) {
	n.mu.Lock()
	var cs []*testConn
	for c := range n.conns {
		if match(c) {
			cs = append(cs, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// isolate cuts every link of node id with the others.
func (n *testNet) isolate(id int32) {
	n.mu.Lock()
	for _, other := range n.byAddr {
		if other != id {
			n.cut[[2]int32{id, other}] = true
			n.cut[[2]int32{other, id}] = true
		}
	}
	n.mu.Unlock()
	n.closeConns(func(c *testConn) bool { return c.from == id || c.to == id })
}

// open starts the given nodes at once (voters need each other to start).
func (tq *testQuorum) open(ids ...int32) {
	tq.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	qs := make([]*Raft, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qs[i], errs[i] = OpenRaft(tq.cfg(id))
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			tq.t.Fatalf("node %d: %v", id, errs[i])
		}
		tq.nodes[id] = qs[i]
	}
}

func (tq *testQuorum) close(id int32) {
	if q := tq.nodes[id]; q != nil {
		q.Close()
		delete(tq.nodes, id)
	}
}

func newTestQuorum(t *testing.T, voters, others int) *testQuorum {
	tq := &testQuorum{t: t, dirs: map[int32]string{}, addrs: map[int32]string{}, voters: map[int32]string{}, nodes: map[int32]*Raft{}}
	addrs := freeAddrs(t, voters+others)
	for i := range voters + others {
		id := int32(i + 1)
		tq.dirs[id] = t.TempDir()
		tq.addrs[id] = addrs[i]
		if i < voters {
			tq.voters[id] = addrs[i]
		}
	}
	t.Cleanup(func() {
		for id := range tq.nodes {
			tq.close(id)
		}
	})
	return tq
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRaftQuorum: three voters and a non-voter on loopback. Writes sent to
// any node reach the controller and are visible on the writer when the
// call returns and on every node soon after; replicas are spread over
// brokers and racks; when the controller stops, another is elected, the
// stopped broker is fenced after its session timeout and its partitions
// are led by other in-sync replicas; when it comes back it registers with
// a new epoch, is unfenced and can lead again.
func TestRaftQuorum(t *testing.T) {
	tq := newTestQuorum(t, 3, 1)
	tq.open(1, 2, 3, 4)
	ctrl := tq.nodes[1].ControllerID()
	for id, q := range tq.nodes {
		if q.ClusterID() == "" || q.ClusterID() != tq.nodes[1].ClusterID() {
			t.Fatalf("node %d cluster id %q", id, q.ClusterID())
		}
		waitFor(t, "every node to see four brokers", 10*time.Second, func() bool { return len(q.Brokers()) == 4 })
	}
	// Write through a node that is not the controller.
	writer := int32(4)
	if ctrl == 4 {
		writer = 3
	}
	tp, err := tq.nodes[writer].CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 8)}, 3)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for i, p := range tp.Partitions {
		if len(p.Replicas) != 3 || p.Leader != p.Replicas[0] || len(p.ISR) != 3 {
			t.Fatalf("partition %d: %+v", i, p)
		}
		racks := map[int32]bool{}
		for _, r := range p.Replicas {
			racks[r%2] = true
		}
		if len(racks) != 2 {
			t.Fatalf("partition %d replicas %v in one rack", i, p.Replicas)
		}
		leaders[p.Leader]++
	}
	for id, n := range leaders {
		if n != 2 {
			t.Fatalf("leaders per broker %v (broker %d leads %d), want 2 each", leaders, id, n)
		}
	}
	for id, q := range tq.nodes {
		waitFor(t, fmt.Sprintf("node %d to see the topic", id), 10*time.Second, func() bool { _, ok := q.Topic("t"); return ok })
	}
	// Leadership confirmed for a broker that is not the controller (the
	// request is forwarded), refused for one that does not lead.
	ctx := context.Background()
	for i, p := range tp.Partitions {
		if p.Leader == ctrl {
			continue
		}
		if err := tq.nodes[p.Leader].ConfirmLeader(ctx, tp.ID, int32(i), p.LeaderEpoch); err != nil {
			t.Fatalf("confirm %d as leader of %d: %v", p.Leader, i, err)
		}
		notLeader := p.Replicas[1]
		if err := tq.nodes[notLeader].ConfirmLeader(ctx, tp.ID, int32(i), p.LeaderEpoch); !errors.Is(err, ErrNotConfirmed) {
			t.Fatalf("confirm follower %d as leader of %d: %v", notLeader, i, err)
		}
		break
	}

	// The controller goes away.
	tq.close(ctrl)
	var other *Raft
	for _, q := range tq.nodes {
		other = q
	}
	waitFor(t, "a new controller", 20*time.Second, func() bool { c := other.ControllerID(); return c != -1 && c != ctrl })
	waitFor(t, "the stopped broker to be fenced", 20*time.Second, func() bool {
		r, ok := other.Registration(ctrl)
		return ok && r.Fenced
	})
	tp, _ = other.Topic("t")
	for i, p := range tp.Partitions {
		want := 3
		if slices.Contains(p.Replicas, ctrl) {
			want = 2
		}
		if p.Leader == ctrl || p.Leader == NoLeader || slices.Contains(p.ISR, ctrl) || len(p.ISR) != want {
			t.Fatalf("partition %d after fencing %d: %+v", i, ctrl, p)
		}
	}
	// A partition the stopped broker led: confirmed for its new leader at
	// the new epoch only.
	for i, p := range tp.Partitions {
		if nl := tq.nodes[p.Leader]; p.LeaderEpoch > 0 && nl != nil {
			if err := nl.ConfirmLeader(ctx, tp.ID, int32(i), p.LeaderEpoch); err != nil {
				t.Fatalf("confirm the new leader %d of %d: %v", p.Leader, i, err)
			}
			if err := nl.ConfirmLeader(ctx, tp.ID, int32(i), p.LeaderEpoch-1); !errors.Is(err, ErrNotConfirmed) {
				t.Fatalf("confirm %d at the old epoch: %v", p.Leader, err)
			}
			break
		}
	}
	if _, err := other.CreateTopic(Topic{Name: "u", Partitions: make([]Partition, 1)}, 4); !errors.Is(err, ErrInvalidReplication) {
		t.Fatalf("rf 4 with %d usable brokers: %v", len(other.Brokers()), err)
	}

	// It comes back: a new epoch, unfenced; back in ISRs only through
	// AlterPartition by the leaders (replication's job).
	before, _ := other.Registration(ctrl)
	tq.open(ctrl)
	waitFor(t, "the returning broker to be unfenced", 20*time.Second, func() bool {
		r, ok := other.Registration(ctrl)
		return ok && !r.Fenced && r.Epoch > before.Epoch
	})
	var pi int32
	for !slices.Contains(tp.Partitions[pi].Replicas, ctrl) {
		pi++
	}
	p := tp.Partitions[pi]
	isr := append(slices.Clone(p.ISR), ctrl)
	np, err := tq.nodes[ctrl].AlterPartition(AlterPartition{TopicID: tp.ID, Partition: pi, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: isr})
	if err != nil || len(np.ISR) != 3 || np.PartitionEpoch != p.PartitionEpoch+1 {
		t.Fatalf("expand the ISR: %+v %v", np, err)
	}
	if _, err := other.AlterPartition(AlterPartition{TopicID: tp.ID, Partition: pi, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: p.ISR}); !errors.Is(err, ErrInvalidUpdateVersion) {
		t.Fatalf("alter with a stale partition epoch: %v", err)
	}
}

// FuzzControllerRequest: any frame sent to the controller port is decoded
// and served (or refused) by a running controller without a panic, and the
// controller keeps serving.
func FuzzControllerRequest(f *testing.F) {
	for _, req := range []ctlRequest{
		{Op: opApply, Cmd: &Command{Type: CmdSetConfigs, Name: "t"}},
		{Op: opCreateTopic, Topic: &TopicRecord{Name: "x", Partitions: make([]PartitionRec, 2)}, RF: 1},
		{Op: opCreatePartitions, Name: "t", Total: 3},
		{Op: opHeartbeat, BrokerID: 1, Epoch: 3},
		{Op: opIndex},
		{Op: opConfirmLeader, BrokerID: 1, Epoch: 3, TopicID: &TopicID{1}, Partition: 0, LeaderEpoch: 0},
		{Op: opApply, Cmd: &Command{Type: CmdAllocateProducerIDs, Count: 5}, ID: "r1"},
	} {
		raw, _ := json.Marshal(req)
		f.Add(raw)
	}
	q, err := OpenRaft(RaftConfig{Dir: f.TempDir(), Self: Broker{ID: 1}, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	defer q.Close()
	if _, err := q.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 1)}, 1); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req ctlRequest
		if json.Unmarshal(raw, &req) != nil {
			return
		}
		if req.Op == opJoin {
			return // would add a member to the single-voter quorum
		}
		q.handle(req)
		if q.ClusterID() == "" || q.ControllerID() != 1 {
			t.Fatal("controller lost its state")
		}
	})
}

// TestRaftSnapshot: a broker that joins after the log was compacted into a
// snapshot gets the state through raft's snapshot install (Restore, with
// events for every topic), and a voter restarted from its snapshot has the
// same state.
func TestRaftSnapshot(t *testing.T) {
	tq := newTestQuorum(t, 1, 1)
	tq.trailingLogs = 1 // the snapshot replaces the log
	tq.open(1)
	q := tq.nodes[1]
	for i := 0; i < 20; i++ {
		if _, err := q.CreateTopic(Topic{Name: fmt.Sprintf("t%02d", i), Partitions: make([]Partition, 2), Configs: map[string]string{"i": fmt.Sprint(i)}}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.DeleteTopic("t07"); err != nil {
		t.Fatal(err)
	}
	if err := q.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}

	tq.open(2) // joins as a non-voter: installs the snapshot
	j := tq.nodes[2]
	waitFor(t, "the non-voter to hold the state", 10*time.Second, func() bool { return len(j.Topics()) == 19 })
	if got, ok := j.Topic("t19"); !ok || got.Configs["i"] != "19" {
		t.Fatalf("non-voter's t19: %+v %v", got, ok)
	}
	if _, ok := j.Topic("t07"); ok {
		t.Fatal("deleted topic on the non-voter")
	}
	if j.r.Stats()["last_snapshot_index"] == "0" {
		t.Fatal("the non-voter got the state without installing a snapshot")
	}

	tq.close(2)
	tq.close(1)
	tq.open(1)
	q = tq.nodes[1]
	q.fsm.mu.RLock()
	got := q.fsm.st
	q.fsm.mu.RUnlock()
	if len(got.Topics) != 19 || got.Topics["t03"].Configs["i"] != "3" {
		t.Fatalf("after restarting from the snapshot: %d topics", len(got.Topics))
	}
}

// TestRaftControlledShutdown: a broker shutting down (SIGTERM) has its
// leadership moved to in-sync replicas before it stops, hands the
// controller role over if it holds it, and is not unfenced again by its
// own heartbeats; once back and in sync, the controller's periodic
// preferred-leader election gives it its partitions back.
func TestRaftControlledShutdown(t *testing.T) {
	tq := newTestQuorum(t, 3, 0)
	tq.rebalance = 300 * time.Millisecond
	tq.open(1, 2, 3)
	q := tq.nodes[1]
	waitFor(t, "three brokers", 10*time.Second, func() bool { return len(q.Brokers()) == 3 })
	tp, err := q.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 6)}, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Shut down the controller's broker: it has partitions to hand over
	// and the quorum to hand over.
	victim := q.ControllerID()
	vq := tq.nodes[victim]
	if err := vq.ControlledShutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	var other *Raft
	for id, n := range tq.nodes {
		if id != victim {
			other = n
		}
	}
	waitFor(t, "a new controller", 10*time.Second, func() bool { c := other.ControllerID(); return c != -1 && c != victim })
	waitFor(t, "leadership to move off the broker shutting down", 10*time.Second, func() bool {
		tp, _ = other.Topic("t")
		for _, p := range tp.Partitions {
			if p.Leader == victim || p.Leader == NoLeader || slices.Contains(p.ISR, victim) {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // heartbeats would have unfenced it
	if r, _ := other.Registration(victim); !r.Fenced {
		t.Fatal("the broker shutting down was unfenced again")
	}
	// A heartbeat that was on its way when the shutdown began arrives
	// after the fencing: it must not unfence the broker.
	if _, err := vq.do(ctlRequest{Op: opHeartbeat, BrokerID: victim, Epoch: vq.BrokerEpoch()}, time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("late heartbeat: %v", err)
	}
	if r, _ := vq.Registration(victim); !r.Fenced || !r.ShuttingDown {
		t.Fatalf("a late heartbeat unfenced the broker shutting down: %+v", r)
	}
	tq.close(victim)
	tq.open(victim)
	waitFor(t, "the broker to be back", 10*time.Second, func() bool { r, _ := other.Registration(victim); return !r.Fenced })
	// Its leaders add it back to the ISRs (replication's job), and the
	// controller then restores preferred leaders.
	tp, _ = other.Topic("t")
	for i, p := range tp.Partitions {
		if _, err := other.AlterPartition(AlterPartition{TopicID: tp.ID, Partition: int32(i), Leader: p.Leader,
			LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: append(slices.Clone(p.ISR), victim)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "preferred leaders restored", 10*time.Second, func() bool {
		tp, _ := other.Topic("t")
		for _, p := range tp.Partitions {
			if p.Leader != p.Replicas[0] {
				return false
			}
		}
		return true
	})
}

// TestControllerRefuses: requests on the controller port cannot carry
// commands only the controller makes, join with a voter's id, or ask for
// more partitions than a snapshot may hold.
func TestControllerRefuses(t *testing.T) {
	q := openSingle(t, t.TempDir(), nil)
	defer q.Close()
	for _, req := range []ctlRequest{
		{Op: opApply, Cmd: &Command{Type: CmdInit, ClusterID: "other"}},
		{Op: opApply, Cmd: &Command{Type: CmdImport}},
		{Op: opApply, Cmd: &Command{Type: CmdUnfenceBroker, BrokerID: 1}},
		{Op: opApply, Cmd: &Command{Type: CmdCreateTopic, Topic: &TopicRecord{Name: "x", ID: NewTopicID(), Partitions: make([]PartitionRec, 1)}}},
		{Op: opJoin, BrokerID: 1, Addr: "127.0.0.1:1"},
		{Op: opCreateTopic, Topic: &TopicRecord{Name: "y", Partitions: make([]PartitionRec, maxPartitions+1)}, RF: 1},
		{Op: opCreatePartitions, Name: "t", Total: 1 << 30},
	} {
		if resp := q.handle(req); resp.Err == "" {
			t.Errorf("%s %+v accepted", req.Op, req.Cmd)
		}
	}
	if _, ok := q.Topic("x"); ok {
		t.Fatal("a topic was created from a raw command")
	}
	if q.ClusterID() == "other" {
		t.Fatal("the cluster id changed")
	}
}

// TestRaftConfirmLeader: a one-node quorum confirms its broker's
// leadership at the current leader epoch only, and refuses partitions it
// does not lead, that do not exist or went away, and a fenced broker.
func TestRaftConfirmLeader(t *testing.T) {
	q := openSingle(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	tp, err := q.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 2)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := tp.Partitions[1].LeaderEpoch
	if err := q.ConfirmLeader(ctx, tp.ID, 1, e); err != nil {
		t.Fatal(err)
	}
	if err := q.ConfirmLeader(ctx, tp.ID, 1, e+1); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("wrong epoch: %v", err)
	}
	for _, tc := range []struct {
		id   TopicID
		part int32
	}{{tp.ID, 2}, {tp.ID, -1}, {NewTopicID(), 0}} {
		if err := q.ConfirmLeader(ctx, tc.id, tc.part, e); !errors.Is(err, ErrNotConfirmed) || !errors.Is(err, ErrUnknownTopicPartition) {
			t.Fatalf("partition %d of %s: %v", tc.part, tc.id, err)
		}
	}
	// A partition led by another broker (planted: there is none).
	other := TopicRecord{Name: "other", ID: NewTopicID(), Partitions: []PartitionRec{{Leader: 2, Replicas: []int32{2}, ISR: []int32{2}}}}
	if resp := q.propose(Command{Type: CmdCreateTopic, Topic: &other}); resp.Err != "" {
		t.Fatal(resp.Err)
	}
	if err := q.ConfirmLeader(ctx, other.ID, 0, 0); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("not the leader: %v", err)
	}
	if _, err := q.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if err := q.ConfirmLeader(ctx, tp.ID, 1, e); !errors.Is(err, ErrUnknownTopicPartition) {
		t.Fatalf("deleted topic: %v", err)
	}
	tp, err = q.CreateTopic(Topic{Name: "t2", Partitions: make([]Partition, 1)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if resp := q.propose(Command{Type: CmdFenceBroker, BrokerID: 1, Epoch: q.BrokerEpoch()}); resp.Err != "" {
		t.Fatal(resp.Err)
	}
	if err := q.ConfirmLeader(ctx, tp.ID, 0, tp.Partitions[0].LeaderEpoch); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("fenced broker: %v", err)
	}
}

// TestRaftConfirmIsolatedController: a controller cut off from the other
// voters confirms nothing, not even a leadership its state still shows
// (it cannot reach a majority), before and after the others have elected
// another controller, fenced it and moved its partitions; the new leader
// is confirmed at the new epoch.
func TestRaftConfirmIsolatedController(t *testing.T) {
	tq := newTestQuorum(t, 3, 0)
	newTestNet(tq)
	tq.open(1, 2, 3)
	q := tq.nodes[1]
	waitFor(t, "three brokers", 10*time.Second, func() bool { return len(q.Brokers()) == 3 })
	tp, err := q.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 3)}, 3)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := q.ControllerID()
	cq := tq.nodes[ctrl]
	var pi int32
	for tp.Partitions[pi].Leader != ctrl {
		pi++
	}
	e := tp.Partitions[pi].LeaderEpoch
	ctx := context.Background()
	// Once before: the controller has caught up with its term, so what
	// stops it below is the leadership check, not the barrier.
	if err := cq.ConfirmLeader(ctx, tp.ID, pi, e); err != nil {
		t.Fatal(err)
	}
	tq.net.isolate(ctrl)
	req := ctlRequest{Op: opConfirmLeader, BrokerID: ctrl, Epoch: cq.BrokerEpoch(), TopicID: &tp.ID, Partition: pi, LeaderEpoch: e}
	if resp := cq.handle(req); resp.Err == "" {
		t.Fatal("the isolated controller confirmed its own leadership")
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := cq.ConfirmLeader(short, tp.ID, pi, e); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("isolated broker: %v", err)
	}
	var other *Raft
	for id, n := range tq.nodes {
		if id != ctrl {
			other = n
		}
	}
	waitFor(t, "the isolated broker's partition to move", 20*time.Second, func() bool {
		t, _ := other.Topic("t")
		return t.Partitions[pi].Leader != ctrl && t.Partitions[pi].Leader != NoLeader
	})
	tp, _ = other.Topic("t")
	p := tp.Partitions[pi]
	if err := tq.nodes[p.Leader].ConfirmLeader(ctx, tp.ID, pi, p.LeaderEpoch); err != nil {
		t.Fatalf("new leader %d: %v", p.Leader, err)
	}
	if resp := cq.handle(req); resp.Err == "" {
		t.Fatal("the deposed controller confirmed its old leadership")
	}
	short, cancel = context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := cq.ConfirmLeader(short, tp.ID, pi, e); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("deposed broker: %v", err)
	}
}

// TestRaftHeartbeatConnectionLoss: with a long session timeout, a broker
// whose process ends (its connections close) is fenced well before the
// session timeout, while a live broker whose heartbeat connection is
// reset again and again is never fenced over several session lengths; a
// broker that restarts at once (same id, new epoch) stays unfenced.
func TestRaftHeartbeatConnectionLoss(t *testing.T) {
	tq := newTestQuorum(t, 1, 2)
	newTestNet(tq)
	tq.heartbeat, tq.session = 500*time.Millisecond, 2500*time.Millisecond
	tq.open(1, 2, 3)
	q := tq.nodes[1]
	waitFor(t, "three brokers", 10*time.Second, func() bool { return len(q.Brokers()) == 3 })
	// Past a new controller's grace: sessions are timed from heartbeats.
	time.Sleep(4 * tq.heartbeat)

	killed := time.Now()
	tq.close(3)
	var fencedAfter time.Duration
	for end := time.Now().Add(3 * tq.session); time.Now().Before(end); {
		// Reset broker 2's connections to the controller every so often.
		tq.net.closeConns(func(c *testConn) bool { return c.from == 2 })
		for next := time.Now().Add(600 * time.Millisecond); time.Now().Before(next); time.Sleep(10 * time.Millisecond) {
			if r, _ := q.Registration(2); r.Fenced {
				t.Fatalf("live broker 2 fenced after its connection was reset")
			}
			if r, _ := q.Registration(3); r.Fenced && fencedAfter == 0 {
				fencedAfter = time.Since(killed)
			}
		}
	}
	// Its last heartbeat came at most an interval before it stopped: the
	// session timeout alone would fence it no sooner than this.
	if bySession := tq.session - tq.heartbeat; fencedAfter == 0 || fencedAfter >= bySession {
		t.Fatalf("stopped broker fenced after %v (0: not at all); the session timeout would have after %v", fencedAfter, bySession)
	}
	t.Logf("stopped broker fenced after %v", fencedAfter)

	// A quick restart: the old incarnation's connection ends, the new one
	// registers and heartbeats; it is not fenced for the old one's loss.
	tq.close(2)
	tq.open(2)
	epoch := tq.nodes[2].BrokerEpoch()
	for end := time.Now().Add(tq.session); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if r, _ := q.Registration(2); r.Fenced || r.Epoch != epoch {
			t.Fatalf("restarted broker: %+v, epoch want %d", r, epoch)
		}
	}
}

// TestRaftWriteRetry: a write whose answer is lost (the connection drops
// after the controller served it) is retried with its request id and
// gets the first result, instead of being applied twice or failing on
// its own effect.
func TestRaftWriteRetry(t *testing.T) {
	tq := newTestQuorum(t, 1, 1)
	newTestNet(tq)
	tq.open(1, 2)
	b := tq.nodes[2]
	waitFor(t, "two brokers", 10*time.Second, func() bool { return len(b.Brokers()) == 2 })
	lose := func(op string) {
		tq.net.mu.Lock()
		tq.net.loseAnswer[2] = op
		tq.net.mu.Unlock()
	}
	lose(`"op":"create_topic"`)
	tp, err := b.CreateTopic(Topic{Name: "t", Partitions: make([]Partition, 1)}, 2)
	if err != nil {
		t.Fatalf("create with a lost answer: %v", err)
	}
	lose(`"type":"allocate_producer_ids"`)
	first, err := b.AllocateProducerIDs(100)
	if err != nil {
		t.Fatal(err)
	}
	if next, err := b.AllocateProducerIDs(1); err != nil || next != first+100 {
		t.Fatalf("next producer id %d (%v), want %d: the first block was allocated twice", next, err, first+100)
	}
	p := tp.Partitions[0]
	lose(`"type":"alter_partition"`)
	np, err := b.AlterPartition(AlterPartition{TopicID: tp.ID, Partition: 0, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: []int32{p.Leader}})
	if err != nil || np.PartitionEpoch != p.PartitionEpoch+1 {
		t.Fatalf("alter with a lost answer: %+v %v", np, err)
	}
	tq.net.mu.Lock()
	left := len(tq.net.loseAnswer)
	tq.net.mu.Unlock()
	if left != 0 {
		t.Fatal("an answer was not lost: the test did not test")
	}
}

// TestRaftControllerChange: when the controller role moves from a live
// broker, the new controller does not fence it (it heartbeats as soon as
// it learns of the election) nor anyone else, over several sessions; when
// the controller's process stops, the next controller fences it well
// before a session timeout.
func TestRaftControllerChange(t *testing.T) {
	tq := newTestQuorum(t, 3, 0)
	tq.heartbeat, tq.session = 300*time.Millisecond, 3*time.Second
	tq.open(1, 2, 3)
	q := tq.nodes[1]
	waitFor(t, "three brokers", 10*time.Second, func() bool { return len(q.Brokers()) == 3 })
	old := q.ControllerID()
	if err := tq.nodes[old].r.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new controller", 10*time.Second, func() bool { c := q.ControllerID(); return c != -1 && c != old })
	for end := time.Now().Add(2 * tq.session); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := len(q.Brokers()); n != 3 {
			t.Fatalf("%d unfenced brokers after the controller moved from live broker %d", n, old)
		}
	}

	ctrl := q.ControllerID()
	tq.close(ctrl)
	var other *Raft
	for _, n := range tq.nodes {
		other = n
	}
	waitFor(t, "a new controller", 20*time.Second, func() bool { c := other.ControllerID(); return c != -1 && c != ctrl })
	elected := time.Now()
	waitFor(t, "the stopped controller to be fenced", 2*tq.session, func() bool { r, _ := other.Registration(ctrl); return r.Fenced })
	if d := time.Since(elected); d >= tq.session-tq.heartbeat {
		t.Fatalf("stopped controller fenced %v after the election", d)
	}
}
