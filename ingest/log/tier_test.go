package log

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

// readRange concatenates what Read returns for [from, to).
func readRange(t *testing.T, l *Log, from, to int64) []byte {
	t.Helper()
	var out []byte
	for off := from; off < to; {
		b, err := l.Read(off, 1<<20, to)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(b) == 0 {
			t.Fatalf("Read(%d) empty before %d", off, to)
		}
		out = append(out, b...)
		for len(b) > 0 {
			h, _ := batch.ParseHeader(b)
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
	return out
}

func exists(fsys vfs.FS, path string) bool {
	_, err := fsys.Stat(path)
	return err == nil
}

// TestSegmentsAndEpochsIn: Segments describes every segment across rolls,
// and EpochsIn gives, for each segment, the epoch in force at its base and
// every change inside it.
func TestSegmentsAndEpochsIn(t *testing.T) {
	fsys := vfs.NewCrashFS()
	clock := &testClock{ms: 1_000_000}
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{Now: clock.now})
	defer l.Close()
	if segs := l.Segments(); len(segs) != 1 || segs[0].Sealed || segs[0].Size != 0 || !segs[0].FirstAppend.IsZero() || segs[0].MaxTimestamp != -1 {
		t.Fatalf("empty log segments %+v", segs)
	}
	epochAt := map[int64]int32{} // base offset of each batch -> its epoch
	firstAppend := map[int64]int64{}
	var bases []int64
	var last int64
	for i := range 40 {
		epoch := int32(1 + 2*(i/7)) // 1, 3, 5, ... changing every 7 batches
		clock.ms += 10
		b := makeBatch(batchSpec{records: 1 + i%3, valSize: 40, ts: int64(5000 + i), pid: -1, seq: -1})
		res, err := l.Append(b, AppendInfo{LeaderEpoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
		epochAt[res.BaseOffset] = epoch
		bases = append(bases, res.BaseOffset)
		firstAppend[res.BaseOffset] = clock.ms
		last = res.LastOffset
	}
	waitDurable(t, l, last)
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("only %d segments", len(segs))
	}
	for i, s := range segs {
		last := i == len(segs)-1
		if s.Sealed == last || s.Durable == last {
			t.Fatalf("segment %d: sealed %v durable %v", i, s.Sealed, s.Durable)
		}
		if i > 0 && segs[i-1].Next != s.Base {
			t.Fatalf("segment %d starts at %d, previous ends at %d", i, s.Base, segs[i-1].Next)
		}
		fi, err := fsys.Stat(filepath.Join("/d", fileName(s.Base, logSuffix)))
		if err != nil || fi.Size()-segHeaderSize != s.Size {
			t.Fatalf("segment %d size %d, file %v %v", i, s.Size, fi, err)
		}
		if ms, ok := firstAppend[s.Base]; !ok || s.FirstAppend.UnixMilli() != ms {
			t.Fatalf("segment %d first append %v, want %d", i, s.FirstAppend, ms)
		}
		if s.MaxTimestamp < 5000 || s.MaxTimestamp > 5000+39+2 {
			t.Fatalf("segment %d max timestamp %d", i, s.MaxTimestamp)
		}
		// Expected epochs: the epoch of the batch holding Base, then each change.
		var want []EpochStart
		for _, b := range bases {
			if b < s.Base || b >= s.Next {
				continue
			}
			if len(want) == 0 || want[len(want)-1].Epoch != epochAt[b] {
				want = append(want, EpochStart{Epoch: epochAt[b], StartOffset: b})
			}
		}
		if got := l.EpochsIn(s.Base, s.Next); !slices.Equal(got, want) {
			t.Fatalf("segment %d [%d, %d): epochs %v, want %v", i, s.Base, s.Next, got, want)
		}
	}
	// A range starting inside an epoch is clamped to its start.
	mid := bases[10] + 1 // inside the epoch that began at bases[7]
	if got := l.EpochsIn(mid, bases[15]); !slices.Equal(got, []EpochStart{{3, mid}, {5, bases[14]}}) {
		t.Fatalf("EpochsIn(%d, %d) = %v", mid, bases[15], got)
	}
	if got := l.EpochsIn(mid, mid+1); !slices.Equal(got, []EpochStart{{3, mid}}) {
		t.Fatalf("EpochsIn one offset = %v", got)
	}
}

// TestOpenSegmentMatchesRead: the raw bytes of each sealed segment are what
// Read returns for its range; the active segment and a segment whose seal is
// not durable yet are refused.
func TestOpenSegmentMatchesRead(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024, IndexIntervalBytes: 128}, Options{})
	defer l.Close()
	fillSegments(t, l, 20)
	segs := l.Segments()
	for _, s := range segs[:len(segs)-1] {
		r, size, err := l.OpenSegment(s.Base)
		if err != nil {
			t.Fatalf("OpenSegment(%d): %v", s.Base, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || int64(len(got)) != size || size != s.Size {
			t.Fatalf("segment %d: read %d bytes (%v), size %d, info %d", s.Base, len(got), err, size, s.Size)
		}
		if want := readRange(t, l, s.Base, s.Next); !bytes.Equal(got, want) {
			t.Fatalf("segment %d: OpenSegment bytes differ from Read", s.Base)
		}
		ra := r.(io.ReaderAt)
		part := make([]byte, 10)
		if _, err := ra.ReadAt(part, 5); err != nil || !bytes.Equal(part, got[5:15]) {
			t.Fatalf("ReadAt: %v", err)
		}
		if err := r.Close(); err != nil || r.Close() != nil {
			t.Fatal("Close not idempotent")
		}
	}
	act := segs[len(segs)-1]
	if _, _, err := l.OpenSegment(act.Base); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("OpenSegment(active): %v", err)
	}
	if _, _, err := l.OpenSegment(act.Base + 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenSegment(no such base): %v", err)
	}

	// A roll whose sync round has not run: sealed but not durable.
	l.syncMu.Lock()
	var rolled, rolledNext int64 = -1, -1
	for rolled < 0 {
		mustAppend(t, l, simpleBatch(5, 50, 1))
		if s := l.Segments(); len(s) > len(segs) {
			rolled, rolledNext = s[len(s)-2].Base, s[len(s)-2].Next
			if !s[len(s)-2].Sealed || s[len(s)-2].Durable {
				t.Fatalf("pending seal: %+v", s[len(s)-2])
			}
		}
	}
	_, _, err := l.OpenSegment(rolled)
	_, serr := l.ProducerSnapshotAt(rolledNext)
	l.syncMu.Unlock()
	if !errors.Is(err, ErrNotSealed) || !errors.Is(serr, ErrNotSealed) {
		t.Fatalf("segment with a pending seal: %v, snapshot %v", err, serr)
	}
	waitDurable(t, l, l.EndOffset()-1)
	if r, _, err := l.OpenSegment(rolled); err != nil {
		t.Fatalf("after the sync round: %v", err)
	} else {
		r.Close()
	}
}

// TestOpenSegmentSurvivesDeleteLocalBefore: an open segment reader keeps
// reading the whole segment after DeleteLocalBefore removed its files, and
// its descriptor closes with the reader.
func TestOpenSegmentSurvivesDeleteLocalBefore(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024}, Options{})
	defer l.Close()
	fillSegments(t, l, 20)
	segs := l.Segments()
	want := readRange(t, l, segs[0].Base, segs[0].Next)
	r, size, err := l.OpenSegment(segs[0].Base)
	if err != nil {
		t.Fatal(err)
	}
	half := make([]byte, size/2)
	if _, err := io.ReadFull(r, half); err != nil {
		t.Fatal(err)
	}
	if n, err := l.DeleteLocalBefore(segs[2].Next); err != nil || n != 3 {
		t.Fatalf("DeleteLocalBefore: %d, %v", n, err)
	}
	if exists(fsys, filepath.Join("/d", fileName(segs[0].Base, logSuffix))) {
		t.Fatal("segment file still there")
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(append(half, rest...), want) {
		t.Fatalf("reading on after the deletion: %v", err)
	}
	open := fsys.OpenFiles()
	r.Close()
	if fsys.OpenFiles() != open-1 {
		t.Fatalf("descriptor of the deleted segment not closed: %d -> %d open", open, fsys.OpenFiles())
	}
	if _, _, err := l.OpenSegment(segs[0].Base); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenSegment of a deleted segment: %v", err)
	}

	// Concurrent: readers of every segment while the segments go.
	segs = l.Segments()
	var wg sync.WaitGroup
	for _, s := range segs[:len(segs)-1] {
		want := readRange(t, l, s.Base, s.Next)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := l.OpenSegment(s.Base)
			if errors.Is(err, ErrNotFound) {
				return // deleted before the open
			}
			if err != nil {
				t.Errorf("OpenSegment(%d): %v", s.Base, err)
				return
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("segment %d read during deletion: %v", s.Base, err)
			}
		}()
	}
	if _, err := l.DeleteLocalBefore(l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := len(l.Segments()); got != 1 {
		t.Fatalf("%d segments left, want the active one", got)
	}
}

