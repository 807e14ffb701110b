package group

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// marker writes producer pid's transaction marker to the log, as the
// broker does before calling CompleteTxn.
func (l *fakeLog) marker(pid int64, commit bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, Record{ProducerID: pid, Marker: &TxnMarker{Commit: commit}})
}

// endTxn is the broker's side of a marker: durable, then CompleteTxn.
func (e *env) endTxn(pid int64, commit bool) {
	e.t.Helper()
	e.log.marker(pid, commit)
	if err := e.c.CompleteTxn(pid, commit); err != nil {
		e.t.Fatalf("CompleteTxn(%d, %v): %v", pid, commit, err)
	}
}

func txnReq(group string, pid int64, offs ...CommitOffset) TxnCommitRequest {
	return TxnCommitRequest{Group: group, TransactionalID: fmt.Sprintf("tx-%d", pid), ProducerID: pid, ProducerEpoch: 3,
		GenerationID: -1, Offsets: offs}
}

func co(topic string, p int32, off int64) CommitOffset {
	return CommitOffset{TopicPartition: tp(topic, p), Offset: off, LeaderEpoch: -1}
}

// fetchOne is partition tp's offset (plain, or stable) and error.
func fetchOne(t *testing.T, c *Coordinator, group string, p TopicPartition, stable bool) (int64, error) {
	t.Helper()
	f := c.FetchOffsets
	if stable {
		f = c.FetchStableOffsets
	}
	got, err := f(group, []TopicPartition{p})
	if err != nil || len(got) != 1 {
		t.Fatalf("fetch %s %v: %v %+v", group, p, err, got)
	}
	return got[0].Offset, got[0].Err
}

func wantOffset(t *testing.T, c *Coordinator, group string, p TopicPartition, want int64, unstable bool) {
	t.Helper()
	if got, err := fetchOne(t, c, group, p, false); got != want || err != nil {
		t.Fatalf("%s %v: offset %d err %v, want %d", group, p, got, err, want)
	}
	got, err := fetchOne(t, c, group, p, true)
	switch {
	case unstable && (err != kerr.UnstableOffsetCommit || got != -1):
		t.Fatalf("%s %v stable: offset %d err %v, want UNSTABLE_OFFSET_COMMIT", group, p, got, err)
	case !unstable && (err != nil || got != want):
		t.Fatalf("%s %v stable: offset %d err %v, want %d", group, p, got, err, want)
	}
}

func TestTxnCommitBecomesVisibleOnCommit(t *testing.T) {
	e := newEnv(t)
	res := ready(t, e.c.CommitTxnOffsets(txnReq("g", 7, co("t", 0, 10), co("t", 1, 11))))
	wantErr(t, "txn commit", res[0].Err, nil)
	wantErr(t, "txn commit", res[1].Err, nil)
	wantOffset(t, e.c, "g", tp("t", 0), -1, true)
	wantOffset(t, e.c, "g", tp("t", 2), -1, false) // no pending offset there
	if got, _ := e.c.FetchStableOffsets("g", nil); len(got) != 0 {
		t.Fatalf("all partitions lists pending-only partitions: %+v", got)
	}
	recs := e.log.all()
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		if !r.Transactional || r.ProducerID != 7 || r.ProducerEpoch != 3 || r.Marker != nil {
			t.Fatalf("record not transactional: %+v", r)
		}
		if d, err := DecodeRecord(r.Key, r.Value); err != nil || d.Offset == nil || d.Offset.Value.Version != offsetValueVersion {
			t.Fatalf("record: %v %+v", err, d)
		}
	}
	wantErr(t, "other producer", e.c.CompleteTxn(8, true), nil) // unknown: no-op
	wantOffset(t, e.c, "g", tp("t", 0), -1, true)
	e.endTxn(7, true)
	wantOffset(t, e.c, "g", tp("t", 0), 10, false)
	wantOffset(t, e.c, "g", tp("t", 1), 11, false)
	e.endTxn(7, false) // a repeated (or late) marker changes nothing
	wantOffset(t, e.c, "g", tp("t", 0), 10, false)
	got, _ := e.c.FetchOffsets("g", nil)
	if len(got) != 2 {
		t.Fatalf("all offsets %+v", got)
	}
}

