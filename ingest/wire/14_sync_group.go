package wire

// SyncGroup (key 14), versions 0–5. The leader's assignments are stored in
// __consumer_offsets; every member's answer comes once they are durable
// (Reply.Wait). v5 checks and returns the protocol type and name.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(14, 0, 5, handleSyncGroup) }

func handleSyncGroup(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.SyncGroupRequest)
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	c, err := coordinatorFor(s, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return Reply{Resp: resp}
	}
	sr := group.SyncRequest{
		Group: req.Group, MemberID: req.MemberID, InstanceID: strOrEmpty(req.InstanceID), Generation: req.Generation,
		ProtocolType: strOrEmpty(req.ProtocolType), Protocol: strOrEmpty(req.Protocol),
	}
	if len(req.GroupAssignment) > 0 {
		sr.Assignments = make(map[string][]byte, len(req.GroupAssignment))
		for _, a := range req.GroupAssignment {
			sr.Assignments[a.MemberID] = append([]byte(nil), a.MemberAssignment...)
		}
	}
	ch := c.Sync(sr)
	return Reply{Wait: func() kmsg.Response {
		sresp, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		resp.ErrorCode = errCode(sresp.Err)
		resp.MemberAssignment = sresp.Assignment
		if resp.MemberAssignment == nil {
			resp.MemberAssignment = []byte{}
		}
		if sresp.ProtocolType != "" {
			resp.ProtocolType = strPtr(sresp.ProtocolType)
		}
		if sresp.Protocol != "" {
			resp.Protocol = strPtr(sresp.Protocol)
		}
		return resp
	}}
}
