package wire

// CreatePartitions (key 37), versions 0–3.
//
// Grows a topic to the requested partition count (it can only grow); new
// partitions start empty. A manual assignment must name existing brokers.
// validate_only checks without changing anything.

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(37, 0, 3, handleCreatePartitions) }

func handleCreatePartitions(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	known := map[int32]bool{}
	for _, b := range s.Broker.Meta().Brokers() {
		known[b.ID] = true
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		for _, a := range rt.Assignment {
			for _, id := range a.Replicas {
				if !known[id] {
					err = fmt.Errorf("%w: broker %d does not exist", kerr.InvalidReplicaAssignment, id)
				}
			}
		}
		if err == nil {
			err = s.Broker.CreatePartitions(rt.Topic, rt.Count, req.ValidateOnly)
		}
		if err != nil {
			st.ErrorCode = errCode(err)
			st.ErrorMessage = errMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}