func TestTxnAbortKeepsCommittedOffset(t *testing.T) {
	e := newEnv(t)
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 5)}}))
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 50))))
	wantOffset(t, e.c, "g", tp("t", 0), 5, true)
	// The stable fetch of every partition reports the pending one.
	got, _ := e.c.FetchStableOffsets("g", nil)
	if len(got) != 1 || got[0].Err != kerr.UnstableOffsetCommit || got[0].Offset != -1 {
		t.Fatalf("stable fetch of all %+v", got)
	}
	e.endTxn(1, false)
	wantOffset(t, e.c, "g", tp("t", 0), 5, false)
	e.endTxn(1, true) // nothing pending any more
	wantOffset(t, e.c, "g", tp("t", 0), 5, false)
}

func TestTxnCommitOrderedAgainstOrdinaryCommits(t *testing.T) {
	e := newEnv(t)
	simple := func(p int32, off int64) {
		wantErr(t, "commit", ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", p, off)}}))[0].Err, nil)
	}
	// Partition 0: the ordinary commit is written after the transaction's
	// record: it stays. Partition 1: before it: the transaction's wins.
	simple(1, 100)
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 10), co("t", 1, 11))))
	simple(0, 200)
	wantOffset(t, e.c, "g", tp("t", 0), 200, true)
	e.endTxn(1, true)
	wantOffset(t, e.c, "g", tp("t", 0), 200, false)
	wantOffset(t, e.c, "g", tp("t", 1), 11, false)
	// Two producers on one partition: each commit applies in its turn,
	// and the later record wins over an earlier transaction's.
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 2, co("t", 2, 20))))
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 3, co("t", 2, 30))))
	e.endTxn(3, true)
	wantOffset(t, e.c, "g", tp("t", 2), 30, true) // producer 2 still open
	e.endTxn(2, true)
	wantOffset(t, e.c, "g", tp("t", 2), 30, false)
	// A producer's later commit of a partition in one transaction
	// replaces its earlier one.
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 4, co("t", 3, 1))))
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 4, co("t", 3, 2))))
	e.endTxn(4, true)
	wantOffset(t, e.c, "g", tp("t", 3), 2, false)
	assertReplays(t, e)
}

// assertReplays loads the log into a new coordinator and checks it holds
// what the live one holds, pending transactional offsets included.
func assertReplays(t *testing.T, e *env) {
	t.Helper()
	c2 := New(Config{Now: e.clock.Now, Appender: &fakeLog{}})
	if err := c2.LoadFrom(c2.BeginLoad(), e.log.all()); err != nil {
		t.Fatal(err)
	}
	want, got := snapshot(e.c), snapshot(c2)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed state differs\n got %+v\nwant %+v", got, want)
	}
	for id, g := range want {
		var tps []TopicPartition
		for p := range g.Offsets {
			tps = append(tps, p)
		}
		for _, byTP := range g.Pending {
			for p := range byTP {
				tps = append(tps, p)
			}
		}
		for _, stable := range []bool{false, true} {
			f1, err1 := e.c.fetchOffsets(id, tps, stable)
			f2, err2 := c2.fetchOffsets(id, tps, stable)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(f1, f2) {
				t.Fatalf("group %s fetch (stable %v): live %v %+v, replayed %v %+v", id, stable, err1, f1, err2, f2)
			}
		}
	}
}

