package log

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// onceHookFS runs fn once, before the file path is created (Create) or opened
// (Open).
type onceHookFS struct {
	*vfs.CrashFS
	op   vfs.Op // vfs.OpCreate or vfs.OpOpen
	path string
	once sync.Once
	fn   func()
}

func (h *onceHookFS) Create(name string) (vfs.File, error) {
	if h.op == vfs.OpCreate && name == h.path {
		h.once.Do(h.fn)
	}
	return h.CrashFS.Create(name)
}

func (h *onceHookFS) Open(name string) (vfs.File, error) {
	if h.op == vfs.OpOpen && name == h.path {
		h.once.Do(h.fn)
	}
	return h.CrashFS.Open(name)
}

// TestCleanRacedByDeleteLocalBefore: a tiered log drops its uploaded
// segments (DeleteLocalBefore) while a cleaner pass runs over them: after
// the pass read the first segment's data and before it reads its
// .txnindex, or right while it opens a .txnindex. The pass must give
// ErrCleanRaced (which the broker takes for "plan again"), never an I/O
// error on the vanished file, and change nothing; the next pass and a
// reopen then find every sealed segment's .txnindex and the same aborted
// transactions.
func TestCleanRacedByDeleteLocalBefore(t *testing.T) {
	keyed := func(t *testing.T, fsys *vfs.CrashFS) []index.AbortedTxn {
		c := fillCleanLog(t, fsys, 300, 40, 31)
		c.l.Close()
		return nil
	}
	txns := func(t *testing.T, fsys *vfs.CrashFS) []index.AbortedTxn {
		l := mustOpen(t, fsys, cleanDir, txnCfg, Options{})
		defer l.Close()
		newTxnWriter(32).append(t, l, 250)
		if _, err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		waitDurable(t, l, l.EndOffset()-1)
		return l.abortedT(0, math.MaxInt64)
	}
	for _, tc := range []struct {
		name     string
		cfg      Config
		segBytes int64 // of the pass: 1 gives a group per segment, as for a tiered log
		fill     func(t *testing.T, fsys *vfs.CrashFS) []index.AbortedTxn
		// hook: before the first group's .timeindex.cleaned is created
		// (OpCreate), or before the .txnindex of the first segment with
		// an abort marker is opened (OpOpen).
		hook vfs.Op
	}{
		{name: "keyed, a group per segment", cfg: cleanCfg, segBytes: 1, fill: keyed, hook: vfs.OpCreate},
		{name: "transactional, merged groups", cfg: txnCfg, segBytes: 4096, fill: txns, hook: vfs.OpCreate},
		{name: "transactional, file removed as it is opened", cfg: txnCfg, segBytes: 4096, fill: txns, hook: vfs.OpOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewCrashFS()
			all := tc.fill(t, mem)
			// Reopened: the .txnindex cache is empty, as after a restart.
			hfs := &onceHookFS{CrashFS: mem, op: tc.hook}
			l := mustOpen(t, hfs, cleanDir, tc.cfg, Options{})
			defer func() { l.Close() }()
			before := l.Segments()
			first := before[0]
			// Delete through the first segment holding an abort marker, if
			// any, so that entries go too.
			k := 0
			if len(all) > 0 {
				for before[k].Next <= all[0].LastOffset {
					k++
				}
			}
			cut := before[k].Next
			var want []index.AbortedTxn
			for _, e := range all {
				if e.LastOffset >= cut {
					want = append(want, e)
				}
			}
			if tc.cfg == txnCfg && (len(want) < 5 || len(want) == len(all) || k+2 >= len(before)) {
				t.Fatalf("%d aborted transactions, %d of them below %d (segment %d of %d): the test is weak", len(all), len(all)-len(want), cut, k, len(before))
			}
			// The first group's output is written after its sources' data
			// was read, before their aborted transactions are.
			fired := false
			hfs.path = filepath.Join(cleanDir, fileName(first.Base, timeIndexSuffix)+cleanedSuffix)
			if tc.hook == vfs.OpOpen {
				hfs.path = filepath.Join(cleanDir, fileName(before[k].Base, txnIndexSuffix))
			}
			hfs.fn = func() {
				fired = true
				if n, err := l.DeleteLocalBefore(cut); n != k+1 || err != nil {
					t.Errorf("DeleteLocalBefore(%d) = %d, %v; want %d", cut, n, err, k+1)
				}
			}
			_, err := l.Clean(CleanOptions{From: first.Base, To: activeBase(l), SegmentBytes: tc.segBytes})
			if !fired {
				t.Fatalf("the pass never wrote %s (err %v)", filepath.Base(hfs.path), err)
			}
			if !errors.Is(err, ErrCleanRaced) {
				t.Fatalf("pass raced by DeleteLocalBefore: %v, want ErrCleanRaced", err)
			}
			if err := l.Err(); err != nil {
				t.Fatalf("log failed: %v", err)
			}
			if f := cleanedFiles(t, mem, cleanDir); len(f) > 0 {
				t.Fatalf("leftover files %v", f)
			}
			if got := l.Segments(); len(got) != len(before)-k-1 || got[0].Base != cut {
				t.Fatalf("%d segments from %d, want %d from %d", len(got), got[0].Base, len(before)-k-1, cut)
			}
			check := func(what string, l *Log) {
				t.Helper()
				if got := l.abortedT(0, math.MaxInt64); !slices.Equal(got, want) {
					t.Fatalf("%s: AbortedTxns = %+v, want %+v", what, got, want)
				}
				segs := l.Segments()
				for _, s := range segs[:len(segs)-1] {
					if _, err := mem.Stat(filepath.Join(cleanDir, fileName(s.Base, txnIndexSuffix))); err != nil {
						t.Fatalf("%s: sealed segment %d: %v", what, s.Base, err)
					}
				}
			}
			check("after the raced pass", l)
			res, err := l.Clean(CleanOptions{From: l.LocalStartOffset(), To: activeBase(l), SegmentBytes: tc.segBytes})
			if err != nil {
				t.Fatalf("next pass: %v", err)
			}
			if res.RecordsRemoved == 0 && res.SegmentsOut == res.SegmentsIn {
				t.Fatalf("next pass changed nothing: %+v", res)
			}
			check("after the next pass", l)
			l.Close()
			l = mustOpen(t, mem, cleanDir, tc.cfg, Options{})
			check("reopened", l)
		})
	}
}

