package manifest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func segKey(base int64, epoch int32, id string) string {
	return SegmentName{Topic: testTopic, Partition: 7, BaseOffset: base, Epoch: epoch, UploadID: id}.Key()
}

func TestPlanGC(t *testing.T) {
	now := time.UnixMilli(1_700_000_100_000)
	grace := 10 * time.Minute
	old, young := now.Add(-time.Hour), now.Add(-time.Minute)

	newest := sampleManifest() // (5,9): entries a1 a2 a3, deleted d1 (removed 10s ago), d2 (5s ago)
	newest.Deleted[0].RemovedMs = now.Add(-grace).UnixMilli()
	prev := sampleManifest()
	prev.Seq, prev.Prev = 8, ManifestID{Epoch: 4, Seq: 7}
	prev.Entries = prev.Entries[:2]
	prev.Entries = append(prev.Entries, Entry{}) // replaced below
	prev.Entries[2] = newest.Entries[2]
	prev.Entries[2].Key = segKey(350, 5, "00000000000000b3") // an upload only the older kept manifest names
	m := func(id ManifestID) string { return ManifestKey(testTopic, 7, id) }

	objects := []Object{
		{Key: m(ManifestID{Epoch: 1, Seq: 1}), ModTime: old},   // superseded, old: delete
		{Key: m(ManifestID{Epoch: 4, Seq: 7}), ModTime: young}, // superseded, young: keep
		{Key: m(ManifestID{Epoch: 5, Seq: 8}), ModTime: old},   // kept (newest 2)
		{Key: m(ManifestID{Epoch: 5, Seq: 9}), ModTime: old},   // newest
		{Key: newest.Entries[0].Key, ModTime: old},
		{Key: newest.Entries[1].Key, ModTime: old},
		{Key: newest.Entries[2].Key, ModTime: old},
		{Key: prev.Entries[2].Key, ModTime: old},                  // named by a kept manifest only: keep
		{Key: newest.Deleted[0].Key, ModTime: old},                // deleted, grace passed
		{Key: newest.Deleted[1].Key, ModTime: old},                // deleted, grace not passed
		{Key: segKey(351, 5, "00000000000000f1"), ModTime: old},   // orphan: failed upload
		{Key: segKey(351, 5, "00000000000000f2"), ModTime: young}, // young: maybe about to be published
		{Key: segKey(351, 6, "00000000000000f3"), ModTime: old},   // a newer leader's upload: never ours to judge
		{Key: PartitionPrefix(testTopic, 7) + "seg/README", ModTime: old},
		{Key: segKey(0, 1, "00000000000000f4")[:4] + "/unknown", ModTime: old},
	}
	plan, err := PlanGC([]*Manifest{newest, prev}, objects, now, grace)
	if err != nil {
		t.Fatal(err)
	}
	want := GCPlan{
		Orphans:   []string{segKey(351, 5, "00000000000000f1")},
		Expired:   []string{newest.Deleted[0].Key},
		Manifests: []string{m(ManifestID{Epoch: 1, Seq: 1})},
	}
	if !slices.Equal(plan.Orphans, want.Orphans) || !slices.Equal(plan.Expired, want.Expired) || !slices.Equal(plan.Manifests, want.Manifests) {
		t.Fatalf("plan\n%+v\nwant\n%+v", plan, want)
	}

	// Keeping only the newest manifest: the upload only prev named becomes
	// an orphan, and prev a superseded manifest.
	plan, err = PlanGC([]*Manifest{newest}, objects, now, grace)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.Orphans, prev.Entries[2].Key) || !slices.Contains(plan.Manifests, m(prev.ID())) {
		t.Fatalf("keep 1: %+v", plan)
	}

	// A listing that shows a newer manifest than the one planned over.
	objects = append(objects, Object{Key: m(ManifestID{Epoch: 6, Seq: 10}), ModTime: young})
	if _, err := PlanGC([]*Manifest{newest, prev}, objects, now, grace); !errors.Is(err, ErrStale) {
		t.Fatalf("newer manifest in listing: %v, want ErrStale", err)
	}
	if _, err := PlanGC(nil, objects, now, grace); err == nil {
		t.Fatal("PlanGC without a manifest succeeded")
	}
}