// TestProducerSnapshotAt: the snapshot at each sealed segment's end decodes
// to the producer state as of that offset, also when recovery had to
// rewrite it after a kill right after a roll.
func TestProducerSnapshotAt(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	type app struct {
		pid       int64
		seq       int32
		first, la int64
	}
	var apps []app
	seqs := map[int64]int32{}
	for i := range 30 {
		pid := int64(100 + i%3)
		b := makeBatch(batchSpec{records: 2, valSize: 40, ts: int64(i), pid: pid, seq: seqs[pid]})
		res := mustAppend(t, l, b)
		apps = append(apps, app{pid, seqs[pid], res.BaseOffset, res.LastOffset})
		seqs[pid] += 2
	}
	waitDurable(t, l, l.EndOffset()-1)
	check := func(l *Log) {
		t.Helper()
		segs := l.Segments()
		for _, s := range segs[:len(segs)-1] {
			b, err := l.ProducerSnapshotAt(s.Next)
			if err != nil {
				t.Fatalf("ProducerSnapshotAt(%d): %v", s.Next, err)
			}
			st, next, err := producer.DecodeSnapshot(b)
			if err != nil || next != s.Next {
				t.Fatalf("snapshot at %d: next %d, %v", s.Next, next, err)
			}
			for pid := int64(100); pid < 103; pid++ {
				var lastApp *app
				for i := range apps {
					if apps[i].pid == pid && apps[i].la < s.Next {
						lastApp = &apps[i]
					}
				}
				p, ok := st.Producer(pid)
				if lastApp == nil {
					if ok {
						t.Fatalf("snapshot at %d has producer %d before its first batch", s.Next, pid)
					}
					continue
				}
				if !ok || len(p.Batches) == 0 {
					t.Fatalf("snapshot at %d lacks producer %d", s.Next, pid)
				}
				m := p.Batches[len(p.Batches)-1]
				if m.FirstSeq != lastApp.seq || m.FirstOffset != lastApp.first || m.LastOffset != lastApp.la {
					t.Fatalf("snapshot at %d, producer %d: last batch %+v, want %+v", s.Next, pid, m, *lastApp)
				}
			}
		}
		if _, err := l.ProducerSnapshotAt(segs[len(segs)-1].Next); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotSealed) {
			t.Fatalf("snapshot at the end of the active segment: %v", err)
		}
		if _, err := l.ProducerSnapshotAt(segs[0].Next + 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("snapshot at no segment end: %v", err)
		}
	}
	check(l)

	// Killed right after a roll, before its sync round: recovery writes the
	// missing snapshots.
	l.syncMu.Lock()
	n := len(l.Segments())
	for i := 30; len(l.Segments()) < n+2; i++ {
		pid := int64(100 + i%3)
		b := makeBatch(batchSpec{records: 2, valSize: 40, ts: int64(i), pid: pid, seq: seqs[pid]})
		res := mustAppend(t, l, b)
		apps = append(apps, app{pid, seqs[pid], res.BaseOffset, res.LastOffset})
		seqs[pid] += 2
	}
	killed := fsys.KillClone()
	l.syncMu.Unlock()
	l.Close()
	segs := l.Segments()
	if exists(killed, filepath.Join("/d", fileName(segs[len(segs)-2].Next, snapshotSuffix))) {
		t.Fatal("test setup: the snapshot of the pending seal exists")
	}
	r := mustOpen(t, killed, "/d", cfg, Options{})
	defer r.Close()
	check(r)
	// And they are durable.
	p := mustOpen(t, killed.CrashClone(nil), "/d", cfg, Options{})
	defer p.Close()
	check(p)
}

