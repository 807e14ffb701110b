// Package txn is the Kafka transaction coordinator (KIP-98): InitProducerId
// with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
// transaction timeouts, DescribeTransactions and ListTransactions, and the
// codec of the records it keeps in the internal `__transaction_state` topic.
//
// A Coordinator owns the transactional ids of one `__transaction_state`
// partition (PartitionFor): their producer ids and epochs, the partitions of
// their open transactions and the transactions' states. It is a state
// machine that performs no I/O: time comes from Config.Now and Tick, every
// state change is handed, as a record, to the Config.Appender and becomes
// visible only once the Appender reports it durable, and the commit or abort
// markers of a transaction are handed to the Config.Markers writer, whose
// completion moves the transaction to CompleteCommit or CompleteAbort.
//
// It must not know about sockets, request framing, partition logs or
// metadata: the wire layer translates requests to the types here and errors
// (kerr values) to response codes per request version, and the broker
// appends the records and writes the markers at the partition leaders.
//
// Transaction version 2 (KIP-890: epoch bump on every commit, implicit
// AddPartitions) is not implemented; records are written in the layout of
// Kafka's transaction version 1 (value version 0).
package txn
