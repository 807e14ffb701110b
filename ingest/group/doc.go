// Package group is the consumer group coordinator of the classic Kafka group
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
// OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, and
// the group side of TxnOffsetCommit) and the codec of the records it keeps
// in the internal `__consumer_offsets` topic.
//
// It owns the state of the groups of one `__consumer_offsets` partition: the
// members, generations, assignments and committed offsets. It performs no
// I/O: time comes from Config.Now and Tick, and every change that must
// survive a restart is handed, as records, to the Config.Appender, whose
// completion callback finishes the operation (a commit is answered, an
// assignment becomes visible) only once the records are durable. Load
// rebuilds the state from the partition's records.
//
// Transactional offset commits (TxnOffsetCommit, KIP-98) are appended as
// Transactional records of the producer and stay pending, invisible to
// FetchOffsets (FetchStableOffsets answers UNSTABLE_OFFSET_COMMIT), until
// the broker calls CompleteTxn once the producer's commit or abort marker
// is durable in the partition. The contract with the broker:
//   - Append's transactional records (one producer per call) go into one
//     transactional batch of that producer id and epoch; the log fences
//     stale epochs and the coordinator passes that error on;
//   - successive appends land in the log in call order, which the
//     coordinator uses to order ordinary and transactional commits of a
//     partition (the later record wins when a transaction commits);
//   - on load, the reader hands over every record in log order: those of
//     transactional batches with Transactional, ProducerID and
//     ProducerEpoch set, and each control batch (transaction marker) as a
//     Record with Marker and ProducerID and nil Key and Value;
//   - a CompleteTxn refused with NOT_COORDINATOR or
//     COORDINATOR_LOAD_IN_PROGRESS is answered to WriteTxnMarkers, so the
//     transaction coordinator writes the marker again once loaded.
//
// It must not know about sockets, request framing or the partition log: the
// wire layer translates requests to the types here and errors (kerr values)
// to response codes, and the broker appends the records.
package group
