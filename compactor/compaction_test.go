package compactor

import (
	"math"
	"slices"
	"testing"
)

// compactPartition: four sealed local segments [0,10) … [30,40) of 100
// bytes whose newest records are 40, 30, 20 and 10 minutes old (first
// batches 5 minutes older), and the active [40,45); high watermark 45.
func compactPartition() Partition {
	nowMs := testNow.UnixMilli()
	minute := int64(60_000)
	var p Partition
	for i := range int64(4) {
		s := sealedSeg(i*10, i*10+10, 100, nowMs-(4-i)*10*minute)
		s.FirstTimestamp = s.MaxTimestamp - 5*minute
		p.Local = append(p.Local, s)
	}
	p.Local = append(p.Local, activeSeg(40, 45, 50, nowMs))
	p.HighWatermark = 45
	return p
}

func compactConfig() Config {
	return Config{CleanupPolicy: Compact, RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: -1,
		SegmentBytes: 250, MinCleanableDirtyRatio: 0.5, MaxCompactionLagMs: math.MaxInt64, DeleteRetentionMs: day}
}

func TestPlanCompaction(t *testing.T) {
	minute := int64(60_000)
	nowMs := testNow.UnixMilli()
	cases := []struct {
		name        string
		edit        func(p *Partition, c *Config)
		clean       bool
		reason      CompactionReason
		forced      bool
		from, dirty int64 // From, DirtyFrom
		to          int64
		uncleanable int64
		dirtyBytes  int64
		cleanBytes  int64
		groups      [][]int64
	}{
		{name: "cleanup.policy=delete", edit: func(p *Partition, c *Config) { c.CleanupPolicy = Delete },
			reason: ReasonNotCompacted, to: 40, uncleanable: 40, dirtyBytes: 400},
		{name: "empty log", edit: func(p *Partition, c *Config) { *p = Partition{} },
			reason: ReasonNothingCleanable},
		{name: "only the active segment", edit: func(p *Partition, c *Config) { p.Local = p.Local[4:]; p.LogStart, p.CleanerPoint = 40, 40 },
			reason: ReasonNothingCleanable, from: 40, dirty: 40, to: 40, uncleanable: 40},
		{name: "never cleaned", clean: true, reason: ReasonDirtyRatio, to: 40, uncleanable: 40, dirtyBytes: 400,
			groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "dirty ratio above the threshold", edit: func(p *Partition, c *Config) { p.CleanerPoint = 10 },
			clean: true, reason: ReasonDirtyRatio, dirty: 10, to: 40, uncleanable: 40, dirtyBytes: 300, cleanBytes: 100,
			groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "dirty ratio exactly at the threshold", edit: func(p *Partition, c *Config) { p.CleanerPoint = 20 },
			reason: ReasonBelowRatio, dirty: 20, to: 40, uncleanable: 40, dirtyBytes: 200, cleanBytes: 200},
		{name: "dirty ratio below the threshold", edit: func(p *Partition, c *Config) { p.CleanerPoint = 30 },
			reason: ReasonBelowRatio, dirty: 30, to: 40, uncleanable: 40, dirtyBytes: 100, cleanBytes: 300},
		{name: "ratio zero cleans anything dirty", edit: func(p *Partition, c *Config) { p.CleanerPoint = 30; c.MinCleanableDirtyRatio = 0 },
			clean: true, reason: ReasonDirtyRatio, dirty: 30, to: 40, uncleanable: 40, dirtyBytes: 100, cleanBytes: 300,
			groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "nothing dirty", edit: func(p *Partition, c *Config) { p.CleanerPoint = 40; c.MinCleanableDirtyRatio = 0 },
			reason: ReasonNothingDirty, dirty: 40, to: 40, uncleanable: 40, cleanBytes: 400},
		{name: "high watermark inside a segment: whole segments only", edit: func(p *Partition, c *Config) { p.HighWatermark = 25 },
			clean: true, reason: ReasonDirtyRatio, to: 20, uncleanable: 25, dirtyBytes: 200, groups: [][]int64{{0, 10}}},
		{name: "high watermark at a boundary", edit: func(p *Partition, c *Config) { p.HighWatermark = 30 },
			clean: true, reason: ReasonDirtyRatio, to: 30, uncleanable: 30, dirtyBytes: 300, groups: [][]int64{{0, 10}, {20}}},
		{name: "a sealed segment not yet durable is uncleanable", edit: func(p *Partition, c *Config) { p.Local[2].Durable = false },
			clean: true, reason: ReasonDirtyRatio, to: 20, uncleanable: 20, dirtyBytes: 200, groups: [][]int64{{0, 10}}},
		// min.compaction.lag.ms 25 minutes: [20,30) (newest record 20
		// minutes old) is too young, and so is all that follows.
		{name: "min lag: a young segment stops the range", edit: func(p *Partition, c *Config) { c.MinCompactionLagMs = 25 * minute },
			clean: true, reason: ReasonDirtyRatio, to: 20, uncleanable: 20, dirtyBytes: 200, groups: [][]int64{{0, 10}}},
		{name: "min lag: a record exactly at the lag is cleanable", edit: func(p *Partition, c *Config) { c.MinCompactionLagMs = 20 * minute },
			clean: true, reason: ReasonDirtyRatio, to: 30, uncleanable: 30, dirtyBytes: 300, groups: [][]int64{{0, 10}, {20}}},
		{name: "min lag: one ms more and it is not", edit: func(p *Partition, c *Config) { c.MinCompactionLagMs = 20*minute + 1 },
			clean: true, reason: ReasonDirtyRatio, to: 20, uncleanable: 20, dirtyBytes: 200, groups: [][]int64{{0, 10}}},
		// Only dirty segments are held back by the lag, as in Kafka: a young
		// segment below the cleaner point does not count.
		{name: "min lag: clean segments are not checked", edit: func(p *Partition, c *Config) {
			p.Local[0].MaxTimestamp = nowMs
			p.CleanerPoint = 10
			c.MinCompactionLagMs = 5 * minute
		}, clean: true, reason: ReasonDirtyRatio, dirty: 10, to: 40, uncleanable: 40, dirtyBytes: 300, cleanBytes: 100, groups: [][]int64{{0, 10}, {20, 30}}},
		// max.compaction.lag.ms: the dirty [30,40) has its first batch 15
		// minutes old.
		{name: "max lag passed forces a clean below the ratio", edit: func(p *Partition, c *Config) { p.CleanerPoint = 30; c.MaxCompactionLagMs = 15*minute - 1 },
			clean: true, reason: ReasonMaxLag, forced: true, dirty: 30, to: 40, uncleanable: 40, dirtyBytes: 100, cleanBytes: 300, groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "max lag exactly reached does not", edit: func(p *Partition, c *Config) { p.CleanerPoint = 30; c.MaxCompactionLagMs = 15 * minute },
			reason: ReasonBelowRatio, dirty: 30, to: 40, uncleanable: 40, dirtyBytes: 100, cleanBytes: 300},
		{name: "max lag zero: no limit", edit: func(p *Partition, c *Config) { p.CleanerPoint = 30; c.MaxCompactionLagMs = 0 },
			reason: ReasonBelowRatio, dirty: 30, to: 40, uncleanable: 40, dirtyBytes: 100, cleanBytes: 300},
		{name: "max lag without a first timestamp uses the newest", edit: func(p *Partition, c *Config) {
			p.CleanerPoint = 30
			p.Local[3].FirstTimestamp = -1
			c.MaxCompactionLagMs = 10*minute - 1
		}, clean: true, reason: ReasonMaxLag, forced: true, dirty: 30, to: 40, uncleanable: 40, dirtyBytes: 100, cleanBytes: 300, groups: [][]int64{{0, 10}, {20, 30}}},
		// Forced, but the old dirty segment lies above the high watermark:
		// nothing dirty is cleanable.
		{name: "max lag passed with nothing cleanable dirty", edit: func(p *Partition, c *Config) {
			p.CleanerPoint, p.HighWatermark = 30, 30
			c.MaxCompactionLagMs = minute
		}, reason: ReasonNothingDirty, forced: true, dirty: 30, to: 30, uncleanable: 30, cleanBytes: 300},
		{name: "compact,delete compacts", edit: func(p *Partition, c *Config) { c.CleanupPolicy = CompactDelete },
			clean: true, reason: ReasonDirtyRatio, to: 40, uncleanable: 40, dirtyBytes: 400, groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "stale cleaner point below the log start is reset", edit: func(p *Partition, c *Config) { p.Local = p.Local[1:]; p.LogStart = 10; p.CleanerPoint = 5 },
			clean: true, reason: ReasonDirtyRatio, from: 10, dirty: 10, to: 40, uncleanable: 40, dirtyBytes: 300, groups: [][]int64{{10, 20}, {30}}},
		{name: "cleaner point past the log end is reset", edit: func(p *Partition, c *Config) { p.CleanerPoint = 99 },
			clean: true, reason: ReasonDirtyRatio, to: 40, uncleanable: 40, dirtyBytes: 400, groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "a segment straddling the cleaner point is dirty", edit: func(p *Partition, c *Config) { p.CleanerPoint = 15 },
			clean: true, reason: ReasonDirtyRatio, dirty: 15, to: 40, uncleanable: 40, dirtyBytes: 300, cleanBytes: 100, groups: [][]int64{{0, 10}, {20, 30}}},
		{name: "segments wholly below the log start are skipped", edit: func(p *Partition, c *Config) { p.LogStart = 12 },
			clean: true, reason: ReasonDirtyRatio, from: 10, dirty: 12, to: 40, uncleanable: 40, dirtyBytes: 300, groups: [][]int64{{10, 20}, {30}}},
		{name: "no segment.bytes limit: one group", edit: func(p *Partition, c *Config) { c.SegmentBytes = 0 },
			clean: true, reason: ReasonDirtyRatio, to: 40, uncleanable: 40, dirtyBytes: 400, groups: [][]int64{{0, 10, 20, 30}}},
		{name: "groups fill segment.bytes exactly", edit: func(p *Partition, c *Config) { c.SegmentBytes = 300 },
			clean: true, reason: ReasonDirtyRatio, to: 40, uncleanable: 40, dirtyBytes: 400, groups: [][]int64{{0, 10, 20}, {30}}},
		{name: "a segment bigger than segment.bytes is a group alone", edit: func(p *Partition, c *Config) { p.Local[1].Bytes = 400 },
			clean: true, reason: ReasonDirtyRatio, to: 40, uncleanable: 40, dirtyBytes: 700, groups: [][]int64{{0}, {10}, {20, 30}}},
	}
	for _, tc := range cases {
		p, c := compactPartition(), compactConfig()
		if tc.edit != nil {
			tc.edit(&p, &c)
		}
		plan := PlanCompaction(p, c, testNow)
		if plan.Clean != tc.clean || plan.Reason != tc.reason || plan.Forced != tc.forced {
			t.Errorf("%s: clean %v (%s) forced %v, want %v (%s) forced %v", tc.name, plan.Clean, plan.Reason, plan.Forced, tc.clean, tc.reason, tc.forced)
		}
		if plan.From != tc.from || plan.DirtyFrom != tc.dirty || plan.To != tc.to || plan.FirstUncleanable != tc.uncleanable {
			t.Errorf("%s: range [%d, %d, %d) uncleanable %d, want [%d, %d, %d) %d", tc.name, plan.From, plan.DirtyFrom, plan.To, plan.FirstUncleanable, tc.from, tc.dirty, tc.to, tc.uncleanable)
		}
		if plan.DirtyBytes != tc.dirtyBytes || plan.CleanBytes != tc.cleanBytes {
			t.Errorf("%s: dirty %d clean %d bytes, want %d %d", tc.name, plan.DirtyBytes, plan.CleanBytes, tc.dirtyBytes, tc.cleanBytes)
		}
		if tc.groups == nil {
			tc.groups = [][]int64{}
		}
		if got := groupBases(plan.Groups); !equalGroups(got, tc.groups) {
			t.Errorf("%s: groups %v, want %v", tc.name, got, tc.groups)
		}
		for _, g := range plan.Groups {
			if g.Base != g.Segments[0].Base || g.Next != g.Segments[len(g.Segments)-1].Next || g.Bytes != sumBytes(g.Segments) {
				t.Errorf("%s: group %+v", tc.name, g)
			}
		}
	}
}

