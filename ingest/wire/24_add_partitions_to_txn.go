package wire

// AddPartitionsToTxn (key 24), versions 0–3.
//
// A transactional producer names the partitions it is about to write in its
// open transaction; the coordinator records them (durably) so that it can
// write the commit or abort markers there. Partitions of unknown topics get
// UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED, as Kafka
// does, without involving the coordinator. Version 4 and later (brokers
// verifying for each other, KIP-890) are not served.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/txn"
)

func init() { register(24, 0, 3, handleAddPartitionsToTxn) }

func handleAddPartitionsToTxn(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	var parts []txn.TopicPartition
	unknown := false
	for _, rt := range req.Topics {
		for _, p := range rt.Partitions {
			if !partitionKnown(s, rt.Topic, p) || broker.IsInternal(rt.Topic) {
				unknown = true
			}
			parts = append(parts, txn.TopicPartition{Topic: rt.Topic, Partition: p})
		}
	}
	answer := func(code func(txn.TopicPartition) int16) kmsg.Response {
		for _, rt := range req.Topics {
			st := kmsg.NewAddPartitionsToTxnResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				sp.Partition = p
				sp.ErrorCode = code(txn.TopicPartition{Topic: rt.Topic, Partition: p})
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	if unknown {
		return Reply{Resp: answer(func(tp txn.TopicPartition) int16 {
			if !partitionKnown(s, tp.Topic, tp.Partition) || broker.IsInternal(tp.Topic) {
				return kerr.UnknownTopicOrPartition.Code
			}
			return kerr.OperationNotAttempted.Code
		})}
	}
	c, err := s.Broker.TxnCoordinator(req.TransactionalID)
	if err != nil {
		code := errCode(err)
		return Reply{Resp: answer(func(txn.TopicPartition) int16 { return code })}
	}
	ch := c.AddPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts)
	return Reply{Wait: func() kmsg.Response {
		errs, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		return answer(func(tp txn.TopicPartition) int16 { return fencedCode(errs[tp], req.Version, 2) })
	}}
}
