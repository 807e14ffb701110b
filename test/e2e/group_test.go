package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

// groupMember is a franz-go group consumer whose owned partitions are
// tracked through its assignment callbacks.
type groupMember struct {
	name string
	cl   *kgo.Client
	done chan struct{}
}

// ownership records which member owns which partition, and fails the test
// if two members ever own one partition at once.
type ownership struct {
	t  *testing.T
	mu sync.Mutex
	// owners[partition] = member name
	owners   map[int32]string
	consumed map[int32]map[int64]bool
	first    map[string]map[int32]int64 // member → partition → first offset it consumed
}

func newOwnership(t *testing.T) *ownership {
	return &ownership{t: t, owners: map[int32]string{}, consumed: map[int32]map[int64]bool{}, first: map[string]map[int32]int64{}}
}

func (o *ownership) assign(name string, ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		if prev, ok := o.owners[p]; ok && prev != name {
			o.t.Errorf("partition %d assigned to %s while %s owns it", p, name, prev)
		}
		o.owners[p] = name
	}
}

func (o *ownership) revoke(name string, ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		if o.owners[p] == name {
			delete(o.owners, p)
		}
	}
}

// snapshot returns member → sorted partitions.
func (o *ownership) snapshot() map[string][]int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]int32{}
	for p, m := range o.owners {
		out[m] = append(out[m], p)
	}
	for _, ps := range out {
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	}
	return out
}

func (o *ownership) consumedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, offs := range o.consumed {
		n += len(offs)
	}
	return n
}

func startMember(t *testing.T, addr, groupID, topic, name string, own *ownership, extra ...kgo.Opt) *groupMember {
	t.Helper()
	topicParts := func(m map[string][]int32) []int32 { return m[topic] }
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ConsumerGroup(groupID),
		kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(6 * time.Second),
		kgo.HeartbeatInterval(300 * time.Millisecond),
		kgo.RebalanceTimeout(10 * time.Second),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			own.assign(name, topicParts(m))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			// Commit what was consumed before giving the partitions up.
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				t.Logf("%s: commit on revoke: %v", name, err)
			}
			own.revoke(name, topicParts(m))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			own.revoke(name, topicParts(m))
		}),
	}, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	gm := &groupMember{name: name, cl: cl, done: make(chan struct{})}
	go func() {
		defer close(gm.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				own.mu.Lock()
				if own.consumed[r.Partition] == nil {
					own.consumed[r.Partition] = map[int64]bool{}
				}
				own.consumed[r.Partition][r.Offset] = true
				if own.first[name] == nil {
					own.first[name] = map[int32]int64{}
				}
				if _, ok := own.first[name][r.Partition]; !ok {
					own.first[name][r.Partition] = r.Offset
				}
				own.mu.Unlock()
			})
		}
	}()
	t.Cleanup(gm.close)
	return gm
}

func (gm *groupMember) close() {
	select {
	case <-gm.done:
		return
	default:
	}
	gm.cl.Close()
	<-gm.done
}

// waitGroupState polls cond until it holds or the deadline passes.
func waitGroupState(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// balanced reports whether members (by name) together own all n partitions,
// each owning at least one.
func balanced(own *ownership, n int, names ...string) (bool, string) {
	snap := own.snapshot()
	total := 0
	for m, ps := range snap {
		total += len(ps)
		found := false
		for _, nm := range names {
			found = found || nm == m
		}
		if !found {
			return false, fmt.Sprintf("%s (not expected) owns %v", m, ps)
		}
	}
	for _, nm := range names {
		if len(snap[nm]) == 0 {
			return false, fmt.Sprintf("%s owns nothing: %v", nm, snap)
		}
	}
	return total == n, fmt.Sprintf("%v", snap)
}

func TestConsumerGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"cooperative-sticky", nil},
		{"range", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		// Older request versions: JoinGroup v3 (no KIP-394 member id
		// round trip), SyncGroup v2, OffsetCommit v4, OffsetFetch v4,
		// FindCoordinator v2.
		{"range-kafka-2.0", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.MaxVersions(kversion.V2_0_0())}},
		// JoinGroup v2, SyncGroup/Heartbeat/LeaveGroup v1, OffsetCommit v3,
		// OffsetFetch v3, FindCoordinator v1.
		{"range-kafka-0.11", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.MaxVersions(kversion.V0_11_0())}},
	} {
		t.Run(tc.name, func(t *testing.T) { testConsumerGroup(t, tc.opts) })
	}
}

