package wire

// FindCoordinator (key 10), versions 0–4.
//
// Group keys (key type 0) are answered with the leader of the group's
// __consumer_offsets partition, transactional ids (type 1) with the leader
// of the id's __transaction_state partition (the topic is created on the
// first such request); while there is none, COORDINATOR_NOT_AVAILABLE,
// which clients retry. v4 batches keys and answers each. Other key types
// get INVALID_REQUEST.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(10, 0, 4, handleFindCoordinator) }

func handleFindCoordinator(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(key string) kmsg.FindCoordinatorResponseCoordinator {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.NodeID, c.Port = -1, -1
		var err *kerr.Error
		switch req.CoordinatorType {
		case 0, 1:
			if b, ok := s.Broker.CoordinatorLeader(req.CoordinatorType, key); ok {
				c.NodeID, c.Host, c.Port = b.ID, b.Host, b.Port
			} else {
				err = kerr.CoordinatorNotAvailable
			}
		default:
			err = kerr.InvalidRequest
		}
		if err != nil {
			c.ErrorCode = err.Code
			c.ErrorMessage = strPtr(err.Message)
		}
		return c
	}
	if req.Version >= 4 {
		for _, k := range req.CoordinatorKeys {
			resp.Coordinators = append(resp.Coordinators, answer(k))
		}
		return Reply{Resp: resp}
	}
	c := answer(req.CoordinatorKey)
	resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.NodeID, c.Host, c.Port
	if req.Version >= 1 {
		resp.ErrorMessage = c.ErrorMessage
	}
	return Reply{Resp: resp}
}
