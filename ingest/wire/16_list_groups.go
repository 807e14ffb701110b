package wire

// ListGroups (key 16), versions 0–4: every group of every coordinator on
// this broker, sorted by coordinator partition then name. v4's state filter
// matches DescribeGroups' state names case-insensitively; names that are no
// state match nothing.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(16, 0, 4, handleListGroups) }

func handleListGroups(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	var states []group.State
	if req.Version >= 4 && len(req.StatesFilter) > 0 {
		for _, name := range req.StatesFilter {
			if st, ok := group.ParseState(name); ok {
				states = append(states, st)
			}
		}
		if len(states) == 0 {
			return Reply{Resp: resp}
		}
	}
	for _, c := range s.Broker.GroupCoordinators() {
		list, err := c.List(states, nil)
		if err != nil {
			resp.ErrorCode = errCode(err)
			continue
		}
		for _, l := range list {
			g := kmsg.NewListGroupsResponseGroup()
			g.Group, g.ProtocolType, g.GroupState = l.Group, l.ProtocolType, l.State.String()
			resp.Groups = append(resp.Groups, g)
		}
	}
	return Reply{Resp: resp}
}
