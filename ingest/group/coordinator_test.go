package group

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestSingleMemberLifecycle(t *testing.T) {
	e := newEnv(t)
	id, ch := e.joinNew("g", "c1")
	r := ready(t, ch)
	if r.Err != nil || r.Generation != 1 || r.Leader != id || r.Protocol != "range" || r.ProtocolType != "consumer" || len(r.Members) != 1 {
		t.Fatalf("join: %+v", r)
	}
	if string(r.Members[0].Metadata) != "meta-c1-range" {
		t.Fatalf("leader's member metadata %q", r.Members[0].Metadata)
	}
	if s := e.state("g"); s != CompletingRebalance {
		t.Fatalf("state %v", s)
	}
	wantErr(t, "heartbeat while completing", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: id, Generation: 1}), nil)
	e.log.hold = true
	sc := e.c.Sync(SyncRequest{Group: "g", MemberID: id, Generation: 1, Assignments: map[string][]byte{id: []byte("a")}})
	notReady(t, sc) // answered only once the assignment is durable
	if s := e.state("g"); s != CompletingRebalance {
		t.Fatalf("state before durable %v", s)
	}
	e.log.release(nil)
	if sr := ready(t, sc); sr.Err != nil || string(sr.Assignment) != "a" || sr.Protocol != "range" {
		t.Fatalf("sync: %+v", sr)
	}
	if s := e.state("g"); s != Stable {
		t.Fatalf("state %v", s)
	}
	if n := len(e.log.all()); n != 1 {
		t.Fatalf("%d records", n)
	}
	wantErr(t, "heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: id, Generation: 1}), nil)
	// A repeated sync in Stable returns the assignment.
	if sr := ready(t, e.c.Sync(SyncRequest{Group: "g", MemberID: id, Generation: 1})); string(sr.Assignment) != "a" {
		t.Fatalf("sync again: %+v", sr)
	}
	res, err := e.c.Leave("g", []LeaveMember{{MemberID: id}})
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("leave: %v %+v", err, res)
	}
	if s := e.state("g"); s != Empty {
		t.Fatalf("state after leave %v", s)
	}
	recs := e.log.all()
	d, err := DecodeRecord(recs[len(recs)-1].Key, recs[len(recs)-1].Value)
	if err != nil || d.Group == nil || d.Group.Value.Generation != 2 || len(d.Group.Value.Members) != 0 {
		t.Fatalf("empty group record: %v %+v", err, d.Group)
	}
}

func TestRebalanceTwoMembers(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a")
	a := ids[0]
	bID, bch := e.joinNew("g", "b")
	notReady(t, bch)
	if s := e.state("g"); s != PreparingRebalance {
		t.Fatalf("state %v", s)
	}
	wantErr(t, "heartbeat during rebalance", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: a, Generation: gen}), kerr.RebalanceInProgress)
	wantErr(t, "sync during rebalance", ready(t, e.c.Sync(SyncRequest{Group: "g", MemberID: a, Generation: gen})).Err, kerr.RebalanceInProgress)
	ach := e.c.Join(joinReq("g", a, "a"))
	ra, rb := ready(t, ach), ready(t, bch)
	if ra.Generation != gen+1 || rb.Generation != gen+1 || ra.Leader != a || rb.Leader != a {
		t.Fatalf("join responses %+v %+v", ra, rb)
	}
	if len(ra.Members) != 2 || len(rb.Members) != 0 || ra.Members[0].MemberID != a || ra.Members[1].MemberID != bID {
		t.Fatalf("members: leader %+v follower %+v", ra.Members, rb.Members)
	}
	// Old generation is fenced.
	wantErr(t, "old generation heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: a, Generation: gen}), kerr.IllegalGeneration)
	wantErr(t, "old generation sync", ready(t, e.c.Sync(SyncRequest{Group: "g", MemberID: a, Generation: gen})).Err, kerr.IllegalGeneration)
	e.syncAll("g", []string{a, bID}, gen+1)
	if s := e.state("g"); s != Stable {
		t.Fatalf("state %v", s)
	}
}

