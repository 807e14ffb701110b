package compactor

import (
	"fmt"
	"strings"
	"time"
)

// count is "1 segment", "2 segments".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// span describes segments that follow one another: their offsets and
// sizes.
func span(segs []Segment) string {
	if len(segs) == 0 {
		return "no offsets"
	}
	var raw, obj int64
	for _, s := range segs {
		raw += s.Bytes
		obj += s.ObjectBytes
	}
	out := fmt.Sprintf("offsets [%d, %d), %d bytes", segs[0].Base, segs[len(segs)-1].Next, raw)
	if segs[0].Tier == Remote {
		out += fmt.Sprintf(" (%d in the bucket)", obj)
	}
	return out
}

// describeSegment is one segment's offsets and size.
func describeSegment(s Segment) string {
	out := fmt.Sprintf("[%d, %d) %d bytes", s.Base, s.Next, s.Bytes)
	if s.Tier == Remote {
		out += fmt.Sprintf(" (%d in the bucket)", s.ObjectBytes)
	}
	return out
}

// names joins the segments' names.
func names(segs []Segment) string {
	n := make([]string, len(segs))
	for i, s := range segs {
		n[i] = s.Name()
	}
	return strings.Join(n, ", ")
}

// formatMs prints a Unix ms time in UTC, as plans do.
func formatMs(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}
