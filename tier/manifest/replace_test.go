package manifest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
)

// replacement returns an entry covering [base, next) uploaded at epoch
// with a fresh upload id, as a compaction or merge pass writes it.
func replacement(m *Manifest, epoch int32, base, next int64, epochs []EpochStart) Entry {
	return Entry{
		Key: m.SegmentName(epoch, base, NewUploadID()).Key(), BaseOffset: base, NextOffset: next,
		RecordCount: 1, StoredSize: 500, RawSize: 900, FirstTimestamp: -1, MaxTimestamp: -1,
		Epochs: epochs, UploadEpoch: epoch, CreatedMs: 1_700_000_200_000,
	}
}

func TestReplaceRange(t *testing.T) {
	m := sampleManifest() // entries [90, 200) [200, 350) [350, 351); log start 100
	m.CleanerPoint = 350
	old := m.Clone()
	with := []Entry{
		replacement(m, 5, 90, 300, []EpochStart{{Epoch: 2, StartOffset: 90}, {Epoch: 4, StartOffset: 310 - 20}}),
		replacement(m, 5, 300, 350, []EpochStart{{Epoch: 4, StartOffset: 300}}),
	}
	if err := m.ReplaceRange(0, 2, with, 1_700_000_300_000); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate after ReplaceRange: %v", err)
	}
	if !reflect.DeepEqual(m.Entries[:2], with) || !reflect.DeepEqual(m.Entries[2], old.Entries[2]) {
		t.Fatalf("entries after replace: %+v", m.Entries)
	}
	if m.LogStartOffset != 100 || m.CleanerPoint != 350 || m.EndOffset() != old.EndOffset() {
		t.Fatalf("log start %d, cleaner point %d, end %d changed", m.LogStartOffset, m.CleanerPoint, m.EndOffset())
	}
	gone := m.Deleted[len(old.Deleted):]
	if len(gone) != 2 || gone[0].Key != old.Entries[0].Key || gone[1].Key != old.Entries[1].Key ||
		gone[0].Size != old.Entries[0].StoredSize || gone[1].RemovedMs != 1_700_000_300_000 {
		t.Fatalf("deleted records %+v", gone)
	}

	bad := map[string]struct {
		i, j int
		with []Entry
	}{
		"empty range":       {1, 1, with[:1]},
		"range past end":    {2, 4, with[:1]},
		"no replacement":    {0, 2, nil},
		"starts late":       {0, 1, []Entry{replacement(old, 5, 91, 200, []EpochStart{{Epoch: 2, StartOffset: 91}})}},
		"ends early":        {0, 1, []Entry{replacement(old, 5, 90, 199, []EpochStart{{Epoch: 2, StartOffset: 90}})}},
		"ends late":         {0, 1, []Entry{replacement(old, 5, 90, 201, []EpochStart{{Epoch: 2, StartOffset: 90}})}},
		"gap between":       {0, 2, []Entry{with[0], replacement(old, 5, 301, 350, []EpochStart{{Epoch: 4, StartOffset: 301}})}},
		"overlap between":   {0, 2, []Entry{with[0], replacement(old, 5, 299, 350, []EpochStart{{Epoch: 4, StartOffset: 299}})}},
		"empty replacement": {2, 3, []Entry{replacement(old, 5, 350, 350, []EpochStart{{Epoch: 5, StartOffset: 350}})}},
	}
	for name, c := range bad {
		m := old.Clone()
		if err := m.ReplaceRange(c.i, c.j, c.with, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ReplaceRange = %v, want ErrInvalid", name, err)
		}
		if !reflect.DeepEqual(m, old) {
			t.Errorf("%s: a refused ReplaceRange changed the manifest", name)
		}
	}
}

func TestReplaceRun(t *testing.T) {
	old := sampleManifest()
	keys := []string{old.Entries[1].Key, old.Entries[2].Key}
	with := []Entry{replacement(old, 5, 200, 351, []EpochStart{{Epoch: 2, StartOffset: 200}, {Epoch: 4, StartOffset: 310}, {Epoch: 5, StartOffset: 350}})}
	m := old.Clone()
	if err := m.ReplaceRun(keys, with, 7); err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 2 || m.Entries[1].Key != with[0].Key || m.Validate() != nil {
		t.Fatalf("after ReplaceRun: %+v", m.Entries)
	}
	for name, keys := range map[string][]string{
		"none":          nil,
		"not adjacent":  {old.Entries[0].Key, old.Entries[2].Key},
		"out of order":  {old.Entries[2].Key, old.Entries[1].Key},
		"past the end":  {old.Entries[2].Key, old.Entries[1].Key, old.Entries[0].Key},
		"a deleted key": {old.Deleted[0].Key},
	} {
		m := old.Clone()
		if err := m.ReplaceRun(keys, with, 7); !errors.Is(err, ErrNotInManifest) {
			t.Errorf("%s: ReplaceRun = %v, want ErrNotInManifest", name, err)
		}
		if !reflect.DeepEqual(m, old) {
			t.Errorf("%s: a refused ReplaceRun changed the manifest", name)
		}
	}
}

// A replacement is published like an upload: the new object must exist in
// full, the replaced ones go to Deleted, and they can never come back.
func TestPublishReplacement(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	p := openT(t, NewClient(s, Options{}), 2)
	for range 3 {
		if _, err := appendSegment(t, s, p, 10); err != nil {
			t.Fatal(err)
		}
	}
	cur := p.Current()
	merged := replacement(cur, 2, 0, 20, []EpochStart{{Epoch: 2, StartOffset: 0}})
	next := cur.Clone()
	if err := next.ReplaceRange(0, 2, []Entry{merged}, 5); err != nil {
		t.Fatal(err)
	}
	next.CleanerPoint = 20
	if err := p.Publish(ctx, next); !errors.Is(err, ErrMissingObject) {
		t.Fatalf("publishing a replacement not uploaded: %v, want ErrMissingObject", err)
	}
	upload(t, s, merged)
	if err := p.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	got := p.Current()
	if len(got.Entries) != 2 || got.Entries[0].Key != merged.Key || got.CleanerPoint != 20 {
		t.Fatalf("published %+v", got)
	}
	if !slices.ContainsFunc(got.Deleted, func(d Deleted) bool { return d.Key == cur.Entries[0].Key }) {
		t.Fatalf("replaced entry not in Deleted: %+v", got.Deleted)
	}
	// Putting a replaced object back is refused.
	back := p.Current()
	if err := back.ReplaceRange(0, 1, cur.Entries[:2], 6); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, back); !errors.Is(err, ErrInvalid) {
		t.Fatalf("naming a replaced object again: %v, want ErrInvalid", err)
	}
}