func TestJoinTimeoutRemovesMembersThatDidNotRejoin(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a", "b")
	cID, cch := e.joinNew("g", "c")
	ach := e.c.Join(joinReq("g", ids[0], "a"))
	notReady(t, ach)
	// b keeps heartbeating but never rejoins; the phase ends at the
	// rebalance timeout.
	start := e.clock.Now()
	for e.clock.Now().Sub(start) < rebalance-5*time.Second {
		e.clock.Advance(5 * time.Second)
		wantErr(t, "b heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[1], Generation: gen}), kerr.RebalanceInProgress)
		next := e.c.Tick(e.clock.Now())
		want := e.clock.Now().Add(session) // b's session
		if end := start.Add(rebalance); end.Before(want) {
			want = end
		}
		if !next.Equal(want) {
			t.Fatalf("next tick %v, want %v", next, want)
		}
		notReady(t, ach)
	}
	e.c.Tick(e.clock.Advance(5 * time.Second))
	ra, rc := ready(t, ach), ready(t, cch)
	if ra.Err != nil || rc.Err != nil || ra.Generation != gen+1 || len(ra.Members) != 2 {
		t.Fatalf("after timeout: %+v %+v", ra, rc)
	}
	wantErr(t, "removed member", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[1], Generation: gen + 1}), kerr.UnknownMemberID)
	e.syncAll("g", []string{ids[0], cID}, gen+1)
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a", "b")
	for i := 0; i < 2; i++ {
		e.clock.Advance(session / 2)
		wantErr(t, "a heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[0], Generation: gen}), nil)
		e.c.Tick(e.clock.Now())
	}
	if s := e.state("g"); s != PreparingRebalance {
		t.Fatalf("state %v after b's session expired", s)
	}
	wantErr(t, "b heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[1], Generation: gen}), kerr.UnknownMemberID)
	r := ready(t, e.c.Join(joinReq("g", ids[0], "a")))
	if r.Err != nil || r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("rejoin %+v", r)
	}
	// The last member expiring empties the group.
	e.syncAll("g", ids[:1], gen+1)
	e.c.Tick(e.clock.Advance(session))
	if s := e.state("g"); s != Empty {
		t.Fatalf("state %v", s)
	}
}

func TestPendingMemberIDExpires(t *testing.T) {
	e := newEnv(t)
	ids, _ := e.stable("g", "a")
	req := joinReq("g", "", "late")
	req.RequireKnownMemberID = true
	r := ready(t, e.c.Join(req))
	wantErr(t, "first join", r.Err, kerr.MemberIDRequired)
	// a rejoins (leader rejoin triggers a rebalance) but the pending id
	// holds the join phase until it expires.
	ach := e.c.Join(joinReq("g", ids[0], "a", "range", "roundrobin"))
	notReady(t, ach)
	e.c.Tick(e.clock.Advance(session))
	if ra := ready(t, ach); ra.Err != nil || len(ra.Members) != 1 {
		t.Fatalf("join %+v", ra)
	}
	req.MemberID = r.MemberID
	req.RequireKnownMemberID = true
	wantErr(t, "expired pending id", ready(t, e.c.Join(req)).Err, kerr.UnknownMemberID)
}

func TestSyncTimeoutRemovesLeader(t *testing.T) {
	e := newEnv(t)
	_, _ = e.stable("g", "a", "b")
	// New generation where the leader never syncs.
	ids := []string{}
	e.c.mu.Lock()
	for _, m := range e.c.groups["g"].ordered() {
		ids = append(ids, m.id)
	}
	gen := e.c.groups["g"].generation
	e.c.mu.Unlock()
	ach := e.c.Join(joinReq("g", ids[0], "a", "range", "x"))
	bch := e.c.Join(joinReq("g", ids[1], "b"))
	ready(t, ach)
	ready(t, bch)
	sb := e.c.Sync(SyncRequest{Group: "g", MemberID: ids[1], Generation: gen + 1})
	notReady(t, sb)
	// Both keep heartbeating; the leader never syncs.
	for i := 0; i < 6; i++ {
		wantErr(t, "leader heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[0], Generation: gen + 1}), nil)
		e.c.Tick(e.clock.Advance(5 * time.Second))
	}
	wantErr(t, "follower sync after leader timeout", ready(t, sb).Err, kerr.RebalanceInProgress)
	if s := e.state("g"); s != PreparingRebalance {
		t.Fatalf("state %v", s)
	}
	r := ready(t, e.c.Join(joinReq("g", ids[1], "b")))
	if r.Leader != ids[1] || r.Generation != gen+2 {
		t.Fatalf("new leader: %+v", r)
	}
}

func TestJoinErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxGroupSize = 2 })
	ids, gen := e.stable("g", "a", "b")
	_ = gen
	long := joinReq("g", "", "x")
	long.SessionTimeout = time.Hour
	otherType := joinReq("g", "", "x")
	otherType.ProtocolType = "connect"
	noProtocols := joinReq("g", "", "x")
	noProtocols.Protocols = nil
	fenced := joinReq("g", "someone-else", "x")
	fenced.InstanceID = "i1"
	for _, tt := range []struct {
		name string
		req  JoinRequest
		want error
	}{
		{"empty group id", joinReq("", "", "x"), kerr.InvalidGroupID},
		{"session timeout too long", long, kerr.InvalidSessionTimeout},
		{"other protocol type", otherType, kerr.InconsistentGroupProtocol},
		{"no common protocol", joinReq("g", "", "x", "roundrobin"), kerr.InconsistentGroupProtocol},
		{"no protocols", noProtocols, kerr.InconsistentGroupProtocol},
		{"unknown member", joinReq("g", "nobody", "x"), kerr.UnknownMemberID},
		{"unknown member new group", joinReq("new", "nobody", "x"), kerr.UnknownMemberID},
		{"group full", joinReq("g", "", "x"), kerr.GroupMaxSizeReached},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := ready(t, e.c.Join(tt.req))
			wantErr(t, "join", r.Err, tt.want)
			if r.Generation != -1 {
				t.Fatalf("generation %d", r.Generation)
			}
		})
	}
	if s := e.state("new"); s != Dead {
		t.Fatalf("a failed join left group %v", s)
	}
	if s := e.state("g"); s != Stable {
		t.Fatalf("errors disturbed the group: %v", s)
	}
	_ = ids
}