func TestTxnCommitValidation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMetadataBytes = 4 })
	ids, gen := e.stable("g", "a", "b")
	st := joinReq("g", "", "s")
	st.InstanceID = "inst"
	sch := e.c.Join(st)
	ach := e.c.Join(joinReq("g", ids[0], "a"))
	bch := e.c.Join(joinReq("g", ids[1], "b"))
	sID := ready(t, sch).MemberID
	ready(t, ach)
	ready(t, bch)
	gen = e.syncAll("g", []string{ids[0], ids[1], sID}, gen+1)
	one := []CommitOffset{co("t", 0, 1)}
	member := func(m string, g int32, inst string) TxnCommitRequest {
		r := txnReq("g", 1, one...)
		r.MemberID, r.GenerationID, r.GroupInstanceID = m, g, inst
		return r
	}
	for _, tt := range []struct {
		name string
		req  TxnCommitRequest
		want error
	}{
		{"member of the generation", member(ids[0], gen, ""), nil},
		{"static member", member(sID, gen, "inst"), nil},
		{"no member, no generation (v0-v2) in a stable group", member("", -1, ""), nil},
		{"stale generation", member(ids[0], gen-1, ""), kerr.IllegalGeneration},
		{"unknown member", member("nobody", gen, ""), kerr.UnknownMemberID},
		{"member without generation", member(ids[0], -1, ""), kerr.IllegalGeneration},
		{"fenced static instance", member(ids[0], gen, "inst"), kerr.FencedInstanceID},
		{"unknown group with a generation", func() TxnCommitRequest {
			r := member("x", 1, "")
			r.Group = "other"
			return r
		}(), kerr.IllegalGeneration},
		{"empty group id", func() TxnCommitRequest { r := member("", -1, ""); r.Group = ""; return r }(), kerr.InvalidGroupID},
		{"no producer id", func() TxnCommitRequest { r := member("", -1, ""); r.ProducerID = -1; return r }(), kerr.InvalidProducerIDMapping},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.log.all())
			res := ready(t, e.c.CommitTxnOffsets(tt.req))
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			wantErr(t, "txn commit", res[0].Err, tt.want)
			if appended := len(e.log.all()) - before; (tt.want == nil) != (appended == 1) {
				t.Fatalf("%d records appended", appended)
			}
		})
	}
	if s := e.state("other"); s != Dead {
		t.Fatalf("refused commit created group other: %v", s)
	}
	// While the group rebalances, transactional commits are accepted
	// (Kafka does not enforce the group state for them).
	ach = e.c.Join(joinReq("g", ids[0], "a"))
	wantErr(t, "preparing", ready(t, e.c.CommitTxnOffsets(member(ids[1], gen, "")))[0].Err, nil)
	bch = e.c.Join(joinReq("g", ids[1], "b"))
	st.MemberID = sID
	sch = e.c.Join(st)
	ready(t, ach)
	ready(t, bch)
	ready(t, sch)
	if s := e.state("g"); s != CompletingRebalance {
		t.Fatalf("state %v", s)
	}
	wantErr(t, "completing", ready(t, e.c.CommitTxnOffsets(member(ids[1], gen+1, "")))[0].Err, nil)

	// Per partition: metadata too large; the rest is committed.
	r := txnReq("g", 2, CommitOffset{TopicPartition: tp("t", 5), Metadata: "12345"}, co("t", 6, 6))
	res := ready(t, e.c.CommitTxnOffsets(r))
	wantErr(t, "metadata", res[0].Err, kerr.OffsetMetadataTooLarge)
	wantErr(t, "metadata", res[1].Err, nil)
	wantOffset(t, e.c, "g", tp("t", 6), -1, true)

	// An unknown group without a generation is created empty.
	wantErr(t, "new simple group", ready(t, e.c.CommitTxnOffsets(txnReq("fresh", 3, one...)))[0].Err, nil)
	if s := e.state("fresh"); s != Empty {
		t.Fatalf("fresh group %v", s)
	}

	// A fenced producer: the log refuses the batch; nothing is pending.
	e.log.fail = kerr.InvalidProducerEpoch
	wantErr(t, "fenced producer", ready(t, e.c.CommitTxnOffsets(txnReq("g", 4, co("t", 9, 9))))[0].Err, kerr.InvalidProducerEpoch)
	e.log.fail = kerr.MessageTooLarge
	wantErr(t, "too large", ready(t, e.c.CommitTxnOffsets(txnReq("g", 4, co("t", 9, 9))))[0].Err, kerr.InvalidCommitOffsetSize)
	e.log.fail = nil
	wantOffset(t, e.c, "g", tp("t", 9), -1, false)
	e.endTxn(4, true)
	wantOffset(t, e.c, "g", tp("t", 9), -1, false)
}