func TestGroupBySizeOffsetRange(t *testing.T) {
	big := int64(math.MaxInt32)
	segs := []Segment{
		sealedSeg(0, 10, 10, -1),
		sealedSeg(10, big, 10, -1),      // last offset big-1: within 2^31-1 of 0
		sealedSeg(big, big+1, 10, -1),   // last offset big: still within
		sealedSeg(big+1, big+2, 0, -1),  // empty: never split by the offset bound
		sealedSeg(big+2, big+3, 10, -1), // last offset big+2: too far from 0
	}
	got := groupBases(groupBySize(segs, 0))
	want := [][]int64{{0, 10, big, big + 1}, {big + 2}}
	if !equalGroups(got, want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
}

func TestCompactionTombstones(t *testing.T) {
	nowMs := testNow.UnixMilli()
	minute := int64(60_000)
	p, c := compactPartition(), compactConfig()
	p.CleanerPoint = 20
	c.MinCleanableDirtyRatio = 0
	c.DeleteRetentionMs = 35 * minute // horizon: 35 minutes ago
	plan := PlanCompaction(p, c, testNow)
	if !plan.Clean || plan.DeleteHorizonMs != nowMs-35*minute {
		t.Fatalf("plan %+v", plan)
	}
	var drop []int64
	for _, g := range plan.Groups {
		for _, s := range g.Segments {
			if plan.DropsTombstones(s) {
				drop = append(drop, s.Base)
			}
		}
	}
	// [0,10) is clean and 40 minutes old; [10,20) clean but 30 minutes
	// old; [20,30) and [30,40) are dirty, cleaned for the first time.
	if !slices.Equal(drop, []int64{0}) {
		t.Fatalf("tombstones dropped from %v, want [0]", drop)
	}
	c.DeleteRetentionMs = 30 * minute // exactly at the horizon: dropped
	plan = PlanCompaction(p, c, testNow)
	if !plan.DropsTombstones(p.Local[1]) || plan.DropsTombstones(p.Local[2]) {
		t.Fatal("at the horizon")
	}
	noTs := p.Local[0]
	noTs.MaxTimestamp = -1
	if plan.DropsTombstones(noTs) {
		t.Fatal("tombstones dropped from a segment without timestamps")
	}
}

func TestPlanRemoteCompaction(t *testing.T) {
	nowMs := testNow.UnixMilli()
	p := Partition{LogStart: 10, RemoteLogStart: 5, HighWatermark: 100, RemoteCleanerPoint: 20, CleanerPoint: 99}
	for i := range int64(5) {
		p.Remote = append(p.Remote, remoteSeg(i*10, i*10+10, 100, nowMs-(5-i)*day))
	}
	p.Remote[0].Base = 5
	p.Local = []Segment{activeSeg(50, 50, 0, -1)}
	c := compactConfig()
	c.RemoteStorage, c.SegmentBytes = true, 200
	plan := PlanRemoteCompaction(p, c, testNow)
	// [5,10) is below the log start; [10,50) are all sealed and below the
	// high watermark; the remote cleaner point (not the local one) splits
	// them 100 clean, 300 dirty.
	if !plan.Clean || plan.Tier != Remote || plan.From != 10 || plan.DirtyFrom != 20 || plan.To != 50 || plan.CleanBytes != 100 || plan.DirtyBytes != 300 {
		t.Fatalf("plan %+v", plan)
	}
	if got := groupBases(plan.Groups); !equalGroups(got, [][]int64{{10, 20}, {30, 40}}) {
		t.Fatalf("groups %v", got)
	}
	// min lag over objects: the 1-day-old [40,50) is too young for 2 days.
	c.MinCompactionLagMs = 2 * day
	if plan = PlanRemoteCompaction(p, c, testNow); plan.To != 40 || plan.FirstUncleanable != 40 {
		t.Fatalf("min lag: %+v", plan)
	}
	// The high watermark caps remote compaction too.
	c.MinCompactionLagMs = 0
	p.HighWatermark = 35
	if plan = PlanRemoteCompaction(p, c, testNow); plan.To != 30 {
		t.Fatalf("high watermark: %+v", plan)
	}
	if plan = PlanRemoteCompaction(Partition{}, c, testNow); plan.Clean || plan.Reason != ReasonNothingCleanable {
		t.Fatalf("no objects: %+v", plan)
	}
}

func TestCompactionPlanString(t *testing.T) {
	p, c := compactPartition(), compactConfig()
	p.CleanerPoint = 10
	c.DeleteRetentionMs = 35 * 60_000
	want := `compaction plan (local, cleanup.policy=compact): clean: dirty ratio above min.cleanable.dirty.ratio (dirty ratio 0.7500, min.cleanable.dirty.ratio 0.5000)
cleanable: offsets [0, 40), 400 bytes; clean [0, 10) 100 bytes, dirty [10, 40) 300 bytes; first uncleanable offset 40
rewrite 4 segments into 2 segments (segment.bytes 250):
  [0, 20) 200 bytes from 2 segments: 00000000000000000000.log, 00000000000000000010.log
  [20, 40) 200 bytes from 2 segments: 00000000000000000020.log, 00000000000000000030.log
tombstones: removed from 1 segment (newest record at or before 2023-11-14T21:38:20.000Z): 00000000000000000000.log
`
	if d := diffText(PlanCompaction(p, c, testNow).String(), want); d != "" {
		t.Error(d)
	}
	p.CleanerPoint = 30
	c.MaxCompactionLagMs = 60_000
	c.SegmentBytes = 0
	c.DeleteRetentionMs = day
	want = `compaction plan (local, cleanup.policy=compact): clean: a dirty record is older than max.compaction.lag.ms (dirty ratio 0.2500, min.cleanable.dirty.ratio 0.5000, max.compaction.lag.ms passed)
cleanable: offsets [0, 40), 400 bytes; clean [0, 30) 300 bytes, dirty [30, 40) 100 bytes; first uncleanable offset 40
rewrite 4 segments into 1 segment (no segment.bytes limit):
  [0, 40) 400 bytes from 4 segments: 00000000000000000000.log, 00000000000000000010.log, 00000000000000000020.log, 00000000000000000030.log
tombstones: all kept (delete horizon 2023-11-13T22:13:20.000Z)
`
	if d := diffText(PlanCompaction(p, c, testNow).String(), want); d != "" {
		t.Error(d)
	}
	c.MaxCompactionLagMs = 0
	want = `compaction plan (local, cleanup.policy=compact): nothing to do: dirty ratio not above min.cleanable.dirty.ratio (dirty ratio 0.2500, min.cleanable.dirty.ratio 0.5000)
cleanable: offsets [0, 40), 400 bytes; clean [0, 30) 300 bytes, dirty [30, 40) 100 bytes; first uncleanable offset 40
`
	if d := diffText(PlanCompaction(p, c, testNow).String(), want); d != "" {
		t.Error(d)
	}
	c.CleanupPolicy = Delete
	want = "compaction plan (local, cleanup.policy=delete): nothing to do: cleanup.policy does not compact\n"
	if d := diffText(PlanCompaction(p, c, testNow).String(), want); d != "" {
		t.Error(d)
	}
	// Remote objects are named by key.
	r := Partition{Remote: []Segment{remoteSeg(0, 10, 100, -1), remoteSeg(10, 20, 100, -1)}, HighWatermark: 20}
	c = compactConfig()
	want = `compaction plan (remote, cleanup.policy=compact): clean: dirty ratio above min.cleanable.dirty.ratio (dirty ratio 1.0000, min.cleanable.dirty.ratio 0.5000)
cleanable: offsets [0, 20), 200 bytes; clean [0, 0) 0 bytes, dirty [0, 20) 200 bytes; first uncleanable offset 20
rewrite 2 objects into 1 object (segment.bytes 250):
  [0, 20) 200 bytes from 2 objects: seg/0, seg/10
tombstones: all kept (delete horizon 2023-11-13T22:13:20.000Z)
`
	if d := diffText(PlanRemoteCompaction(r, c, testNow).String(), want); d != "" {
		t.Error(d)
	}
}