// TestRollAndRollIfOlder: forced rolls seal a non-empty active segment and
// return with the seal durable; empty segments are never rolled.
func TestRollAndRollIfOlder(t *testing.T) {
	fsys := vfs.NewCrashFS()
	clock := &testClock{ms: 1_000_000}
	l := mustOpen(t, fsys, "/d", Config{}, Options{Now: clock.now})
	defer l.Close()
	if rolled, err := l.Roll(); rolled || err != nil {
		t.Fatalf("Roll of an empty log: %v %v", rolled, err)
	}
	if rolled, err := l.RollIfOlder(0); rolled || err != nil {
		t.Fatalf("RollIfOlder of an empty log: %v %v", rolled, err)
	}
	mustAppend(t, l, simpleBatch(3, 10, 1))
	clock.ms += 5_000
	if rolled, err := l.RollIfOlder(10 * time.Second); rolled || err != nil {
		t.Fatalf("RollIfOlder too young: %v %v", rolled, err)
	}
	mustAppend(t, l, simpleBatch(3, 10, 2)) // does not reset the age
	clock.ms += 5_000
	if rolled, err := l.RollIfOlder(10 * time.Second); !rolled || err != nil {
		t.Fatalf("RollIfOlder old enough: %v %v", rolled, err)
	}
	segs := l.Segments()
	if len(segs) != 2 || segs[0].Next != 6 || !segs[0].Durable || segs[1].Base != 6 || segs[1].Next != 6 {
		t.Fatalf("after RollIfOlder: %+v", segs)
	}
	if r, _, err := l.OpenSegment(0); err != nil {
		t.Fatalf("OpenSegment right after Roll: %v", err)
	} else {
		r.Close()
	}
	if _, err := l.ProducerSnapshotAt(6); err != nil {
		t.Fatalf("ProducerSnapshotAt right after Roll: %v", err)
	}
	if rolled, _ := l.RollIfOlder(0); rolled {
		t.Fatal("rolled an empty active segment")
	}
	mustAppend(t, l, simpleBatch(1, 10, 3))
	if rolled, err := l.Roll(); !rolled || err != nil {
		t.Fatalf("Roll: %v %v", rolled, err)
	}
	if segs := l.Segments(); len(segs) != 3 || !segs[1].Durable || segs[1].Base != 6 || segs[1].Next != 7 {
		t.Fatalf("after Roll: %+v", segs)
	}
	l.Close()
	if _, err := l.Roll(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Roll after Close: %v", err)
	}
}

