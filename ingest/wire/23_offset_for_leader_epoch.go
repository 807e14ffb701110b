package wire

// OffsetForLeaderEpoch (key 23), versions 2–4.
//
// For each partition, answers the largest leader epoch <= the requested one
// and the end offset of that epoch (the start of the next epoch, or the log
// end offset for the current epoch), so that consumers (KIP-320) and, later,
// followers detect divergent logs. Unknown epochs answer -1/-1. The current
// leader epoch in the request is checked.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(23, 2, 4, handleOffsetForLeaderEpoch) }

func handleOffsetForLeaderEpoch(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			p, err := s.Broker.Partition(rt.Topic, rp.Partition)
			if err == nil {
				err = checkLeaderEpoch(p, rp.CurrentLeaderEpoch)
			}
			if err == nil {
				sp.LeaderEpoch, sp.EndOffset = p.EndOffsetForEpoch(rp.LeaderEpoch)
			}
			sp.ErrorCode = errCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}
