package group

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// h decodes hex written with spaces and | separators for readability.
func h(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func str(s string) *string { return &s }

// Golden bytes, written by hand from Kafka's schemas
// (OffsetCommitKey/Value.json, GroupMetadataKey/Value.json).
const (
	goldenOffsetKeyV1 = "0001 | 0001 67 | 0001 74 | 00000003" // version 1, group "g", topic "t", partition 3
	goldenOffsetKeyV0 = "0000 | 0001 67 | 0001 74 | 00000003"
	// offset 42, epoch 5, metadata "m", commit 1000 ms
	goldenOffsetValueV3 = "0003 | 000000000000002a | 00000005 | 0001 6d | 00000000000003e8"
	goldenOffsetValueV0 = "0000 | 000000000000002a | 0001 6d | 00000000000003e8"
	// v1: plus expire 2000 ms
	goldenOffsetValueV1 = "0001 | 000000000000002a | 0001 6d | 00000000000003e8 | 00000000000007d0"
	// v4 (flexible): compact string, tagged topic id 0x01..0x10
	goldenOffsetValueV4 = "0004 | 000000000000002a | 00000005 | 02 6d | 00000000000003e8 | 01 00 10 0102030405060708090a0b0c0d0e0f10"
	goldenGroupKey      = "0002 | 0002 6767" // group "gg"
	// protocol type "consumer", generation 7, protocol "range", leader "a",
	// state time 1000, one member "a" instance "i" client "c" host "h",
	// rebalance 30000, session 10000, subscription 0102, assignment 03
	goldenGroupValueV3 = "0003 | 0008 636f6e73756d6572 | 00000007 | 0005 72616e6765 | 0001 61 | 00000000000003e8 | 00000001" +
		"| 0001 61 | 0001 69 | 0001 63 | 0001 68 | 00007530 | 00002710 | 00000002 0102 | 00000001 03"
	goldenGroupValueV0 = "0000 | 0008 636f6e73756d6572 | 00000007 | 0005 72616e6765 | 0001 61 | 00000001" +
		"| 0001 61 | 0001 63 | 0001 68 | 00002710 | 00000002 0102 | 00000001 03"
	goldenGroupValueV4 = "0004 | 09 636f6e73756d6572 | 00000007 | 06 72616e6765 | 02 61 | 00000000000003e8 | 02" +
		"| 02 61 | 02 69 | 02 63 | 02 68 | 00007530 | 00002710 | 03 0102 | 02 03 | 00 | 00"
	// an empty group after its last member left: generation 8, no protocol or leader
	goldenGroupValueEmpty = "0003 | 0008 636f6e73756d6572 | 00000008 | ffff | ffff | 00000000000007d0 | 00000000"
)

func TestDecodeGolden(t *testing.T) {
	member := func(v3 bool) kmsg.GroupMetadataValueMember {
		m := kmsg.GroupMetadataValueMember{MemberID: "a", ClientID: "c", ClientHost: "h", RebalanceTimeoutMillis: 30000,
			SessionTimeoutMillis: 10000, Subscription: []byte{1, 2}, Assignment: []byte{3}}
		if v3 {
			m.InstanceID = str("i")
		} else {
			m.RebalanceTimeoutMillis = -1
		}
		return m
	}
	tests := []struct {
		name       string
		key, value string
		tombstone  bool
		want       DecodedRecord
	}{
		{"offset v1/v3", goldenOffsetKeyV1, goldenOffsetValueV3, false, DecodedRecord{Offset: &OffsetRecord{
			Key:   kmsg.OffsetCommitKey{Version: 1, Group: "g", Topic: "t", Partition: 3},
			Value: &kmsg.OffsetCommitValue{Version: 3, Offset: 42, LeaderEpoch: 5, Metadata: "m", CommitTimestamp: 1000}}}},
		{"offset v0/v0", goldenOffsetKeyV0, goldenOffsetValueV0, false, DecodedRecord{Offset: &OffsetRecord{
			Key:   kmsg.OffsetCommitKey{Version: 0, Group: "g", Topic: "t", Partition: 3},
			Value: &kmsg.OffsetCommitValue{Version: 0, Offset: 42, LeaderEpoch: -1, Metadata: "m", CommitTimestamp: 1000}}}},
		{"offset v1 expire", goldenOffsetKeyV1, goldenOffsetValueV1, false, DecodedRecord{Offset: &OffsetRecord{
			Key:   kmsg.OffsetCommitKey{Version: 1, Group: "g", Topic: "t", Partition: 3},
			Value: &kmsg.OffsetCommitValue{Version: 1, Offset: 42, LeaderEpoch: -1, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: 2000}}}},
		{"offset v4 topic id", goldenOffsetKeyV1, goldenOffsetValueV4, false, DecodedRecord{Offset: &OffsetRecord{
			Key: kmsg.OffsetCommitKey{Version: 1, Group: "g", Topic: "t", Partition: 3},
			Value: &kmsg.OffsetCommitValue{Version: 4, Offset: 42, LeaderEpoch: 5, Metadata: "m", CommitTimestamp: 1000,
				TopicID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}}}},
		{"offset tombstone", goldenOffsetKeyV1, "", true, DecodedRecord{Offset: &OffsetRecord{
			Key: kmsg.OffsetCommitKey{Version: 1, Group: "g", Topic: "t", Partition: 3}}}},
		{"group v3", goldenGroupKey, goldenGroupValueV3, false, DecodedRecord{Group: &GroupRecord{
			Key: kmsg.GroupMetadataKey{Version: 2, Group: "gg"},
			Value: &kmsg.GroupMetadataValue{Version: 3, ProtocolType: "consumer", Generation: 7, Protocol: str("range"),
				Leader: str("a"), CurrentStateTimestamp: 1000, Members: []kmsg.GroupMetadataValueMember{member(true)}}}}},
		{"group v0", goldenGroupKey, goldenGroupValueV0, false, DecodedRecord{Group: &GroupRecord{
			Key: kmsg.GroupMetadataKey{Version: 2, Group: "gg"},
			Value: &kmsg.GroupMetadataValue{Version: 0, ProtocolType: "consumer", Generation: 7, Protocol: str("range"),
				Leader: str("a"), CurrentStateTimestamp: -1, Members: []kmsg.GroupMetadataValueMember{member(false)}}}}},
		{"group v4", goldenGroupKey, goldenGroupValueV4, false, DecodedRecord{Group: &GroupRecord{
			Key: kmsg.GroupMetadataKey{Version: 2, Group: "gg"},
			Value: &kmsg.GroupMetadataValue{Version: 4, ProtocolType: "consumer", Generation: 7, Protocol: str("range"),
				Leader: str("a"), CurrentStateTimestamp: 1000, Members: []kmsg.GroupMetadataValueMember{member(true)}}}}},
		{"group empty", goldenGroupKey, goldenGroupValueEmpty, false, DecodedRecord{Group: &GroupRecord{
			Key: kmsg.GroupMetadataKey{Version: 2, Group: "gg"},
			Value: &kmsg.GroupMetadataValue{Version: 3, ProtocolType: "consumer", Generation: 8,
				CurrentStateTimestamp: 2000}}}},
		{"group tombstone", goldenGroupKey, "", true, DecodedRecord{Group: &GroupRecord{
			Key: kmsg.GroupMetadataKey{Version: 2, Group: "gg"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var value []byte
			if !tt.tombstone {
				value = h(t, tt.value)
			}
			got, err := DecodeRecord(h(t, tt.key), value)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v %+v %+v %+v\nwant %+v %+v %+v %+v", got.Offset, got.Group, deref(got), nil, tt.want.Offset, tt.want.Group, deref(tt.want), nil)
			}
			enc := got.Encode()
			if !bytes.Equal(enc.Key, h(t, tt.key)) || !bytes.Equal(enc.Value, value) || (enc.Value == nil) != tt.tombstone {
				t.Fatalf("re-encoded %x / %x", enc.Key, enc.Value)
			}
		})
	}
}

func deref(d DecodedRecord) any {
	if d.Offset != nil && d.Offset.Value != nil {
		return *d.Offset.Value
	}
	if d.Group != nil && d.Group.Value != nil {
		return *d.Group.Value
	}
	return nil
}

func TestEncodeGolden(t *testing.T) {
	r := OffsetCommitRecord("g", "t", 3, Offset{Offset: 42, LeaderEpoch: 5, Metadata: "m", CommitTime: time.UnixMilli(1000)})
	if !bytes.Equal(r.Key, h(t, goldenOffsetKeyV1)) || !bytes.Equal(r.Value, h(t, goldenOffsetValueV3)) {
		t.Fatalf("offset record %x %x", r.Key, r.Value)
	}
	r = OffsetCommitRecord("g", "t", 3, Offset{Offset: 42, LeaderEpoch: 5, Metadata: "m", CommitTime: time.UnixMilli(1000), ExpireTime: time.UnixMilli(2000)})
	if !bytes.Equal(r.Value, h(t, goldenOffsetValueV1)) {
		t.Fatalf("offset v1 record %x", r.Value)
	}
	if r := OffsetTombstone("g", "t", 3); !bytes.Equal(r.Key, h(t, goldenOffsetKeyV1)) || r.Value != nil {
		t.Fatalf("offset tombstone %x %x", r.Key, r.Value)
	}
	if r := GroupTombstone("gg"); !bytes.Equal(r.Key, h(t, goldenGroupKey)) || r.Value != nil {
		t.Fatalf("group tombstone %x %x", r.Key, r.Value)
	}

	g := newGroup("gg", time.UnixMilli(1000))
	g.protocolType, g.protocol, g.generation = "consumer", "range", 7
	g.addMember(&member{id: "a", instanceID: "i", clientID: "c", clientHost: "h", rebalanceTimeout: 30 * time.Second,
		sessionTimeout: 10 * time.Second, protocols: []Protocol{{"roundrobin", []byte{9}}, {"range", []byte{1, 2}}}, assignment: []byte{3}})
	r = g.metadataRecord(nil)
	if !bytes.Equal(r.Key, h(t, goldenGroupKey)) || !bytes.Equal(r.Value, h(t, goldenGroupValueV3)) {
		t.Fatalf("group record %x\nwant         %x", r.Value, h(t, goldenGroupValueV3))
	}
	g.removeMember("a")
	g.protocol, g.generation = "", 8
	g.transition(Empty, time.UnixMilli(2000))
	if r := g.metadataRecord(nil); !bytes.Equal(r.Value, h(t, goldenGroupValueEmpty)) {
		t.Fatalf("empty group record %x", r.Value)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct{ name, key, value string }{
		{"short key", "00", "0003"},
		{"truncated key", "0001 0005 6767", ""},
		{"trailing key bytes", goldenOffsetKeyV1 + "00", ""},
		{"short value", goldenOffsetKeyV1, "00"},
		{"offset value v5", goldenOffsetKeyV1, "0005" + goldenOffsetValueV3[4:]},
		{"negative offset value version", goldenOffsetKeyV1, "ffff"},
		{"group value v5", goldenGroupKey, "0005"},
		{"truncated group value", goldenGroupKey, goldenGroupValueV3[:40]},
		{"huge member count", goldenGroupKey, "0003 | 0000 | 00000000 | ffff | ffff | 0000000000000000 | 7fffffff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRecord(h(t, tt.key), h(t, tt.value))
			if err == nil || errors.Is(err, ErrUnknownRecordType) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if _, err := DecodeRecord(h(t, "0003 0001 67"), nil); !errors.Is(err, ErrUnknownRecordType) {
		t.Fatalf("key type 3: %v", err)
	}
}

func TestPartitionFor(t *testing.T) {
	// Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1] over UTF-16
	// units in int arithmetic, then Utils.abs(h) % partitions.
	for _, tt := range []struct {
		group string
		want  int32
	}{
		{"", 0},
		{"a", 97 % 50},
		{"ab", (97*31 + 98) % 50},
		// Negative hash codes, where abs and h&0x7fffffff differ (Kafka
		// places "my-group" in partition 12 of 50).
		{"my-group", 12},
		{"kafka-txn-0", 30},
		// Java hashCode -2^31: Utils.abs maps it to 0.
		{"polygenelubricants", 0},
	} {
		if got := PartitionFor(tt.group, 50); got != tt.want {
			t.Errorf("PartitionFor(%q) = %d, want %d", tt.group, got, tt.want)
		}
	}
	// A long id overflows int32 and must stay in range.
	for _, g := range []string{strings.Repeat("z", 100), "grüße-€-𝄞"} {
		if p := PartitionFor(g, 50); p < 0 || p >= 50 {
			t.Errorf("PartitionFor(%q) = %d", g, p)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, kv := range [][2]string{
		{goldenOffsetKeyV1, goldenOffsetValueV3}, {goldenOffsetKeyV0, goldenOffsetValueV0},
		{goldenOffsetKeyV1, goldenOffsetValueV1}, {goldenOffsetKeyV1, goldenOffsetValueV4},
		{goldenGroupKey, goldenGroupValueV3}, {goldenGroupKey, goldenGroupValueV0},
		{goldenGroupKey, goldenGroupValueV4}, {goldenGroupKey, goldenGroupValueEmpty},
	} {
		f.Add(h(f, kv[0]), h(f, kv[1]), false)
		f.Add(h(f, kv[0]), []byte(nil), true)
	}
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		d, err := DecodeRecord(key, value)
		if err != nil {
			return
		}
		// What is accepted re-encodes to bytes that decode again and are
		// a fixed point of decode+encode.
		r1 := d.Encode()
		if (r1.Value == nil) != tombstone {
			t.Fatalf("tombstone %v re-encoded value %x", tombstone, r1.Value)
		}
		d2, err := DecodeRecord(r1.Key, r1.Value)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v (%x / %x)", err, r1.Key, r1.Value)
		}
		r2 := d2.Encode()
		if !bytes.Equal(r1.Key, r2.Key) || !bytes.Equal(r1.Value, r2.Value) {
			t.Fatalf("not a fixed point:\n%x / %x\n%x / %x", r1.Key, r1.Value, r2.Key, r2.Value)
		}
	})
}