func testConsumerGroup(t *testing.T, balancer []kgo.Opt) {
	const (
		topic      = "grouped"
		groupID    = "g1"
		partitions = 6
		perPart    = 10
	)
	ip := startInproc(t, "")
	ctx := ctxT(t, 3*time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	produce := func(addr string, n int) {
		t.Helper()
		pcl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var recs []*kgo.Record
		for p := int32(0); p < partitions; p++ {
			for i := 0; i < n; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%d-%d", p, i))})
			}
		}
		if err := pcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		pcl.Close()
	}
	produce(ip.addr, perPart)

	own := newOwnership(t)
	a := startMember(t, ip.addr, groupID, topic, "a", own, balancer...)
	b := startMember(t, ip.addr, groupID, topic, "b", own, balancer...)
	c := startMember(t, ip.addr, groupID, topic, "c", own, balancer...)
	waitGroupState(t, time.Minute, "three members to share the partitions", func() (bool, string) {
		return balanced(own, partitions, "a", "b", "c")
	})
	t.Logf("three members: %v", own.snapshot())

	// c leaves: its partitions move to a and b.
	c.close()
	waitGroupState(t, time.Minute, "two members to share the partitions", func() (bool, string) {
		return balanced(own, partitions, "a", "b")
	})
	t.Logf("after c left: %v", own.snapshot())
	waitGroupState(t, time.Minute, "every record consumed", func() (bool, string) {
		n := own.consumedCount()
		return n == partitions*perPart, fmt.Sprintf("%d of %d", n, partitions*perPart)
	})
	for _, m := range []*groupMember{a, b} {
		if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("%s commit: %v", m.name, err)
		}
	}
	offs, err := adm.FetchOffsets(ctx, groupID)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < partitions; p++ {
		if o, ok := offs.Lookup(topic, p); !ok || o.Err != nil || o.At != perPart {
			t.Fatalf("committed offset of partition %d: %+v (found %v), want %d", p, o, ok, perPart)
		}
	}
	a.close()
	b.close()

	// Restart the broker on the same directory: the commits are in
	// __consumer_offsets and come back.
	dir := ip.dir
	ip.stop()
	ip = startInproc(t, dir)
	adm = newAdmin(t, ip.addr)
	offs, err = adm.FetchOffsets(ctx, groupID)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < partitions; p++ {
		if o, ok := offs.Lookup(topic, p); !ok || o.Err != nil || o.At != perPart {
			t.Fatalf("after restart, committed offset of partition %d: %+v (found %v), want %d", p, o, ok, perPart)
		}
	}
	produce(ip.addr, 1)

	// A new member resumes from the committed offsets: it sees only the
	// new records.
	own2 := newOwnership(t)
	startMember(t, ip.addr, groupID, topic, "d", own2, balancer...)
	waitGroupState(t, time.Minute, "the new member to consume the new records", func() (bool, string) {
		n := own2.consumedCount()
		return n == partitions, fmt.Sprintf("%d of %d", n, partitions)
	})
	own2.mu.Lock()
	defer own2.mu.Unlock()
	for p := int32(0); p < partitions; p++ {
		if f, ok := own2.first["d"][p]; !ok || f != perPart {
			t.Errorf("partition %d: new member started at %d (consumed %v), want %d", p, f, ok, perPart)
		}
	}
}

// TestConsumerGroupAdmin: simple (non-member) commits, fetches, the group
// admin APIs, and the offsets topic being off limits to clients.
func TestConsumerGroupAdmin(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: "t", Partition: 0, At: 5, LeaderEpoch: 0, Metadata: "m0"})
	os.Add(kadm.Offset{Topic: "t", Partition: 1, At: 7, LeaderEpoch: -1})
	os.Add(kadm.Offset{Topic: "t", Partition: 9, At: 1, LeaderEpoch: -1})
	os.Add(kadm.Offset{Topic: "missing", Partition: 0, At: 1, LeaderEpoch: -1})
	cr, err := adm.CommitOffsets(ctx, "simple", os)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []struct {
		topic string
		p     int32
		want  error
	}{{"t", 0, nil}, {"t", 1, nil}, {"t", 9, kerr.UnknownTopicOrPartition}, {"missing", 0, kerr.UnknownTopicOrPartition}} {
		r, ok := cr.Lookup(tp.topic, tp.p)
		if !ok || !errors.Is(r.Err, tp.want) && r.Err != tp.want {
			t.Fatalf("commit %s-%d: %+v %v, want %v", tp.topic, tp.p, r, ok, tp.want)
		}
	}
	fo, err := adm.FetchOffsets(ctx, "simple")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fo.Lookup("t", 0); !ok || o.At != 5 || o.Metadata != "m0" || o.LeaderEpoch != 0 {
		t.Fatalf("fetch t-0: %+v %v", o, ok)
	}
	if o, ok := fo.Lookup("t", 1); !ok || o.At != 7 || o.Metadata != "" {
		t.Fatalf("fetch t-1: %+v %v", o, ok)
	}
	// Unknown group: no error, nothing committed.
	if fo, err := adm.FetchOffsets(ctx, "nobody"); err != nil || len(fo) != 0 {
		t.Fatalf("fetch unknown group: %v %v", fo, err)
	}
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := lg["simple"]; !ok || g.State != "Empty" {
		t.Fatalf("list groups: %+v", lg)
	}
	dg, err := adm.DescribeGroups(ctx, "simple")
	if err != nil {
		t.Fatal(err)
	}
	if g := dg["simple"]; g.Err != nil || g.State != "Empty" || len(g.Members) != 0 {
		t.Fatalf("describe: %+v", g)
	}
	do, err := adm.DeleteOffsets(ctx, "simple", kadm.TopicsSet{"t": {0: {}}})
	if err != nil || do.Error() != nil {
		t.Fatalf("delete offsets: %v %v", do, err)
	}
	fo, _ = adm.FetchOffsets(ctx, "simple")
	if _, ok := fo.Lookup("t", 0); ok {
		t.Fatalf("t-0 still committed after OffsetDelete: %v", fo)
	}
	dr, err := adm.DeleteGroups(ctx, "simple", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if dr["simple"].Err != nil || !errors.Is(dr["nobody"].Err, kerr.GroupIDNotFound) {
		t.Fatalf("delete groups: %+v", dr)
	}
	if lg, _ := adm.ListGroups(ctx); len(lg) != 0 {
		t.Fatalf("groups left after delete: %+v", lg)
	}

	// Clients cannot write the offsets topic or grow it (which would move
	// groups away from their records).
	if r, err := adm.CreatePartitions(ctx, 60, "__consumer_offsets"); err == nil && r["__consumer_offsets"].Err == nil {
		t.Fatal("CreatePartitions grew __consumer_offsets")
	}
	pcl := newClient(t, ip.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(1))
	err = pcl.ProduceSync(ctx, &kgo.Record{Topic: "__consumer_offsets", Partition: 0, Key: []byte("k"), Value: []byte("v")}).FirstErr()
	if !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("produce to __consumer_offsets: %v", err)
	}
}

