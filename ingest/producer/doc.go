// Package producer owns idempotent-producer state for one partition and the
// allocation of producer ids for a broker.
//
// State follows Kafka's ProducerStateManager rules: per producer id it keeps
// the current epoch and the metadata of the last five batches appended, so
// that retries are answered with their original offsets, gaps are refused
// with OUT_OF_ORDER_SEQUENCE_NUMBER and zombie producers with an older epoch
// are fenced with INVALID_PRODUCER_EPOCH. State can be snapshotted to bytes
// (see AppendSnapshot) and restored at segment rolls and on recovery.
//
// Allocator hands out producer ids that never repeat across restarts or
// crashes, persisting the end of each block of ids before using it.
//
// This package must not do I/O other than the allocator's one small file,
// must not start goroutines, and must not know about segments, requests or
// the wire protocol: the partition log (ingest/log) calls State under its own
// append lock and decides where snapshots live.
package producer
