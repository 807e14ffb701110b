package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/coordkey"
)

// Key and value versions written to __transaction_state: the versions Kafka
// writes without transaction version 2, so Kafka's own tools (the
// transaction log formatter of kafka-dump-log and kafka-console-consumer)
// read them. Value version 1 (flexible, KIP-890 tagged fields) is read.
const (
	keyVersion      = 0
	valueVersion    = 0
	maxValueVersion = 1
)

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Record is one record of a __transaction_state partition. A nil Value is a
// tombstone: the transactional id was expired.
type Record struct {
	Key   []byte
	Value []byte
}

// State is a transaction's state, numbered as Kafka persists it.
type State int8

// The states of a transactional id (Kafka's TransactionState).
const (
	Empty             State = 0 // no transaction open
	Ongoing           State = 1 // partitions added, not ended
	PrepareCommit     State = 2 // commit decided, markers being written
	PrepareAbort      State = 3 // abort decided, markers being written
	CompleteCommit    State = 4 // commit markers written
	CompleteAbort     State = 5 // abort markers written
	Dead              State = 6 // being expired; never persisted (a tombstone is)
	PrepareEpochFence State = 7 // transient: an open transaction is being fenced; never persisted
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// String is the state's name as Kafka reports it in DescribeTransactions
// and ListTransactions.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int8(s))
}

// ParseState is the state named name (case-sensitive, as Kafka's
// ListTransactions state filters); false for an unknown name.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

// ErrUnknownRecordType is returned (wrapped) by DecodeRecord for a key
// version this coordinator does not know; loading skips such records, as
// Kafka does, so that a newer writer's records do not stop a load.
var ErrUnknownRecordType = errors.New("unknown __transaction_state record type")

// DecodedRecord is a decoded __transaction_state record.
type DecodedRecord struct {
	Key   kmsg.TxnMetadataKey
	Value *kmsg.TxnMetadataValue // nil: a tombstone
}

// DecodeRecord decodes a __transaction_state record. A nil value is a
// tombstone. The result does not alias key or value.
func DecodeRecord(key, value []byte) (DecodedRecord, error) {
	var d DecodedRecord
	if len(key) < 2 {
		return d, fmt.Errorf("__transaction_state key of %d bytes", len(key))
	}
	if v := int16(binary.BigEndian.Uint16(key)); v != keyVersion {
		return d, fmt.Errorf("key version %d: %w", v, ErrUnknownRecordType)
	}
	if err := d.Key.ReadFrom(key); err != nil {
		return d, fmt.Errorf("transaction metadata key: %w", err)
	}
	if value == nil {
		return d, nil
	}
	if len(value) < 2 {
		return d, fmt.Errorf("transaction metadata value of %d bytes", len(value))
	}
	ver := int16(binary.BigEndian.Uint16(value))
	if ver < 0 || ver > maxValueVersion {
		return d, fmt.Errorf("transaction metadata value version %d not supported (0-%d)", ver, maxValueVersion)
	}
	v := new(kmsg.TxnMetadataValue)
	if err := v.ReadFrom(value); err != nil {
		return d, fmt.Errorf("transaction metadata value v%d of %q: %w", ver, d.Key.TransactionalID, err)
	}
	if v.State < kmsg.TransactionState(Empty) || v.State > kmsg.TransactionState(PrepareEpochFence) {
		return d, fmt.Errorf("transaction metadata value of %q: unknown state %d", d.Key.TransactionalID, v.State)
	}
	// kmsg aliases tag bytes into the input.
	var tags kmsg.Tags
	v.UnknownTags.Each(func(k uint32, b []byte) { tags.Set(k, append([]byte{}, b...)) })
	v.UnknownTags = tags
	for i := range v.Topics {
		var tt kmsg.Tags
		v.Topics[i].UnknownTags.Each(func(k uint32, b []byte) { tt.Set(k, append([]byte{}, b...)) })
		v.Topics[i].UnknownTags = tt
	}
	d.Value = v
	return d, nil
}

// Encode is the record d decodes from, in d's own versions.
func (d DecodedRecord) Encode() Record {
	r := Record{Key: d.Key.AppendTo(nil)}
	if d.Value != nil {
		r.Value = d.Value.AppendTo(nil)
	}
	return r
}

// EncodeKey is the key of a transactional id's record.
func EncodeKey(txnID string) []byte {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: txnID}
	return k.AppendTo(nil)
}

// Tombstone deletes a transactional id (transactional.id.expiration.ms).
func Tombstone(txnID string) Record {
	return Record{Key: EncodeKey(txnID)}
}

// Metadata is the persisted state of a transactional id: the content of a
// value version 0 record.
type Metadata struct {
	ProducerID    int64
	ProducerEpoch int16
	TimeoutMs     int32
	State         State
	// Partitions of the open transaction; written as null in Empty, as
	// Kafka does, and empty once complete.
	Partitions []TopicPartition
	// LastUpdateMs and StartMs are Unix milliseconds; StartMs is -1
	// when no transaction was started since the last InitProducerId.
	LastUpdateMs int64
	StartMs      int64
}

// MetadataRecord is the record of txnID's metadata, in value version 0.
// Partitions are grouped by topic, topics and partitions sorted.
func MetadataRecord(txnID string, m Metadata) Record {
	v := kmsg.NewTxnMetadataValue()
	v.Version = valueVersion
	v.ProducerID = m.ProducerID
	v.ProducerEpoch = m.ProducerEpoch
	v.TimeoutMillis = m.TimeoutMs
	v.State = kmsg.TransactionState(m.State)
	v.LastUpdateTimestamp = m.LastUpdateMs
	v.StartTimestamp = m.StartMs
	if m.State != Empty {
		v.Topics = groupByTopic(m.Partitions)
	}
	return Record{Key: EncodeKey(txnID), Value: v.AppendTo(nil)}
}

func groupByTopic(parts []TopicPartition) []kmsg.TxnMetadataValueTopic {
	sorted := sortedPartitions(parts)
	out := []kmsg.TxnMetadataValueTopic{}
	for _, tp := range sorted {
		if n := len(out); n == 0 || out[n-1].Topic != tp.Topic {
			out = append(out, kmsg.TxnMetadataValueTopic{Topic: tp.Topic})
		}
		last := &out[len(out)-1]
		last.Partitions = append(last.Partitions, tp.Partition)
	}
	return out
}

func sortedPartitions(parts []TopicPartition) []TopicPartition {
	out := append([]TopicPartition(nil), parts...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// metadataOf is the Metadata a decoded value holds.
func metadataOf(v *kmsg.TxnMetadataValue) Metadata {
	m := Metadata{
		ProducerID:    v.ProducerID,
		ProducerEpoch: v.ProducerEpoch,
		TimeoutMs:     v.TimeoutMillis,
		State:         State(v.State),
		LastUpdateMs:  v.LastUpdateTimestamp,
		StartMs:       v.StartTimestamp,
	}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			m.Partitions = append(m.Partitions, TopicPartition{Topic: t.Topic, Partition: p})
		}
	}
	return m
}

// PartitionFor is the __transaction_state partition that holds txnID, as
// Kafka computes it: Utils.abs(transactionalId.hashCode) % partitions, with
// Java's String.hashCode over UTF-16 code units and Utils.abs mapping
// MinInt32 to 0. partitions must be positive (0 is returned otherwise).
func PartitionFor(txnID string, partitions int32) int32 {
	return coordkey.PartitionFor(txnID, partitions)
}