// TestConsumerGroupStatic: a static member (group.instance.id) that
// restarts within its session timeout gets its partitions back without a
// rebalance; one that stays away (no LeaveGroup, as after a crash) is
// removed when its session expires and its partitions move.
func TestConsumerGroupStatic(t *testing.T) {
	const (
		topic      = "static"
		groupID    = "gs"
		partitions = 4
	)
	ip := startInproc(t, "")
	ctx := ctxT(t, 2*time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	own := newOwnership(t)
	a := startMember(t, ip.addr, groupID, topic, "a", own)
	s := startMember(t, ip.addr, groupID, topic, "s", own, kgo.InstanceID("inst-s"))
	waitGroupState(t, time.Minute, "two members to share the partitions", func() (bool, string) {
		return balanced(own, partitions, "a", "s")
	})
	before := own.snapshot()
	_, genA := a.cl.GroupMetadata()

	// Restart within the session timeout: same partitions, no new generation.
	s.close()
	s2 := startMember(t, ip.addr, groupID, topic, "s2", own, kgo.InstanceID("inst-s"))
	waitGroupState(t, time.Minute, "the restarted static member to own its partitions", func() (bool, string) {
		return balanced(own, partitions, "a", "s2")
	})
	after := own.snapshot()
	if fmt.Sprint(after["s2"]) != fmt.Sprint(before["s"]) {
		t.Fatalf("static member's partitions changed across its restart: %v → %v", before, after)
	}
	if _, gen := a.cl.GroupMetadata(); gen != genA {
		t.Fatalf("the static restart rebalanced the group: generation %d → %d", genA, gen)
	}

	// Gone for good (static members send no LeaveGroup): the session
	// timeout (6s) removes it and a gets everything.
	start := time.Now()
	s2.close()
	waitGroupState(t, time.Minute, "the remaining member to own every partition", func() (bool, string) {
		return balanced(own, partitions, "a")
	})
	if d := time.Since(start); d < 5*time.Second {
		t.Fatalf("partitions moved after %v, before the session timeout: the static member left instead of expiring", d)
	} else {
		t.Logf("partitions moved %v after the static member went away", d)
	}
}

// TestKcatGroup: librdkafka's balanced consumer (kcat -G) against the real
// binary commits its offsets and resumes from them, across a restart.
// (kcat -G with -o assigns that offset explicitly, ignoring commits, so the
// start comes from auto.offset.reset instead.)
func TestKcatGroup(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	p := startProc(t, dir, port)
	var in strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&in, "r%d\n", i)
	}
	kcat(t, in.String(), "-b", p.addr, "-P", "-t", "kg")
	consume := func() string {
		return kcat(t, "", "-b", p.addr, "-G", "kgroup", "kg", "-X", "auto.offset.reset=earliest", "-e", "-q")
	}
	if out := consume(); out != in.String() {
		t.Fatalf("first kcat -G consumed %q", out)
	}
	if out := consume(); out != "" {
		t.Fatalf("second kcat -G did not resume from the commit: %q", out)
	}
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	p = startProc(t, dir, port)
	kcat(t, "more1\nmore2\n", "-b", p.addr, "-P", "-t", "kg")
	if out := consume(); out != "more1\nmore2\n" {
		t.Fatalf("kcat -G after a restart consumed %q, want only the new records", out)
	}
}
