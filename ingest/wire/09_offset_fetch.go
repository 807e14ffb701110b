package wire

// OffsetFetch (key 9), versions 1–9.
//
// Answered at once from the coordinator's durable offsets. An unknown group
// or partition gets offset -1, leader epoch -1, metadata "" and no error
// (sarama and librdkafka depend on it). A null topic list (v2+) returns every
// committed partition of the group. v8+ batch groups and answer each;
// With RequireStable (v7+), a partition whose offset a transaction has
// committed but not yet ended (TxnOffsetCommit) gets UNSTABLE_OFFSET_COMMIT,
// which clients retry; without it, the last committed offset.
// Group-level errors (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS) are
// the top-level code on v2–v7, the group's code on v8+, and every
// partition's code on v1.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func init() { register(9, 1, 9, handleOffsetFetch) }

type offsetFetchTopic struct {
	topic      string
	partitions []int32
}

func handleOffsetFetch(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var topics []offsetFetchTopic
			if rg.Topics != nil {
				topics = make([]offsetFetchTopic, 0, len(rg.Topics))
				for _, t := range rg.Topics {
					topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
				}
			}
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group = rg.Group
			fetched, err := fetchGroupOffsets(s, rg.Group, topics, req.RequireStable)
			g.ErrorCode = errCode(err)
			for _, ft := range fetched {
				gt := kmsg.NewOffsetFetchResponseGroupTopic()
				gt.Topic = ft.Topic
				for _, fp := range ft.Partitions {
					gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					gp.Partition, gp.Offset, gp.LeaderEpoch, gp.Metadata, gp.ErrorCode = fp.Partition, fp.Offset, fp.LeaderEpoch, fp.Metadata, fp.ErrorCode
					gt.Partitions = append(gt.Partitions, gp)
				}
				g.Topics = append(g.Topics, gt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return Reply{Resp: resp}
	}
	var topics []offsetFetchTopic
	if req.Topics != nil || req.Version < 2 {
		topics = make([]offsetFetchTopic, 0, len(req.Topics))
		for _, t := range req.Topics {
			topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
		}
	}
	fetched, err := fetchGroupOffsets(s, req.Group, topics, req.Version >= 7 && req.RequireStable)
	code := errCode(err)
	if req.Version >= 2 {
		resp.ErrorCode = code
	} else if err != nil {
		// v1 has no top-level code: every requested partition carries it.
		for _, t := range topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.topic
			for _, p := range t.partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p, -1, -1, strPtr(""), code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return Reply{Resp: resp}
	}
	resp.Topics = fetched
	return Reply{Resp: resp}
}

// fetchGroupOffsets returns a group's committed offsets for topics (nil:
// every committed partition), grouped by topic in request order.
func fetchGroupOffsets(s *Server, groupID string, topics []offsetFetchTopic, stable bool) ([]kmsg.OffsetFetchResponseTopic, error) {
	c, err := coordinatorFor(s, groupID)
	if err != nil {
		return nil, err
	}
	var tps []group.TopicPartition
	if topics != nil {
		tps = []group.TopicPartition{}
		for _, t := range topics {
			for _, p := range t.partitions {
				tps = append(tps, group.TopicPartition{Topic: t.topic, Partition: p})
			}
		}
	}
	fetch := c.FetchOffsets
	if stable {
		fetch = c.FetchStableOffsets
	}
	fetched, err := fetch(groupID, tps)
	if err != nil {
		return nil, err
	}
	var out []kmsg.OffsetFetchResponseTopic
	at := map[string]int{}
	for _, f := range fetched {
		i, ok := at[f.Topic]
		if !ok {
			i = len(out)
			at[f.Topic] = i
			t := kmsg.NewOffsetFetchResponseTopic()
			t.Topic = f.Topic
			out = append(out, t)
		}
		p := kmsg.NewOffsetFetchResponseTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = f.Partition, f.Offset, f.LeaderEpoch, strPtr(f.Metadata), errCode(f.Err)
		out[i].Partitions = append(out[i].Partitions, p)
	}
	return out, nil
}
