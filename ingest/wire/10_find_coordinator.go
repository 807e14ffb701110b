package wire

// FindCoordinator (key 10), versions 0–4.
//
// Group keys (key type 0) are answered with this broker when it is the
// coordinator of the group's __consumer_offsets partition (on a single node
// it leads all of them), else COORDINATOR_NOT_AVAILABLE, which clients
// retry; v4 batches keys and answers each. Transaction keys (type 1) get TRANSACTIONAL_ID_AUTHORIZATION_FAILED
// until transactions exist (as InitProducerId); other key types get
// INVALID_REQUEST.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(10, 0, 4, handleFindCoordinator) }

func handleFindCoordinator(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	self := s.Broker.NodeID()
	var host string
	var port int32 = -1
	for _, b := range s.Broker.Meta().Brokers() {
		if b.ID == self {
			host, port = b.Host, b.Port
		}
	}
	answer := func(key string) kmsg.FindCoordinatorResponseCoordinator {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.NodeID, c.Port = -1, -1
		var err *kerr.Error
		switch req.CoordinatorType {
		case 0:
			if !s.Broker.LeadsCoordinator(key) {
				err = kerr.CoordinatorNotAvailable
			} else {
				c.NodeID, c.Host, c.Port = self, host, port
			}
		case 1:
			err = kerr.TransactionalIDAuthorizationFailed
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
