package wire

// CreateTopics (key 19), versions 2–7.
//
// Validates names (Kafka's rules), partition counts, replication factors
// (at most the number of brokers; -1 takes the default) and every config
// value, naming the offending field in the error message. A manual replica
// assignment must place each partition on existing brokers. validate_only
// checks without creating. v5+ answers the effective configs, partition
// count and replication factor; v7 the topic id. A name given twice in one
// request gets INVALID_REQUEST for each occurrence.

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/topicconfig"
)

func init() { register(19, 2, 7, handleCreateTopics) }

func handleCreateTopics(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		if seen[rt.Topic] > 1 {
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = errMessage(fmt.Errorf("topic %q appears more than once in the request", rt.Topic))
			resp.Topics = append(resp.Topics, st)
			continue
		}
		err := createTopic(s, req, rt, &st)
		if err != nil {
			st.ErrorCode = errCode(err)
			st.ErrorMessage = errMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}

func createTopic(s *Server, req *kmsg.CreateTopicsRequest, rt kmsg.CreateTopicsRequestTopic, st *kmsg.CreateTopicsResponseTopic) error {
	configs := map[string]string{}
	for _, c := range rt.Configs {
		if c.Value == nil {
			continue
		}
		configs[c.Name] = *c.Value
	}
	partitions, rf := rt.NumPartitions, rt.ReplicationFactor
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 || rf != -1 {
			return fmt.Errorf("%w: set either a replica assignment or partitions and replication factor, not both", kerr.InvalidRequest)
		}
		partitions = int32(len(rt.ReplicaAssignment))
		rf = int16(len(rt.ReplicaAssignment[0].Replicas))
		if err := checkAssignment(s, rt.ReplicaAssignment); err != nil {
			return err
		}
	}
	if broker.IsInternal(rt.Topic) {
		return fmt.Errorf("%w: names starting with __ are reserved for internal topics", broker.ErrInvalidTopic)
	}
	t, err := s.Broker.CreateTopic(rt.Topic, partitions, rf, configs, req.ValidateOnly)
	if err != nil {
		return err
	}
	st.TopicID = t.ID
	st.NumPartitions = int32(len(t.Partitions))
	st.ReplicationFactor = rf
	if rf == -1 {
		st.ReplicationFactor = 1
	}
	for _, name := range topicconfig.Names() {
		v, overridden := topicconfig.Value(t.Configs, name)
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		c.Name = name
		c.Value = &v
		c.Source = configSourceDefault
		if overridden {
			c.Source = configSourceTopic
		}
		st.Configs = append(st.Configs, c)
	}
	return nil
}

func checkAssignment(s *Server, as []kmsg.CreateTopicsRequestTopicReplicaAssignment) error {
	known := map[int32]bool{}
	for _, b := range s.Broker.Meta().Brokers() {
		known[b.ID] = true
	}
	for i, a := range as {
		if a.Partition != int32(i) {
			return fmt.Errorf("%w: replica assignment partitions must be 0..%d in order", kerr.InvalidReplicaAssignment, len(as)-1)
		}
		if len(a.Replicas) != len(as[0].Replicas) || len(a.Replicas) == 0 {
			return fmt.Errorf("%w: every partition needs the same, non-zero number of replicas", kerr.InvalidReplicaAssignment)
		}
		for _, id := range a.Replicas {
			if !known[id] {
				return fmt.Errorf("%w: broker %d does not exist", kerr.InvalidReplicaAssignment, id)
			}
		}
	}
	return nil
}
