package wire

// ListOffsets (key 2), versions 1–9.
//
// Timestamp -1 answers the high watermark (the last stable offset for
// read_committed), -2 the log start offset,
// -3 (v7+) the offset and timestamp of the record with the largest
// timestamp, and any other value the first offset whose timestamp is at or
// after it, found through the time index (offset -1 when there is none,
// or, for read_committed, when it is at or past the last stable offset),
// in the bucket first for tiered topics. KIP-1005: -4 (v8+) answers the
// earliest offset on local disk, -5 (v9+) the latest offset in the bucket
// (-1 when nothing is tiered).
// The leader epoch is checked (v4+) and returned. Version 0 (old-style
// offset lists) is not served, as in Kafka 4.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(2, 1, 9, handleListOffsets) }

// handleListOffsets answers on its own goroutine: lookups in tiered
// partitions may read segment footers from the bucket.
func handleListOffsets(s *Server, r *Request) Reply {
	return Reply{Wait: func() kmsg.Response { return listOffsets(s, r) }}
}

func listOffsets(s *Server, r *Request) kmsg.Response {
	req := r.Body.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, -1
			if err := listOffset(s, r.Ctx, rt.Topic, rp, &sp, req.IsolationLevel == 1); err != nil {
				sp.ErrorCode = errCode(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func listOffset(s *Server, ctx context.Context, topic string, rp kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition, committed bool) error {
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
		if committed {
			sp.Offset = p.LastStableOffset()
		}
	case -2:
		sp.Offset = p.LogStartOffset()
	case -4:
		sp.Offset = p.LocalStartOffset()
	case -5:
		sp.Offset = p.LatestTieredOffset()
	case -3:
		off, ts, err := p.MaxTimestamp(ctx)
		if err != nil {
			return err
		}
		sp.Offset, sp.Timestamp = off, ts
	default:
		off, ts, ok, err := p.OffsetForTimestamp(ctx, rp.Timestamp)
		if err != nil {
			return err
		}
		if ok && committed && off >= p.LastStableOffset() {
			// As Kafka: read_committed finds only offsets it may fetch.
			ok = false
		}
		if ok {
			sp.Offset, sp.Timestamp = off, ts
		}
	}
	return nil
}
