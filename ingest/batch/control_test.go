package batch

import (
	"errors"
	"testing"
)

func TestMarkerRoundTrip(t *testing.T) {
	for _, commit := range []bool{false, true} {
		b := AppendMarker([]byte("prefix"), MarkerOptions{ProducerID: 42, ProducerEpoch: 3, LeaderEpoch: 7, TimestampMs: 1700000000000,
			Marker: Marker{Commit: commit, CoordinatorEpoch: 9}})
		b = b[len("prefix"):]
		h, err := ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if !h.IsControl() || !h.IsTransactional() || h.ProducerID != 42 || h.ProducerEpoch != 3 || h.BaseSequence != -1 ||
			h.RecordCount != 1 || h.PartitionLeaderEpoch != 7 || h.Size() != len(b) {
			t.Fatalf("header %+v", h)
		}
		if crcOf(b) != h.CRC {
			t.Fatal("bad CRC")
		}
		m, err := ParseMarker(b)
		if err != nil || m.Commit != commit || m.CoordinatorEpoch != 9 {
			t.Fatalf("marker %+v %v", m, err)
		}
	}
}

func TestParseMarkerRefuses(t *testing.T) {
	data := Build(BuildOptions{}, Record{Key: []byte("k"), Value: []byte("v")})
	if _, err := ParseMarker(data); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("not a control batch: %v", err)
	}
	for _, key := range [][]byte{{0, 0}, {0, 0, 0, 9}, {0x80, 0, 0, 1}} {
		b := Build(BuildOptions{Control: true, Transactional: true}, Record{Key: key, Value: []byte{0, 0, 0, 0, 0, 1}})
		if _, err := ParseMarker(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("key %v: %v", key, err)
		}
	}
	// A newer key version reads as version 0.
	b := Build(BuildOptions{Control: true, Transactional: true}, Record{Key: []byte{0, 1, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 2}})
	if m, err := ParseMarker(b); err != nil || !m.Commit || m.CoordinatorEpoch != 2 {
		t.Fatalf("newer key version: %+v %v", m, err)
	}
}

func FuzzParseMarker(f *testing.F) {
	f.Add(AppendMarker(nil, MarkerOptions{ProducerID: 1, Marker: Marker{Commit: true}}))
	f.Add(Build(BuildOptions{Control: true}, Record{Key: []byte{0, 0, 0, 0}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMarker(b)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to a marker that parses the same.
		again, err := ParseMarker(AppendMarker(nil, MarkerOptions{Marker: m}))
		if err != nil || again != m {
			t.Fatalf("re-encoded %+v as %+v (%v)", m, again, err)
		}
	})
}
