package wire

// TxnOffsetCommit (key 28), versions 0–4 (v4 only adds an error code this
// broker never answers).
//
// A transactional producer commits consumer offsets as part of its
// transaction (after AddOffsetsToTxn). The group's coordinator appends them
// to __consumer_offsets as transactional records of the producer; they
// become the group's committed offsets only when the transaction commits
// (its marker reaches that partition) and are dropped if it aborts.
// Member and generation (v3+) are checked only when given. Partitions of
// unknown topics get UNKNOWN_TOPIC_OR_PARTITION each. PRODUCER_FENCED is
// answered as INVALID_PRODUCER_EPOCH before v3 (KIP-588).

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(28, 0, 4, handleTxnOffsetCommit) }

func handleTxnOffsetCommit(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	type place struct{ t, p int }
	var idx []place
	tr := group.TxnCommitRequest{
		Group: req.Group, TransactionalID: req.TransactionalID, ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch,
		GenerationID: -1,
	}
	if req.Version >= 3 {
		tr.GenerationID, tr.MemberID, tr.GroupInstanceID = req.Generation, req.MemberID, strOrEmpty(req.InstanceID)
	}
	for ti, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			st.Partitions = append(st.Partitions, sp)
			if !partitionKnown(s, rt.Topic, rp.Partition) {
				st.Partitions[pi].ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			epoch := int32(-1)
			if req.Version >= 2 {
				epoch = rp.LeaderEpoch
			}
			tr.Offsets = append(tr.Offsets, group.CommitOffset{
				TopicPartition: group.TopicPartition{Topic: rt.Topic, Partition: rp.Partition},
				Offset:         rp.Offset, LeaderEpoch: epoch, Metadata: strOrEmpty(rp.Metadata),
			})
			idx = append(idx, place{ti, pi})
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(tr.Offsets) == 0 {
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
	ch := c.CommitTxnOffsets(tr)
	return Reply{Wait: func() kmsg.Response {
		results, ok := await(r.Ctx, ch)
		if !ok {
			return nil
		}
		for i, res := range results {
			if i < len(idx) {
				resp.Topics[idx[i].t].Partitions[idx[i].p].ErrorCode = fencedCode(res.Err, req.Version, 3)
			}
		}
		return resp
	}}
}