// TestCleanSourceTxns: where a pass takes a source segment's aborted
// transactions from.
func TestCleanSourceTxns(t *testing.T) {
	mem := vfs.NewCrashFS()
	l := mustOpen(t, mem, "/d", Config{}, Options{})
	defer l.Close()
	p := &cleanPass{l: l, ctx: context.Background()}
	// Two entries of the segment at base; every case has its own base.
	two := func(base int64) []index.AbortedTxn {
		return []index.AbortedTxn{{ProducerID: 1, FirstOffset: base - 10, LastOffset: base + 3}, {ProducerID: 2, FirstOffset: base + 1, LastOffset: base + 7}}
	}
	seg := func(base int64, entries []index.AbortedTxn, onDisk, file, deleted bool) *segment {
		s := newSegment(base, filepath.Join("/d", fileName(base, logSuffix)))
		s.next = base + 100
		for _, e := range entries {
			s.txn.add(e)
		}
		if onDisk {
			s.txn = txnSummary(entries)
		}
		if file {
			if err := writeAtomic(mem, "/d", fileName(base, txnIndexSuffix), encodeTxnIndex(base, entries), false); err != nil {
				t.Fatal(err)
			}
		}
		s.deleted = deleted
		return s
	}
	for _, tc := range []struct {
		name    string
		s       *segment
		want    []index.AbortedTxn
		raced   bool
		missing bool // an error wrapping fs.ErrNotExist
	}{
		{name: "in memory, no file", s: seg(1000, two(1000), false, false, false), want: two(1000)},
		{name: "none, no file read", s: seg(2000, nil, true, false, false)},
		{name: "in the file", s: seg(3000, two(3000), true, true, false), want: two(3000)},
		{name: "file lost", s: seg(4000, two(4000), true, false, false), missing: true},
		{name: "segment deleted", s: seg(5000, two(5000), true, false, true), raced: true},
		{name: "segment deleted, file still there", s: seg(6000, two(6000), true, true, true), raced: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.sourceTxns(tc.s)
			switch {
			case tc.raced:
				if !errors.Is(err, ErrCleanRaced) {
					t.Fatalf("err %v, want ErrCleanRaced", err)
				}
			case tc.missing:
				if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCleanRaced) {
					t.Fatalf("err %v, want a missing file", err)
				}
			case err != nil:
				t.Fatal(err)
			case !slices.Equal(got, tc.want):
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if len(got) > 0 && !tc.s.txn.onDisk {
				got[0].ProducerID = 99
				if tc.s.txn.entries[0].ProducerID == 99 {
					t.Fatal("the in-memory entries were handed out, not a copy")
				}
			}
		})
	}
}

// TestCleanRacedByTruncateTo: a follower's truncation cuts the first
// segment in place, and removes the others, between the pass's planning
// and its read of that segment's data. The short read is ErrCleanRaced,
// not a read error, and the pass leaves nothing behind.
func TestCleanRacedByTruncateTo(t *testing.T) {
	mem := vfs.NewCrashFS()
	c := fillCleanLog(t, mem, 300, 40, 33)
	c.l.Close()
	hfs := &onceHookFS{CrashFS: mem, op: vfs.OpCreate}
	l := mustOpen(t, hfs, cleanDir, cleanCfg, Options{})
	defer l.Close()
	before := l.Segments()
	if len(before) < 3 {
		t.Fatalf("%d segments", len(before))
	}
	b, err := l.Read(before[0].Base, 1, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	h, err := batch.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	cut := h.LastOffset() + 1 // after the first batch: the first segment is cut, not removed
	if cut >= before[0].Next {
		t.Fatalf("first segment [%d, %d) has one batch", before[0].Base, before[0].Next)
	}
	fired := false
	hfs.path = filepath.Join(cleanDir, fileName(before[0].Base, logSuffix)+cleanedSuffix)
	hfs.fn = func() {
		fired = true
		if end, err := l.TruncateTo(cut); end != cut || err != nil {
			t.Errorf("TruncateTo(%d) = %d, %v", cut, end, err)
		}
	}
	_, err = l.Clean(CleanOptions{From: before[0].Base, To: activeBase(l), SegmentBytes: 1})
	if !fired {
		t.Fatalf("the pass never wrote %s (err %v)", filepath.Base(hfs.path), err)
	}
	if !errors.Is(err, ErrCleanRaced) {
		t.Fatalf("pass raced by TruncateTo: %v, want ErrCleanRaced", err)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("log failed: %v", err)
	}
	if f := cleanedFiles(t, mem, cleanDir); len(f) > 0 {
		t.Fatalf("leftover files %v", f)
	}
	if segs := l.Segments(); len(segs) != 1 || l.EndOffset() != cut {
		t.Fatalf("%d segments, end %d; want 1, %d", len(segs), l.EndOffset(), cut)
	}
}