// End to end over the store: a failed upload is collected after the grace
// period, a segment retention removed is collected after its grace period
// and then dropped from the manifest, and nothing the newest manifest names
// is ever planned for deletion.
func TestGCWithPublisher(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	clock := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { return clock }
	c := NewClient(s, Options{Now: func() time.Time { return clock }})
	p := openT(t, c, 1)
	for range 4 {
		if _, err := appendSegment(t, s, p, 10); err != nil {
			t.Fatal(err)
		}
	}
	failed := nextEntry(p.Current(), 1, 10, 50, clock.UnixMilli())
	upload(t, s, failed) // never published
	next := p.Current()
	removed := next.Entries[0].Key
	next.RemovePrefix(1, next.Entries[1].BaseOffset, clock.UnixMilli())
	if err := p.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	grace := time.Hour
	plan := func() GCPlan {
		kept, err := c.History(ctx, testTopic, testPart, 2)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := PlanGC(kept, s.objects(PartitionPrefix(testTopic, testPart)), clock, grace)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range append(plan.Orphans, plan.Expired...) {
			for _, e := range kept[0].Entries {
				if e.Key == k {
					t.Fatalf("plan deletes %s, named by the newest manifest", k)
				}
			}
		}
		return plan
	}
	if p := plan(); len(p.Orphans)+len(p.Expired)+len(p.Manifests) != 0 {
		t.Fatalf("within the grace period: %+v", p)
	}
	clock = clock.Add(grace)
	gc := plan()
	if !slices.Equal(gc.Orphans, []string{failed.Key}) || !slices.Equal(gc.Expired, []string{removed}) || len(gc.Manifests) != 4 {
		t.Fatalf("after the grace period: %+v", gc)
	}
	for _, k := range slices.Concat(gc.Orphans, gc.Expired, gc.Manifests) {
		s.Delete(k)
	}
	next = p.Current()
	next.DropDeleted(gc.Expired)
	if err := p.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	m, _, err := NewClient(s, Options{}).Load(ctx, testTopic, testPart)
	if err != nil || len(m.Deleted) != 0 || len(m.Entries) != 3 {
		t.Fatalf("after GC: %v, %+v", err, m)
	}
}

func TestPlanRetention(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	day := int64(24 * time.Hour / time.Millisecond)
	// Five segments [0,10) [10,20) ... with raw size 100 each, max timestamps
	// 5, 4, 3, 10, 1 days ago; the second has no timestamp (its upload time,
	// 4 days ago, is used).
	m := &Manifest{Topic: testTopic, Partition: 7, Epoch: 1, Seq: 1}
	for i := range 5 {
		e := nextEntry(m, 1, 10, 40, now.UnixMilli()-int64(5-i)*day)
		e.RawSize = 100
		e.MaxTimestamp = e.CreatedMs
		m.Entries = append(m.Entries, e)
	}
	m.Entries[1].MaxTimestamp = -1
	m.Entries[3].MaxTimestamp = now.UnixMilli() - 10*day // out of order: reached only past segment 2
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	unlimited := RetentionPolicy{RetentionMs: -1, RetentionBytes: -1}
	cases := []struct {
		name      string
		policy    RetentionPolicy
		logStart  int64 // of the manifest before
		drop      int
		wantStart int64
	}{
		{"unlimited", unlimited, 0, 0, 0},
		{"time: older than 3.5 days", RetentionPolicy{RetentionMs: 3*day + day/2, RetentionBytes: -1}, 0, 2, 20},
		{"time: exactly at the limit stays", RetentionPolicy{RetentionMs: 3 * day, RetentionBytes: -1}, 0, 2, 20},
		{"time: everything", RetentionPolicy{RetentionMs: 0, RetentionBytes: -1}, 0, 5, 50},
		{"bytes: keep at least 300", RetentionPolicy{RetentionMs: -1, RetentionBytes: 300}, 0, 2, 20},
		{"bytes: 250 keeps 300 (whole segments)", RetentionPolicy{RetentionMs: -1, RetentionBytes: 250}, 0, 2, 20},
		{"bytes: local bytes count", RetentionPolicy{RetentionMs: -1, RetentionBytes: 300, LocalBytes: 150}, 0, 3, 30},
		{"bytes: zero", RetentionPolicy{RetentionMs: -1, RetentionBytes: 0}, 0, 5, 50},
		{"delete records inside a segment", RetentionPolicy{RetentionMs: -1, RetentionBytes: -1, StartOffset: 25}, 0, 2, 25},
		{"delete records at a boundary", RetentionPolicy{RetentionMs: -1, RetentionBytes: -1, StartOffset: 30}, 0, 3, 30},
		{"delete records past the remote end", RetentionPolicy{RetentionMs: -1, RetentionBytes: -1, StartOffset: 70}, 0, 5, 70},
		{"log start already inside the first", unlimited, 7, 0, 7},
		{"first kept segment stops the scan", RetentionPolicy{RetentionMs: 4*day + day/2, RetentionBytes: -1}, 0, 1, 10},
	}
	for _, tc := range cases {
		mm := m.Clone()
		mm.LogStartOffset = tc.logStart
		got := PlanRetention(mm, tc.policy, now)
		if got.Drop != tc.drop || got.LogStartOffset != tc.wantStart {
			t.Errorf("%s: plan %+v, want drop %d start %d", tc.name, got, tc.drop, tc.wantStart)
			continue
		}
		mm.RemovePrefix(got.Drop, got.LogStartOffset, now.UnixMilli())
		if err := mm.Validate(); err != nil {
			t.Errorf("%s: manifest after retention: %v", tc.name, err)
		}
		if len(mm.Deleted) != tc.drop {
			t.Errorf("%s: %d deleted entries, want %d", tc.name, len(mm.Deleted), tc.drop)
		}
	}
}
