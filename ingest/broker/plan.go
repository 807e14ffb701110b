package broker

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/topicconfig"
)

// TopicPlan is a dry run of retention and compaction over one topic: what
// the next retention pass and the next cleaner pass would do to each
// partition, on both tiers, with the topic's configs as they are or as
// proposed. Making it deletes nothing.
type TopicPlan struct {
	Topic string
	// Now is the clock the local planners used. A tiered partition's
	// retention is planned by its tier at the tier's clock (the wall
	// clock in a running broker), as the tier then applies it.
	Now time.Time
	// Set are the proposed values the plan was made with, on top of the
	// topic's overrides; Configs are the overrides that result (what the
	// topic would hold after altering its configs with Set).
	Set, Configs map[string]string
	// Partitions are ordered by index.
	Partitions []PartitionPlan
}

// PartitionPlan is the dry run of one partition.
type PartitionPlan struct {
	Partition int32
	// Retention is what the next retention pass deletes: on a tiered
	// partition the manifest entries that leave the manifest and the local
	// segments that go (tier.Partition.PlanRetention); otherwise the local
	// segments past retention.
	Retention compactor.RetentionPlan
	// Compaction is what the next pass of the log cleaner rewrites on the
	// local log; RemoteCompaction, for a tiered partition, what the next
	// compaction pass over the bucket's history rewrites (nil otherwise).
	Compaction       compactor.CompactionPlan
	RemoteCompaction *compactor.CompactionPlan
}

// RetentionPlan plans retention and compaction for every partition of
// topic with the topic's current config overrides plus set (proposed
// values by Kafka config name, which win over the topic's own), as the
// broker would apply them now. The resulting overrides are validated as
// AlterConfigs validates them: an invalid value, an unknown name, or a
// rule between configs that does not hold gives a *topicconfig.Error naming
// the config (INVALID_CONFIG). An unknown topic gives
// ErrUnknownTopicOrPartition.
//
// It is a pure read: it runs the planners the retention, tier and cleaner
// passes run, over each partition as it is now, and never deletes, rolls
// or uploads. The plan is a snapshot: produce, uploads and time moving on
// change what a later pass does.
func (b *Broker) RetentionPlan(topic string, set map[string]string, now time.Time) (TopicPlan, error) {
	t, ok := b.meta.Topic(topic)
	if !ok {
		return TopicPlan{}, fmt.Errorf("%w: %s", ErrUnknownTopicOrPartition, topic)
	}
	configs := maps.Clone(t.Configs)
	if configs == nil {
		configs = map[string]string{}
	}
	maps.Copy(configs, set)
	if err := topicconfig.Validate(configs, b.configOptions()); err != nil {
		return TopicPlan{}, err
	}
	tc := topicconfig.Resolve(configs)
	if topicconfig.Resolve(t.Configs).RemoteStorage && !tc.RemoteStorage {
		return TopicPlan{}, &topicconfig.Error{Name: topicconfig.RemoteStorageEnable, Value: configs[topicconfig.RemoteStorageEnable],
			Reason: "tiered storage cannot be turned off for a topic once on (its history lives in the bucket)"}
	}
	cfg, err := plannerConfig(tc)
	if err != nil {
		return TopicPlan{}, &topicconfig.Error{Name: topicconfig.CleanupPolicy, Value: tc.CleanupPolicy, Reason: err.Error()}
	}
	plan := TopicPlan{Topic: topic, Now: now, Set: maps.Clone(set), Configs: configs}
	if plan.Set == nil {
		plan.Set = map[string]string{}
	}
	for i := range t.Partitions {
		p, err := b.Partition(topic, int32(i))
		if err != nil {
			return TopicPlan{}, fmt.Errorf("%w: %s-%d", err, topic, i)
		}
		plan.Partitions = append(plan.Partitions, p.plan(cfg, tc.SegmentBytes, now))
	}
	return plan, nil
}

// plan is the dry run of one partition with the planner config cfg (see
// plannerConfig) and the topic's segment.bytes.
func (p *Partition) plan(cfg compactor.Config, segmentBytes int64, now time.Time) PartitionPlan {
	out := PartitionPlan{Partition: p.Index}
	tp := p.tiered()
	if tp != nil {
		out.Retention = tp.PlanRetention(tierRetention(cfg))
	} else {
		// Without a tier attached (a topic that is not tiered, or one a
		// proposed remote.storage.enable=true would make tiered) the plan
		// reads the local log; for a tiered config nothing is in the
		// bucket yet, so local retention deletes nothing.
		out.Retention = compactor.PlanRetention(p.log.RetentionInput(), cfg, now)
	}
	out.Compaction = compactor.PlanCompaction(p.log.RetentionInput(), cfg, now)
	if tp != nil && cfg.CleanupPolicy.Compacts() {
		rc := cfg
		rc.SegmentBytes = segmentBytes // the bucket's compaction may group objects
		rp := tp.PlanCompaction(rc)
		out.RemoteCompaction = &rp
	}
	return out
}

// String is the plan as `strata retention plan` prints it: a header naming
// the topic, the clock and the proposed configs, then per partition its
// retention and compaction plans (compactor's text, indented).
func (tp TopicPlan) String() string {
	var b strings.Builder
	parts := "partitions"
	if len(tp.Partitions) == 1 {
		parts = "partition"
	}
	fmt.Fprintf(&b, "topic %s: %d %s, planned at %s\n", tp.Topic, len(tp.Partitions), parts, tp.Now.UTC().Format("2006-01-02T15:04:05.000Z"))
	if len(tp.Set) == 0 {
		b.WriteString("configs: current\n")
	} else {
		keys := slices.Sorted(maps.Keys(tp.Set))
		for i, k := range keys {
			keys[i] = k + "=" + tp.Set[k]
		}
		fmt.Fprintf(&b, "configs: current with %s (proposed, not applied)\n", strings.Join(keys, ", "))
	}
	for _, pp := range tp.Partitions {
		fmt.Fprintf(&b, "\npartition %d\n", pp.Partition)
		indent(&b, pp.Retention.String())
		indent(&b, pp.Compaction.String())
		if pp.RemoteCompaction != nil {
			indent(&b, pp.RemoteCompaction.String())
		}
	}
	return b.String()
}

func indent(b *strings.Builder, text string) {
	for line := range strings.Lines(text) {
		b.WriteString("  ")
		b.WriteString(line)
	}
}
