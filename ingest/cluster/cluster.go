// Package cluster holds the cluster metadata every broker answers from:
// brokers, topics with their ids, partition leadership and topic configs.
//
// Callers use the Store interface. Today the only implementation is Local, a
// single-node store persisted in one versioned file; the multi-broker issue
// replaces it with a metadata quorum (hashicorp/raft) behind the same
// interface, so a single node becomes a one-voter quorum and callers do not
// change. The package knows nothing of Kafka requests or partition logs.
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// TopicID is a topic's UUID. It never changes and is never reused, so a
// re-created topic of the same name is a different topic.
type TopicID [16]byte

// NewTopicID returns a random, non-zero version-4 UUID.
func NewTopicID() TopicID {
	var id TopicID
	for id == (TopicID{}) {
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on Linux
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
	}
	return id
}

// String returns the id in hex, used in directory names.
func (id TopicID) String() string { return hex.EncodeToString(id[:]) }

// Broker is one broker's registration.
type Broker struct {
	ID   int32
	Host string
	Port int32
	Rack string
}

// Partition is the leadership state of one partition.
type Partition struct {
	// Leader is the replica that accepts writes, NoLeader when none can.
	Leader int32
	// LeaderEpoch grows with every change of leader.
	LeaderEpoch int32
	// PartitionEpoch grows with every change of the partition's state
	// (leader or ISR); AlterPartition names the one it saw, so a leader
	// cannot overwrite a change it did not see.
	PartitionEpoch int32
	// Replicas are the brokers that hold the partition, the preferred
	// leader first.
	Replicas []int32
	// ISR are the replicas in sync with the leader (the leader included).
	ISR []int32
}

// Topic is one topic's metadata.
type Topic struct {
	Name       string
	ID         TopicID
	Internal   bool
	Partitions []Partition
	// Configs holds the topic's config overrides (Kafka names); defaults are
	// not stored.
	Configs map[string]string
}

// Clone returns a deep copy.
func (t Topic) Clone() Topic {
	c := t
	c.Partitions = make([]Partition, len(t.Partitions))
	for i, p := range t.Partitions {
		p.Replicas = append([]int32(nil), p.Replicas...)
		p.ISR = append([]int32(nil), p.ISR...)
		c.Partitions[i] = p
	}
	c.Configs = make(map[string]string, len(t.Configs))
	for k, v := range t.Configs {
		c.Configs[k] = v
	}
	return c
}

// Errors returned by stores; the wire layer maps them to Kafka codes.
var (
	ErrTopicExists      = errors.New("topic already exists")
	ErrUnknownTopic     = errors.New("unknown topic")
	ErrInvalidPartition = errors.New("invalid partition count")
)

// Event tells a watcher what changed.
type Event struct {
	Topic   string
	ID      TopicID
	Deleted bool
}

// Store is the cluster metadata as a broker sees it. Reads are served from
// local state and never block on I/O; writes return once durable (and, with
// a quorum, committed).
type Store interface {
	ClusterID() string
	ControllerID() int32
	Brokers() []Broker
	// Topics returns a snapshot of every topic; callers must not modify it.
	Topics() []Topic
	Topic(name string) (Topic, bool)
	TopicByID(id TopicID) (Topic, bool)
	// CreateTopic creates a topic of len(t.Partitions) partitions with
	// replicationFactor replicas each, assigned by the store.
	CreateTopic(t Topic, replicationFactor int) (Topic, error)
	DeleteTopic(name string) (Topic, error)
	CreatePartitions(name string, total int32) (Topic, error)
	SetConfigs(name string, configs map[string]string) (Topic, error)
	// Watch registers fn to be called after every change, serially, outside
	// the store's locks.
	Watch(fn func(Event))
	Close() error
}
