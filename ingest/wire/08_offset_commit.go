package wire

// OffsetCommit (key 8), versions 2–9.
//
// Partitions of unknown topics or partitions get UNKNOWN_TOPIC_OR_PARTITION
// each; the rest go to the group's coordinator, and the answer comes once
// their records are durable in __consumer_offsets (Reply.Wait). v2–v4's
// retention time is kept (-1: offsets.retention.minutes); leader epochs
// (v6+) and metadata round-trip (null metadata is stored as "").

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(8, 2, 9, handleOffsetCommit) }

func handleOffsetCommit(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	// codes[i][j] is the answer for req.Topics[i].Partitions[j]; idx maps a
	// partition sent to the coordinator back to its place.
	type place struct{ t, p int }
	var idx []place
	cr := group.CommitRequest{
		Group: req.Group, MemberID: req.MemberID, InstanceID: strOrEmpty(req.InstanceID), Generation: req.Generation,
	}
	if req.Version <= 4 && req.RetentionTimeMillis > 0 {
		cr.Retention = time.Duration(req.RetentionTimeMillis) * time.Millisecond
	}
	for ti, rt := range req.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			st.Partitions = append(st.Partitions, sp)
			if !partitionKnown(s, rt.Topic, rp.Partition) {
				st.Partitions[pi].ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			epoch := int32(-1)
			if req.Version >= 6 {
				epoch = rp.LeaderEpoch
			}
			cr.Offsets = append(cr.Offsets, group.CommitOffset{
				TopicPartition: group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition},
				Offset:         rp.Offset, LeaderEpoch: epoch, Metadata: strOrEmpty(rp.Metadata),
			})
			idx = append(idx, place{ti, pi})
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(cr.Offsets) == 0 {
		return Reply{Resp: resp}
	}
	setAll := func(code int16) {
		for _, pl := range idx {
			resp.Topics[pl.t].Partitions[pl.p].ErrorCode = code
		}
	}
	c, err := coordinatorFor(s, req.Group)
	if err != nil {
		setAll(errCode(err))
		return Reply{Resp: resp}
	}
	ch := c.CommitOffsets(cr)
	return Reply{Wait: func() kmsg.Response {
		results, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		for i, res := range results {
			if i < len(idx) {
				resp.Topics[idx[i].t].Partitions[idx[i].p].ErrorCode = errCode(res.Err)
			}
		}
		return resp
	}}
}
