package group

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/coordkey"
)

// Key and value versions written to __consumer_offsets. They are the
// versions Kafka 2.3 and later write for classic groups, so Kafka's own
// tools (kafka-console-consumer with the offsets formatters) read them.
const (
	offsetKeyVersion   = 1 // 0 and 1 have the same layout
	groupKeyVersion    = 2
	offsetValueVersion = 3 // leader epoch; v4 (flexible, topic id) is read, not written
	groupValueVersion  = 3 // static instance ids; v4 (flexible) is read, not written
)

// Record is one record of a __consumer_offsets partition. A nil Value is a
// tombstone: compaction drops the key once the tombstone is old enough.
//
// Records the coordinator appends are ordinary (the zero producer fields)
// or, for TxnOffsetCommit, Transactional offset commits of ProducerID and
// ProducerEpoch. On load, the broker's reader sets Transactional,
// ProducerID and ProducerEpoch for the records of transactional batches,
// and turns each control batch (a transaction marker) into a Record with
// Marker and ProducerID set and Key and Value nil, in log order. ProducerID
// and ProducerEpoch mean nothing unless Transactional or Marker is set.
type Record struct {
	Key   []byte
	Value []byte

	// Transactional marks a record of a transactional batch: an offset
	// commit that stays pending until a marker of ProducerID follows it.
	Transactional bool
	ProducerID    int64
	ProducerEpoch int16
	// Marker, only on load, is the commit or abort marker of ProducerID.
	// The coordinator never appends markers: the broker writes them.
	Marker *TxnMarker
}

// TxnMarker is a transaction marker (a control batch's record) of the
// __consumer_offsets partition: it ends the transaction of the Record's
// ProducerID.
type TxnMarker struct {
	Commit bool // false: abort
}

// TxnOffsetCommitRecord is the record of a transactional offset commit of
// producer id pid and epoch, appended in a transactional batch.
func TxnOffsetCommitRecord(group, topic string, partition int32, o Offset, pid int64, epoch int16) Record {
	r := OffsetCommitRecord(group, topic, partition, o)
	r.Transactional, r.ProducerID, r.ProducerEpoch = true, pid, epoch
	return r
}

// ErrUnknownRecordType is returned (wrapped) by DecodeRecord for a key type
// this coordinator does not own: Kafka stores other records in the topic
// (KIP-848 consumer groups, share groups, transaction markers use other
// types), which a classic coordinator skips.
var ErrUnknownRecordType = errors.New("unknown __consumer_offsets record type")

// DecodedRecord is a decoded __consumer_offsets record: exactly one of
// Offset and Group is set.
type DecodedRecord struct {
	Offset *OffsetRecord
	Group  *GroupRecord
}

// OffsetRecord is a committed offset (key versions 0 and 1).
type OffsetRecord struct {
	Key   kmsg.OffsetCommitKey
	Value *kmsg.OffsetCommitValue // nil: the offset was deleted
}

// GroupRecord is a group's metadata (key version 2).
type GroupRecord struct {
	Key   kmsg.GroupMetadataKey
	Value *kmsg.GroupMetadataValue // nil: the group was deleted
}

// DecodeRecord decodes a __consumer_offsets record. A nil value is a
// tombstone. The result does not alias key or value.
func DecodeRecord(key, value []byte) (DecodedRecord, error) {
	if len(key) < 2 {
		return DecodedRecord{}, fmt.Errorf("__consumer_offsets key of %d bytes", len(key))
	}
	switch v := int16(binary.BigEndian.Uint16(key)); v {
	case 0, 1:
		r := &OffsetRecord{}
		if err := r.Key.ReadFrom(key); err != nil {
			return DecodedRecord{}, fmt.Errorf("offset commit key: %w", err)
		}
		if value != nil {
			r.Value = new(kmsg.OffsetCommitValue)
			if err := readOffsetValue(r.Value, value); err != nil {
				return DecodedRecord{}, err
			}
		}
		return DecodedRecord{Offset: r}, nil
	case 2:
		r := &GroupRecord{}
		if err := r.Key.ReadFrom(key); err != nil {
			return DecodedRecord{}, fmt.Errorf("group metadata key: %w", err)
		}
		if value != nil {
			r.Value = new(kmsg.GroupMetadataValue)
			if err := readGroupValue(r.Value, value); err != nil {
				return DecodedRecord{}, err
			}
		}
		return DecodedRecord{Group: r}, nil
	default:
		return DecodedRecord{}, fmt.Errorf("key version %d: %w", v, ErrUnknownRecordType)
	}
}

