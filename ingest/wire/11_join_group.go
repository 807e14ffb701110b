package wire

// JoinGroup (key 11), versions 0–9.
//
// Translated to group.Coordinator.Join; the answer comes when the join phase
// ends (Reply.Wait). v0 has no rebalance timeout: the session timeout is
// used for both. v4+ sets RequireKnownMemberID (KIP-394: the first join
// gets MEMBER_ID_REQUIRED with the member id). Below v9 a response cannot
// carry SkipAssignment (KIP-814), so a static leader that rejoined without a
// rebalance gets no member list and syncs as a follower.

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(11, 0, 9, handleJoinGroup) }

func handleJoinGroup(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.JoinGroupRequest)
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	fail := func(err error) Reply {
		resp.ErrorCode = errCode(err)
		resp.Generation = -1
		resp.MemberID = req.MemberID
		resp.Protocol = strPtr("")
		return Reply{Resp: resp}
	}
	c, err := coordinatorFor(s, req.Group)
	if err != nil {
		return fail(err)
	}
	jr := group.JoinRequest{
		Group:                req.Group,
		MemberID:             req.MemberID,
		InstanceID:           strOrEmpty(req.InstanceID),
		ClientID:             r.Header.ClientID,
		ClientHost:           clientHost(r),
		ProtocolType:         req.ProtocolType,
		SessionTimeout:       time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		RebalanceTimeout:     time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond,
		RequireKnownMemberID: req.Version >= 4,
	}
	if req.Version == 0 {
		jr.RebalanceTimeout = jr.SessionTimeout
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, group.Protocol{Name: p.Name, Metadata: append([]byte(nil), p.Metadata...)})
	}
	ch := c.Join(jr)
	return Reply{Wait: func() kmsg.Response {
		jresp, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		resp.ErrorCode = errCode(jresp.Err)
		resp.Generation = jresp.Generation
		resp.MemberID = jresp.MemberID
		resp.LeaderID = jresp.Leader
		resp.Protocol = strPtr(jresp.Protocol)
		if jresp.ProtocolType != "" {
			resp.ProtocolType = strPtr(jresp.ProtocolType)
		}
		if jresp.SkipAssignment && req.Version < 9 {
			return resp
		}
		resp.SkipAssignment = jresp.SkipAssignment
		for _, m := range jresp.Members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID = m.MemberID
			if m.InstanceID != "" {
				rm.InstanceID = strPtr(m.InstanceID)
			}
			rm.ProtocolMetadata = m.Metadata
			resp.Members = append(resp.Members, rm)
		}
		return resp
	}}
}
