package wire

// DescribeGroups (key 15), versions 0–5. An unknown group is described as
// Dead with no error, as Kafka does up to v5 (v6's GROUP_ID_NOT_FOUND is not
// advertised). Protocol, member metadata and assignments are shown only
// while the group is Stable. Authorized operations are not computed.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(15, 0, 5, handleDescribeGroups) }

func handleDescribeGroups(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = id
		rg.AuthorizedOperations = authorizedOpsNotRequested
		c, err := coordinatorFor(s, id)
		if err != nil {
			rg.ErrorCode = errCode(err)
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		d := c.Describe([]string{id})[0]
		rg.ErrorCode = errCode(d.Err)
		rg.State = d.State.String()
		if d.Err != nil {
			rg.State = ""
		}
		rg.ProtocolType, rg.Protocol = d.ProtocolType, d.Protocol
		for _, m := range d.Members {
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID, rm.ClientID, rm.ClientHost = m.MemberID, m.ClientID, m.ClientHost
			if m.InstanceID != "" {
				rm.InstanceID = strPtr(m.InstanceID)
			}
			rm.ProtocolMetadata, rm.MemberAssignment = nonNil(m.Metadata), nonNil(m.Assignment)
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return Reply{Resp: resp}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
