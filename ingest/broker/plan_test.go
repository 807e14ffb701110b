package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/topicconfig"
	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/objstore/fs"
)

// openPlanBroker opens a broker whose background passes never run during
// a test (tests call them), with an fs tier when tiered is set.
func openPlanBroker(t *testing.T, tiered bool) *Broker {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{
		DataDir: dir, MinFreeBytes: 1 << 20, Logger: quiet,
		RetentionCheckInterval: time.Hour, TierCheckInterval: time.Hour, CleanerBackoff: time.Hour,
	}
	if tiered {
		st, err := fs.New(filepath.Join(dir, "objects"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		tm, err := tier.NewManager(context.Background(), tier.Config{Store: st, TempDir: filepath.Join(dir, "tier-tmp"), ChunkTarget: 1024, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tm.Close() })
		cfg.Tier = tm
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// producePlanData appends n single-record batches of about 300 bytes with
// timestamp ts and keys "k<i mod keys>", and waits until they are durable.
func producePlanData(t *testing.T, p *Partition, n, keys int, ts time.Time) {
	t.Helper()
	for i := range n {
		rec := batch.Record{Key: []byte{'k', byte('a' + i%keys)}, Value: make([]byte, 300)}
		if _, err := p.Produce(batch.Build(batch.BuildOptions{BaseTimestamp: ts.UnixMilli()}, rec), true); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitDurable(ctx, p.LogEndOffset()-1); err != nil {
		t.Fatal(err)
	}
}

// localNames is the names of the partition's local segments.
func localNames(p *Partition) []string {
	var out []string
	for _, s := range p.log.RetentionInput().Local {
		out = append(out, s.Name())
	}
	return out
}

// gone is the names in before but not in after.
func gone(before, after []string) []string {
	var out []string
	for _, n := range before {
		if !slices.Contains(after, n) {
			out = append(out, n)
		}
	}
	return out
}

func deletionNames(dels []compactor.Deletion) []string {
	var out []string
	for _, d := range dels {
		out = append(out, d.Name())
	}
	return out
}

// alter applies set on top of the topic's overrides, as an incremental
// AlterConfigs does.
func alter(t *testing.T, b *Broker, topic string, set map[string]string) {
	t.Helper()
	tc, _ := b.meta.Topic(topic)
	cfgs := maps.Clone(tc.Configs)
	if cfgs == nil {
		cfgs = map[string]string{}
	}
	maps.Copy(cfgs, set)
	if err := b.SetTopicConfigs(topic, cfgs, false); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionPlanLocal: the dry run of a proposed retention.ms on a
// topic without tiering deletes nothing, and is what the retention pass
// then does once the config is applied.
func TestRetentionPlanLocal(t *testing.T) {
	b := openPlanBroker(t, false)
	if _, err := b.CreateTopic("events", 2, 1, map[string]string{"segment.bytes": "1024"}, false); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Partition("events", 0)
	now := time.Now()
	producePlanData(t, p, 20, 20, now.Add(-2*time.Hour))
	producePlanData(t, p, 8, 20, now)

	cur, err := b.RetentionPlan("events", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.Partitions) != 2 || len(cur.Partitions[0].Retention.Local) != 0 {
		t.Fatalf("plan with the current configs: %+v", cur)
	}
	set := map[string]string{"retention.ms": "3600000"}
	before := localNames(p)
	plan, err := b.RetentionPlan("events", set, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pp := plan.Partitions[0]
	r := pp.Retention
	if r.Tiered || len(r.Local) == 0 || r.LogStart <= 0 || r.OldLogStart != 0 {
		t.Fatalf("retention plan:\n%s", r)
	}
	for _, d := range r.Local {
		if d.Reason != compactor.ReasonRetentionMs || d.MaxTimestamp > now.Add(-time.Hour).UnixMilli() {
			t.Fatalf("planned deletion %+v", d)
		}
	}
	if got := localNames(p); !slices.Equal(got, before) || p.LogStartOffset() != 0 {
		t.Fatalf("the dry run changed the log: %v, start %d", got, p.LogStartOffset())
	}
	if plan.Configs["retention.ms"] != "3600000" || plan.Configs["segment.bytes"] != "1024" {
		t.Fatalf("configs planned with: %v", plan.Configs)
	}
	text := plan.String()
	for _, want := range []string{
		"topic events: 2 partitions",
		"configs: current with retention.ms=3600000 (proposed, not applied)",
		"\npartition 0\n  retention plan (local log, cleanup.policy=delete)\n",
		"  " + strings.Split(r.String(), "\n")[1] + "\n",
		"  compaction plan (local, cleanup.policy=delete): nothing to do",
		"\npartition 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("plan text lacks %q:\n%s", want, text)
		}
	}

	alter(t, b, "events", set)
	b.ApplyRetention()
	if p.LogStartOffset() != r.LogStart {
		t.Fatalf("log start %d after retention, planned %d", p.LogStartOffset(), r.LogStart)
	}
	if got, want := gone(before, localNames(p)), deletionNames(r.Local); !slices.Equal(got, want) {
		t.Fatalf("retention deleted %v, planned %v", got, want)
	}
}

// TestRetentionPlanTiered: on a tiered topic the dry run names the objects
// that leave the manifest and the local segments deleted, for a proposed
// retention.ms and then retention.bytes with local.retention.bytes, and
// the tier pass then does exactly that.
func TestRetentionPlanTiered(t *testing.T) {
	b := openPlanBroker(t, true)
	cfgs := map[string]string{"remote.storage.enable": "true", "segment.bytes": "1024", "local.retention.bytes": "16000"}
	if _, err := b.CreateTopic("tiered", 1, 1, cfgs, false); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Partition("tiered", 0)
	now := time.Now()
	producePlanData(t, p, 30, 30, now.Add(-3*time.Hour))
	producePlanData(t, p, 30, 30, now)
	b.TierPass(false) // upload, then local retention
	b.TierPass(false)
	tp := p.Tier()
	if tp == nil || len(tp.Manifest().Entries) < 10 || p.LocalStartOffset() == 0 {
		t.Fatalf("tier did not settle: local start %d", p.LocalStartOffset())
	}
	cur, err := b.RetentionPlan("tiered", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r := cur.Partitions[0].Retention; !r.Tiered || len(r.Remote)+len(r.Local) != 0 || r.Publish {
		t.Fatalf("plan with the current configs after the tier pass:\n%s", r)
	}

	check := func(set map[string]string, reasons ...compactor.Reason) {
		t.Helper()
		plan, err := b.RetentionPlan("tiered", set, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r := plan.Partitions[0].Retention
		if len(r.Remote) == 0 || !r.Publish || len(r.Local) == 0 {
			t.Fatalf("plan with %v deletes too little:\n%s", set, r)
		}
		for _, d := range append(slices.Clone(r.Remote), r.Local...) {
			if !slices.Contains(reasons, d.Reason) {
				t.Fatalf("plan with %v: deletion for %q:\n%s", set, d.Reason, r)
			}
		}
		var keysBefore []string
		for _, e := range tp.Manifest().Entries {
			keysBefore = append(keysBefore, e.Key)
		}
		localBefore := localNames(p)
		alter(t, b, "tiered", set)
		b.TierPass(false)
		var keysAfter []string
		for _, e := range tp.Manifest().Entries {
			keysAfter = append(keysAfter, e.Key)
		}
		if got, want := gone(keysBefore, keysAfter), deletionNames(r.Remote); !slices.Equal(got, want) {
			t.Fatalf("with %v the manifest lost %v, planned %v", set, got, want)
		}
		if got, want := gone(localBefore, localNames(p)), deletionNames(r.Local); !slices.Equal(got, want) {
			t.Fatalf("with %v local retention deleted %v, planned %v", set, got, want)
		}
		if p.LogStartOffset() != r.LogStart || tp.Manifest().LogStartOffset != r.LogStart {
			t.Fatalf("with %v: log start %d, manifest's %d, planned %d", set, p.LogStartOffset(), tp.Manifest().LogStartOffset, r.LogStart)
		}
	}
	check(map[string]string{"retention.ms": "3600000"}, compactor.ReasonRetentionMs, compactor.ReasonLogStart)
	check(map[string]string{"retention.bytes": "5000", "local.retention.bytes": "2000"},
		compactor.ReasonRetentionBytes, compactor.ReasonLogStart, compactor.ReasonLocalRetentionBytes)
}

// TestRetentionPlanCompaction: the dry run names the range the cleaner
// compacts, follows proposed compaction configs, and the cleaner then
// compacts exactly that range.
func TestRetentionPlanCompaction(t *testing.T) {
	b := openPlanBroker(t, false)
	if _, err := b.CreateTopic("changes", 1, 1, map[string]string{"cleanup.policy": "compact", "segment.bytes": "1024"}, false); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Partition("changes", 0)
	producePlanData(t, p, 40, 4, time.Now())
	segs := p.log.RetentionInput().Local
	active := segs[len(segs)-1].Base

	plan, err := b.RetentionPlan("changes", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := plan.Partitions[0].Compaction
	if !c.Clean || c.Reason != compactor.ReasonDirtyRatio || c.From != 0 || c.To != active || len(c.Groups) == 0 {
		t.Fatalf("compaction plan:\n%s", c)
	}
	if r := plan.Partitions[0].Retention; len(r.Local) != 0 {
		t.Fatalf("compact-only retention deletes:\n%s", r)
	}
	for set, reason := range map[string]compactor.CompactionReason{
		"min.cleanable.dirty.ratio": compactor.ReasonBelowRatio,
		"cleanup.policy":            compactor.ReasonNotCompacted,
	} {
		val := map[string]string{"min.cleanable.dirty.ratio": "1", "cleanup.policy": "delete"}[set]
		alt, err := b.RetentionPlan("changes", map[string]string{set: val}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if c := alt.Partitions[0].Compaction; c.Clean || c.Reason != reason {
			t.Fatalf("with %s=%s:\n%s", set, val, c)
		}
	}
	if p.log.RetentionInput().CleanerPoint != 0 {
		t.Fatal("the dry run cleaned")
	}
	if n := b.CleanPass(context.Background()); n != 1 {
		t.Fatalf("cleaner pass cleaned %d partitions", n)
	}
	if got := p.log.RetentionInput().CleanerPoint; got != c.To {
		t.Fatalf("cleaner point %d after the pass, planned range [%d, %d)", got, c.From, c.To)
	}
}

// TestRetentionPlanErrors: proposed configs are validated as AlterConfigs
// validates them, and an unknown topic is refused.
func TestRetentionPlanErrors(t *testing.T) {
	b := openPlanBroker(t, true)
	if _, err := b.CreateTopic("plain", 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("tiered", 1, 1, map[string]string{"remote.storage.enable": "true", "retention.ms": "86400000", "local.retention.ms": "60000"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RetentionPlan("missing", nil, time.Now()); !errors.Is(err, ErrUnknownTopicOrPartition) {
		t.Fatalf("unknown topic: %v", err)
	}
	for _, tc := range []struct {
		topic string
		set   map[string]string
		name  string
	}{
		{"plain", map[string]string{"retention.ms": "soon"}, "retention.ms"},
		{"plain", map[string]string{"retention.ms": "-5"}, "retention.ms"},
		{"plain", map[string]string{"retention.mss": "1"}, "retention.mss"},
		{"plain", map[string]string{"cleanup.policy": "delete,shred"}, "cleanup.policy"},
		{"tiered", map[string]string{"remote.storage.enable": "false"}, "remote.storage.enable"},
		{"tiered", map[string]string{"retention.ms": "1000"}, "local.retention.ms"},
	} {
		_, err := b.RetentionPlan(tc.topic, tc.set, time.Now())
		var ce *topicconfig.Error
		if !errors.As(err, &ce) || ce.Name != tc.name {
			t.Fatalf("%s with %v: %v, want an error naming %s", tc.topic, tc.set, err, tc.name)
		}
	}
	// A proposed remote.storage.enable=true plans the topic as tiered:
	// nothing is in the bucket yet, so nothing is deleted.
	plan, err := b.RetentionPlan("plain", map[string]string{"remote.storage.enable": "true", "retention.ms": "0", "local.retention.ms": "0"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r := plan.Partitions[0].Retention; !r.Tiered || len(r.Local)+len(r.Remote) != 0 {
		t.Fatalf("plan of a topic about to be tiered:\n%s", r)
	}
}