func TestCoordinatorNotLoaded(t *testing.T) {
	log := &fakeLog{}
	c := New(Config{Appender: log})
	wantErr(t, "join", ready(t, c.Join(joinReq("g", "", "a"))).Err, kerr.NotCoordinator)
	c.BeginLoad()
	wantErr(t, "join", ready(t, c.Join(joinReq("g", "", "a"))).Err, kerr.CoordinatorLoadInProgress)
	wantErr(t, "heartbeat", c.Heartbeat(HeartbeatRequest{Group: "g"}), kerr.CoordinatorLoadInProgress)
	_, err := c.FetchOffsets("g", nil)
	wantErr(t, "fetch", err, kerr.CoordinatorLoadInProgress)
	res := ready(t, c.CommitOffsets(CommitRequest{Group: "g", Generation: -1, Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}}}}))
	wantErr(t, "commit", res[0].Err, kerr.CoordinatorLoadInProgress)
	if err := c.Load(nil); err != nil {
		t.Fatal(err)
	}
	if r := ready(t, c.Join(joinReq("g", "", "a"))); r.Err != nil {
		t.Fatalf("after load: %v", r.Err)
	}
}

// TestLoadSuperseded: a load begun before an Unload or a newer BeginLoad
// cannot make the coordinator answer (leadership moved during the read).
func TestLoadSuperseded(t *testing.T) {
	c := New(Config{Appender: &fakeLog{}})
	old := c.BeginLoad()
	c.Unload()
	if err := c.LoadFrom(old, nil); !errors.Is(err, ErrLoadSuperseded) {
		t.Fatalf("load after unload: %v", err)
	}
	wantErr(t, "join after a superseded load", ready(t, c.Join(joinReq("g", "", "a"))).Err, kerr.NotCoordinator)
	old = c.BeginLoad()
	cur := c.BeginLoad()
	if err := c.LoadFrom(old, nil); !errors.Is(err, ErrLoadSuperseded) {
		t.Fatalf("load of an older BeginLoad: %v", err)
	}
	wantErr(t, "join while loading", ready(t, c.Join(joinReq("g", "", "a"))).Err, kerr.CoordinatorLoadInProgress)
	if err := c.LoadFrom(cur, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadFrom(cur, nil); !errors.Is(err, ErrLoadSuperseded) {
		t.Fatalf("second load with one token: %v", err)
	}
	if r := ready(t, c.Join(joinReq("g", "", "a"))); r.Err != nil {
		t.Fatalf("after load: %v", r.Err)
	}
}

func TestUnloadAnswersWaiters(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a", "b")
	ach := e.c.Join(joinReq("g", ids[0], "a", "range", "x"))
	notReady(t, ach)
	e.log.hold = true
	cc := e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: ids[1], Generation: gen, Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}, Offset: 1}}})
	e.c.Unload()
	wantErr(t, "waiting join", ready(t, ach).Err, kerr.NotCoordinator)
	e.log.release(nil)
	wantErr(t, "commit durable after unload", ready(t, cc)[0].Err, kerr.NotCoordinator)
	wantErr(t, "heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[1], Generation: gen}), kerr.NotCoordinator)
}