// TestDeleteLocalBefore: uploaded segments go without moving the log start;
// reads below the local start say so; the state survives a reopen and a
// power loss, also on a log that never had a start checkpoint.
func TestDeleteLocalBefore(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	fillSegments(t, l, 30)
	segs := l.Segments()
	end := l.EndOffset()
	if exists(fsys, "/d/"+startCheckpoint) {
		t.Fatal("test setup: a start checkpoint exists")
	}
	// Segments 0..2 end at or below segs[3].Base+1; segment 3 does not.
	n, err := l.DeleteLocalBefore(segs[3].Base + 1)
	if err != nil || n != 3 {
		t.Fatalf("DeleteLocalBefore: %d, %v", n, err)
	}
	if l.StartOffset() != 0 || l.LocalStartOffset() != segs[3].Base || l.EndOffset() != end {
		t.Fatalf("start %d, local start %d, end %d", l.StartOffset(), l.LocalStartOffset(), l.EndOffset())
	}
	for i, s := range segs {
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			gone := i < 3
			if i == len(segs)-1 && suffix != logSuffix {
				continue // the active segment has no index files
			}
			if exists(fsys, filepath.Join("/d", fileName(s.Base, suffix))) == gone {
				t.Fatalf("segment %d file %s: exists %v", i, suffix, !gone)
			}
		}
		// Snapshots at the bases of deleted segments go; the one at the
		// first remaining segment's base (its producer state) stays.
		if i >= 1 && i < len(segs)-1 {
			if got := exists(fsys, filepath.Join("/d", fileName(s.Base, snapshotSuffix))); got != (i >= 3) {
				t.Fatalf("snapshot at %d: exists %v", s.Base, got)
			}
		}
	}
	_, err = l.Read(5, 100, 1<<40)
	if !errors.Is(err, ErrBelowLocalStart) || !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read below the local start: %v", err)
	}
	if b, err := l.Read(segs[3].Base, 100, 1<<40); err != nil || len(b) == 0 {
		t.Fatalf("Read at the local start: %v", err)
	}
	if _, err := l.Read(end+1, 100, 1<<40); err == nil || errors.Is(err, ErrBelowLocalStart) {
		t.Fatalf("Read past the end: %v", err)
	}
	if n, err := l.DeleteLocalBefore(segs[3].Base + 1); n != 0 || err != nil {
		t.Fatalf("repeat: %d, %v", n, err)
	}
	// OffsetForTimestamp and MaxTimestamp see the local segments only.
	if off, _, ok, err := l.OffsetForTimestamp(0); err != nil || !ok || off != segs[3].Base {
		t.Fatalf("OffsetForTimestamp(0) = %d %v %v, want the local start %d", off, ok, err, segs[3].Base)
	}
	if off, ts, err := l.MaxTimestamp(); err != nil || ts != 30*1000+9 || off != end-1 {
		t.Fatalf("MaxTimestamp = %d@%d %v", off, ts, err)
	}

	// Power loss right after: the deletion and the start stay.
	p := mustOpen(t, fsys.CrashClone(nil), "/d", cfg, Options{})
	if p.StartOffset() != 0 || p.LocalStartOffset() != segs[3].Base || p.EndOffset() != end {
		t.Fatalf("after power loss: start %d, local start %d, end %d", p.StartOffset(), p.LocalStartOffset(), p.EndOffset())
	}
	if _, err := p.Read(0, 100, 1<<40); !errors.Is(err, ErrBelowLocalStart) {
		t.Fatalf("Read below the local start after power loss: %v", err)
	}
	p.Close()

	// DeleteRecords below the local start only moves the start.
	if err := l.SetStartOffset(7); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != 7 || l.LocalStartOffset() != segs[3].Base || len(l.Segments()) != len(segs)-3 {
		t.Fatalf("start %d, local start %d after DeleteRecords below it", l.StartOffset(), l.LocalStartOffset())
	}
	if _, err := l.Read(6, 100, 1<<40); !errors.Is(err, ErrOffsetOutOfRange) || errors.Is(err, ErrBelowLocalStart) {
		t.Fatalf("Read below the log start: %v", err)
	}
	if _, err := l.Read(7, 100, 1<<40); !errors.Is(err, ErrBelowLocalStart) {
		t.Fatalf("Read at the log start, below the local start: %v", err)
	}
	l.Close()
	l = mustOpen(t, fsys, "/d", cfg, Options{})
	if l.StartOffset() != 7 || l.LocalStartOffset() != segs[3].Base || l.EndOffset() != end {
		t.Fatalf("after reopen: start %d, local start %d, end %d", l.StartOffset(), l.LocalStartOffset(), l.EndOffset())
	}
	if got := readRange(t, l, segs[3].Base, end); len(got) == 0 {
		t.Fatal("nothing readable locally after reopen")
	}
	// DeleteRecords beyond the local start deletes local segments.
	mid := segs[5].Base + 2
	if err := l.SetStartOffset(mid); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != mid || l.LocalStartOffset() != mid || l.Segments()[0].Base != segs[5].Base {
		t.Fatalf("start %d, local start %d, first segment %d", l.StartOffset(), l.LocalStartOffset(), l.Segments()[0].Base)
	}
	if _, err := l.Read(mid-1, 100, 1<<40); errors.Is(err, ErrBelowLocalStart) || !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read below the start: %v", err)
	}
	// Never the active segment.
	if rolled, err := l.Roll(); !rolled || err != nil {
		t.Fatalf("Roll: %v %v", rolled, err)
	}
	if _, err := l.DeleteLocalBefore(1 << 62); err != nil {
		t.Fatal(err)
	}
	if segs := l.Segments(); len(segs) != 1 || l.LocalStartOffset() != end || l.StartOffset() != mid {
		t.Fatalf("after deleting everything: %+v, local start %d, start %d", segs, l.LocalStartOffset(), l.StartOffset())
	}
	if b, err := l.Read(end, 100, 1<<40); err != nil || b != nil {
		t.Fatalf("Read at the end: %v", err)
	}
	mustAppend(t, l, simpleBatch(1, 10, 1))
	l.Close()
	l = mustOpen(t, fsys.CrashClone(nil), "/d", cfg, Options{})
	defer l.Close()
	if l.StartOffset() != mid || l.LocalStartOffset() != end || l.EndOffset() != end+1 {
		t.Fatalf("after power loss: start %d, local start %d, end %d", l.StartOffset(), l.LocalStartOffset(), l.EndOffset())
	}
}

