package wire

// EndTxn (key 26), versions 0–4 (v4 only adds an error code this broker
// never answers).
//
// Commits or aborts the producer's open transaction. The answer comes once
// the outcome is durable in __transaction_state and every partition of the
// transaction holds its marker below its high watermark: a consumer that
// reads after a successful commit sees the transaction's records. Versions
// 5 and later (KIP-890's epoch bump per transaction) are not served.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/txn"
)

func init() { register(26, 0, 4, handleEndTxn) }

func handleEndTxn(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	c, err := s.Broker.TxnCoordinator(req.TransactionalID)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return Reply{Resp: resp}
	}
	ch := c.EndTxn(txn.EndRequest{
		TransactionalID: req.TransactionalID, ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch, Commit: req.Commit,
	})
	return Reply{Wait: func() kmsg.Response {
		err, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		resp.ErrorCode = fencedCode(err, req.Version, 2)
		return resp
	}}
}
