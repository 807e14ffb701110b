package wire

// Metadata (key 3), versions 0–12.
//
// Answers from the local metadata store: brokers, cluster id, controller,
// and for each requested topic (all topics when the list is null, or empty
// before v1) its id (v10+), partitions, leader, leader epoch (v7+), replicas
// and ISR. Unknown topics are created with the broker defaults when
// auto.create.topics.enable is on and the request allows it (always before
// v4); otherwise they get UNKNOWN_TOPIC_OR_PARTITION. Invalid names get
// INVALID_TOPIC_EXCEPTION. Authorized operations are not computed (no ACLs)
// and are returned as Kafka's "not requested" value.

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/cluster"
)

func init() { register(3, 0, 12, handleMetadata) }

const authorizedOpsNotRequested = -2147483648

func handleMetadata(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	meta := s.Broker.Meta()
	for _, b := range meta.Brokers() {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = b.ID, b.Host, b.Port
		if b.Rack != "" {
			rack := b.Rack
			mb.Rack = &rack
		}
		resp.Brokers = append(resp.Brokers, mb)
	}
	cid := meta.ClusterID()
	resp.ClusterID = &cid
	resp.ControllerID = meta.ControllerID()
	resp.AuthorizedOperations = authorizedOpsNotRequested

	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range meta.Topics() {
			resp.Topics = append(resp.Topics, metadataTopic(t))
		}
		return Reply{Resp: resp}
	}
	autoCreate := s.Broker.AutoCreateTopics() && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			// Lookups by topic id (v10+).
			t, ok := meta.TopicByID(cluster.TopicID(rt.TopicID))
			if !ok {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			resp.Topics = append(resp.Topics, metadataTopic(t))
			continue
		}
		name := *rt.Topic
		t, ok := meta.Topic(name)
		if !ok {
			var err error
			if err = broker.ValidateTopicName(name); err == nil {
				err = broker.ErrUnknownTopicOrPartition
				if autoCreate && !broker.IsInternal(name) {
					t, err = s.Broker.CreateTopic(name, -1, -1, nil, false)
					if err == nil || errors.Is(err, broker.ErrTopicExists) {
						t, ok = meta.Topic(name)
						err = nil
					}
				}
			}
			if !ok {
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic = &name
				mt.ErrorCode = errCode(err)
				mt.AuthorizedOperations = authorizedOpsNotRequested
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			s.Logger.Info("auto-created topic", "topic", name, "partitions", len(t.Partitions), "client", r.Header.ClientID)
		}
		resp.Topics = append(resp.Topics, metadataTopic(t))
	}
	return Reply{Resp: resp}
}

func metadataTopic(t cluster.Topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic = &name
	mt.TopicID = t.ID
	mt.IsInternal = t.Internal
	mt.AuthorizedOperations = authorizedOpsNotRequested
	for i, p := range t.Partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = int32(i)
		mp.Leader = p.Leader
		mp.LeaderEpoch = p.LeaderEpoch
		if p.Leader == cluster.NoLeader {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mp.Replicas = p.Replicas
		mp.ISR = p.ISR
		mp.OfflineReplicas = []int32{}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}
