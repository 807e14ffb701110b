package wire

// LeaveGroup (key 13), versions 0–5. v0–v2 name one member; v3+ batch
// members (with group.instance.id) and answer each.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(13, 0, 5, handleLeaveGroup) }

func handleLeaveGroup(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	c, err := coordinatorFor(s, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return Reply{Resp: resp}
	}
	var members []group.LeaveMember
	if req.Version < 3 {
		members = []group.LeaveMember{{MemberID: req.MemberID}}
	} else {
		for _, m := range req.Members {
			members = append(members, group.LeaveMember{MemberID: m.MemberID, InstanceID: strOrEmpty(m.InstanceID)})
		}
	}
	results, err := c.Leave(req.Group, members)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return Reply{Resp: resp}
	}
	if req.Version < 3 {
		if len(results) == 1 {
			resp.ErrorCode = errCode(results[0].Err)
		}
		return Reply{Resp: resp}
	}
	for i, res := range results {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = res.MemberID
		rm.InstanceID = req.Members[i].InstanceID
		rm.ErrorCode = errCode(res.Err)
		resp.Members = append(resp.Members, rm)
	}
	return Reply{Resp: resp}
}
