// Package compactor decides what retention, key compaction and merging of
// small remote objects would do to one partition, on both tiers, as plain
// functions over plain data.
//
// The inputs describe the partition as its owner sees it at one moment: the
// local segments (Segment with Tier Local, the last one the active segment),
// the remote segment objects the newest manifest names (Tier Remote), the
// log start offset, the high watermark and the cleaner's progress
// (Partition), and the topic's settings with Kafka's meanings (Config).
// The outputs are plans: RetentionPlan (PlanRetention), CompactionPlan
// (PlanCompaction, PlanRemoteCompaction) and MergePlan (PlanMerge). Each
// plan's String method is the exact text a dry run prints, so what an
// operator is shown is what the broker then does.
//
// The package does no I/O, starts no goroutines, reads no clock (callers
// pass now) and imports only the standard library: it knows neither the
// local log nor the bucket. Callers convert their own types into Segment
// and Partition, execute a plan (delete files, publish a manifest, rewrite
// segments) and re-check what they delete under their own locks; a plan is
// a snapshot and never a licence to delete what has changed since.
package compactor
