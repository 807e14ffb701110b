package compactor

import (
	"fmt"
	"math"
	"strings"
)

// MergePlan is which small remote objects are merged into bigger ones.
type MergePlan struct {
	// TargetBytes is the merged size aimed for.
	TargetBytes int64
	// Groups are the runs of adjacent objects merged into one object each,
	// oldest first; Group.Bytes is their summed ObjectBytes.
	Groups []Group
}

func objectBytes(s Segment) int64 { return s.ObjectBytes }

// PlanMerge groups small remote objects into merges, scanning oldest first.
// An object is small when its ObjectBytes is below targetBytes/2 (so any
// two small objects fit in one target-sized object, and an object that is
// already half the target is left alone). A group starts at a small object
// and takes the following objects while they are small, start exactly where
// the previous one ends (never across a gap in offsets), and keep the
// group's total within targetBytes. A group is merged only when it has two
// objects or more and its total reaches targetBytes/2: the merged object is
// then no longer small and is never rewritten again, so a slow partition's
// trickle of small uploads waits until enough has gathered instead of being
// rewritten into a growing object at every pass (bytes are rewritten at
// most once). A targetBytes of 0 or less merges nothing.
func PlanMerge(remote []Segment, targetBytes int64) MergePlan {
	plan := MergePlan{TargetBytes: targetBytes}
	if targetBytes <= 0 {
		return plan
	}
	small := func(s Segment) bool { return 2*s.ObjectBytes < targetBytes }
	for i := 0; i < len(remote); {
		if !small(remote[i]) {
			i++
			continue
		}
		j, size := i+1, remote[i].ObjectBytes
		// A segment object holds at most 2^31-1 offsets and 2 GiB of batches
		// from its base (as groupBySize keeps local groups).
		raw := remote[i].Bytes
		fits := func(s Segment) bool {
			return s.Next-remote[i].Base <= math.MaxInt32 && raw+s.Bytes <= math.MaxInt32
		}
		for j < len(remote) && small(remote[j]) && remote[j].Base == remote[j-1].Next && size+remote[j].ObjectBytes <= targetBytes && fits(remote[j]) {
			raw += remote[j].Bytes
			size += remote[j].ObjectBytes
			j++
		}
		if j-i >= 2 && 2*size >= targetBytes {
			plan.Groups = append(plan.Groups, newGroup(remote[i:j:j], objectBytes))
		}
		i = j
	}
	return plan
}

// Objects is the number of objects the plan merges.
func (p MergePlan) Objects() int {
	n := 0
	for _, g := range p.Groups {
		n += len(g.Segments)
	}
	return n
}

// String is the plan as a dry run prints it: each merged object with its
// offsets, size and the objects it replaces.
func (p MergePlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "merge plan (target %d bytes): ", p.TargetBytes)
	if len(p.Groups) == 0 {
		b.WriteString("nothing to merge\n")
		return b.String()
	}
	fmt.Fprintf(&b, "%s into %s\n", count(p.Objects(), "object"), count(len(p.Groups), "object"))
	for _, g := range p.Groups {
		fmt.Fprintf(&b, "  [%d, %d) %d bytes from %s: %s\n", g.Base, g.Next, g.Bytes, count(len(g.Segments), "object"), names(g.Segments))
	}
	return b.String()
}
