package wire

// InitProducerId (key 22), versions 0–4.
//
// Idempotent producers (no transactional id) get a fresh producer id with
// epoch 0. Ids come from blocks persisted before use, so an id is never
// handed out twice, even across crashes. A producer that asks to bump its
// epoch after an error (v3+, KIP-360) also gets a fresh id, as Kafka does
// for non-transactional producers.
//
// A transactional id goes to its transaction coordinator (the leader of its
// __transaction_state partition; NOT_COORDINATOR elsewhere): the id keeps
// its producer id and gets the next epoch, which fences any older instance
// of the producer; an open transaction of the id is aborted first
// (CONCURRENT_TRANSACTIONS until it is). PRODUCER_FENCED is answered as
// INVALID_PRODUCER_EPOCH before v4 (KIP-588).

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/txn"
)

func init() { register(22, 0, 4, handleInitProducerID) }

func handleInitProducerID(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		c, err := s.Broker.TxnCoordinator(*req.TransactionalID)
		if err != nil {
			resp.ErrorCode = errCode(err)
			return Reply{Resp: resp}
		}
		ch := c.InitProducerID(txn.InitRequest{
			TransactionalID: *req.TransactionalID, TimeoutMs: req.TransactionTimeoutMillis,
			ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch,
		})
		return Reply{Wait: func() kmsg.Response {
			res, ok := await(r.Ctx, ch)
			if !ok {
				return nil
			}
			if res.Err != nil {
				resp.ErrorCode = fencedCode(res.Err, req.Version, 4)
				return resp
			}
			resp.ProducerID, resp.ProducerEpoch = res.ProducerID, res.ProducerEpoch
			return resp
		}}
	}
	id, err := s.Broker.NextProducerID()
	if err != nil {
		s.Logger.Error("allocate producer id", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return Reply{Resp: resp}
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return Reply{Resp: resp}
}
