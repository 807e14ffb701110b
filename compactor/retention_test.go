package compactor

import (
	"slices"
	"testing"
	"time"
)

var testNow = time.UnixMilli(1_700_000_000_000)

const day = int64(24 * time.Hour / time.Millisecond)

func keepAll() Config {
	return Config{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: -1}
}

func withRetention(c Config, ms, bytes int64) Config {
	c.RetentionMs, c.RetentionBytes = ms, bytes
	return c
}

// TestPlanRetentionLocal covers a topic without remote storage: the rules
// of Log.ApplyRetention.
func TestPlanRetentionLocal(t *testing.T) {
	nowMs := testNow.UnixMilli()
	// Four sealed segments of 100 bytes with newest records 4, 3, 2 and 1
	// days old, the third without timestamps, and a 50-byte active one.
	segs := []Segment{
		sealedSeg(0, 10, 100, nowMs-4*day),
		sealedSeg(10, 20, 100, nowMs-3*day),
		sealedSeg(20, 30, 100, -1),
		sealedSeg(30, 40, 100, nowMs-day),
		activeSeg(40, 45, 50, nowMs-day),
	}
	notDurable := slices.Clone(segs)
	notDurable[1].Durable = false
	activeOnly := []Segment{activeSeg(0, 5, 50, nowMs-10*day)}
	compact, both := keepAll(), keepAll()
	compact.CleanupPolicy, both.CleanupPolicy = Compact, CompactDelete
	cases := []struct {
		name      string
		segs      []Segment
		logStart  int64
		c         Config
		deleted   []int64
		reasons   []Reason
		wantStart int64
	}{
		{"unlimited", segs, 0, keepAll(), nil, nil, 0},
		{"empty log", nil, 0, withRetention(keepAll(), 0, 0), nil, nil, 0},
		{"only the active segment", activeOnly, 0, withRetention(keepAll(), 0, 0), nil, nil, 0},
		{"time: older than 3.5 days", segs, 0, withRetention(keepAll(), 3*day+day/2, -1), []int64{0}, []Reason{ReasonRetentionMs}, 10},
		{"time: exactly at the limit stays", segs, 0, withRetention(keepAll(), 3*day, -1), []int64{0}, []Reason{ReasonRetentionMs}, 10},
		{"time: no timestamp stops the scan", segs, 0, withRetention(keepAll(), 0, -1), []int64{0, 10}, []Reason{ReasonRetentionMs, ReasonRetentionMs}, 20},
		{"bytes: limit exactly met", segs, 0, withRetention(keepAll(), -1, 250), []int64{0, 10}, []Reason{ReasonRetentionBytes, ReasonRetentionBytes}, 20},
		{"bytes: one over keeps more", segs, 0, withRetention(keepAll(), -1, 251), []int64{0}, []Reason{ReasonRetentionBytes}, 10},
		{"all expired: never the active segment", segs, 0, withRetention(keepAll(), 0, 0), []int64{0, 10, 20, 30}, []Reason{ReasonRetentionMs, ReasonRetentionMs, ReasonRetentionBytes, ReasonRetentionMs}, 40},
		{"a segment not yet durable stops the scan", notDurable, 0, withRetention(keepAll(), 0, 0), []int64{0}, []Reason{ReasonRetentionMs}, 10},
		{"compact alone deletes nothing", segs, 0, withRetention(compact, 0, 0), nil, nil, 0},
		{"compact,delete deletes", segs, 0, withRetention(both, -1, 250), []int64{0, 10}, []Reason{ReasonRetentionBytes, ReasonRetentionBytes}, 20},
		{"local retention is ignored", segs, 0, Config{RetentionMs: -1, RetentionBytes: -1}, nil, nil, 0},
		// A log start past what retention would delete (DeleteRecords) leaves
		// nothing to do: the log start does not move back.
		{"log start beyond the deletions", segs, 25, withRetention(keepAll(), 0, -1), nil, nil, 25},
		{"log start at the end of the deletions", segs, 20, withRetention(keepAll(), 0, -1), nil, nil, 20},
		{"log start inside a deleted segment", segs, 5, withRetention(keepAll(), 0, -1), []int64{0, 10}, []Reason{ReasonRetentionMs, ReasonRetentionMs}, 20},
	}
	for _, tc := range cases {
		plan := PlanRetention(Partition{Local: tc.segs, LogStart: tc.logStart}, tc.c, testNow)
		if got := deletionBases(plan.Local); !slices.Equal(got, bases(tc.deleted, func(b int64) int64 { return b })) {
			t.Errorf("%s: deleted %v, want %v", tc.name, got, tc.deleted)
		}
		if got := deletionReasons(plan.Local); len(tc.reasons) > 0 && !slices.Equal(got, tc.reasons) {
			t.Errorf("%s: reasons %v, want %v", tc.name, got, tc.reasons)
		}
		if plan.LogStart != tc.wantStart || plan.OldLogStart != tc.logStart {
			t.Errorf("%s: log start %d -> %d, want %d -> %d", tc.name, plan.OldLogStart, plan.LogStart, tc.logStart, tc.wantStart)
		}
		if plan.Tiered || plan.Publish || len(plan.Remote) > 0 {
			t.Errorf("%s: tiered plan for a local topic: %+v", tc.name, plan)
		}
		if _, ok := plan.LocalCut(); ok {
			t.Errorf("%s: local cut for a topic without remote storage", tc.name)
		}
	}
}

