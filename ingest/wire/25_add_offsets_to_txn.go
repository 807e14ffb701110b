package wire

// AddOffsetsToTxn (key 25), versions 0–4 (v4 only adds an error code
// this broker never answers).
//
// Adds the group's __consumer_offsets partition to the producer's open
// transaction, so that the offsets it then commits with TxnOffsetCommit
// become visible (or are discarded) with the transaction's outcome.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(25, 0, 4, handleAddOffsetsToTxn) }

func handleAddOffsetsToTxn(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	c, err := s.Broker.TxnCoordinator(req.TransactionalID)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return Reply{Resp: resp}
	}
	ch := c.AddOffsets(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group)
	return Reply{Wait: func() kmsg.Response {
		err, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		resp.ErrorCode = fencedCode(err, req.Version, 2)
		return resp
	}}
}
