package wire

// ListOffsets (key 2), versions 1–7.
//
// Timestamp -1 answers the high watermark (the last stable offset for
// read_committed, equal until transactions exist), -2 the log start offset,
// -3 (v7+) the offset and timestamp of the record with the largest
// timestamp, and any other value the first offset whose timestamp is at or
// after it, found through the time index (offset -1 when there is none).
// The leader epoch is checked (v4+) and returned. Version 0 (old-style
// offset lists) is not served, as in Kafka 4.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(2, 1, 7, handleListOffsets) }

func handleListOffsets(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, -1
			if err := listOffset(s, rt.Topic, rp, &sp); err != nil {
				sp.ErrorCode = errCode(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}

func listOffset(s *Server, topic string, rp kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) error {
	p, err := s.Broker.Partition(topic, rp.Partition)
	if err != nil {
		return err
	}
	if err := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); err != nil {
		return err
	}
	sp.LeaderEpoch = p.LeaderEpoch()
	switch rp.Timestamp {
	case -1:
		sp.Offset = p.HighWatermark()
	case -2:
		sp.Offset = p.LogStartOffset()
	case -3:
		off, ts, err := p.MaxTimestamp()
		if err != nil {
			return err
		}
		sp.Offset, sp.Timestamp = off, ts
	default:
		off, ts, ok, err := p.OffsetForTimestamp(rp.Timestamp)
		if err != nil {
			return err
		}
		if ok {
			sp.Offset, sp.Timestamp = off, ts
		}
	}
	return nil
}
