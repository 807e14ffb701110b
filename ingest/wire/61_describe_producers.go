package wire

// DescribeProducers (key 61), version 0.
//
// Lists the producer state the partition's leader keeps: each producer id
// with its epoch, last sequence and timestamp, the coordinator epoch of its
// last marker and the first offset of its open transaction (-1: none). An
// operator finds a hanging transaction here (one whose start offset holds
// the last stable offset back) and aborts it with WriteTxnMarkers (`strata
// txn abort`). Partitions this broker does not lead get
// NOT_LEADER_OR_FOLLOWER.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(61, 0, 0, handleDescribeProducers) }

func handleDescribeProducers(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		for _, part := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = part
			p, err := s.Broker.Partition(rt.Topic, part)
			if err != nil {
				sp.ErrorCode = errCode(err)
				sp.ErrorMessage = errMessage(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			for _, pr := range p.Log().Producers() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch = pr.ID, int32(pr.Epoch)
				ap.LastSequence, ap.LastTimestamp = -1, -1
				if n := len(pr.Batches); n > 0 {
					ap.LastSequence, ap.LastTimestamp = pr.Batches[n-1].LastSeq, pr.Batches[n-1].TimestampMs
				}
				ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = pr.CoordinatorEpoch, pr.CurrentTxnFirstOffset
				sp.ActiveProducers = append(sp.ActiveProducers, ap)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}