func TestProtocolSelection(t *testing.T) {
	for _, tt := range []struct {
		name    string
		members [][]string
		want    string
	}{
		{"single", [][]string{{"range", "roundrobin"}}, "range"},
		{"majority", [][]string{{"range", "roundrobin"}, {"roundrobin", "range"}, {"roundrobin", "range"}}, "roundrobin"},
		{"only common", [][]string{{"range", "cooperative-sticky"}, {"cooperative-sticky"}}, "cooperative-sticky"},
		{"tie goes to leader's preference", [][]string{{"b", "a"}, {"a", "b"}}, "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup("g", time.Time{})
			for i, ps := range tt.members {
				m := &member{id: string(rune('a' + i))}
				for _, p := range ps {
					m.protocols = append(m.protocols, Protocol{Name: p})
				}
				g.addMember(m)
			}
			if got := g.selectProtocol(); got != tt.want {
				t.Fatalf("selected %q, want %q", got, tt.want)
			}
		})
	}
	// And through the coordinator.
	e := newEnv(t)
	a, b := joinReq("g", "", "a", "range", "roundrobin"), joinReq("g", "", "b", "roundrobin", "range")
	c := joinReq("g", "", "c", "roundrobin")
	var chans []<-chan JoinResponse
	for _, r := range []JoinRequest{a, b, c} {
		chans = append(chans, e.c.Join(r)) // v0-v3: no MEMBER_ID_REQUIRED
	}
	r := ready(t, chans[0]) // a was alone: generation 1 completed at once
	if r.Protocol != "range" {
		t.Fatalf("gen 1 protocol %q", r.Protocol)
	}
	ready(t, e.c.Join(JoinRequest{Group: "g", MemberID: r.MemberID, ClientID: "a", ProtocolType: "consumer",
		SessionTimeout: session, RebalanceTimeout: rebalance, Protocols: a.Protocols}))
	for _, ch := range chans[1:] {
		if r := ready(t, ch); r.Protocol != "roundrobin" {
			t.Fatalf("protocol %q", r.Protocol)
		}
	}
}

func TestStaticMemberRestartKeepsAssignment(t *testing.T) {
	e := newEnv(t)
	a := joinReq("g", "", "a")
	a.InstanceID = "ia"
	a.RequireKnownMemberID = true // static members skip MEMBER_ID_REQUIRED
	ra := ready(t, e.c.Join(a))
	if ra.Err != nil || ra.Generation != 1 {
		t.Fatalf("static join %+v", ra)
	}
	bID, bch := e.joinNew("g", "b")
	a.MemberID = ra.MemberID
	ready(t, e.c.Join(a))
	rb := ready(t, bch)
	gen := e.syncAll("g", []string{ra.MemberID, bID}, rb.Generation)
	before := len(e.log.all())

	// a restarts: new process, empty member id, same instance id.
	restart := joinReq("g", "", "a")
	restart.InstanceID = "ia"
	r := ready(t, e.c.Join(restart))
	if r.Err != nil || r.Generation != gen || r.MemberID == ra.MemberID || r.Leader != r.MemberID || !r.SkipAssignment || len(r.Members) != 2 {
		t.Fatalf("restart join %+v", r)
	}
	// Static member ids start with the instance id, as Kafka's (franz-go
	// recognises a rejoined static leader by it at JoinGroup v8 and below).
	if !strings.HasPrefix(ra.MemberID, "ia-") || !strings.HasPrefix(r.MemberID, "ia-") {
		t.Fatalf("static member ids %q, %q do not start with the instance id", ra.MemberID, r.MemberID)
	}
	if s := e.state("g"); s != Stable {
		t.Fatalf("restart caused a rebalance: %v", s)
	}
	if len(e.log.all()) != before+1 {
		t.Fatalf("new member id not persisted")
	}
	sr := ready(t, e.c.Sync(SyncRequest{Group: "g", MemberID: r.MemberID, InstanceID: "ia", Generation: gen}))
	if sr.Err != nil || string(sr.Assignment) != "assign-"+ra.MemberID {
		t.Fatalf("sync after restart %+v", sr)
	}
	// The old incarnation is fenced.
	wantErr(t, "old heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ra.MemberID, InstanceID: "ia", Generation: gen}), kerr.FencedInstanceID)
	wantErr(t, "old commit", ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: ra.MemberID, InstanceID: "ia", Generation: gen,
		Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}}}}))[0].Err, kerr.FencedInstanceID)
	wantErr(t, "old join", ready(t, e.c.Join(JoinRequest{Group: "g", MemberID: ra.MemberID, InstanceID: "ia", ProtocolType: "consumer",
		SessionTimeout: session, Protocols: restart.Protocols})).Err, kerr.FencedInstanceID)
	wantErr(t, "b heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: bID, Generation: gen}), nil)

	// Leave by instance id alone; a mismatched member id is fenced.
	res, _ := e.c.Leave("g", []LeaveMember{{MemberID: "x", InstanceID: "ia"}, {InstanceID: "nope"}, {InstanceID: "ia"}})
	wantErr(t, "fenced leave", res[0].Err, kerr.FencedInstanceID)
	wantErr(t, "unknown instance leave", res[1].Err, kerr.UnknownMemberID)
	wantErr(t, "leave by instance", res[2].Err, nil)
	if s := e.state("g"); s != PreparingRebalance {
		t.Fatalf("state %v", s)
	}
}

func TestStaticMemberRestartChangingProtocolRebalances(t *testing.T) {
	e := newEnv(t)
	a := joinReq("g", "", "a")
	a.InstanceID = "ia"
	ra := ready(t, e.c.Join(a))
	e.syncAll("g", []string{ra.MemberID}, ra.Generation)
	restart := joinReq("g", "", "a", "roundrobin")
	restart.InstanceID = "ia"
	r := ready(t, e.c.Join(restart)) // sole member: the new phase ends at once
	if r.Err != nil || r.Generation != ra.Generation+1 || r.Protocol != "roundrobin" {
		t.Fatalf("join %+v", r)
	}
}