func TestTxnNotCoordinator(t *testing.T) {
	e := newEnv(t)
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 1))))
	tok := e.c.BeginLoad()
	wantErr(t, "commit while loading", ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 2))))[0].Err, kerr.CoordinatorLoadInProgress)
	wantErr(t, "complete while loading", e.c.CompleteTxn(1, true), kerr.CoordinatorLoadInProgress)
	if _, err := e.c.FetchStableOffsets("g", nil); err != kerr.CoordinatorLoadInProgress {
		t.Fatalf("stable fetch while loading: %v", err)
	}
	if err := e.c.LoadFrom(tok, e.log.all()); err != nil {
		t.Fatal(err)
	}
	wantOffset(t, e.c, "g", tp("t", 0), -1, true) // still pending after load
	e.c.Unload()
	wantErr(t, "commit unloaded", ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 2))))[0].Err, kerr.NotCoordinator)
	wantErr(t, "complete unloaded", e.c.CompleteTxn(1, true), kerr.NotCoordinator)
}

func TestTxnPendingWhileInFlight(t *testing.T) {
	e := newEnv(t)
	// Stable fetches see a pending offset as soon as it is appended.
	e.log.hold = true
	ch := e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 10)))
	notReady(t, ch)
	wantOffset(t, e.c, "g", tp("t", 0), -1, true)
	// The marker can be durable before the record's append reports: the
	// offset is committed once it does.
	e.log.mu.Lock()
	held := e.log.held
	e.log.held, e.log.hold = nil, false
	for _, h := range held {
		e.log.records = append(e.log.records, h.records...)
	}
	e.log.mu.Unlock()
	e.endTxn(1, true)
	wantOffset(t, e.c, "g", tp("t", 0), -1, false)
	held[0].done(nil)
	wantErr(t, "txn commit", ready(t, ch)[0].Err, nil)
	wantOffset(t, e.c, "g", tp("t", 0), 10, false)
	assertReplays(t, e)

	// A commit whose append fails is dropped, even if its marker came.
	e.log.hold = true
	ch = e.c.CommitTxnOffsets(txnReq("g", 2, co("t", 0, 20)))
	e.endTxn(2, true)
	e.log.release(kerr.NotLeaderForPartition)
	wantErr(t, "failed append", ready(t, ch)[0].Err, kerr.NotCoordinator)
	wantOffset(t, e.c, "g", tp("t", 0), 10, false)

	// Appends reporting out of order: an ordinary commit written before
	// the transaction's record, reported after its commit, loses to it.
	e.log.hold = true
	oc := e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 30)}})
	tc := e.c.CommitTxnOffsets(txnReq("g", 3, co("t", 0, 40)))
	e.log.mu.Lock()
	held = e.log.held
	e.log.held, e.log.hold = nil, false
	for _, h := range held {
		e.log.records = append(e.log.records, h.records...)
	}
	e.log.mu.Unlock()
	held[1].done(nil)
	e.endTxn(3, true)
	wantOffset(t, e.c, "g", tp("t", 0), 40, false)
	held[0].done(nil)
	ready(t, oc)
	ready(t, tc)
	wantOffset(t, e.c, "g", tp("t", 0), 40, false)
	assertReplays(t, e)
}