func valueVersion(value []byte) (int16, error) {
	if len(value) < 2 {
		return 0, fmt.Errorf("value of %d bytes", len(value))
	}
	return int16(binary.BigEndian.Uint16(value)), nil
}

func readOffsetValue(v *kmsg.OffsetCommitValue, value []byte) error {
	ver, err := valueVersion(value)
	if err != nil {
		return fmt.Errorf("offset commit %w", err)
	}
	if ver < 0 || ver > 4 {
		return fmt.Errorf("offset commit value version %d not supported (0-4)", ver)
	}
	if err := v.ReadFrom(value); err != nil {
		return fmt.Errorf("offset commit value v%d: %w", ver, err)
	}
	if ver < 3 {
		v.LeaderEpoch = -1
	}
	v.UnknownTags = cloneTags(v.UnknownTags)
	return nil
}

func readGroupValue(v *kmsg.GroupMetadataValue, value []byte) error {
	ver, err := valueVersion(value)
	if err != nil {
		return fmt.Errorf("group metadata %w", err)
	}
	if ver < 0 || ver > 4 {
		return fmt.Errorf("group metadata value version %d not supported (0-4)", ver)
	}
	if err := v.ReadFrom(value); err != nil {
		return fmt.Errorf("group metadata value v%d: %w", ver, err)
	}
	// kmsg aliases bytes fields into the input; callers keep them.
	for i := range v.Members {
		m := &v.Members[i]
		m.Subscription = append([]byte{}, m.Subscription...)
		m.Assignment = append([]byte{}, m.Assignment...)
		m.UnknownTags = cloneTags(m.UnknownTags)
	}
	v.UnknownTags = cloneTags(v.UnknownTags)
	return nil
}

func cloneTags(t kmsg.Tags) kmsg.Tags {
	var out kmsg.Tags
	t.Each(func(key uint32, b []byte) {
		out.Set(key, append([]byte{}, b...))
	})
	return out
}

// EncodeOffsetKey is the key of group's committed offset for a partition.
func EncodeOffsetKey(group, topic string, partition int32) []byte {
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: group, Topic: topic, Partition: partition}
	return k.AppendTo(nil)
}

// EncodeGroupKey is the key of group's metadata.
func EncodeGroupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: group}
	return k.AppendTo(nil)
}

// OffsetCommitRecord is the record of a committed offset.
func OffsetCommitRecord(group, topic string, partition int32, o Offset) Record {
	v := kmsg.OffsetCommitValue{
		Version:         offsetValueVersion,
		Offset:          o.Offset,
		LeaderEpoch:     o.LeaderEpoch,
		Metadata:        o.Metadata,
		CommitTimestamp: o.CommitTime.UnixMilli(),
	}
	if !o.ExpireTime.IsZero() {
		// Kafka writes v1 for commits with an explicit retention time
		// (OffsetCommit v2-v4); v1 has no leader epoch.
		v.Version = 1
		v.ExpireTimestamp = o.ExpireTime.UnixMilli()
	}
	return Record{Key: EncodeOffsetKey(group, topic, partition), Value: v.AppendTo(nil)}
}

// OffsetTombstone deletes group's committed offset for a partition.
func OffsetTombstone(group, topic string, partition int32) Record {
	return Record{Key: EncodeOffsetKey(group, topic, partition)}
}

// GroupTombstone deletes group's metadata.
func GroupTombstone(group string) Record {
	return Record{Key: EncodeGroupKey(group)}
}

// PartitionFor is the __consumer_offsets partition that holds group, as
// Kafka computes it: Utils.abs(groupId.hashCode) % partitions, with Java's
// String.hashCode over UTF-16 code units and Utils.abs mapping MinInt32 to
// 0, so clients and tools that compute it agree.
func PartitionFor(group string, partitions int32) int32 {
	return coordkey.PartitionFor(group, partitions)
}

// Encode is the record d decodes from, in d's own versions.
func (d DecodedRecord) Encode() Record {
	switch {
	case d.Offset != nil:
		r := Record{Key: d.Offset.Key.AppendTo(nil)}
		if d.Offset.Value != nil {
			r.Value = d.Offset.Value.AppendTo(nil)
		}
		return r
	case d.Group != nil:
		r := Record{Key: d.Group.Key.AppendTo(nil)}
		if d.Group.Value != nil {
			r.Value = d.Group.Value.AppendTo(nil)
		}
		return r
	}
	return Record{}
}