func TestStaticReplacementFencesWaitingJoin(t *testing.T) {
	e := newEnv(t)
	ids, _ := e.stable("g", "a")
	s := joinReq("g", "", "s")
	s.InstanceID = "is"
	sch := e.c.Join(s) // waits for a to rejoin
	notReady(t, sch)
	s2 := e.c.Join(s) // the same instance restarts during the join phase
	first := ready(t, sch)
	wantErr(t, "old incarnation", first.Err, kerr.FencedInstanceID)
	notReady(t, s2)
	ready(t, e.c.Join(joinReq("g", ids[0], "a")))
	if r := ready(t, s2); r.Err != nil || r.MemberID == first.MemberID {
		t.Fatalf("new incarnation %+v", r)
	}
}

func TestLeaveBatch(t *testing.T) {
	e := newEnv(t)
	ids, _ := e.stable("g", "a", "b", "c")
	res, err := e.c.Leave("g", []LeaveMember{{MemberID: ids[1]}, {MemberID: "nobody"}, {MemberID: ids[2]}})
	if err != nil {
		t.Fatal(err)
	}
	want := []error{nil, kerr.UnknownMemberID, nil}
	for i := range want {
		wantErr(t, "leave", res[i].Err, want[i])
	}
	// The remaining member rejoins alone.
	if r := ready(t, e.c.Join(joinReq("g", ids[0], "a"))); len(r.Members) != 1 {
		t.Fatalf("%+v", r)
	}
	res, _ = e.c.Leave("unknown", []LeaveMember{{MemberID: "x"}})
	wantErr(t, "unknown group", res[0].Err, kerr.UnknownMemberID)
}

func TestLeaveDuringJoinAnswersWaiter(t *testing.T) {
	e := newEnv(t)
	ids, _ := e.stable("g", "a", "b")
	bch := e.c.Join(joinReq("g", ids[1], "b", "range", "x"))
	notReady(t, bch)
	// b gives up and leaves: its pending join is answered, a's absence
	// keeps the phase open.
	res, _ := e.c.Leave("g", []LeaveMember{{MemberID: ids[1]}})
	wantErr(t, "leave", res[0].Err, nil)
	wantErr(t, "b's join", ready(t, bch).Err, kerr.UnknownMemberID)
	r := ready(t, e.c.Join(joinReq("g", ids[0], "a")))
	if len(r.Members) != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestRejoinWithUnchangedMetadata(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a", "b")
	// A follower rejoining with the same metadata in Stable gets the
	// current generation back without a rebalance.
	r := ready(t, e.c.Join(joinReq("g", ids[1], "b")))
	if r.Err != nil || r.Generation != gen || len(r.Members) != 0 {
		t.Fatalf("%+v", r)
	}
	if s := e.state("g"); s != Stable {
		t.Fatalf("state %v", s)
	}
	// The leader rejoining always rebalances (it may see new metadata).
	ach := e.c.Join(joinReq("g", ids[0], "a"))
	notReady(t, ach)
	if s := e.state("g"); s != PreparingRebalance {
		t.Fatalf("state %v", s)
	}
	bch := e.c.Join(joinReq("g", ids[1], "b"))
	ready(t, ach)
	ready(t, bch)
	// In CompletingRebalance a repeated join (lost response) is answered again.
	r = ready(t, e.c.Join(joinReq("g", ids[0], "a")))
	if r.Generation != gen+1 || len(r.Members) != 2 {
		t.Fatalf("repeat %+v", r)
	}
	// Sync checks the v5 protocol fields.
	wantErr(t, "sync protocol", ready(t, e.c.Sync(SyncRequest{Group: "g", MemberID: ids[1], Generation: gen + 1, Protocol: "roundrobin"})).Err, kerr.InconsistentGroupProtocol)
}

func TestSyncStoreFailure(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a", "b")
	ach := e.c.Join(joinReq("g", ids[0], "a"))
	bch := e.c.Join(joinReq("g", ids[1], "b"))
	ready(t, ach)
	ready(t, bch)
	e.log.fail = kerr.NotLeaderForPartition
	sb := e.c.Sync(SyncRequest{Group: "g", MemberID: ids[1], Generation: gen + 1})
	sa := e.c.Sync(SyncRequest{Group: "g", MemberID: ids[0], Generation: gen + 1, Assignments: map[string][]byte{}})
	wantErr(t, "leader", ready(t, sa).Err, kerr.NotCoordinator)
	wantErr(t, "follower", ready(t, sb).Err, kerr.NotCoordinator)
	if s := e.state("g"); s != PreparingRebalance {
		t.Fatalf("state %v", s)
	}
}

func TestDescribeAndList(t *testing.T) {
	e := newEnv(t)
	ids, _ := e.stable("g", "a", "b")
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "simple", Generation: -1, Offsets: []CommitOffset{{TopicPartition: TopicPartition{"t", 0}, Offset: 5}}}))
	d := e.c.Describe([]string{"g", "simple", "none"})
	if d[0].State != Stable || d[0].Protocol != "range" || d[0].ProtocolType != "consumer" || len(d[0].Members) != 2 ||
		d[0].Members[0].MemberID != ids[0] || string(d[0].Members[1].Assignment) != "assign-"+ids[1] || string(d[0].Members[0].Metadata) != "meta-a-range" {
		t.Fatalf("describe g %+v", d[0])
	}
	if d[1].State != Empty || d[1].Err != nil || d[2].State != Dead || d[2].Err != nil {
		t.Fatalf("describe %+v %+v", d[1], d[2])
	}
	l, err := e.c.List(nil, nil)
	if err != nil || !reflect.DeepEqual(l, []GroupListing{{"g", "consumer", Stable}, {"simple", "", Empty}}) {
		t.Fatalf("list %v %+v", err, l)
	}
	l, _ = e.c.List([]State{Empty}, nil)
	if len(l) != 1 || l[0].Group != "simple" {
		t.Fatalf("list empty %+v", l)
	}
	l, _ = e.c.List(nil, []string{"consumer"})
	if len(l) != 1 || l[0].Group != "g" {
		t.Fatalf("list consumer %+v", l)
	}
}

