package wire

// OffsetDelete (key 47), version 0: deletes a group's committed offsets
// (tombstones, answered once durable). GROUP_ID_NOT_FOUND for an unknown
// group, NON_EMPTY_GROUP for a non-consumer group with members,
// GROUP_SUBSCRIBED_TO_TOPIC for partitions of topics a member of a consumer
// group subscribes to, UNKNOWN_TOPIC_OR_PARTITION for partitions that do not
// exist.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(47, 0, 0, handleOffsetDelete) }

func handleOffsetDelete(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	type place struct{ t, p int }
	var idx []place
	var tps []group.TopicPartition
	for ti, rt := range req.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			if !partitionKnown(s, rt.Topic, rp.Partition) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				tps = append(tps, group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition})
				idx = append(idx, place{ti, pi})
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	c, err := coordinatorFor(s, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		resp.Topics = nil
		return Reply{Resp: resp}
	}
	ch := c.DeleteOffsets(req.Group, tps)
	return Reply{Wait: func() kmsg.Response {
		d, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		if d.Err != nil {
			resp.ErrorCode = errCode(d.Err)
			resp.Topics = nil
			return resp
		}
		for i, pr := range d.Partitions {
			if i < len(idx) {
				resp.Topics[idx[i].t].Partitions[idx[i].p].ErrorCode = errCode(pr.Err)
			}
		}
		return resp
	}}
}
