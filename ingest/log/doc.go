// Package log owns the durable local log of one partition: segment files,
// their sparse indexes, producer-state snapshots, the leader-epoch and
// log-start-offset checkpoints, group-committed fdatasync (Syncer), recovery
// after a crash, key compaction of sealed segments (the cleaner, clean.go),
// the bounded descriptor cache for sealed segments, and the log side of
// transactions (aborted.go): the first unstable offset and the
// aborted-transaction index.
//
// Transactions (KIP-98): producer state tracks each producer's open
// transaction; FirstUnstableOffset reads the oldest one's first offset
// from an atomic kept current under Log.mu. An abort marker appended
// (Append, AppendReplica) while its producer has a transaction open since F
// records {producer, F, marker offset} in the segment holding the marker.
// The active segment keeps its entries in memory; every sealed segment gets
// a <base>.txnindex file at seal time (txnindex.go: magic "SLTX", version
// 1, CRC-32C), written even when empty so that a missing file means lost.
// Only a count and the smallest first offset per sealed segment stay in
// memory; AbortedTxns reads the files that can match through a small
// per-log cache. Recovery loads each sealed segment's file and replays,
// from a producer snapshot at or before the first missing or bad one,
// rewriting the lost files and rebuilding the active segment's entries;
// TruncateTo rebuilds the cut segment's entries with producer state; the
// cleaner concatenates the files of the segments it merges (offsets and
// markers do not move); retention and DeleteLocalBefore drop the files
// with their segments.
//
// It must not validate record batches (the broker does, before Append;
// Append only refuses a producer's control batch that is not a commit or
// abort marker; AppendReplica checks only CRCs and offset order), speak the
// Kafka protocol, or know about the replication protocol or the object
// store: a follower drives it with AppendReplica and TruncateTo
// (replica.go). All file access goes through ingest/log/vfs so that tests
// can model power loss.
//
// Lock order: Log.cleanMu, then Log.adminMu, then Log.syncMu, then Log.mu;
// FileCache.mu, Log.durMu and Log.txns.mu are leaves. Log.mu is never held
// across fsync; it is held across the write(2) of an append, the file
// creation of a roll and the renames of a cleaner swap only. syncMu (one
// sync round at a time) and adminMu (start-offset changes, retention,
// DeleteLocalBefore, ResetTo, TruncateTo, the commit and swap of a cleaner
// pass, Close) serialize work that includes fsync; Append and Read take
// neither. cleanMu is held for a whole cleaner pass (Clean), which Close
// cancels.
//
// For a remote tier, the log start offset is the start of the whole
// partition, and LocalStartOffset the first offset on local disk; see
// tier.go.
package log