func tp(topic string, p int32) TopicPartition { return TopicPartition{topic, p} }

func TestCommitAndFetch(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMetadataBytes = 8 })
	ids, gen := e.stable("g", "a", "b")
	commit := func(req CommitRequest) []PartitionResult {
		t.Helper()
		return ready(t, e.c.CommitOffsets(req))
	}
	one := []CommitOffset{{TopicPartition: tp("t", 0), Offset: 10, LeaderEpoch: 3, Metadata: "m"}}
	for _, tt := range []struct {
		name string
		req  CommitRequest
		want error
	}{
		{"member", CommitRequest{Group: "g", MemberID: ids[0], Generation: gen, Offsets: one}, nil},
		{"wrong generation", CommitRequest{Group: "g", MemberID: ids[0], Generation: gen + 1, Offsets: one}, kerr.IllegalGeneration},
		{"unknown member", CommitRequest{Group: "g", MemberID: "x", Generation: gen, Offsets: one}, kerr.UnknownMemberID},
		{"simple commit to a group with members", CommitRequest{Group: "g", Generation: -1, Offsets: one}, kerr.UnknownMemberID},
		{"unknown group with generation", CommitRequest{Group: "other", MemberID: "x", Generation: 1, Offsets: one}, kerr.IllegalGeneration},
		{"empty group id", CommitRequest{Generation: -1, Offsets: one}, kerr.InvalidGroupID},
		{"metadata too large", CommitRequest{Group: "g", MemberID: ids[0], Generation: gen,
			Offsets: []CommitOffset{{TopicPartition: tp("t", 1), Metadata: "123456789"}}}, kerr.OffsetMetadataTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := commit(tt.req)
			if len(res) != len(tt.req.Offsets) {
				t.Fatalf("%d results", len(res))
			}
			wantErr(t, "commit", res[0].Err, tt.want)
		})
	}
	got, err := e.c.FetchOffsets("g", []TopicPartition{tp("t", 0), tp("t", 1)})
	if err != nil || !reflect.DeepEqual(got, []FetchedOffset{
		{TopicPartition: tp("t", 0), Offset: 10, LeaderEpoch: 3, Metadata: "m"},
		{TopicPartition: tp("t", 1), Offset: -1, LeaderEpoch: -1},
	}) {
		t.Fatalf("fetch %v %+v", err, got)
	}
	// Unknown group: -1, no error.
	got, err = e.c.FetchOffsets("nobody", []TopicPartition{tp("t", 0)})
	if err != nil || len(got) != 1 || got[0].Offset != -1 || got[0].Err != nil {
		t.Fatalf("unknown group %v %+v", err, got)
	}
	if got, _ := e.c.FetchOffsets("nobody", nil); len(got) != 0 {
		t.Fatalf("all of unknown group %+v", got)
	}

	// During a join phase the current generation may still commit
	// (cooperative members keep partitions; eager ones commit before
	// revoking); while completing, commits wait for the new generation.
	ach := e.c.Join(joinReq("g", ids[0], "a"))
	wantErr(t, "commit while preparing", commit(CommitRequest{Group: "g", MemberID: ids[1], Generation: gen, Offsets: one})[0].Err, nil)
	ready(t, e.c.Join(joinReq("g", ids[1], "b")))
	ready(t, ach)
	wantErr(t, "commit while completing", commit(CommitRequest{Group: "g", MemberID: ids[1], Generation: gen + 1, Offsets: one})[0].Err, kerr.RebalanceInProgress)

	// Not visible until durable; failures map to Kafka's codes.
	e.syncAll("g", ids, gen+1)
	e.log.hold = true
	cc := e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: ids[0], Generation: gen + 1, Offsets: []CommitOffset{{TopicPartition: tp("t", 0), Offset: 20, LeaderEpoch: -1}}})
	notReady(t, cc)
	if got, _ := e.c.FetchOffsets("g", []TopicPartition{tp("t", 0)}); got[0].Offset != 10 {
		t.Fatalf("pending commit visible: %+v", got)
	}
	e.log.release(nil)
	wantErr(t, "durable", ready(t, cc)[0].Err, nil)
	if got, _ := e.c.FetchOffsets("g", nil); got[0].Offset != 20 || got[0].LeaderEpoch != -1 || got[0].Metadata != "" {
		t.Fatalf("after durable: %+v", got)
	}
	e.log.fail = kerr.MessageTooLarge
	wantErr(t, "append failure", commit(CommitRequest{Group: "g", MemberID: ids[0], Generation: gen + 1, Offsets: one})[0].Err, kerr.InvalidCommitOffsetSize)
	if got, _ := e.c.FetchOffsets("g", nil); got[0].Offset != 20 {
		t.Fatalf("failed commit applied: %+v", got)
	}
}