// tieredPartition: five remote segments [0,10) … [40,50) of 100 raw bytes
// with newest records 5, 4 (no timestamp: uploaded 4 days ago), 3, 10 and 1
// days old, and local segments [30,40) [40,50) (in the bucket), [50,60)
// (not yet uploaded) and the active [60,65).
func tieredPartition() Partition {
	nowMs := testNow.UnixMilli()
	var p Partition
	for i := range int64(5) {
		s := remoteSeg(i*10, i*10+10, 100, nowMs-(5-i)*day)
		s.CreatedMs = nowMs - (5-i)*day
		p.Remote = append(p.Remote, s)
	}
	p.Remote[1].MaxTimestamp = -1
	p.Remote[3].MaxTimestamp = nowMs - 10*day // out of order: reached only past segment 2
	p.Local = []Segment{
		sealedSeg(30, 40, 100, nowMs-2*day),
		sealedSeg(40, 50, 100, nowMs-day),
		sealedSeg(50, 60, 100, nowMs-day),
		activeSeg(60, 65, 50, nowMs),
	}
	p.HighWatermark = 65
	return p
}

// TestPlanRetentionTiered covers total retention over the manifest (the
// cases of manifest.PlanRetention, with local data above the remote end
// counted), the log start moving over local segments, and local retention.
func TestPlanRetentionTiered(t *testing.T) {
	base := tieredPartition()
	tiered := func(ms, bytes, localMs, localBytes int64) Config {
		return Config{RemoteStorage: true, RetentionMs: ms, RetentionBytes: bytes, LocalRetentionMs: localMs, LocalRetentionBytes: localBytes}
	}
	unlimited := tiered(-1, -1, -1, -1)
	compact := tiered(0, 0, -1, 0)
	compact.CleanupPolicy = Compact
	cases := []struct {
		name           string
		edit           func(p *Partition)
		c              Config
		drop           []int64 // bases of remote segments dropped
		localDeleted   []int64
		localReasons   []Reason
		wantStart      int64
		publish        bool
		cut            int64 // -1: none
		remoteReason0  Reason
		remoteReasonsN int
	}{
		{name: "unlimited", c: unlimited, cut: -1},
		{name: "time: older than 3.5 days", c: tiered(3*day+day/2, -1, -1, -1), drop: []int64{0, 10}, wantStart: 20, publish: true, cut: -1, remoteReason0: ReasonRetentionMs},
		{name: "time: exactly at the limit stays", c: tiered(3*day, -1, -1, -1), drop: []int64{0, 10}, wantStart: 20, publish: true, cut: -1},
		{name: "time: no timestamp falls back to the upload time", c: tiered(4*day-1, -1, -1, -1), drop: []int64{0, 10}, wantStart: 20, publish: true, cut: -1},
		{name: "first kept segment stops the scan", c: tiered(4*day+day/2, -1, -1, -1), drop: []int64{0}, wantStart: 10, publish: true, cut: -1},
		// Everything: the log start passes the local segments in the bucket,
		// which go with it; the one not yet uploaded stays.
		{name: "time: everything", c: tiered(0, -1, -1, -1), drop: []int64{0, 10, 20, 30, 40}, wantStart: 50, publish: true, cut: -1,
			localDeleted: []int64{30, 40}, localReasons: []Reason{ReasonLogStart, ReasonLogStart}},
		// 500 remote + 150 local above the remote end: three go to keep 350.
		{name: "bytes: local bytes above the remote end count", c: tiered(-1, 300, -1, -1), drop: []int64{0, 10, 20}, wantStart: 30, publish: true, cut: -1, remoteReason0: ReasonRetentionBytes},
		{name: "bytes: limit exactly met", c: tiered(-1, 350, -1, -1), drop: []int64{0, 10, 20}, wantStart: 30, publish: true, cut: -1},
		{name: "bytes: zero keeps only what is not in the bucket", c: tiered(-1, 0, -1, -1), drop: []int64{0, 10, 20, 30, 40}, wantStart: 50, publish: true, cut: -1,
			localDeleted: []int64{30, 40}, localReasons: []Reason{ReasonLogStart, ReasonLogStart}},
		{name: "delete records inside a segment", edit: func(p *Partition) { p.LogStart = 25 }, c: unlimited, drop: []int64{0, 10}, wantStart: 25, publish: true, cut: -1, remoteReason0: ReasonLogStart},
		{name: "delete records at a boundary", edit: func(p *Partition) { p.LogStart = 30 }, c: unlimited, drop: []int64{0, 10, 20}, wantStart: 30, publish: true, cut: -1},
		{name: "delete records past the remote end", edit: func(p *Partition) { p.LogStart = 55; p.Local = p.Local[2:] }, c: unlimited, drop: []int64{0, 10, 20, 30, 40}, wantStart: 55, publish: true, cut: -1},
		{name: "manifest log start already inside the first", edit: func(p *Partition) { p.RemoteLogStart = 7 }, c: unlimited, wantStart: 7, cut: -1},
		{name: "manifest behind the log start: publish the log start", edit: func(p *Partition) { p.LogStart = 7 }, c: unlimited, wantStart: 7, publish: true, cut: -1},
		// Local retention: only segments in the bucket, never the one above
		// the remote end nor the active one.
		{name: "local bytes: only uploaded segments", c: tiered(-1, -1, -1, 0), cut: 50,
			localDeleted: []int64{30, 40}, localReasons: []Reason{ReasonLocalRetentionBytes, ReasonLocalRetentionBytes}},
		{name: "local bytes: limit exactly met", c: tiered(-1, -1, -1, 250), cut: 40,
			localDeleted: []int64{30}, localReasons: []Reason{ReasonLocalRetentionBytes}},
		{name: "local time: older than 1.5 days", c: tiered(-1, -1, day+day/2, -1), cut: 40,
			localDeleted: []int64{30}, localReasons: []Reason{ReasonLocalRetentionMs}},
		{name: "local time: exactly at the limit stays", c: tiered(-1, -1, day, -1), cut: 40,
			localDeleted: []int64{30}, localReasons: []Reason{ReasonLocalRetentionMs}},
		{name: "local: a segment not durable stops the scan", edit: func(p *Partition) { p.Local[1].Durable = false }, c: tiered(-1, -1, 0, 0), cut: 40,
			localDeleted: []int64{30}},
		{name: "local: everything uploaded, never the active segment", edit: func(p *Partition) {
			p.Remote = append(p.Remote, remoteSeg(50, 60, 100, p.Local[2].MaxTimestamp))
		}, c: tiered(-1, -1, 0, 0), cut: 60, localDeleted: []int64{30, 40, 50}},
		// Total and local retention together: the log start takes [30,40),
		// local retention then the uploaded [40,50).
		{name: "total then local", c: tiered(-1, 250, -1, 0), drop: []int64{0, 10, 20, 30}, wantStart: 40, publish: true, cut: 50,
			localDeleted: []int64{30, 40}, localReasons: []Reason{ReasonLogStart, ReasonLocalRetentionBytes}},
		{name: "compact alone: no total retention, local retention applies", c: compact, cut: 50,
			localDeleted: []int64{30, 40}, localReasons: []Reason{ReasonLocalRetentionBytes, ReasonLocalRetentionBytes}},
		// A local segment still below the log start (its seal work was not
		// done when DeleteRecords moved it) is past the new remote end once
		// every entry left the manifest: local retention takes it.
		{name: "remote end moves to the log start when no entry remains", edit: func(p *Partition) {
			p.LogStart = 55
			p.Local = []Segment{sealedSeg(50, 55, 100, -1), sealedSeg(55, 60, 100, -1), activeSeg(60, 65, 50, -1)}
		}, c: tiered(-1, -1, -1, 0), drop: []int64{0, 10, 20, 30, 40}, wantStart: 55, publish: true, cut: 55,
			localDeleted: []int64{50}, localReasons: []Reason{ReasonLocalRetentionBytes}},
		{name: "empty manifest, empty log", edit: func(p *Partition) { *p = Partition{} }, c: tiered(0, 0, 0, 0), cut: -1},
		{name: "empty manifest: nothing is in the bucket", edit: func(p *Partition) { p.Remote, p.RemoteLogStart, p.LogStart = nil, 30, 30 }, c: tiered(0, 0, 0, 0), wantStart: 30, cut: -1},
	}
	for _, tc := range cases {
		p := tieredPartition()
		p.Remote, p.Local = slices.Clone(base.Remote), slices.Clone(base.Local)
		if tc.edit != nil {
			tc.edit(&p)
		}
		plan := PlanRetention(p, tc.c, testNow)
		if got := deletionBases(plan.Remote); !slices.Equal(got, append([]int64{}, tc.drop...)) {
			t.Errorf("%s: dropped %v, want %v", tc.name, got, tc.drop)
		}
		if tc.remoteReason0 != "" && (len(plan.Remote) == 0 || plan.Remote[0].Reason != tc.remoteReason0) {
			t.Errorf("%s: remote reasons %v, want first %q", tc.name, deletionReasons(plan.Remote), tc.remoteReason0)
		}
		if got := deletionBases(plan.Local); !slices.Equal(got, append([]int64{}, tc.localDeleted...)) {
			t.Errorf("%s: local deleted %v, want %v", tc.name, got, tc.localDeleted)
		}
		if tc.localReasons != nil && !slices.Equal(deletionReasons(plan.Local), tc.localReasons) {
			t.Errorf("%s: local reasons %v, want %v", tc.name, deletionReasons(plan.Local), tc.localReasons)
		}
		if plan.LogStart != tc.wantStart || plan.Publish != tc.publish || !plan.Tiered {
			t.Errorf("%s: log start %d publish %v tiered %v, want %d %v", tc.name, plan.LogStart, plan.Publish, plan.Tiered, tc.wantStart, tc.publish)
		}
		cut, ok := plan.LocalCut()
		if (tc.cut >= 0) != ok || ok && cut != tc.cut {
			t.Errorf("%s: local cut %d %v, want %d", tc.name, cut, ok, tc.cut)
		}
	}
}

