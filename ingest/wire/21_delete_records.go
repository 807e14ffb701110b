package wire

// DeleteRecords (key 21), versions 0–2.
//
// Moves each partition's log start offset forward (offset -1 means the high
// watermark); whole segments below it are deleted and reads below it get
// OFFSET_OUT_OF_RANGE. Offsets above the high watermark get
// OFFSET_OUT_OF_RANGE. Answers the new low watermark.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(21, 0, 2, handleDeleteRecords) }

func handleDeleteRecords(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			p, err := s.Broker.Partition(rt.Topic, rp.Partition)
			if err == nil {
				sp.LowWatermark, err = p.DeleteRecords(rp.Offset)
			}
			sp.ErrorCode = errCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}