// TestDeleteLocalBeforeInterrupted: a failure in the middle of a deletion
// leaves, after a power loss, a suffix of the segments with the log start
// unchanged and everything local readable.
func TestDeleteLocalBeforeInterrupted(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	fillSegments(t, l, 30)
	segs := l.Segments()
	all := readRange(t, l, 0, l.EndOffset())
	victim := filepath.Join("/d", fileName(segs[2].Base, indexSuffix))
	fsys.InjectError(func(op vfs.Op, path string) error {
		if op == vfs.OpRemove && path == victim {
			return errors.New("injected")
		}
		return nil
	})
	n, err := l.DeleteLocalBefore(segs[5].Base)
	if !errors.Is(err, ErrStorage) || n != 2 {
		t.Fatalf("interrupted DeleteLocalBefore: %d, %v", n, err)
	}
	crashed := fsys.CrashClone(nil)
	l.Close()
	r := mustOpen(t, crashed, "/d", cfg, Options{})
	defer r.Close()
	local := r.LocalStartOffset()
	if r.StartOffset() != 0 || (local != segs[2].Base && local != segs[3].Base) {
		t.Fatalf("after the crash: start %d, local start %d", r.StartOffset(), local)
	}
	if got := readRange(t, r, local, r.EndOffset()); !bytes.HasSuffix(all, got) || int64(len(all)-len(got)) != prefixBytes(segs, local) {
		t.Fatal("local data after the crash is not the suffix of the log")
	}
	names, _ := crashed.ReadDir("/d")
	for _, n := range names {
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if b, ok := parseFileName(n, suffix); ok && b < local {
				t.Fatalf("stray index file %s left", n)
			}
		}
	}
	if n, err := r.DeleteLocalBefore(segs[5].Base); err != nil || r.LocalStartOffset() != segs[5].Base || n == 0 {
		t.Fatalf("retry: %d, %v, local start %d", n, err, r.LocalStartOffset())
	}
}

// prefixBytes is the size of the segments below base.
func prefixBytes(segs []SegmentInfo, base int64) int64 {
	var n int64
	for _, s := range segs {
		if s.Base < base {
			n += s.Size
		}
	}
	return n
}

