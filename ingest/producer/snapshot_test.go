package producer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// richState builds a state exercising every snapshot field: several
// producers, full and partial batch histories, a bump, a wrap-around, an open
// transaction and a marker-only producer.
func richState(t testing.TB) *State {
	a := newAppender(t)
	a.addSeq(1, 0, 0, 10, 7)
	a.now += 500
	a.addSeq(2, 3, 0, 1, 2)
	a.addSeq(2, 4, 0, 3, 1)
	a.addSeq(math.MaxInt64, 7, math.MaxInt32-5, 4, 3)
	h := hdr(5, 1, 0, 2)
	h.Attributes = batch.AttrTransactional
	a.add(h)
	a.add(markerHdr(6, 9))
	a.now = -1 // negative clock values must survive too
	a.addSeq(0, math.MaxInt16, 100, 1, 1)
	return a.s
}

func allProducers(s *State) []Producer {
	var ps []Producer
	for id := range s.producers {
		p, _ := s.Producer(id)
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b Producer) int { return cmp.Compare(a.ID, b.ID) })
	return ps
}

func equalStates(t *testing.T, got, want *State) {
	t.Helper()
	g, w := allProducers(got), allProducers(want)
	if len(g) != len(w) {
		t.Fatalf("%d producers, want %d", len(g), len(w))
	}
	for i := range g {
		if g[i].ID != w[i].ID || g[i].Epoch != w[i].Epoch || g[i].CoordinatorEpoch != w[i].CoordinatorEpoch ||
			g[i].CurrentTxnFirstOffset != w[i].CurrentTxnFirstOffset || g[i].LastAppendMs != w[i].LastAppendMs ||
			!slices.Equal(g[i].Batches, w[i].Batches) {
			t.Fatalf("producer %+v, want %+v", g[i], w[i])
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *State
		next int64
	}{
		{"empty", NewState(), 0},
		{"rich", richState(t), 123456},
		{"clone of rich", richState(t).Clone(), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b := tc.s.AppendSnapshot(slices.Clone(prefix), tc.next)
			if !slices.Equal(b[:len(prefix)], prefix) {
				t.Fatal("AppendSnapshot overwrote dst")
			}
			b = b[len(prefix):]
			got, next, err := DecodeSnapshot(b)
			if err != nil {
				t.Fatal(err)
			}
			if next != tc.next {
				t.Fatalf("nextOffset = %d, want %d", next, tc.next)
			}
			equalStates(t, got, tc.s)
			if again := got.AppendSnapshot(nil, next); !slices.Equal(again, b) {
				t.Fatal("re-encoding differs")
			}
			if c := got.Clone().AppendSnapshot(nil, next); !slices.Equal(c, b) {
				t.Fatal("clone encodes differently")
			}
		})
	}
}