func TestLoadTxnRecords(t *testing.T) {
	const g = "g"
	ord := func(topic string, p int32, off int64) Record {
		return OffsetCommitRecord(g, topic, p, Offset{Offset: off, LeaderEpoch: -1, CommitTime: time.UnixMilli(1000)})
	}
	txn := func(pid int64, topic string, p int32, off int64) Record {
		return TxnOffsetCommitRecord(g, topic, p, Offset{Offset: off, LeaderEpoch: -1, CommitTime: time.UnixMilli(1000)}, pid, 0)
	}
	mark := func(pid int64, commit bool) Record {
		return Record{ProducerID: pid, Marker: &TxnMarker{Commit: commit}}
	}
	records := []Record{
		txn(1, "a", 0, 10), // p1: an ordinary commit follows: it stays
		ord("a", 1, 5),     // p2: precedes its record: p2 wins
		txn(2, "a", 1, 15), //
		ord("a", 0, 20),    //
		txn(3, "b", 0, 30), // p3: aborted
		txn(4, "b", 1, 40), // p4: no marker: pending
		txn(5, "c", 0, 1),  // p5: tombstoned before its commit
		OffsetTombstone(g, "c", 0),
		mark(1, true),
		mark(2, true),
		mark(3, false),
		mark(9, true),      // unknown producer
		txn(1, "a", 2, 7),  // p1's next transaction: pending
		txn(6, "d", 0, 60), // p6 commits the offset of a deleted group
		GroupTombstone(g),
		mark(5, true),
		mark(6, true),
	}
	c := New(Config{Appender: &fakeLog{}})
	if err := c.Load(records); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		p        TopicPartition
		off      int64
		unstable bool
	}{
		{tp("a", 0), 20, false},
		{tp("a", 1), 15, false},
		{tp("a", 2), -1, true},
		{tp("b", 0), -1, false},
		{tp("b", 1), -1, true},
		{tp("c", 0), -1, false},
		{tp("d", 0), 60, false},
	} {
		wantOffset(t, c, g, tt.p, tt.off, tt.unstable)
	}
	// The pending ones complete after the load.
	wantErr(t, "complete", c.CompleteTxn(4, true), nil)
	wantErr(t, "complete", c.CompleteTxn(1, false), nil)
	wantOffset(t, c, g, tp("b", 1), 40, false)
	wantOffset(t, c, g, tp("a", 2), -1, false)
	// A group whose only state is pending offsets survives its tombstone
	// until they end.
	c2 := New(Config{Appender: &fakeLog{}})
	if err := c2.Load([]Record{txn(1, "a", 0, 1), GroupTombstone(g)}); err != nil {
		t.Fatal(err)
	}
	if n := c2.GroupCount(); n != 1 {
		t.Fatalf("%d groups", n)
	}
	wantErr(t, "abort", c2.CompleteTxn(1, false), nil)
	if n := c2.GroupCount(); n != 0 {
		t.Fatalf("deleted group outlived its pending offsets: %d groups", n)
	}
}

func TestTxnDeleteGroupAndOffsets(t *testing.T) {
	e := newEnv(t)
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 1)}}))
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 10), co("t", 1, 11))))
	ready(t, e.c.CommitTxnOffsets(txnReq("h", 2, co("t", 0, 10), co("t", 1, 11))))
	del := ready(t, e.c.Delete([]string{"g"}))
	wantErr(t, "delete empty group with open transaction", del[0].Err, nil)
	recs := e.log.all()
	if !reflect.DeepEqual(recs[len(recs)-3:], []Record{OffsetTombstone("g", "t", 0), OffsetTombstone("g", "t", 1), GroupTombstone("g")}) {
		t.Fatalf("tombstones %+v", recs[len(recs)-3:])
	}
	e.endTxn(1, true)
	if s := e.state("g"); s != Dead {
		t.Fatalf("deleted group came back: %v", s)
	}
	wantOffset(t, e.c, "g", tp("t", 1), -1, false)

	// OffsetDelete of a partition with only a pending offset drops it.
	od := ready(t, e.c.DeleteOffsets("h", []TopicPartition{tp("t", 1)}))
	if od.Err != nil || od.Partitions[0].Err != nil {
		t.Fatalf("offset delete %+v", od)
	}
	wantOffset(t, e.c, "h", tp("t", 1), -1, false)
	wantOffset(t, e.c, "h", tp("t", 0), -1, true)
	e.endTxn(2, true)
	wantOffset(t, e.c, "h", tp("t", 1), -1, false)
	wantOffset(t, e.c, "h", tp("t", 0), 10, false)
	assertReplays(t, e)
}