func TestRetentionPlanString(t *testing.T) {
	p := tieredPartition()
	p.Local[0].Key = "00000000000000000030.log"
	plan := PlanRetention(p, Config{RemoteStorage: true, RetentionMs: -1, RetentionBytes: 250, LocalRetentionMs: -1, LocalRetentionBytes: 0}, testNow)
	want := `retention plan (tiered, cleanup.policy=delete)
log start: 0 -> 40
remote: 4 objects leave the manifest, offsets [0, 40), 400 bytes (200 in the bucket)
  [0, 10) 100 bytes (50 in the bucket)  seg/0  (retention.bytes)
  [10, 20) 100 bytes (50 in the bucket)  seg/10  (retention.bytes)
  [20, 30) 100 bytes (50 in the bucket)  seg/20  (retention.bytes)
  [30, 40) 100 bytes (50 in the bucket)  seg/30  (retention.bytes)
local: 2 segments deleted, offsets [30, 50), 200 bytes
  [30, 40) 100 bytes  00000000000000000030.log  (below the log start)
  [40, 50) 100 bytes  00000000000000000040.log  (local.retention.bytes)
`
	if d := diffText(plan.String(), want); d != "" {
		t.Error(d)
	}

	nowMs := testNow.UnixMilli()
	local := Partition{Local: []Segment{sealedSeg(0, 10, 100, nowMs-2*day), sealedSeg(10, 20, 100, nowMs), activeSeg(20, 25, 50, nowMs)}}
	plan = PlanRetention(local, Config{CleanupPolicy: CompactDelete, RetentionMs: day, RetentionBytes: -1}, testNow)
	want = `retention plan (local log, cleanup.policy=compact,delete)
log start: 0 -> 10
local: 1 segment deleted, offsets [0, 10), 100 bytes
  [0, 10) 100 bytes  00000000000000000000.log  (retention.ms)
`
	if d := diffText(plan.String(), want); d != "" {
		t.Error(d)
	}
	plan = PlanRetention(local, keepAll(), testNow)
	want = `retention plan (local log, cleanup.policy=delete)
log start: 0 (unchanged)
local: nothing to delete
`
	if d := diffText(plan.String(), want); d != "" {
		t.Error(d)
	}
}

func TestParseCleanupPolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want CleanupPolicy
		ok   bool
	}{
		{"delete", Delete, true},
		{"compact", Compact, true},
		{"compact,delete", CompactDelete, true},
		{"delete, compact", CompactDelete, true},
		{"", Delete, false},
		{"compact,shred", Delete, false},
	} {
		got, err := ParseCleanupPolicy(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCleanupPolicy(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != map[CleanupPolicy]string{Delete: "delete", Compact: "compact", CompactDelete: "compact,delete"}[got] {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if !CompactDelete.Deletes() || !CompactDelete.Compacts() || Compact.Deletes() || Delete.Compacts() {
		t.Error("Deletes/Compacts")
	}
}
