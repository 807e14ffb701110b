package wire

// Heartbeat (key 12), versions 0–4: answered at once by the coordinator
// (REBALANCE_IN_PROGRESS during a join phase tells the member to rejoin).

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(12, 0, 4, handleHeartbeat) }

func handleHeartbeat(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	c, err := coordinatorFor(s, req.Group)
	if err == nil {
		err = c.Heartbeat(group.HeartbeatRequest{
			Group: req.Group, MemberID: req.MemberID, InstanceID: strOrEmpty(req.InstanceID), Generation: req.Generation,
		})
	}
	resp.ErrorCode = errCode(err)
	return Reply{Resp: resp}
}
