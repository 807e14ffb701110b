package wire

// InitProducerId (key 22), versions 0–4.
//
// Idempotent producers (no transactional id) get a fresh producer id with
// epoch 0. Ids come from blocks persisted before use, so an id is never
// handed out twice, even across crashes. A producer that asks to bump its
// epoch after an error (v3+, KIP-360) also gets a fresh id, as Kafka does
// for non-transactional producers. Transactional ids are refused with
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED until transactions exist.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(22, 0, 4, handleInitProducerID) }

func handleInitProducerID(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return Reply{Resp: resp}
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