// TestSnapshotRestoreBehaves checks that a restored state answers like the
// original: duplicates, sequence checks and fencing survive a restart.
func TestSnapshotRestoreBehaves(t *testing.T) {
	orig := richState(t)
	st, _, err := DecodeSnapshot(orig.AppendSnapshot(nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*batch.Header{
		hdr(1, 0, 20, 10), // duplicate, 5th newest
		hdr(1, 0, 10, 10), // too old
		hdr(1, 0, 70, 10), // next
		hdr(2, 3, 3, 1),   // fenced
		hdr(2, 4, 0, 3),   // duplicate after bump
		hdr(math.MaxInt64, 7, 2, 1),
		hdr(6, 9, 33, 1), // marker only: any sequence
		hdr(99, 0, 5, 1), // unknown
	} {
		d1, e1 := orig.Check(h)
		d2, e2 := st.Check(h)
		if codeOf(e1) != codeOf(e2) || (d1 == nil) != (d2 == nil) || (d1 != nil && *d1 != *d2) {
			t.Errorf("Check(%+v): original (%v, %v), restored (%v, %v)", h, d1, e1, d2, e2)
		}
	}
}

// fixCRC recomputes the CRC of an edited snapshot.
func fixCRC(b []byte) []byte {
	binary.BigEndian.PutUint32(b[6:], crc32.Checksum(b[snapshotCRCStart:], crcTable))
	return b
}

func TestDecodeSnapshotErrors(t *testing.T) {
	good := richState(t).AppendSnapshot(nil, 77)
	edit := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	firstProducer := snapshotHeaderSize
	tests := []struct {
		name    string
		b       []byte
		want    error
		message string
	}{
		{"nil", nil, ErrSnapshotCorrupt, "shorter"},
		{"short header", good[:12], ErrSnapshotCorrupt, "shorter"},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), ErrSnapshotCorrupt, "magic"},
		{"version 0", edit(func(b []byte) []byte { b[5] = 0; return b }), ErrSnapshotVersion, "version 0"},
		{"version 2", edit(func(b []byte) []byte { b[5] = 2; return b }), ErrSnapshotVersion, "version 2"},
		{"version 257", edit(func(b []byte) []byte { b[4] = 1; return b }), ErrSnapshotVersion, "version 257"},
		{"flipped bit", edit(func(b []byte) []byte { b[len(b)/2] ^= 4; return b }), ErrSnapshotCorrupt, "CRC"},
		{"truncated", good[:len(good)-1], ErrSnapshotCorrupt, "CRC"},
		{"truncated, CRC fixed", fixCRC(slices.Clone(good[:len(good)-1])), ErrSnapshotCorrupt, "truncated"},
		{"trailing byte", fixCRC(append(slices.Clone(good), 0)), ErrSnapshotCorrupt, "trailing"},
		{"count too large", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[18:], math.MaxUint32)
			return fixCRC(b)
		}), ErrSnapshotCorrupt, "cannot fit"},
		{"count too small", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[18:], 1)
			return fixCRC(b)
		}), ErrSnapshotCorrupt, "trailing"},
		{"negative producer id", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[firstProducer:], math.MaxUint64)
			return fixCRC(b)
		}), ErrSnapshotCorrupt, "increasing"},
		{"six batches", edit(func(b []byte) []byte {
			b[firstProducer+producerFixedSize-1] = 6
			return fixCRC(b)
		}), ErrSnapshotCorrupt, "at most 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, err := DecodeSnapshot(tt.b)
			if !errors.Is(err, tt.want) || st != nil {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err %q does not mention %q", err, tt.message)
			}
		})
	}
}

func TestDecodeSnapshotDuplicateIDs(t *testing.T) {
	s := NewState()
	s.Update(hdr(4, 0, 0, 1), 0)
	s.Update(hdr(5, 0, 0, 1), 0)
	b := s.AppendSnapshot(nil, 0)
	second := snapshotHeaderSize + producerFixedSize + batchMetaSize
	binary.BigEndian.PutUint64(b[second:], 4)
	if _, _, err := DecodeSnapshot(fixCRC(b)); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("duplicate ids: err = %v", err)
	}
}

// TestSnapshotGoldenV1 keeps version 1 snapshots readable: the golden file
// was written by this code and must decode to richState and re-encode to the
// same bytes. Run with -update to rewrite it after an intended change of
// richState (never of the format: a new format gets a new version).
func TestSnapshotGoldenV1(t *testing.T) {
	path := filepath.Join("testdata", "snapshot-v1.bin")
	want := richState(t)
	if *update {
		if err := os.WriteFile(path, want.AppendSnapshot(nil, 4242), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, next, err := DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if next != 4242 {
		t.Fatalf("nextOffset = %d", next)
	}
	equalStates(t, got, want)
	if !slices.Equal(got.AppendSnapshot(nil, next), b) {
		t.Fatal("re-encoding of the golden file differs")
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	good := richState(f).AppendSnapshot(nil, 9)
	f.Add(good)
	f.Add(NewState().AppendSnapshot(nil, 0))
	f.Add(good[:len(good)-7])
	f.Add(fixCRC(slices.Clone(good[:len(good)-7])))
	f.Add(fixCRC(append(slices.Clone(good), 1, 2, 3)))
	f.Add([]byte("STPS"))
	f.Add([]byte("STPS\x00\x02\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, next, err := DecodeSnapshot(b)
		if err != nil {
			if st != nil {
				t.Fatal("state returned with an error")
			}
			return
		}
		if again := st.AppendSnapshot(nil, next); !slices.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
		// A decoded state must be usable.
		st.Clone().Update(hdr(1, 0, 0, 1), 0)
		st.Check(hdr(1, 0, 0, 1))
		st.RemoveBelow(next)
		st.Expire(0, 1)
	})
}
