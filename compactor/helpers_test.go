package compactor

import (
	"fmt"
	"slices"
	"strings"
)

// sealedSeg is a sealed, durable local segment.
func sealedSeg(base, next, bytes, maxTs int64) Segment {
	return Segment{Tier: Local, Base: base, Next: next, Bytes: bytes, MaxTimestamp: maxTs, FirstTimestamp: -1, Sealed: true, Durable: true}
}

// activeSeg is the local active segment.
func activeSeg(base, next, bytes, maxTs int64) Segment {
	return Segment{Tier: Local, Base: base, Next: next, Bytes: bytes, MaxTimestamp: maxTs, FirstTimestamp: -1}
}

// remoteSeg is a remote segment object with a key naming its base.
func remoteSeg(base, next, bytes, maxTs int64) Segment {
	return Segment{Tier: Remote, Base: base, Next: next, Bytes: bytes, ObjectBytes: bytes / 2, MaxTimestamp: maxTs, FirstTimestamp: -1,
		Key: fmt.Sprintf("seg/%d", base), Sealed: true, Durable: true}
}

// bases lists the segments' bases.
func bases[S any](segs []S, base func(S) int64) []int64 {
	out := []int64{}
	for _, s := range segs {
		out = append(out, base(s))
	}
	return out
}

func deletionBases(d []Deletion) []int64 { return bases(d, func(d Deletion) int64 { return d.Base }) }

func deletionReasons(d []Deletion) []Reason {
	out := []Reason{}
	for _, x := range d {
		out = append(out, x.Reason)
	}
	return out
}

func groupBases(gs []Group) [][]int64 {
	out := [][]int64{}
	for _, g := range gs {
		out = append(out, bases(g.Segments, func(s Segment) int64 { return s.Base }))
	}
	return out
}

func equalGroups(a, b [][]int64) bool {
	return slices.EqualFunc(a, b, func(x, y []int64) bool { return slices.Equal(x, y) })
}

// diffText shows the first line where two texts differ.
func diffText(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got  %q\n want %q\nwhole text:\n%s", i+1, gl, wl, got)
		}
	}
	return ""
}
