package txn

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

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

// Golden bytes, written by hand from Kafka's schemas
// (TransactionLogKey.json, TransactionLogValue.json).
const (
	goldenKey = "0000 | 0002 7478" // version 0, transactional id "tx"
	// producer id 1000, epoch 3, timeout 60000, Ongoing, topic "t"
	// partitions [0 2], topic "u" partition [1], last update 2000, start 1000
	goldenOngoingV0 = "0000 | 00000000000003e8 | 0003 | 0000ea60 | 01 | 00000002" +
		"| 0001 74 | 00000002 00000000 00000002 | 0001 75 | 00000001 00000001" +
		"| 00000000000007d0 | 00000000000003e8"
	// Empty after InitProducerId: null partitions, start -1
	goldenEmptyV0 = "0000 | 00000000000003e8 | 0000 | 0000ea60 | 00 | ffffffff | 00000000000007d0 | ffffffffffffffff"
	// CompleteCommit: an empty partition list, start kept
	goldenCompleteV0 = "0000 | 00000000000003e8 | 0003 | 0000ea60 | 04 | 00000000 | 0000000000000bb8 | 00000000000003e8"
	// v1 (flexible, KIP-890): PrepareCommit, topic "t" partition [0],
	// tagged PreviousProducerID 999 and ClientTransactionVersion 2
	goldenPrepareV1 = "0001 | 00000000000003e8 | 0003 | 0000ea60 | 02 | 02 | 02 74 | 02 00000000 | 00" +
		"| 00000000000007d0 | 00000000000003e8 | 02 | 00 08 00000000000003e7 | 02 02 0002"
)

func TestDecodeGolden(t *testing.T) {
	value := func(mod func(v *kmsg.TxnMetadataValue)) *kmsg.TxnMetadataValue {
		v := kmsg.NewTxnMetadataValue()
		v.ProducerID, v.ProducerEpoch, v.TimeoutMillis = 1000, 3, 60000
		v.LastUpdateTimestamp, v.StartTimestamp = 2000, 1000
		mod(&v)
		return &v
	}
	key := kmsg.TxnMetadataKey{Version: 0, TransactionalID: "tx"}
	tests := []struct {
		name      string
		value     string
		tombstone bool
		want      *kmsg.TxnMetadataValue
		meta      Metadata
	}{
		{"ongoing v0", goldenOngoingV0, false, value(func(v *kmsg.TxnMetadataValue) {
			v.State = 1
			v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "t", Partitions: []int32{0, 2}}, {Topic: "u", Partitions: []int32{1}}}
		}), Metadata{ProducerID: 1000, ProducerEpoch: 3, TimeoutMs: 60000, State: Ongoing,
			Partitions: []TopicPartition{tp("t", 0), tp("t", 2), tp("u", 1)}, LastUpdateMs: 2000, StartMs: 1000}},
		{"empty v0", goldenEmptyV0, false, value(func(v *kmsg.TxnMetadataValue) {
			v.ProducerEpoch, v.State, v.StartTimestamp = 0, 0, -1
		}), Metadata{ProducerID: 1000, TimeoutMs: 60000, State: Empty, LastUpdateMs: 2000, StartMs: -1}},
		{"complete v0", goldenCompleteV0, false, value(func(v *kmsg.TxnMetadataValue) {
			v.State, v.LastUpdateTimestamp = 4, 3000
			v.Topics = []kmsg.TxnMetadataValueTopic{}
		}), Metadata{ProducerID: 1000, ProducerEpoch: 3, TimeoutMs: 60000, State: CompleteCommit,
			LastUpdateMs: 3000, StartMs: 1000}},
		{"prepare v1", goldenPrepareV1, false, value(func(v *kmsg.TxnMetadataValue) {
			v.Version, v.State = 1, 2
			v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "t", Partitions: []int32{0}}}
			v.PreviousProducerID, v.ClientTransactionVersion = 999, 2
		}), Metadata{}},
		{"tombstone", "", true, nil, Metadata{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			if !tt.tombstone {
				raw = h(t, tt.value)
			}
			got, err := DecodeRecord(h(t, goldenKey), raw)
			if err != nil {
				t.Fatal(err)
			}
			if got.Key != key {
				t.Fatalf("key %+v", got.Key)
			}
			if !reflect.DeepEqual(got.Value, tt.want) {
				t.Fatalf("value\n got %+v\nwant %+v", got.Value, tt.want)
			}
			enc := got.Encode()
			if !bytes.Equal(enc.Key, h(t, goldenKey)) || !bytes.Equal(enc.Value, raw) || (enc.Value == nil) != tt.tombstone {
				t.Fatalf("re-encoded %x / %x", enc.Key, enc.Value)
			}
			if tt.want == nil || tt.want.Version != 0 {
				return
			}
			// What the coordinator writes for that state is the same bytes.
			if m := metadataOf(got.Value); !reflect.DeepEqual(m, tt.meta) {
				t.Fatalf("metadata %+v, want %+v", m, tt.meta)
			}
			if r := MetadataRecord("tx", tt.meta); !bytes.Equal(r.Value, raw) || !bytes.Equal(r.Key, h(t, goldenKey)) {
				t.Fatalf("MetadataRecord wrote %x", r.Value)
			}
		})
	}
	if r := Tombstone("tx"); !bytes.Equal(r.Key, h(t, goldenKey)) || r.Value != nil {
		t.Fatalf("tombstone %x %x", r.Key, r.Value)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name       string
		key, value string
		unknown    bool
	}{
		{"short key", "00", "", false},
		{"key version 1", "0001 | 0002 7478", goldenEmptyV0, true},
		{"truncated key", "0000 | 0005 7478", "", false},
		{"value version 2", goldenKey, "0002" + goldenEmptyV0[4:], false},
		{"short value", goldenKey, "00", false},
		{"truncated value", goldenKey, "0000 | 00000000000003e8 | 0000 | 0000", false},
		{"truncated partitions", goldenKey, "0000 | 00000000000003e8 | 0000 | 0000ea60 | 01 | 00000001 | 0001 74 | 00000005 00000000", false},
		{"unknown state", goldenKey, "0000 | 00000000000003e8 | 0000 | 0000ea60 | 08 | ffffffff | 00000000000007d0 | ffffffffffffffff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := h(t, tt.value)
			if tt.value == "" {
				value = []byte{} // present but empty: not a tombstone
			}
			_, err := DecodeRecord(h(t, tt.key), value)
			if err == nil {
				t.Fatal("decoded")
			}
			if got := errorsIsUnknown(err); got != tt.unknown {
				t.Fatalf("unknown record type %v, want %v (%v)", got, tt.unknown, err)
			}
		})
	}
}