// TestTierConcurrency: appends, forced rolls, an uploader reading sealed
// segments and deleting them, and consumers reading from the local start,
// all at once (for the race detector); then the log reopens consistently.
func TestTierConcurrency(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 2048, IndexIntervalBytes: 256}
	syncer := NewSyncer(quietLogger(), 2)
	defer syncer.Close()
	l := mustOpen(t, fsys, "/d", cfg, Options{Syncer: syncer})
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // producer
		defer wg.Done()
		defer stop.Store(true)
		for i := range 1000 {
			if _, err := l.Append(simpleBatch(1+i%3, 30, byte(i)), AppendInfo{LeaderEpoch: int32(1 + i/250)}); err != nil {
				t.Errorf("Append: %v", err)
				return
			}
			if i%50 == 0 {
				if _, err := l.Roll(); err != nil {
					t.Errorf("Roll: %v", err)
					return
				}
			}
		}
	}()
	uploaded := int64(0)
	uploadOnce := func() bool {
		for _, s := range l.Segments() {
			if !s.Durable {
				break
			}
			r, size, err := l.OpenSegment(s.Base)
			if err != nil {
				t.Errorf("OpenSegment(%d): %v", s.Base, err)
				return false
			}
			b, err := io.ReadAll(r)
			r.Close()
			if err != nil || int64(len(b)) != size {
				t.Errorf("segment %d: %d of %d bytes, %v", s.Base, len(b), size, err)
				return false
			}
			if _, err := l.ProducerSnapshotAt(s.Next); err != nil {
				t.Errorf("ProducerSnapshotAt(%d): %v", s.Next, err)
				return false
			}
			if len(l.EpochsIn(s.Base, s.Next)) == 0 {
				t.Errorf("no epochs for [%d, %d)", s.Base, s.Next)
				return false
			}
			if _, err := l.DeleteLocalBefore(s.Next); err != nil {
				t.Errorf("DeleteLocalBefore: %v", err)
				return false
			}
			uploaded = s.Next
		}
		return true
	}
	go func() { // uploader
		defer wg.Done()
		for !stop.Load() && uploadOnce() {
		}
	}()
	go func() { // consumer
		defer wg.Done()
		for !stop.Load() {
			off := l.LocalStartOffset()
			for off < l.DurableOffset() {
				b, err := l.Read(off, 4096, l.DurableOffset())
				if errors.Is(err, ErrBelowLocalStart) {
					break // the remote tier would serve it
				}
				if err != nil {
					t.Errorf("Read(%d): %v", off, err)
					return
				}
				if len(b) == 0 {
					break
				}
				for len(b) > 0 {
					h, _ := batch.ParseHeader(b)
					off = h.LastOffset() + 1
					b = b[h.Size():]
				}
			}
			if _, _, _, err := l.OffsetForTimestamp(0); err != nil {
				t.Errorf("OffsetForTimestamp: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	t.Logf("uploaded up to %d of %d while appending", uploaded, l.EndOffset())
	if _, err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	uploadOnce()
	if uploaded != l.EndOffset() || l.LocalStartOffset() != uploaded {
		t.Fatal("the uploader deleted nothing")
	}
	local, end := l.LocalStartOffset(), l.EndOffset()
	l.Close()
	r := mustOpen(t, fsys, "/d", cfg, Options{})
	defer r.Close()
	if r.StartOffset() != 0 || r.LocalStartOffset() != local || r.EndOffset() != end {
		t.Fatalf("reopen: [%d, %d) local from %d, want [0, %d) local from %d", r.StartOffset(), r.EndOffset(), r.LocalStartOffset(), end, local)
	}
}

// snapshotWith returns a producer snapshot as of next holding producer pid
// whose last batch, b, was appended at next-records.
func snapshotWith(t *testing.T, b []byte, next int64) []byte {
	t.Helper()
	h, err := batch.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	h.BaseOffset = next - int64(h.LastOffsetDelta) - 1
	st := producer.NewState()
	st.Update(&h, 1)
	return st.AppendSnapshot(nil, next)
}

// TestResetTo: an empty log continues at a later offset with the log start,
// producer state and leader epochs it is given, durably.
func TestResetTo(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1024}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	const start, next = 500, 1000
	last := makeBatch(batchSpec{records: 5, valSize: 20, ts: 77, pid: 9, pepoch: 2, seq: 10})
	snap := snapshotWith(t, last, next)
	epochs := []EpochStart{{1, 0}, {4, 600}, {7, 900}, {9, next}}
	if err := l.ResetTo(start, next, snap, epochs); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log, end int64) {
		t.Helper()
		if l.StartOffset() != start || l.LocalStartOffset() != next || l.EndOffset() != end || l.DurableOffset() != end {
			t.Fatalf("start %d, local start %d, end %d, durable %d", l.StartOffset(), l.LocalStartOffset(), l.EndOffset(), l.DurableOffset())
		}
		// Epochs are clamped to the start; the one at next is dropped (no
		// record carries it yet), as recovery would.
		if got := l.EpochsIn(start, next); !slices.Equal(got, []EpochStart{{1, start}, {4, 600}, {7, 900}}) {
			t.Fatalf("epochs %v", got)
		}
		if ep, off := l.EndOffsetForEpoch(4); ep != 4 || off != 900 {
			t.Fatalf("end of epoch 4: %d %d", ep, off)
		}
		if _, err := l.Read(700, 100, 1<<40); !errors.Is(err, ErrBelowLocalStart) {
			t.Fatalf("Read in the remote range: %v", err)
		}
		if _, err := l.Read(start-1, 100, 1<<40); errors.Is(err, ErrBelowLocalStart) || !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("Read below the start: %v", err)
		}
	}
	check(l, next)
	names, _ := fsys.ReadDir("/d")
	if !slices.Contains(names, fileName(next, logSuffix)) || slices.Contains(names, fileName(0, logSuffix)) {
		t.Fatalf("files after reset: %v", names)
	}
	// A crash right after it returns keeps the state.
	c := mustOpen(t, fsys.CrashClone(nil), "/d", cfg, Options{})
	check(c, next)
	res, err := c.Append(bytes.Clone(last), AppendInfo{LeaderEpoch: 9})
	if err != nil || !res.Duplicate || res.BaseOffset != next-5 || res.LastOffset != next-1 {
		t.Fatalf("retry of the snapshot producer's last batch after crash: %+v %v", res, err)
	}
	c.Close()

	// The producer's last batch is a duplicate; the next one continues.
	res, err = l.Append(bytes.Clone(last), AppendInfo{LeaderEpoch: 9})
	if err != nil || !res.Duplicate || res.BaseOffset != next-5 {
		t.Fatalf("retry of the snapshot producer's last batch: %+v %v", res, err)
	}
	following := makeBatch(batchSpec{records: 2, valSize: 20, ts: 78, pid: 9, pepoch: 2, seq: 15})
	appended := bytes.Clone(following) // patched in place by Append
	res, err = l.Append(appended, AppendInfo{LeaderEpoch: 9})
	if err != nil || res.Duplicate || res.BaseOffset != next || res.LogStartOffset != start {
		t.Fatalf("next batch: %+v %v", res, err)
	}
	outOfOrder := makeBatch(batchSpec{records: 1, valSize: 20, ts: 79, pid: 9, pepoch: 2, seq: 30})
	if _, err := l.Append(outOfOrder, AppendInfo{LeaderEpoch: 9}); err == nil {
		t.Fatal("out-of-order sequence accepted after reset")
	}
	waitDurable(t, l, next+1)
	if ep, off := l.EndOffsetForEpoch(7); ep != 7 || off != next {
		t.Fatalf("end of epoch 7 after an append at epoch 9: %d %d", ep, off)
	}
	// Refused on a log with records.
	if err := l.ResetTo(2000, 2000, nil, nil); err == nil {
		t.Fatal("ResetTo of a log with records")
	}
	if l.EndOffset() != next+2 || l.StartOffset() != start {
		t.Fatal("refused ResetTo changed the log")
	}
	crashed := fsys.CrashClone(nil)
	l.Close()

	// Crash and recover: offsets continue at next.
	r := mustOpen(t, crashed, "/d", cfg, Options{})
	defer r.Close()
	if r.StartOffset() != start || r.LocalStartOffset() != next || r.EndOffset() != next+2 {
		t.Fatalf("after crash: [%d, %d) local from %d", r.StartOffset(), r.EndOffset(), r.LocalStartOffset())
	}
	got := readAll2(t, r, next)
	if len(got) != 1 || !bytes.Equal(got[0], appended) {
		t.Fatalf("after crash: %d batches", len(got))
	}
	for _, b := range [][]byte{last, following} {
		if res, err := r.Append(bytes.Clone(b), AppendInfo{LeaderEpoch: 9}); err != nil || !res.Duplicate {
			t.Fatalf("retry after crash: %+v %v", res, err)
		}
	}
	if ep, off := r.EndOffsetForEpoch(7); ep != 7 || off != next {
		t.Fatalf("end of epoch 7 after crash: %d %d", ep, off)
	}
}

