// Package log owns the durable local log of one partition: segment files,
// their sparse indexes, producer-state snapshots, the leader-epoch and
// log-start-offset checkpoints, group-committed fdatasync (Syncer), recovery
// after a crash, key compaction of sealed segments (the cleaner, clean.go),
// and the bounded descriptor cache for sealed segments.
//
// It must not validate record batches (the broker does, before Append;
// AppendReplica checks only CRCs and offset order), speak the Kafka protocol,
// or know about the replication protocol or the object store: a follower
// drives it with AppendReplica and TruncateTo (replica.go). All file access
// goes through ingest/log/vfs so that tests can model power loss.
//
// Lock order: Log.cleanMu, then Log.adminMu, then Log.syncMu, then Log.mu;
// FileCache.mu and Log.durMu are leaves. Log.mu is never held across fsync;
// it is held across the write(2) of an append, the file creation of a roll
// and the renames of a cleaner swap only. syncMu (one sync round at a time)
// and adminMu (start-offset changes, retention, DeleteLocalBefore, ResetTo,
// TruncateTo, the commit and swap of a cleaner pass, Close) serialize work that
// includes fsync; Append and Read take neither. cleanMu is held for a whole
// cleaner pass (Clean), which Close cancels.
//
// For a remote tier, the log start offset is the start of the whole
// partition, and LocalStartOffset the first offset on local disk; see
// tier.go.
package log