func TestTxnExpiryKeepsPendingOffsets(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.OffsetsRetention = time.Hour })
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 1), co("t", 1, 2)}}))
	ready(t, e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 0, 10))))
	ready(t, e.c.CommitTxnOffsets(txnReq("p", 2, co("t", 0, 10)))) // a group of pending offsets only
	if n, g := e.c.ExpireOffsets(e.clock.Advance(2 * time.Hour)); n != 1 || g != 0 {
		t.Fatalf("expired %d offsets %d groups", n, g)
	}
	wantOffset(t, e.c, "g", tp("t", 0), 1, true)
	wantOffset(t, e.c, "g", tp("t", 1), -1, false)
	e.endTxn(1, true)
	e.endTxn(2, false)
	wantOffset(t, e.c, "g", tp("t", 0), 10, false)
	assertReplays(t, e)
	if n, g := e.c.ExpireOffsets(e.clock.Advance(2 * time.Hour)); n != 1 || g != 2 {
		t.Fatalf("expired %d offsets %d groups", n, g)
	}
	if e.c.GroupCount() != 0 {
		t.Fatalf("%d groups left", e.c.GroupCount())
	}

	a0 := tp("a", 0)
	plan := PlanOffsetExpiry(ExpiryInput{State: Empty, Offsets: map[TopicPartition]Offset{a0: {}},
		TxnPending: map[TopicPartition]bool{tp("b", 0): true}}, time.UnixMilli(0).Add(time.Hour), time.Minute)
	if !reflect.DeepEqual(plan, ExpiryPlan{Offsets: []TopicPartition{a0}}) {
		t.Fatalf("plan %+v: a group with pending offsets must stay", plan)
	}
}

// TestTxnCrashReplay drives random ordinary and transactional commits,
// markers, offset deletions and expiry against one coordinator and checks,
// at every few steps, that a coordinator loaded from the log it wrote
// holds the same committed and pending offsets.
func TestTxnCrashReplay(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			e := newEnv(t, func(c *Config) { c.OffsetsRetention = time.Hour })
			groups := []string{"g1", "g2"}
			part := func() TopicPartition { return tp("t", rng.Int31n(3)) }
			for step := 0; step < 200; step++ {
				g := groups[rng.Intn(len(groups))]
				pid := int64(1 + rng.Intn(4))
				switch op := rng.Intn(10); {
				case op < 3:
					ready(t, e.c.CommitOffsets(CommitRequest{Group: g, Generation: -1, Offsets: []CommitOffset{{TopicPartition: part(), Offset: int64(step)}}}))
				case op < 6:
					ready(t, e.c.CommitTxnOffsets(txnReq(g, pid, CommitOffset{TopicPartition: part(), Offset: int64(step)})))
				case op < 8:
					e.endTxn(pid, rng.Intn(3) > 0)
				case op < 9:
					ready(t, e.c.DeleteOffsets(g, []TopicPartition{part()}))
				default:
					if rng.Intn(4) == 0 {
						ready(t, e.c.Delete([]string{g}))
					} else {
						e.c.ExpireOffsets(e.clock.Advance(20 * time.Minute))
					}
				}
				if step%20 == 19 {
					assertReplays(t, e)
				}
			}
			assertGroupInvariants(t, e.c)
		})
	}
}

// assertGroupInvariants checks the pending offsets' index.
func assertGroupInvariants(t *testing.T, c *Coordinator) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, g := range c.groups {
		count := map[TopicPartition]int{}
		for pid, byTP := range g.txn {
			if len(byTP) == 0 {
				t.Fatalf("group %s: empty pending map of producer %d", id, pid)
			}
			if _, ok := c.txnGroups[pid][id]; !ok {
				t.Fatalf("group %s: producer %d not indexed", id, pid)
			}
			for p, e := range byTP {
				if e.state != txnOpen {
					t.Fatalf("group %s: resolved offset %+v still pending", id, e)
				}
				count[p]++
			}
		}
		if !reflect.DeepEqual(count, g.txnParts) {
			t.Fatalf("group %s: txnParts %v, want %v", id, g.txnParts, count)
		}
	}
}

