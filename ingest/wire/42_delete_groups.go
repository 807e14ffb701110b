package wire

// DeleteGroups (key 42), versions 0–2: an Empty group's offsets and the
// group are tombstoned in __consumer_offsets; the answer comes once that is
// durable. Unknown groups get GROUP_ID_NOT_FOUND, groups with members
// NON_EMPTY_GROUP.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(42, 0, 2, handleDeleteGroups) }

func handleDeleteGroups(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	chans := make([]<-chan []group.DeleteResult, len(req.Groups))
	for i, id := range req.Groups {
		g := kmsg.NewDeleteGroupsResponseGroup()
		g.Group = id
		resp.Groups = append(resp.Groups, g)
		c, err := coordinatorFor(s, id)
		if err != nil {
			resp.Groups[i].ErrorCode = errCode(err)
			continue
		}
		chans[i] = c.Delete([]string{id})
	}
	return Reply{Wait: func() kmsg.Response {
		for i, ch := range chans {
			if ch == nil {
				continue
			}
			res, ok := await(r.Ctx, ch)
			if !ok {
				return nil
			}
			if len(res) == 1 {
				resp.Groups[i].ErrorCode = errCode(res[0].Err)
			}
		}
		return resp
	}}
}
