// Package group is the consumer group coordinator of the classic Kafka group
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
// OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete) and
// the codec of the records it keeps in the internal `__consumer_offsets`
// topic.
//
// It owns the state of the groups of one `__consumer_offsets` partition: the
// members, generations, assignments and committed offsets. It performs no
// I/O: time comes from Config.Now and Tick, and every change that must
// survive a restart is handed, as records, to the Config.Appender, whose
// completion callback finishes the operation (a commit is answered, an
// assignment becomes visible) only once the records are durable. Load
// rebuilds the state from the partition's records.
//
// It must not know about sockets, request framing or the partition log: the
// wire layer translates requests to the types here and errors (kerr values)
// to response codes, and the broker appends the records.
package group
