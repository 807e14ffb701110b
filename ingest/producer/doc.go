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
// For transactions (KIP-98) it keeps each producer's open transaction
// (opened by its first transactional batch, closed by a marker) and orders
// the open ones by first offset, so FirstUnstableOffset is amortized O(1)
// however many idempotent producers there are. CheckMarker fences markers
// of an older producer epoch (INVALID_PRODUCER_EPOCH) or an older
// coordinator epoch (TRANSACTION_COORDINATOR_FENCED); UpdateMarker reports
// the first offset of the transaction a marker closes, so the log can index
// aborted transactions. CheckFrom with OriginCoordinator skips sequence
// checks for batches a coordinator writes on a producer's behalf. Open
// transactions are never removed by Expire or RemoveBelow.
//
// Allocator hands out producer ids that never repeat across restarts or
// crashes, persisting the end of each block of ids before using it.
//
// This package must not do I/O other than the allocator's one small file,
// must not start goroutines, and must not know about segments, requests or
// the wire protocol: the partition log (ingest/log) calls State under its own
// append lock and decides where snapshots live.
package producer