func errorsIsUnknown(err error) bool {
	for e := err; e != nil; {
		if e == ErrUnknownRecordType {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

func FuzzDecodeRecord(f *testing.F) {
	for _, v := range []string{goldenOngoingV0, goldenEmptyV0, goldenCompleteV0, goldenPrepareV1} {
		f.Add(h(f, goldenKey), h(f, v))
	}
	f.Add(h(f, goldenKey), []byte(nil))
	f.Add([]byte{0, 1, 0, 0}, []byte{0, 0})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		d, err := DecodeRecord(key, value)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		r := d.Encode()
		d2, err := DecodeRecord(r.Key, r.Value)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip\n got %+v %+v\nwant %+v %+v", d2.Key, d2.Value, d.Key, d.Value)
		}
		if d.Value != nil {
			_ = metadataOf(d.Value)
		}
	})
}

func TestPartitionFor(t *testing.T) {
	tests := []struct {
		id    string
		parts int32
		want  int32
	}{
		// Computed with Kafka's Utils.abs(id.hashCode()) % 50; both hash
		// codes are negative, where abs and &0x7fffffff differ.
		{"my-group", 50, 12},
		{"kafka-txn-0", 50, 30},
		{"tx", 50, 16},                                // hashCode 3716
		{"", 50, 0},                                   // hashCode 0
		{"é€", 7, (233*31 + 0x20ac) % 7},              // UTF-16 units 0x00e9 0x20ac
		{"\U0001F600", 50, (31*0xd83d + 0xde00) % 50}, // a surrogate pair
		{"tx", 0, 0},                                  // no partitions: 0, no panic
	}
	for _, tt := range tests {
		if got := PartitionFor(tt.id, tt.parts); got != tt.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", tt.id, tt.parts, got, tt.want)
		}
	}
	// MinInt32 hash maps to partition 0 (Utils.abs), not a negative one.
	// "polygenelubricants" has Java hashCode -2^31.
	if got := PartitionFor("polygenelubricants", 7); got != 0 {
		t.Errorf("MinInt32 hash: partition %d", got)
	}
}
