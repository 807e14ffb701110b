package coordkey

import "testing"

func TestPartitionFor(t *testing.T) {
	for _, tt := range []struct {
		key   string
		parts int32
		want  int32
	}{
		{"", 50, 0},
		{"a", 50, 97 % 50},
		{"ab", 50, (97*31 + 98) % 50},
		// Negative hash codes, where Utils.abs and h&0x7fffffff differ:
		// Kafka places "my-group" in partition 12 of 50.
		{"my-group", 50, 12},
		{"kafka-txn-0", 50, 30},
		{"polygenelubricants", 7, 0}, // hashCode is MinInt32
		{"é€", 7, (233*31 + 0x20ac) % 7},
		{"\U0001F600", 50, (31*0xd83d + 0xde00) % 50}, // a surrogate pair
		{"x", 0, 0},
	} {
		if got := PartitionFor(tt.key, tt.parts); got != tt.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", tt.key, tt.parts, got, tt.want)
		}
	}
}