func TestSimpleCommit(t *testing.T) {
	e := newEnv(t)
	res := ready(t, e.c.CommitOffsets(CommitRequest{Group: "s", Generation: -1, Offsets: []CommitOffset{{TopicPartition: tp("t", 0), Offset: 7, LeaderEpoch: 1}}}))
	wantErr(t, "simple commit", res[0].Err, nil)
	if s := e.state("s"); s != Empty {
		t.Fatalf("state %v", s)
	}
	got, _ := e.c.FetchOffsets("s", nil)
	if len(got) != 1 || got[0].Offset != 7 {
		t.Fatalf("%+v", got)
	}
	// A consumer group can then form on it.
	if r := ready(t, e.c.Join(joinReq("s", "", "a"))); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func consumerMeta(topics ...string) []byte {
	m := kmsg.ConsumerMemberMetadata{Version: 0, Topics: topics}
	return m.AppendTo(nil)
}

func TestDeleteGroupsAndOffsets(t *testing.T) {
	e := newEnv(t)
	req := joinReq("g", "", "a")
	req.Protocols = []Protocol{{Name: "range", Metadata: consumerMeta("sub")}}
	r := ready(t, e.c.Join(req))
	e.syncAll("g", []string{r.MemberID}, r.Generation)
	commit := []CommitOffset{{TopicPartition: tp("sub", 0), Offset: 1}, {TopicPartition: tp("old", 0), Offset: 2}}
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: r.MemberID, Generation: r.Generation, Offsets: commit}))
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "e", Generation: -1, Offsets: commit}))

	del := ready(t, e.c.Delete([]string{"g", "nope", "e"}))
	wantErr(t, "non-empty", del[0].Err, kerr.NonEmptyGroup)
	wantErr(t, "unknown", del[1].Err, kerr.GroupIDNotFound)
	wantErr(t, "empty", del[2].Err, nil)
	if got, _ := e.c.FetchOffsets("e", nil); len(got) != 0 {
		t.Fatalf("offsets survived deletion: %+v", got)
	}
	recs := e.log.all()
	last := recs[len(recs)-3:]
	for i, want := range []Record{OffsetTombstone("e", "old", 0), OffsetTombstone("e", "sub", 0), GroupTombstone("e")} {
		if !reflect.DeepEqual(last[i], want) {
			t.Fatalf("tombstone %d: %x %x", i, last[i].Key, last[i].Value)
		}
	}

	od := ready(t, e.c.DeleteOffsets("g", []TopicPartition{tp("sub", 0), tp("old", 0), tp("never", 0)}))
	if od.Err != nil {
		t.Fatal(od.Err)
	}
	wantErr(t, "subscribed", od.Partitions[0].Err, kerr.GroupSubscribedToTopic)
	wantErr(t, "unsubscribed", od.Partitions[1].Err, nil)
	wantErr(t, "never committed", od.Partitions[2].Err, nil)
	if got, _ := e.c.FetchOffsets("g", nil); len(got) != 1 || got[0].Topic != "sub" {
		t.Fatalf("after offset delete %+v", got)
	}
	wantErr(t, "unknown group", ready(t, e.c.DeleteOffsets("nope", nil)).Err, kerr.GroupIDNotFound)
}

