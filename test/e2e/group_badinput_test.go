package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawGroupClient sends group requests straight to the broker (no client
// retries, no coordinator lookup), so the answers are the broker's own.
type rawGroupClient struct {
	t   *testing.T
	ctx context.Context
	cl  *kgo.Client
}

func (c rawGroupClient) do(req kmsg.Request) kmsg.Response {
	c.t.Helper()
	resp, err := c.cl.Broker(0).Request(c.ctx, req)
	if err != nil {
		c.t.Fatalf("%T: %v", req, err)
	}
	return resp
}

func (c rawGroupClient) joinReq(group, member string, rebalance time.Duration) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
	req.SessionTimeoutMillis = 10000
	req.RebalanceTimeoutMillis = int32(rebalance.Milliseconds())
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", []byte{0, 1}
	req.Protocols = append(req.Protocols, p)
	return req
}

// join runs KIP-394's two-step join and returns the answer.
func (c rawGroupClient) join(group string, rebalance time.Duration) *kmsg.JoinGroupResponse {
	c.t.Helper()
	r := c.do(c.joinReq(group, "", rebalance)).(*kmsg.JoinGroupResponse)
	if r.ErrorCode != kerr.MemberIDRequired.Code {
		c.t.Fatalf("first join: code %d, want MEMBER_ID_REQUIRED", r.ErrorCode)
	}
	return c.do(c.joinReq(group, r.MemberID, rebalance)).(*kmsg.JoinGroupResponse)
}

func (c rawGroupClient) sync(group, member string, gen int32, assign map[string][]byte) *kmsg.SyncGroupResponse {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	req.ProtocolType, req.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
	for m, a := range assign {
		sa := kmsg.NewSyncGroupRequestGroupAssignment()
		sa.MemberID, sa.MemberAssignment = m, a
		req.GroupAssignment = append(req.GroupAssignment, sa)
	}
	return c.do(req).(*kmsg.SyncGroupResponse)
}

func (c rawGroupClient) heartbeat(group, member string, gen int32) int16 {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	return c.do(req).(*kmsg.HeartbeatResponse).ErrorCode
}

// commit commits offset 1 of each topic-partition with the given metadata
// and returns the code of each, in order.
func (c rawGroupClient) commit(group, member string, gen int32, metadata string, tps ...kmsg.OffsetCommitRequestTopic) []int16 {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	req.Topics = tps
	for i := range req.Topics {
		for j := range req.Topics[i].Partitions {
			req.Topics[i].Partitions[j].Offset = 1
			req.Topics[i].Partitions[j].Metadata = kmsg.StringPtr(metadata)
			req.Topics[i].Partitions[j].LeaderEpoch = -1
		}
	}
	var codes []int16
	for _, t := range c.do(req).(*kmsg.OffsetCommitResponse).Topics {
		for _, p := range t.Partitions {
			codes = append(codes, p.ErrorCode)
		}
	}
	return codes
}