// FuzzLoadTxn loads arbitrary sequences of ordinary and transactional
// commits, tombstones and markers: the load must succeed, keep its index
// consistent, and end in the state a record-by-record replay of the same
// log reaches through CompleteTxn.
func FuzzLoadTxn(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{16, 17, 48, 33, 16, 64, 80, 17, 96})
	f.Add([]byte{0x31, 0x12, 0x43, 0x24, 0x65, 0x50, 0x07})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var records []Record
		for i, b := range ops {
			pid := int64(b>>4) & 3
			p := tp("t", int32(b>>6))
			g := []string{"a", "b"}[b>>3&1]
			o := Offset{Offset: int64(i), LeaderEpoch: -1, CommitTime: time.UnixMilli(1000)}
			switch b & 7 {
			case 0, 1:
				records = append(records, OffsetCommitRecord(g, p.Topic, p.Partition, o))
			case 2, 3:
				records = append(records, TxnOffsetCommitRecord(g, p.Topic, p.Partition, o, pid, 0))
			case 4:
				records = append(records, OffsetTombstone(g, p.Topic, p.Partition))
			case 5:
				records = append(records, GroupTombstone(g))
			default:
				records = append(records, Record{ProducerID: pid, Marker: &TxnMarker{Commit: b&1 == 0}})
			}
		}
		c := New(Config{Appender: &fakeLog{}})
		if err := c.Load(records); err != nil {
			t.Fatal(err)
		}
		assertGroupInvariants(t, c)
		// Loading a prefix, then completing the last transactions live,
		// reaches the same state when the rest holds only markers.
		cut := len(records)
		for cut > 0 && records[cut-1].Marker != nil {
			cut--
		}
		c2 := New(Config{Appender: &fakeLog{}})
		if err := c2.Load(records[:cut]); err != nil {
			t.Fatal(err)
		}
		for _, r := range records[cut:] {
			if err := c2.CompleteTxn(r.ProducerID, r.Marker.Commit); err != nil {
				t.Fatal(err)
			}
		}
		if a, b := snapshot(c), snapshot(c2); !reflect.DeepEqual(a, b) {
			t.Fatalf("load %+v, load then complete %+v", a, b)
		}
	})
}

// TestCommitInFlightThenOffsetDeleted: a tombstone written after a commit's
// record wins over it even when the commit reports afterwards, as on
// replay; for a transaction committed meanwhile too.
func TestCommitInFlightThenOffsetDeleted(t *testing.T) {
	e := newEnv(t)
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 1), co("t", 1, 2)}}))
	e.log.hold = true
	oc := e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 5)}})
	tc := e.c.CommitTxnOffsets(txnReq("g", 1, co("t", 1, 6)))
	e.log.mu.Lock()
	held := e.log.held
	e.log.held = nil
	for _, h := range held {
		e.log.records = append(e.log.records, h.records...)
	}
	e.log.mu.Unlock()
	e.endTxn(1, true) // marker durable before the record reports
	dc := e.c.DeleteOffsets("g", []TopicPartition{tp("t", 0), tp("t", 1)})
	for _, h := range held {
		h.done(nil)
	}
	e.log.release(nil)
	ready(t, oc)
	ready(t, tc)
	if r := ready(t, dc); r.Err != nil || r.Partitions[0].Err != nil || r.Partitions[1].Err != nil {
		t.Fatalf("delete %+v", r)
	}
	wantOffset(t, e.c, "g", tp("t", 0), -1, false)
	wantOffset(t, e.c, "g", tp("t", 1), -1, false)
	assertReplays(t, e)
	// With nothing in flight, a later commit of a deleted offset counts.
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{co("t", 0, 7)}}))
	wantOffset(t, e.c, "g", tp("t", 0), 7, false)
}
