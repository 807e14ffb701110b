// Package coordkey places coordinator keys (group ids, transactional ids)
// on the partitions of their internal topic exactly as Kafka does, so that
// clients and tools that compute the placement agree with the broker.
package coordkey

import "unicode/utf16"

// PartitionFor is Kafka's Utils.abs(key.hashCode()) % partitions: Java's
// String.hashCode over UTF-16 code units in int32 arithmetic, with
// Utils.abs mapping MinInt32 to 0. partitions must be positive (0 is
// returned otherwise).
func PartitionFor(key string, partitions int32) int32 {
	if partitions <= 0 {
		return 0
	}
	var h int32
	for _, c := range utf16.Encode([]rune(key)) {
		h = 31*h + int32(c)
	}
	switch {
	case h == -1<<31:
		h = 0
	case h < 0:
		h = -h
	}
	return h % partitions
}