// readAll2 reads the local log from offset from to the end.
func readAll2(t *testing.T, l *Log, from int64) [][]byte {
	t.Helper()
	var out [][]byte
	b := readRange(t, l, from, l.EndOffset())
	for len(b) > 0 {
		h, _ := batch.ParseHeader(b)
		out = append(out, b[:h.Size()])
		b = b[h.Size():]
	}
	return out
}

// TestResetToRefusals: bad arguments and non-empty logs change nothing.
func TestResetToRefusals(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{}, Options{})
	defer l.Close()
	b := makeBatch(batchSpec{records: 1, pid: -1, seq: -1})
	for name, call := range map[string]func() error{
		"start after next":    func() error { return l.ResetTo(10, 5, nil, nil) },
		"snapshot offset":     func() error { return l.ResetTo(0, 10, snapshotWith(t, b, 11), nil) },
		"corrupt snapshot":    func() error { return l.ResetTo(0, 10, []byte("STPS junk"), nil) },
		"epochs out of order": func() error { return l.ResetTo(0, 10, nil, []EpochStart{{3, 0}, {2, 5}}) },
		"epoch starts equal":  func() error { return l.ResetTo(0, 10, nil, []EpochStart{{1, 5}, {2, 5}}) },
	} {
		if err := call(); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	if l.Err() != nil || l.EndOffset() != 0 || len(l.Segments()) != 1 {
		t.Fatal("a refused ResetTo changed the log")
	}
	mustAppend(t, l, simpleBatch(2, 10, 1))
	if err := l.ResetTo(100, 100, nil, nil); err == nil {
		t.Fatal("ResetTo of a log with records")
	}
	if l.EndOffset() != 2 || l.Err() != nil {
		t.Fatal("refused ResetTo changed the log")
	}
	// Below the end, on an empty log.
	e := mustOpen(t, fsys, "/e", Config{}, Options{})
	defer e.Close()
	if err := e.ResetTo(50, 50, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ResetTo(0, 40, nil, nil); err == nil {
		t.Fatal("ResetTo below the end")
	}
	// Same next again: fine (a retry), and log start == next drops nothing.
	if err := e.ResetTo(50, 50, nil, nil); err != nil || e.StartOffset() != 50 || e.EndOffset() != 50 {
		t.Fatalf("repeated ResetTo: %v", err)
	}
}

// TestResetToInterrupted: a failure in the middle of ResetTo leaves, after
// a power loss, a log without local records that ResetTo then completes.
func TestResetToInterrupted(t *testing.T) {
	for _, failOp := range []vfs.Op{vfs.OpCreate, vfs.OpRemove, vfs.OpSyncDir} {
		fsys := vfs.NewCrashFS()
		cfg := Config{}
		l := mustOpen(t, fsys, "/d", cfg, Options{})
		last := makeBatch(batchSpec{records: 5, valSize: 20, ts: 77, pid: 9, seq: 10})
		snap := snapshotWith(t, last, 1000)
		epochs := []EpochStart{{1, 0}, {4, 600}}
		var calls atomic.Int32
		fsys.InjectError(func(op vfs.Op, path string) error {
			if op != failOp {
				return nil
			}
			switch {
			case failOp == vfs.OpCreate && filepath.Base(path) == fileName(1000, logSuffix),
				failOp == vfs.OpRemove && filepath.Base(path) == fileName(0, logSuffix),
				failOp == vfs.OpSyncDir && calls.Add(1) == 2:
				return errors.New("injected")
			}
			return nil
		})
		if err := l.ResetTo(500, 1000, snap, epochs); !errors.Is(err, ErrStorage) {
			t.Fatalf("%v: interrupted ResetTo: %v", failOp, err)
		}
		if _, err := l.Append(simpleBatch(1, 1, 1), AppendInfo{}); !errors.Is(err, ErrStorage) {
			t.Fatalf("%v: append after a failed reset: %v", failOp, err)
		}
		crashed := fsys.CrashClone(nil)
		l.Close()
		r := mustOpen(t, crashed, "/d", cfg, Options{})
		if segs := r.Segments(); len(segs) != 1 || segs[0].Next != segs[0].Base {
			t.Fatalf("%v: after the crash: %+v", failOp, segs)
		}
		if err := r.ResetTo(500, 1000, snap, epochs); err != nil {
			t.Fatalf("%v: retry: %v", failOp, err)
		}
		r.Close()
		p := mustOpen(t, crashed.CrashClone(nil), "/d", cfg, Options{})
		if p.StartOffset() != 500 || p.LocalStartOffset() != 1000 || p.EndOffset() != 1000 {
			t.Fatalf("%v: after retry and crash: [%d, %d) local %d", failOp, p.StartOffset(), p.EndOffset(), p.LocalStartOffset())
		}
		if res, err := p.Append(bytes.Clone(last), AppendInfo{LeaderEpoch: 5}); err != nil || !res.Duplicate {
			t.Fatalf("%v: dedupe after retry: %+v %v", failOp, res, err)
		}
		p.Close()
	}
}

// TestOpenRemovesStrayIndexFiles: index files whose segment file is gone
// (a deletion cut short) are removed at Open.
func TestOpenRemovesStrayIndexFiles(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024}, Options{})
	fillSegments(t, l, 10)
	segs := l.Segments()
	l.Close()
	// Simulate: the .log of the first segment is gone but its indexes stay,
	// with a checkpoint that keeps the start at 0.
	if err := writeAtomic(fsys, "/d", startCheckpoint, encodeStartOffset(0), true); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove(filepath.Join("/d", fileName(segs[0].Base, logSuffix))); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, fsys, "/d", Config{SegmentBytes: 1024}, Options{})
	defer r.Close()
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if _, err := fsys.Stat(filepath.Join("/d", fileName(segs[0].Base, suffix))); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stray %s: %v", suffix, err)
		}
	}
	if r.StartOffset() != 0 || r.LocalStartOffset() != segs[1].Base {
		t.Fatalf("start %d, local start %d", r.StartOffset(), r.LocalStartOffset())
	}
}