func commitTopic(topic string, parts ...int32) kmsg.OffsetCommitRequestTopic {
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = topic
	for _, p := range parts {
		cp := kmsg.NewOffsetCommitRequestTopicPartition()
		cp.Partition = p
		t.Partitions = append(t.Partitions, cp)
	}
	return t
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	var wantCode int16
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

// TestGroupBadInput: wrong generations, unknown members, oversized commit
// metadata, unknown topics and partitions, bad group ids and timeouts get
// Kafka's error codes at the wire without disturbing the group; a member
// that stops taking part (never rejoins, or a leader that never syncs)
// cannot hold the group beyond its rebalance timeout.
func TestGroupBadInput(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, 2*time.Minute)
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	if err := ip.b.WaitGroupsLoaded(ctx); err != nil {
		t.Fatal(err)
	}
	c := rawGroupClient{t: t, ctx: ctx, cl: newClient(t, ip.addr)}
	const g = "bad"

	// One member, stable at generation 1.
	a := c.join(g, 2*time.Second)
	wantCode(t, "join a", a.ErrorCode, nil)
	if a.LeaderID != a.MemberID || a.Generation != 1 {
		t.Fatalf("join a: leader %q member %q generation %d", a.LeaderID, a.MemberID, a.Generation)
	}
	wantCode(t, "sync a", c.sync(g, a.MemberID, 1, map[string][]byte{a.MemberID: {1}}).ErrorCode, nil)

	// Heartbeats and syncs with the wrong generation or member.
	wantCode(t, "heartbeat, old generation", c.heartbeat(g, a.MemberID, 0), kerr.IllegalGeneration)
	wantCode(t, "heartbeat, future generation", c.heartbeat(g, a.MemberID, 7), kerr.IllegalGeneration)
	wantCode(t, "heartbeat, unknown member", c.heartbeat(g, "nobody", 1), kerr.UnknownMemberID)
	wantCode(t, "sync, wrong generation", c.sync(g, a.MemberID, 2, nil).ErrorCode, kerr.IllegalGeneration)
	wantCode(t, "heartbeat, right generation", c.heartbeat(g, a.MemberID, 1), nil)

	// Commits: generation, member, metadata size, topic and partition are
	// each checked; a rejected commit stores nothing.
	good := []kmsg.OffsetCommitRequestTopic{commitTopic("t", 0)}
	wantCode(t, "commit, wrong generation", c.commit(g, a.MemberID, 2, "", good...)[0], kerr.IllegalGeneration)
	wantCode(t, "commit, unknown member", c.commit(g, "nobody", 1, "", good...)[0], kerr.UnknownMemberID)
	wantCode(t, "commit, simple commit to a group with members", c.commit(g, "", -1, "", good...)[0], kerr.UnknownMemberID)
	big := strings.Repeat("m", 4097) // offset.metadata.max.bytes is 4096
	codes := c.commit(g, a.MemberID, 1, big, commitTopic("t", 0, 1, 9), commitTopic("missing", 0))
	if len(codes) != 4 {
		t.Fatalf("commit answered %d partitions, want 4", len(codes))
	}
	wantCode(t, "commit, oversized metadata", codes[0], kerr.OffsetMetadataTooLarge)
	wantCode(t, "commit, unknown partition", codes[2], kerr.UnknownTopicOrPartition)
	wantCode(t, "commit, unknown topic", codes[3], kerr.UnknownTopicOrPartition)
	codes = c.commit(g, a.MemberID, 1, strings.Repeat("m", 4096), commitTopic("t", 1), commitTopic("missing", 0))
	wantCode(t, "commit, largest metadata beside an unknown topic", codes[0], nil)
	wantCode(t, "commit, unknown topic beside a good one", codes[1], kerr.UnknownTopicOrPartition)
	fr := kmsg.NewPtrOffsetFetchRequest()
	fr.Group = g
	fg := kmsg.NewOffsetFetchRequestGroup()
	fg.Group = g
	fr.Groups = append(fr.Groups, fg) // v8+ batches groups
	fresp := c.do(fr).(*kmsg.OffsetFetchResponse)
	if len(fresp.Groups) != 1 {
		t.Fatalf("offset fetch answered %d groups", len(fresp.Groups))
	}
	committed := map[int32]int64{}
	for _, ft := range fresp.Groups[0].Topics {
		for _, fp := range ft.Partitions {
			if ft.Topic != "t" {
				t.Fatalf("offset stored for %s-%d", ft.Topic, fp.Partition)
			}
			committed[fp.Partition] = fp.Offset
		}
	}
	if len(committed) != 1 || committed[1] != 1 {
		t.Fatalf("committed offsets %v, want only t-1 at 1", committed)
	}

	// Join requests that cannot be served.
	bad := c.joinReq("", "", time.Second)
	wantCode(t, "join, empty group id", c.do(bad).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InvalidGroupID)
	bad = c.joinReq(g, "", time.Second)
	bad.SessionTimeoutMillis = 10
	wantCode(t, "join, session timeout below the minimum", c.do(bad).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InvalidSessionTimeout)
	bad = c.joinReq(g, "", time.Second)
	bad.ProtocolType = "connect"
	wantCode(t, "join, another protocol type", c.do(bad).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InconsistentGroupProtocol)
	bad = c.joinReq(g, "", time.Second)
	bad.Protocols[0].Name = "roundrobin"
	wantCode(t, "join, no protocol in common", c.do(bad).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InconsistentGroupProtocol)
	wantCode(t, "the group is undisturbed", c.heartbeat(g, a.MemberID, 1), nil)

	// b joins; a, the stalled member, never rejoins (but its session, 10 s,
	// is still live). The join phase ends at the group's rebalance timeout
	// (the largest of its members', 2 s) with a removed and b leading alone.
	start := time.Now()
	b := c.join(g, 2*time.Second)
	took := time.Since(start)
	wantCode(t, "join b", b.ErrorCode, nil)
	if b.LeaderID != b.MemberID || len(b.Members) != 1 || b.Generation != 2 {
		t.Fatalf("join b: leader %q, %d members, generation %d; want b alone at generation 2", b.LeaderID, len(b.Members), b.Generation)
	}
	if took < 1500*time.Millisecond || took > 10*time.Second {
		t.Fatalf("join phase took %v with a member that never rejoined; want about its 2 s rebalance timeout", took)
	}
	t.Logf("join phase ended %v after the stalled member's rebalance began", took)
	wantCode(t, "heartbeat of the removed member", c.heartbeat(g, a.MemberID, 1), kerr.UnknownMemberID)

	// A leader that never syncs: the follower waiting in SyncGroup is told
	// to rejoin once the rebalance timeout of the phase passes.
	wantCode(t, "sync b", c.sync(g, b.MemberID, 2, map[string][]byte{b.MemberID: {1}}).ErrorCode, nil)
	type joined struct{ r *kmsg.JoinGroupResponse }
	bch := make(chan joined, 1)
	dj := c.joinReq(g, "", 2*time.Second)
	d := c.do(dj).(*kmsg.JoinGroupResponse) // MEMBER_ID_REQUIRED
	go func() {
		r, err := c.cl.Broker(0).Request(ctx, c.joinReq(g, b.MemberID, 2*time.Second))
		if err != nil {
			bch <- joined{}
			return
		}
		bch <- joined{r.(*kmsg.JoinGroupResponse)}
	}()
	dr := c.do(c.joinReq(g, d.MemberID, 2*time.Second)).(*kmsg.JoinGroupResponse)
	br := (<-bch).r
	if br == nil || dr.ErrorCode != 0 || br.ErrorCode != 0 || dr.Generation != 3 {
		t.Fatalf("rejoin: %+v %+v", dr, br)
	}
	follower := dr.MemberID
	if dr.LeaderID == dr.MemberID {
		follower = b.MemberID
	}
	// (From another client: franz-go reads a SyncGroup answer for no longer
	// than the last JoinGroup's rebalance timeout, which is also when the
	// broker answers here.)
	c2 := rawGroupClient{t: t, ctx: ctx, cl: newClient(t, ip.addr)}
	start = time.Now()
	sr := c2.sync(g, follower, 3, nil) // the leader never syncs
	took = time.Since(start)
	wantCode(t, "follower's sync with a leader that never syncs", sr.ErrorCode, kerr.RebalanceInProgress)
	if took > 10*time.Second {
		t.Fatalf("follower waited %v in SyncGroup", took)
	}
	t.Logf("follower told to rejoin %v after its sync", took)
}