func TestLoadReplaysState(t *testing.T) {
	e := newEnv(t)
	ids, gen := e.stable("g", "a", "b")
	st := joinReq("g", "", "s")
	st.InstanceID = "is"
	sch := e.c.Join(st)
	ach := e.c.Join(joinReq("g", ids[0], "a"))
	bch := e.c.Join(joinReq("g", ids[1], "b"))
	sID := ready(t, sch).MemberID
	ready(t, ach)
	ready(t, bch)
	gen = e.syncAll("g", []string{ids[0], ids[1], sID}, gen+1)
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: ids[0], Generation: gen, Offsets: []CommitOffset{
		{TopicPartition: tp("t", 0), Offset: 100, LeaderEpoch: 4, Metadata: "meta"}, {TopicPartition: tp("t", 1), Offset: 200, LeaderEpoch: -1}}}))
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: ids[1], Generation: gen, Offsets: []CommitOffset{{TopicPartition: tp("t", 0), Offset: 150, LeaderEpoch: 5}}}))
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "simple", Generation: -1, Retention: time.Hour, Offsets: []CommitOffset{{TopicPartition: tp("u", 0), Offset: 1, LeaderEpoch: -1}}}))
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "gone", Generation: -1, Offsets: []CommitOffset{{TopicPartition: tp("u", 0), Offset: 1}}}))
	ready(t, e.c.Delete([]string{"gone"}))
	// A group that emptied keeps its generation.
	eids, egen := e.stable("emptied", "x")
	e.c.Leave("emptied", []LeaveMember{{MemberID: eids[0]}})

	want := snapshot(e.c)
	if want["g"].Generation != gen || len(want["g"].Members) != 3 || want["emptied"].Generation != egen+1 {
		t.Fatalf("unexpected source state %+v", want)
	}
	c2 := New(Config{Now: e.clock.Now, Appender: &fakeLog{}})
	if err := c2.Load(e.log.all()); err != nil {
		t.Fatal(err)
	}
	got := snapshot(c2)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded state differs\n got %+v\nwant %+v", got, want)
	}
	// The loaded group works: members heartbeat, the static member's
	// restart keeps its assignment.
	wantErr(t, "heartbeat after load", c2.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[1], Generation: gen}), nil)
	re := joinReq("g", "", "s")
	re.InstanceID = "is"
	r := ready(t, c2.Join(re))
	if r.Err != nil || r.Generation != gen {
		t.Fatalf("static rejoin after load %+v", r)
	}
	if sr := ready(t, c2.Sync(SyncRequest{Group: "g", MemberID: r.MemberID, Generation: gen})); string(sr.Assignment) != "assign-"+sID {
		t.Fatalf("assignment after load %+v", sr)
	}
	// Unknown record types are skipped; corrupt ones fail the load.
	if err := c2.Load([]Record{{Key: []byte{0, 3, 0, 0}, Value: []byte{1}}}); err != nil {
		t.Fatalf("unknown type: %v", err)
	}
	if err := c2.Load([]Record{{Key: []byte{0, 1, 0}}}); err == nil {
		t.Fatal("corrupt record loaded")
	}
	wantErr(t, "after failed load", c2.Heartbeat(HeartbeatRequest{Group: "g"}), kerr.NotCoordinator)
}

type memberSnap struct {
	ID, Instance, Client, Host string
	Session, Rebalance         time.Duration
	Subscription, Assignment   string
}

type groupSnap struct {
	State                  State
	Generation             int32
	ProtocolType, Protocol string
	Leader                 string
	Members                []memberSnap
	Offsets                map[TopicPartition]Offset
	Pending                map[int64]map[TopicPartition]Offset // transactional, by producer
}

// snapOffset is o as a snapshot compares it: times at millisecond
// precision, and no log position (live positions count appends, loaded
// ones records; only their order matters).
func snapOffset(o Offset) Offset {
	o.CommitTime = o.CommitTime.Round(time.Millisecond).Local()
	if !o.ExpireTime.IsZero() {
		o.ExpireTime = o.ExpireTime.Round(time.Millisecond).Local()
	}
	o.logPos = 0
	return o
}

func snapshot(c *Coordinator) map[string]groupSnap {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]groupSnap{}
	for id, g := range c.groups {
		s := groupSnap{State: g.state, Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader,
			Offsets: map[TopicPartition]Offset{}, Pending: map[int64]map[TopicPartition]Offset{}}
		for _, m := range g.ordered() {
			s.Members = append(s.Members, memberSnap{m.id, m.instanceID, m.clientID, m.clientHost, m.sessionTimeout, m.rebalanceTimeout,
				string(m.metadataFor(g.protocol)), string(m.assignment)})
		}
		for tp, o := range g.offsets {
			s.Offsets[tp] = snapOffset(o)
		}
		for pid, byTP := range g.txn {
			s.Pending[pid] = map[TopicPartition]Offset{}
			for tp, e := range byTP {
				s.Pending[pid][tp] = snapOffset(e.off)
			}
		}
		out[id] = s
	}
	return out
}
