package compactor

import "testing"

func TestPlanMerge(t *testing.T) {
	// obj is a remote object [base, next) of size bytes in the bucket.
	obj := func(base, next, size int64) Segment {
		s := remoteSeg(base, next, 2*size, -1)
		s.ObjectBytes = size
		return s
	}
	cases := []struct {
		name   string
		objs   []Segment
		target int64
		groups [][]int64
	}{
		{"no objects", nil, 100, nil},
		{"no target", []Segment{obj(0, 1, 1), obj(1, 2, 1)}, 0, nil},
		{"one small object", []Segment{obj(0, 10, 10)}, 100, nil},
		{"adjacent small objects", []Segment{obj(0, 10, 20), obj(10, 20, 20), obj(20, 30, 20)}, 100, [][]int64{{0, 10, 20}}},
		{"too little to merge yet", []Segment{obj(0, 10, 10), obj(10, 20, 10), obj(20, 30, 10)}, 100, nil},
		{"just half the target merges", []Segment{obj(0, 10, 25), obj(10, 20, 25)}, 100, [][]int64{{0, 10}}},
		{"a gap splits", []Segment{obj(0, 10, 30), obj(10, 20, 30), obj(25, 30, 30), obj(30, 40, 30)}, 100, [][]int64{{0, 10}, {25, 30}}},
		{"a gap leaves singles", []Segment{obj(0, 10, 10), obj(15, 20, 10), obj(25, 30, 10)}, 100, nil},
		{"a big object splits", []Segment{obj(0, 10, 30), obj(10, 20, 60), obj(20, 30, 30), obj(30, 40, 30)}, 100, [][]int64{{20, 30}}},
		{"half the target is not small", []Segment{obj(0, 10, 50), obj(10, 20, 30), obj(20, 30, 30)}, 100, [][]int64{{10, 20}}},
		{"just under half is", []Segment{obj(0, 10, 49), obj(10, 20, 49)}, 100, [][]int64{{0, 10}}},
		{"total exactly the target", []Segment{obj(0, 10, 49), obj(10, 20, 49), obj(20, 30, 2), obj(30, 40, 1)}, 100, [][]int64{{0, 10, 20}}},
		{"the target bounds a group", []Segment{obj(0, 10, 40), obj(10, 20, 40), obj(20, 30, 40), obj(30, 40, 40), obj(40, 50, 40)}, 100, [][]int64{{0, 10}, {20, 30}}},
		{"odd target", []Segment{obj(0, 10, 4), obj(10, 20, 5), obj(20, 30, 4)}, 11, [][]int64{{0, 10}}},
	}
	for _, tc := range cases {
		plan := PlanMerge(tc.objs, tc.target)
		want := tc.groups
		if want == nil {
			want = [][]int64{}
		}
		if got := groupBases(plan.Groups); !equalGroups(got, want) {
			t.Errorf("%s: groups %v, want %v", tc.name, got, want)
		}
		n := 0
		for _, g := range plan.Groups {
			n += len(g.Segments)
			var size int64
			for i, s := range g.Segments {
				size += s.ObjectBytes
				if i > 0 && s.Base != g.Segments[i-1].Next {
					t.Errorf("%s: group %+v crosses a gap", tc.name, g)
				}
			}
			if size != g.Bytes || g.Bytes > tc.target || len(g.Segments) < 2 {
				t.Errorf("%s: group %+v of %d bytes", tc.name, g, size)
			}
		}
		if n != plan.Objects() || plan.TargetBytes != tc.target {
			t.Errorf("%s: Objects %d, want %d", tc.name, plan.Objects(), n)
		}
	}
}

func TestMergePlanString(t *testing.T) {
	objs := []Segment{remoteSeg(0, 10, 20, -1), remoteSeg(10, 20, 20, -1), remoteSeg(20, 30, 20, -1), remoteSeg(40, 50, 20, -1), remoteSeg(50, 60, 20, -1)}
	want := `merge plan (target 40 bytes): 5 objects into 2 objects
  [0, 30) 30 bytes from 3 objects: seg/0, seg/10, seg/20
  [40, 60) 20 bytes from 2 objects: seg/40, seg/50
`
	if d := diffText(PlanMerge(objs, 40).String(), want); d != "" {
		t.Error(d)
	}
	if got := PlanMerge(objs[:1], 40).String(); got != "merge plan (target 40 bytes): nothing to merge\n" {
		t.Errorf("empty plan: %q", got)
	}
}

// TestPlanMergeBoundsObjects: a merge never spans more offsets or raw bytes
// than one segment object can hold (sparse compacted objects of a
// long-lived changelog), which segment.Build would refuse at every pass.
func TestPlanMergeBoundsObjects(t *testing.T) {
	const span = 1_500_000_000
	segs := []Segment{
		{Tier: Remote, Base: 0, Next: span, Bytes: 1 << 20, ObjectBytes: 1 << 20, Key: "a"},
		{Tier: Remote, Base: span, Next: 2 * span, Bytes: 1 << 20, ObjectBytes: 1 << 20, Key: "b"},
		{Tier: Remote, Base: 2 * span, Next: 2*span + 10, Bytes: 1 << 20, ObjectBytes: 1 << 20, Key: "c"},
	}
	plan := PlanMerge(segs, 4<<20)
	if len(plan.Groups) != 1 || plan.Groups[0].Base != span {
		t.Fatalf("groups %v, want only [b c]", groupBases(plan.Groups))
	}
	big := []Segment{
		{Tier: Remote, Base: 0, Next: 10, Bytes: 1500 << 20, ObjectBytes: 1 << 20, Key: "a"},
		{Tier: Remote, Base: 10, Next: 20, Bytes: 1500 << 20, ObjectBytes: 1 << 20, Key: "b"},
	}
	if plan := PlanMerge(big, 4<<20); len(plan.Groups) != 0 {
		t.Fatalf("merged %v: over 2 GiB of batches in one object", groupBases(plan.Groups))
	}
}
