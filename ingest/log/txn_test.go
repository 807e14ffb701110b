package log

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

// txnCfg rolls often so that transactions span segments.
var txnCfg = Config{SegmentBytes: 1024, IndexIntervalBytes: 128, SegmentMs: 1 << 50}

// txnData is a transactional batch of n records of producer pid (epoch 0)
// at sequence seq.
func txnData(pid int64, seq int32, n int) []byte {
	recs := make([]batch.Record, n)
	for i := range recs {
		recs[i] = batch.Record{Key: fmt.Appendf(nil, "k%d", i), Value: make([]byte, 40)}
	}
	return batch.Build(batch.BuildOptions{BaseTimestamp: 1000, Transactional: true, Idempotent: true,
		ProducerID: pid, BaseSequence: seq}, recs...)
}

// marker is a commit or abort marker of producer pid (epoch 0) written by
// coordinator epoch coord.
func marker(pid int64, commit bool, coord int32) []byte {
	return batch.AppendMarker(nil, batch.MarkerOptions{ProducerID: pid, TimestampMs: 1000,
		Marker: batch.Marker{Commit: commit, CoordinatorEpoch: coord}})
}

// txnModel computes, from the batches of a log (read back from it), what
// the aborted-transaction index and the first unstable offset must be: an
// independent replay of KIP-98's rules.
func txnModel(t testing.TB, batches []batchAt, start int64) (aborted []index.AbortedTxn, fuo int64, ok bool) {
	t.Helper()
	open := map[int64]int64{}
	for _, ba := range batches {
		h, err := batch.ParseHeader(ba.b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.ProducerID < 0:
		case h.IsControl():
			m, err := batch.ParseMarker(ba.b)
			if err != nil {
				t.Fatalf("marker at %d: %v", h.BaseOffset, err)
			}
			if first, isOpen := open[h.ProducerID]; isOpen && !m.Commit {
				aborted = append(aborted, index.AbortedTxn{ProducerID: h.ProducerID, FirstOffset: first, LastOffset: h.BaseOffset})
			}
			delete(open, h.ProducerID)
		case h.IsTransactional():
			if _, isOpen := open[h.ProducerID]; !isOpen {
				open[h.ProducerID] = h.BaseOffset
			}
		}
	}
	slices.SortStableFunc(aborted, func(a, b index.AbortedTxn) int { return int(a.FirstOffset - b.FirstOffset) })
	fuo = math.MaxInt64
	for _, f := range open {
		fuo = min(fuo, f)
	}
	if fuo == math.MaxInt64 {
		return aborted, 0, false
	}
	return aborted, max(fuo, start), true
}

func overlapping(all []index.AbortedTxn, from, upTo int64) []index.AbortedTxn {
	var out []index.AbortedTxn
	for _, e := range all {
		if e.FirstOffset < upTo && e.LastOffset >= from {
			out = append(out, e)
		}
	}
	return out
}

// checkTxns checks l's AbortedTxns over many ranges, and its
// FirstUnstableOffset, against the model of its own batches. It returns the
// model's aborted transactions.
func checkTxns(t testing.TB, what string, l *Log, rng *rand.Rand) []index.AbortedTxn {
	t.Helper()
	all, fuo, ok := txnModel(t, logBatches(t, l), l.StartOffset())
	if got, gok := l.FirstUnstableOffset(); got != fuo || gok != ok {
		t.Fatalf("%s: FirstUnstableOffset = (%d, %v), want (%d, %v)", what, got, gok, fuo, ok)
	}
	end := l.EndOffset()
	ranges := [][2]int64{{0, math.MaxInt64}, {l.StartOffset(), end}, {end, end + 10}}
	for _, s := range l.Segments() {
		ranges = append(ranges, [2]int64{s.Base, s.Next})
	}
	for range 40 {
		a, b := rng.Int64N(end+2), rng.Int64N(end+2)
		ranges = append(ranges, [2]int64{min(a, b), max(a, b)})
	}
	for _, r := range ranges {
		got := l.abortedT(r[0], r[1])
		if want := overlapping(all, r[0], r[1]); !slices.Equal(got, want) {
			t.Fatalf("%s: AbortedTxns(%d, %d) = %+v, want %+v", what, r[0], r[1], got, want)
		}
	}
	return all
}

// txnWriter appends a random transactional workload: four transactional
// producers (ids 1-4), an idempotent one (10) and plain batches.
type txnWriter struct {
	rng  *rand.Rand
	seqs map[int64]int32
	open map[int64]bool
}

func newTxnWriter(seed uint64) *txnWriter {
	return &txnWriter{rng: rand.New(rand.NewPCG(seed, 3)), seqs: map[int64]int32{}, open: map[int64]bool{}}
}

// next returns the next batch to append.
func (w *txnWriter) next() []byte {
	switch r := w.rng.IntN(10); {
	case r < 5:
		pid := 1 + w.rng.Int64N(4)
		n := 1 + w.rng.IntN(3)
		b := txnData(pid, w.seqs[pid], n)
		w.seqs[pid] += int32(n)
		w.open[pid] = true
		return b
	case r < 8:
		pid := 1 + w.rng.Int64N(4)
		w.open[pid] = false
		return marker(pid, w.rng.IntN(2) == 0, 0)
	case r < 9:
		b := makeBatch(batchSpec{records: 2, valSize: 30, ts: 1000, pid: 10, seq: w.seqs[10]})
		w.seqs[10] += 2
		return b
	default:
		return simpleBatch(1, 30, 1)
	}
}

func (w *txnWriter) append(t testing.TB, l *Log, n int) {
	t.Helper()
	for range n {
		if _, err := l.Append(w.next(), AppendInfo{LeaderEpoch: 1}); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

// TestTxnCommitAbortSequence walks a fixed interleaving of two
// transactional producers and a plain one through commits and aborts.
func TestTxnCommitAbortSequence(t *testing.T) {
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{}, Options{})
	defer l.Close()
	fuo := func(want int64, wantOK bool) {
		t.Helper()
		if got, ok := l.FirstUnstableOffset(); got != want || ok != wantOK {
			t.Fatalf("FirstUnstableOffset = (%d, %v), want (%d, %v)", got, ok, want, wantOK)
		}
	}
	fuo(0, false)
	mustAppend(t, l, simpleBatch(1, 10, 1)) // 0
	mustAppend(t, l, txnData(1, 0, 2))      // 1-2: opens 1's transaction
	fuo(1, true)
	mustAppend(t, l, txnData(2, 0, 1)) // 3: opens 2's
	mustAppend(t, l, txnData(1, 2, 1)) // 4
	fuo(1, true)
	mustAppend(t, l, marker(1, true, 0)) // 5: commit of 1
	fuo(3, true)
	mustAppend(t, l, marker(2, false, 0)) // 6: abort of 2: [3, 6]
	fuo(0, false)
	mustAppend(t, l, marker(2, false, 0)) // 7: nothing open: nothing recorded
	mustAppend(t, l, txnData(1, 3, 1))    // 8: a new transaction of 1
	fuo(8, true)
	mustAppend(t, l, marker(1, false, 0)) // 9: abort [8, 9]
	fuo(0, false)
	a := index.AbortedTxn{ProducerID: 2, FirstOffset: 3, LastOffset: 6}
	b := index.AbortedTxn{ProducerID: 1, FirstOffset: 8, LastOffset: 9}
	for _, tt := range []struct {
		from, upTo int64
		want       []index.AbortedTxn
	}{
		{0, 100, []index.AbortedTxn{a, b}},
		{0, 3, nil},
		{0, 4, []index.AbortedTxn{a}},
		{6, 9, []index.AbortedTxn{a, b}},
		{7, 9, []index.AbortedTxn{b}},
		{6, 8, []index.AbortedTxn{a}},
		{7, 8, nil},
		{7, 100, []index.AbortedTxn{b}},
		{9, 10, []index.AbortedTxn{b}},
		{10, 20, nil},
		{5, 5, []index.AbortedTxn{a}}, // FirstOffset < 5 <= LastOffset
		{7, 7, nil},
	} {
		if got := l.abortedT(tt.from, tt.upTo); !slices.Equal(got, tt.want) {
			t.Errorf("AbortedTxns(%d, %d) = %+v, want %+v", tt.from, tt.upTo, got, tt.want)
		}
	}
	p, _ := l.mu.producers.Producer(1)
	if p.CoordinatorEpoch != 0 || p.CurrentTxnFirstOffset != -1 {
		t.Fatalf("producer 1 = %+v", p)
	}
}

// TestTxnModel appends a random transactional workload over many segments
// and checks the index and the first unstable offset against the model
// throughout, across Close/Open, and across a power loss.
func TestTxnModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", txnCfg, Options{})
	w := newTxnWriter(1)
	for range 12 {
		w.append(t, l, 25)
		checkTxns(t, "appending", l, rng)
	}
	if n := len(l.Segments()); n < 10 {
		t.Fatalf("only %d segments", n)
	}
	waitDurable(t, l, l.EndOffset()-1)
	want := checkTxns(t, "before close", l, rng)
	if len(want) < 10 {
		t.Fatalf("only %d aborted transactions in the workload", len(want))
	}
	crash := fsys.CrashClone(rand.New(rand.NewPCG(1, 1)))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for name, fs := range map[string]vfs.FS{"reopened": fsys, "after power loss": crash} {
		r := mustOpen(t, fs, "/d", txnCfg, Options{})
		if got := checkTxns(t, name, r, rng); !slices.Equal(got, want) {
			t.Fatalf("%s: %d aborted transactions, want %d", name, len(got), len(want))
		}
		w2 := txnWriter{rng: rand.New(rand.NewPCG(9, 9)), seqs: maps.Clone(w.seqs), open: maps.Clone(w.open)}
		w2.append(t, r, 60)
		checkTxns(t, name+", appended", r, rng)
		r.Close()
	}
}

// TestTxnIndexFiles: every sealed segment has a .txnindex file; a lost or
// corrupt one is rebuilt at Open.
func TestTxnIndexFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", txnCfg, Options{})
	newTxnWriter(2).append(t, l, 200)
	waitDurable(t, l, l.EndOffset()-1)
	want := checkTxns(t, "written", l, rng)
	segs := l.Segments()
	l.Close()
	for _, s := range segs[:len(segs)-1] {
		if _, err := fsys.Stat(filepath.Join("/d", fileName(s.Base, txnIndexSuffix))); err != nil {
			t.Fatalf("segment %d: %v", s.Base, err)
		}
	}
	if _, err := fsys.Stat(filepath.Join("/d", fileName(segs[len(segs)-1].Base, txnIndexSuffix))); err == nil {
		t.Fatal("the active segment has a .txnindex file")
	}
	// Lose one in the middle, corrupt another, leave a stray one for the
	// active segment.
	lost := filepath.Join("/d", fileName(segs[3].Base, txnIndexSuffix))
	if err := fsys.Remove(lost); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join("/d", fileName(segs[6].Base, txnIndexSuffix))
	b, _ := readFile(fsys, bad)
	b[len(b)-1] ^= 1
	if err := writeAtomic(fsys, "/d", filepath.Base(bad), b, true); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join("/d", fileName(segs[len(segs)-1].Base, txnIndexSuffix))
	if err := writeAtomic(fsys, "/d", filepath.Base(stray), encodeTxnIndex(segs[len(segs)-1].Base, nil), true); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer r.Close()
	if got := checkTxns(t, "rebuilt", r, rng); !slices.Equal(got, want) {
		t.Fatalf("rebuilt: %+v, want %+v", got, want)
	}
	for _, p := range []string{lost, bad} {
		b, err := readFile(fsys, p)
		if err != nil {
			t.Fatalf("%s not rewritten: %v", p, err)
		}
		if _, _, err := decodeTxnIndex(b, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fsys.Stat(stray); err == nil {
		t.Fatal("stray .txnindex of the active segment kept")
	}
}

// TestTxnMarkerChecks: markers are fenced by producer epoch and
// coordinator epoch, and a control batch that is not a marker is refused.
func TestTxnMarkerChecks(t *testing.T) {
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{}, Options{})
	defer l.Close()
	epochData := func(epoch int16, seq int32) []byte {
		return batch.Build(batch.BuildOptions{BaseTimestamp: 1, Transactional: true, Idempotent: true,
			ProducerID: 1, ProducerEpoch: epoch, BaseSequence: seq}, batch.Record{Value: []byte("v")})
	}
	mk := func(epoch int16, coord int32, commit bool) []byte {
		return batch.AppendMarker(nil, batch.MarkerOptions{ProducerID: 1, ProducerEpoch: epoch,
			Marker: batch.Marker{Commit: commit, CoordinatorEpoch: coord}})
	}
	mustAppend(t, l, epochData(3, 0))
	mustAppend(t, l, mk(3, 5, true)) // coordinator epoch 5
	mustAppend(t, l, epochData(3, 1))
	end := l.EndOffset()
	if _, err := l.Append(mk(3, 4, false), AppendInfo{}); !errors.Is(err, producer.ErrTransactionCoordinatorFenced) {
		t.Fatalf("marker of an older coordinator: %v", err)
	} else if code := err.(*producer.Error).Code(); code != 52 {
		t.Fatalf("code %d", code)
	}
	if _, err := l.Append(mk(2, 6, false), AppendInfo{}); !errors.Is(err, producer.ErrInvalidProducerEpoch) {
		t.Fatalf("marker of an older producer epoch: %v", err)
	}
	ctl := batch.Build(batch.BuildOptions{Control: true, Transactional: true, Idempotent: true, ProducerID: 1, ProducerEpoch: 3, BaseSequence: -1},
		batch.Record{Key: []byte{0, 0, 0, 7}, Value: []byte{0, 0, 0, 0, 0, 0}})
	if _, err := l.Append(ctl, AppendInfo{}); !errors.Is(err, batch.ErrCorrupt) {
		t.Fatalf("control batch of unknown type: %v", err)
	}
	if l.EndOffset() != end {
		t.Fatal("a refused marker was appended")
	}
	if f, ok := l.FirstUnstableOffset(); !ok || f != 2 {
		t.Fatalf("FirstUnstableOffset = %d, %v", f, ok)
	}
	// The same coordinator epoch, and a newer one with a bumped producer
	// epoch (the coordinator aborting for a fenced producer), are taken.
	mustAppend(t, l, mk(3, 5, false))
	mustAppend(t, l, epochData(3, 2))
	mustAppend(t, l, mk(4, 6, false))
	want := []index.AbortedTxn{{ProducerID: 1, FirstOffset: 2, LastOffset: 3}, {ProducerID: 1, FirstOffset: 4, LastOffset: 5}}
	if got := l.abortedT(0, 100); !slices.Equal(got, want) {
		t.Fatalf("AbortedTxns = %+v, want %+v", got, want)
	}
	if p, _ := l.mu.producers.Producer(1); p.CoordinatorEpoch != 6 || p.Epoch != 4 {
		t.Fatalf("producer = %+v", p)
	}
}

// TestTxnCoordinatorAppend: batches a coordinator writes for a producer
// (base sequence 0 each time) skip sequence checks but open the
// transaction, and an older epoch is still fenced.
func TestTxnCoordinatorAppend(t *testing.T) {
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{}, Options{})
	defer l.Close()
	coord := AppendInfo{LeaderEpoch: 1, Coordinator: true}
	offsets := func(epoch int16) []byte {
		return batch.Build(batch.BuildOptions{BaseTimestamp: 1, Transactional: true, Idempotent: true,
			ProducerID: 5, ProducerEpoch: epoch, BaseSequence: 0}, batch.Record{Key: []byte("g"), Value: []byte("o")})
	}
	for i := range 3 {
		res, err := l.Append(offsets(2), coord)
		if err != nil || res.Duplicate || res.BaseOffset != int64(i) {
			t.Fatalf("coordinator append %d: %+v, %v", i, res, err)
		}
	}
	if f, ok := l.FirstUnstableOffset(); !ok || f != 0 {
		t.Fatalf("FirstUnstableOffset = %d, %v", f, ok)
	}
	if _, err := l.Append(offsets(1), coord); !errors.Is(err, producer.ErrInvalidProducerEpoch) {
		t.Fatalf("older epoch: %v", err)
	}
	// Without the flag the same batch is a client's retry: a duplicate.
	if res, err := l.Append(offsets(2), AppendInfo{LeaderEpoch: 1}); err != nil || !res.Duplicate {
		t.Fatalf("client append: %+v, %v", res, err)
	}
	if _, err := l.Append(batch.AppendMarker(nil, batch.MarkerOptions{ProducerID: 5, ProducerEpoch: 2}), AppendInfo{LeaderEpoch: 1}); err != nil {
		t.Fatal(err)
	}
	if got := l.abortedT(0, 10); !slices.Equal(got, []index.AbortedTxn{{ProducerID: 5, FirstOffset: 0, LastOffset: 3}}) {
		t.Fatalf("AbortedTxns = %+v", got)
	}
	if _, ok := l.FirstUnstableOffset(); ok {
		t.Fatal("transaction still open")
	}
}

// TestTxnCrashRecoversOpenTransaction: an open transaction survives a
// power loss, and an abort after recovery is indexed from its first offset.
func TestTxnCrashRecoversOpenTransaction(t *testing.T) {
	for _, roll := range []bool{false, true} {
		fsys := vfs.NewCrashFS()
		l := mustOpen(t, fsys, "/d", txnCfg, Options{})
		mustAppend(t, l, simpleBatch(2, 10, 1))     // 0-1
		first := mustAppend(t, l, txnData(3, 0, 2)) // 2-3
		for i := range 20 {                         // several segments when rolling
			if roll {
				mustAppend(t, l, txnData(4, int32(3*i), 3))
				mustAppend(t, l, marker(4, true, 0))
			}
		}
		waitDurable(t, l, l.EndOffset()-1)
		clone := fsys.CrashClone(rand.New(rand.NewPCG(3, 3)))
		l.Close()
		r := mustOpen(t, clone, "/d", txnCfg, Options{})
		if f, ok := r.FirstUnstableOffset(); !ok || f != first.BaseOffset {
			t.Fatalf("roll %v: FirstUnstableOffset after recovery = %d, %v; want %d", roll, f, ok, first.BaseOffset)
		}
		res := mustAppend(t, r, marker(3, false, 0))
		want := []index.AbortedTxn{{ProducerID: 3, FirstOffset: first.BaseOffset, LastOffset: res.BaseOffset}}
		if got := r.abortedT(0, math.MaxInt64); !slices.Equal(got, want) {
			t.Fatalf("roll %v: AbortedTxns = %+v, want %+v", roll, got, want)
		}
		if _, ok := r.FirstUnstableOffset(); ok {
			t.Fatalf("roll %v: transaction still open", roll)
		}
		r.Close()
	}
}

// TestTxnPowerLossLoop crashes a log under a concurrent transactional
// workload at random moments: after recovery the index and the first
// unstable offset must be what the recovered batches say.
func TestTxnPowerLossLoop(t *testing.T) {
	iterations := 60
	if testing.Short() {
		iterations = 15
	}
	rng := rand.New(rand.NewPCG(77, 7))
	for it := range iterations {
		seed := rng.Uint64()
		fsys := vfs.NewCrashFS()
		syncer := NewSyncer(quietLogger(), 2)
		l := mustOpen(t, fsys, "/d", txnCfg, Options{Syncer: syncer})
		var mu sync.Mutex // the writer's state
		w := newTxnWriter(seed)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 60 {
					mu.Lock()
					b := w.next()
					res, err := l.Append(b, AppendInfo{LeaderEpoch: 1})
					mu.Unlock()
					if err != nil {
						return
					}
					if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(rand.New(rand.NewPCG(seed, 2)).IntN(4000)) * time.Microsecond)
		clone := fsys.CrashClone(rand.New(rand.NewPCG(seed, 4)))
		wg.Wait()
		l.Close()
		r := mustOpen(t, clone, "/d", txnCfg, Options{Syncer: syncer})
		checkTxns(t, fmt.Sprintf("iteration %d (seed %d)", it, seed), r, rng)
		// And again after a clean reopen (the rebuilt files are used).
		r.Close()
		r = mustOpen(t, clone, "/d", txnCfg, Options{Syncer: syncer})
		checkTxns(t, fmt.Sprintf("iteration %d reopened", it), r, rng)
		r.Close()
		syncer.Close()
	}
}

// TestTxnTruncateTo: a truncated-away abort marker re-opens its transaction
// and takes its entry; truncating into a sealed segment keeps the entries
// below the cut.
func TestTxnTruncateTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer l.Close()
	mustAppend(t, l, simpleBatch(1, 10, 1))        // 0
	first := mustAppend(t, l, txnData(1, 0, 1))    // 1
	abort := mustAppend(t, l, marker(1, false, 0)) // 2
	if _, err := l.TruncateTo(abort.BaseOffset); err != nil {
		t.Fatal(err)
	}
	if f, ok := l.FirstUnstableOffset(); !ok || f != first.BaseOffset {
		t.Fatalf("FirstUnstableOffset after cutting the marker = %d, %v", f, ok)
	}
	if got := l.abortedT(0, 100); got != nil {
		t.Fatalf("AbortedTxns after cutting the marker = %+v", got)
	}
	w := newTxnWriter(4)
	w.open[1] = true
	w.seqs[1] = 1
	w.append(t, l, 300)
	waitDurable(t, l, l.EndOffset()-1)
	checkTxns(t, "appended", l, rng)
	segs := l.Segments()
	if len(segs) < 8 {
		t.Fatalf("%d segments", len(segs))
	}
	for _, cut := range []int64{segs[len(segs)-1].Base + 2, segs[len(segs)-3].Base + 3, segs[4].Next - 1, segs[2].Base} {
		if _, err := l.TruncateTo(cut); err != nil {
			t.Fatal(err)
		}
		checkTxns(t, fmt.Sprintf("truncated to %d", cut), l, rng)
		w.rng = rand.New(rand.NewPCG(uint64(cut), 1))
		// The writer's sequences may be ahead of the truncated log: a
		// new epoch would be what a client does; here producers whose
		// state was cut simply restart (no state: any sequence goes).
		for pid := range w.seqs {
			if p, ok := l.mu.producers.Producer(pid); ok && len(p.Batches) > 0 {
				w.seqs[pid] = p.Batches[len(p.Batches)-1].LastSeq + 1
			}
		}
		w.append(t, l, 40)
		checkTxns(t, fmt.Sprintf("appended after truncating to %d", cut), l, rng)
		waitDurable(t, l, l.EndOffset()-1)
	}
	l.Close()
	r := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer r.Close()
	checkTxns(t, "reopened", r, rng)
}

// TestTxnFollower: a follower copying the leader with AppendReplica builds
// the same index and first unstable offset, also after a restart.
func TestTxnFollower(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	fsys := vfs.NewCrashFS()
	leader := mustOpen(t, fsys, "/leader", txnCfg, Options{})
	defer leader.Close()
	follower := mustOpen(t, fsys, "/follower", Config{SegmentBytes: 1500, IndexIntervalBytes: 200}, Options{})
	w := newTxnWriter(11)
	for range 5 {
		w.append(t, leader, 50)
		replicate(t, leader, follower, 600)
		want := checkTxns(t, "leader", leader, rng)
		if got := checkTxns(t, "follower", follower, rng); !slices.Equal(got, want) {
			t.Fatalf("follower %+v, leader %+v", got, want)
		}
		lf, lok := leader.FirstUnstableOffset()
		ff, fok := follower.FirstUnstableOffset()
		if lf != ff || lok != fok {
			t.Fatalf("follower FirstUnstableOffset (%d, %v), leader (%d, %v)", ff, fok, lf, lok)
		}
	}
	waitDurable(t, follower, follower.EndOffset()-1)
	follower.Close()
	r := mustOpen(t, fsys, "/follower", Config{SegmentBytes: 1500, IndexIntervalBytes: 200}, Options{})
	defer r.Close()
	if got, want := checkTxns(t, "reopened follower", r, rng), leader.abortedT(0, math.MaxInt64); !slices.Equal(got, want) {
		t.Fatalf("reopened follower differs")
	}
}

// TestTxnRetention: segments deleted below the log start take their
// entries; an entry spanning the start stays; a producer with an open
// transaction is kept and the first unstable offset is clamped to the
// start.
func TestTxnRetention(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer l.Close()
	first := mustAppend(t, l, txnData(7, 0, 1)) // stays open throughout
	span := mustAppend(t, l, txnData(8, 0, 1))
	w := newTxnWriter(13)
	w.append(t, l, 150)
	spanEnd := mustAppend(t, l, marker(8, false, 0)) // spans most of the log
	w.append(t, l, 50)
	waitDurable(t, l, l.EndOffset()-1)
	full, _, _ := txnModel(t, logBatches(t, l), 0)
	segs := l.Segments()
	start := segs[len(segs)/2].Base + 1
	if err := l.SetStartOffset(start); err != nil {
		t.Fatal(err)
	}
	// What stays: the entries whose marker is in a segment that stays.
	var kept []index.AbortedTxn
	for _, e := range full {
		if e.LastOffset >= segs[len(segs)/2].Base {
			kept = append(kept, e)
		}
	}
	if got := l.abortedT(0, math.MaxInt64); !slices.Equal(got, kept) {
		t.Fatalf("after retention: %+v, want %+v", got, kept)
	}
	if f, ok := l.FirstUnstableOffset(); !ok || f != start || first.BaseOffset >= start {
		t.Fatalf("FirstUnstableOffset = %d, %v; want the log start %d", f, ok, start)
	}
	if _, ok := l.mu.producers.Producer(7); !ok {
		t.Fatal("producer with an open transaction removed with the log start")
	}
	got := l.abortedT(0, math.MaxInt64)
	if !slices.Contains(got, index.AbortedTxn{ProducerID: 8, FirstOffset: span.BaseOffset, LastOffset: spanEnd.BaseOffset}) {
		t.Fatalf("spanning entry lost: %+v", got)
	}
	for _, e := range got {
		if e.LastOffset < segs[len(segs)/2].Base {
			t.Fatalf("entry %+v of a deleted segment", e)
		}
	}
	abort := mustAppend(t, l, marker(7, false, 0))
	if got := l.abortedT(abort.BaseOffset, abort.BaseOffset+1); !slices.Contains(got, index.AbortedTxn{ProducerID: 7, FirstOffset: first.BaseOffset, LastOffset: abort.BaseOffset}) {
		t.Fatalf("abort of the transaction below the start not indexed: %+v", got)
	}
	l.ExpireProducers()
	want := l.abortedT(0, math.MaxInt64)
	wantFUO, wantOK := l.FirstUnstableOffset()
	waitDurable(t, l, l.EndOffset()-1)
	l.Close()
	r := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer r.Close()
	if got := r.abortedT(0, math.MaxInt64); !slices.Equal(got, want) {
		t.Fatalf("reopened: %+v, want %+v", got, want)
	}
	if f, ok := r.FirstUnstableOffset(); f != wantFUO || ok != wantOK {
		t.Fatalf("reopened: FirstUnstableOffset (%d, %v), want (%d, %v)", f, ok, wantFUO, wantOK)
	}
}

// TestTxnExpireKeepsOpen: producer expiry never drops an open transaction.
func TestTxnExpireKeepsOpen(t *testing.T) {
	clock := &testClock{ms: 1_000_000}
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{ProducerIDExpirationMs: 1000}, Options{Now: clock.now})
	defer l.Close()
	mustAppend(t, l, txnData(1, 0, 1))
	mustAppend(t, l, makeBatch(batchSpec{records: 1, pid: 2, seq: 0}))
	clock.ms += 10_000
	l.ExpireProducers()
	if _, ok := l.mu.producers.Producer(2); ok {
		t.Fatal("idle producer not expired")
	}
	if f, ok := l.FirstUnstableOffset(); !ok || f != 0 {
		t.Fatalf("FirstUnstableOffset after expiry = %d, %v", f, ok)
	}
}

// TestTxnClean: the cleaner keeps the index equal, merged groups included,
// and a reopen finds it again.
func TestTxnClean(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, cleanDir, txnCfg, Options{})
	newTxnWriter(15).append(t, l, 250)
	if _, err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	want := checkTxns(t, "before cleaning", l, rng)
	before := len(l.Segments())
	res, err := l.Clean(CleanOptions{From: 0, To: activeBase(l), SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if res.SegmentsOut >= res.SegmentsIn || len(l.Segments()) >= before {
		t.Fatalf("no segments merged: %+v", res)
	}
	if got := checkTxns(t, "cleaned", l, rng); !slices.Equal(got, want) {
		t.Fatalf("cleaned: %+v, want %+v", got, want)
	}
	segs := l.Segments()
	l.Close()
	names, _ := fsys.ReadDir(cleanDir)
	txnFiles := 0
	for _, n := range names {
		if b, ok := parseFileName(n, txnIndexSuffix); ok {
			txnFiles++
			if !slices.ContainsFunc(segs, func(s SegmentInfo) bool { return s.Base == b }) {
				t.Fatalf("%s left for a merged-away segment", n)
			}
		}
	}
	if txnFiles != len(segs)-1 {
		t.Fatalf("%d .txnindex files for %d sealed segments", txnFiles, len(segs)-1)
	}
	r := mustOpen(t, fsys, cleanDir, txnCfg, Options{})
	defer r.Close()
	if got := checkTxns(t, "reopened", r, rng); !slices.Equal(got, want) {
		t.Fatalf("reopened: %+v, want %+v", got, want)
	}
}

// TestTxnResetTo: a reset log takes its open transactions from the
// snapshot; an abort afterwards is indexed from the first offset in the
// remote tier.
func TestTxnResetTo(t *testing.T) {
	fsys := vfs.NewCrashFS()
	st := producer.NewState()
	h, _ := batch.ParseHeader(txnData(3, 0, 1))
	h.BaseOffset = 40
	st.Update(&h, 0)
	l := mustOpen(t, fsys, "/d", Config{}, Options{})
	defer l.Close()
	if err := l.ResetTo(30, 100, st.AppendSnapshot(nil, 100), nil); err != nil {
		t.Fatal(err)
	}
	if f, ok := l.FirstUnstableOffset(); !ok || f != 40 {
		t.Fatalf("FirstUnstableOffset = %d, %v", f, ok)
	}
	res := mustAppend(t, l, marker(3, false, 0))
	want := []index.AbortedTxn{{ProducerID: 3, FirstOffset: 40, LastOffset: res.BaseOffset}}
	if got := l.abortedT(0, 1000); !slices.Equal(got, want) {
		t.Fatalf("AbortedTxns = %+v, want %+v", got, want)
	}
}

func TestTxnIndexCodec(t *testing.T) {
	entries := []index.AbortedTxn{{ProducerID: 1, FirstOffset: 3, LastOffset: 10}, {ProducerID: 2, FirstOffset: 0, LastOffset: 11}}
	b := encodeTxnIndex(10, entries)
	base, got, err := decodeTxnIndex(b, "x")
	if err != nil || base != 10 || !slices.Equal(got, entries) {
		t.Fatalf("decode: %d %+v %v", base, got, err)
	}
	for _, bad := range [][]index.AbortedTxn{
		{{ProducerID: -1, FirstOffset: 3, LastOffset: 10}},
		{{ProducerID: 1, FirstOffset: 11, LastOffset: 10}},
		{{ProducerID: 1, FirstOffset: 1, LastOffset: 9}}, // marker below the base
		{{ProducerID: 1, FirstOffset: 3, LastOffset: 12}, {ProducerID: 2, FirstOffset: 3, LastOffset: 12}},
	} {
		if _, _, err := decodeTxnIndex(encodeTxnIndex(10, bad), "x"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	v2 := slices.Clone(b)
	v2[5] = 2
	if _, _, err := decodeTxnIndex(v2, "x"); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 2: %v", err)
	}
}

// TestTxnCleanCrashAtEveryStep stops the machine before each mutating
// operation of a cleaner pass over a transactional log; after a process
// kill or a power loss, Open must give the same aborted transactions and
// first unstable offset as before the pass.
func TestTxnCleanCrashAtEveryStep(t *testing.T) {
	build := func() (*vfs.CrashFS, *Log) {
		fsys := vfs.NewCrashFS()
		l := mustOpen(t, fsys, cleanDir, txnCfg, Options{})
		newTxnWriter(21).append(t, l, 120)
		if _, err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		return fsys, l
	}
	opts := func(l *Log) CleanOptions { return CleanOptions{From: 0, To: activeBase(l), SegmentBytes: 4096} }
	fsys, l := build()
	want := l.abortedT(0, math.MaxInt64)
	wantFUO, wantOK := l.FirstUnstableOffset()
	done := crashAfter(fsys, 1<<30)
	if _, err := l.Clean(opts(l)); err != nil {
		t.Fatal(err)
	}
	steps := done()
	l.Close()
	if len(want) < 5 || steps < 10 {
		t.Fatalf("%d aborted transactions, %d steps", len(want), steps)
	}
	t.Logf("%d mutating steps", steps)
	rng := rand.New(rand.NewPCG(22, 22))
	for k := 0; k <= steps; k++ {
		fsys, l := build()
		done := crashAfter(fsys, k)
		_, _ = l.Clean(opts(l)) // fails at step k
		done()
		killed, lost := fsys.KillClone(), fsys.CrashClone(rng)
		l.Close()
		for name, fs := range map[string]*vfs.CrashFS{"kill": killed, "power loss": lost} {
			r := mustOpen(t, fs, cleanDir, txnCfg, Options{})
			if got := r.abortedT(0, math.MaxInt64); !slices.Equal(got, want) {
				t.Fatalf("step %d, %s: AbortedTxns = %+v, want %+v", k, name, got, want)
			}
			if f, ok := r.FirstUnstableOffset(); f != wantFUO || ok != wantOK {
				t.Fatalf("step %d, %s: FirstUnstableOffset (%d, %v), want (%d, %v)", k, name, f, ok, wantFUO, wantOK)
			}
			r.Close()
		}
	}
}

// TestTxnDeleteLocalBefore: deleting local segments held by the tier takes
// their entries and files, keeps the rest, and leaves the first unstable
// offset alone.
func TestTxnDeleteLocalBefore(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer l.Close()
	newTxnWriter(23).append(t, l, 200)
	waitDurable(t, l, l.EndOffset()-1)
	all := l.abortedT(0, math.MaxInt64)
	fuo, ok := l.FirstUnstableOffset()
	segs := l.Segments()
	cut := segs[len(segs)/2].Base
	if n, err := l.DeleteLocalBefore(cut); err != nil || n == 0 {
		t.Fatalf("DeleteLocalBefore: %d, %v", n, err)
	}
	var want []index.AbortedTxn
	for _, e := range all {
		if e.LastOffset >= cut {
			want = append(want, e)
		}
	}
	if got := l.abortedT(0, math.MaxInt64); !slices.Equal(got, want) {
		t.Fatalf("AbortedTxns = %+v, want %+v", got, want)
	}
	if f, fok := l.FirstUnstableOffset(); f != fuo || fok != ok {
		t.Fatalf("FirstUnstableOffset (%d, %v), want (%d, %v)", f, fok, fuo, ok)
	}
	if _, err := fsys.Stat(filepath.Join("/d", fileName(segs[0].Base, txnIndexSuffix))); err == nil {
		t.Fatal(".txnindex of a deleted segment kept")
	}
	if p := l.Producers(); len(p) == 0 {
		t.Fatal("no producers")
	}
}

// TestTxnLastStableOffset: a completed transaction holds the last stable
// offset until the high watermark passes its marker, as in Kafka; an open
// one until its marker; also after a restart.
func TestTxnLastStableOffset(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{}, Options{})
	lso := func(l *Log, hw, want int64) {
		t.Helper()
		if got := l.LastStableOffset(hw); got != want {
			t.Fatalf("LastStableOffset(%d) = %d, want %d", hw, got, want)
		}
	}
	mustAppend(t, l, simpleBatch(2, 10, 1)) // 0-1
	lso(l, 2, 2)
	mustAppend(t, l, txnData(1, 0, 2)) // 2-3
	lso(l, 1, 1)
	lso(l, 4, 2)
	mustAppend(t, l, txnData(2, 0, 1))    // 4
	mustAppend(t, l, marker(1, true, 0))  // 5
	lso(l, 5, 2)                          // 1's marker is not below the high watermark yet
	mustAppend(t, l, marker(2, false, 0)) // 6
	waitDurable(t, l, l.EndOffset()-1)
	l.Close()
	l = mustOpen(t, fsys, "/d", Config{}, Options{})
	defer l.Close()
	lso(l, 5, 2)
	lso(l, 6, 4) // 1's marker replicated, 2's not
	lso(l, 7, 7)
	lso(l, 6, 6) // forgotten: the high watermark does not go back
	if _, ok := l.FirstUnstableOffset(); ok {
		t.Fatal("a transaction is open")
	}
	// A follower's truncation forgets what it cut and remembers what the
	// cut segment completed.
	mustAppend(t, l, txnData(3, 0, 1))   // 7
	mustAppend(t, l, marker(3, true, 0)) // 8
	if _, err := l.TruncateTo(8); err != nil {
		t.Fatal(err)
	}
	lso(l, 8, 7)
}

// abortedT is AbortedTxns for tests, which expect no read error.
func (l *Log) abortedT(from, upTo int64) []index.AbortedTxn {
	out, err := l.AbortedTxns(from, upTo)
	if err != nil {
		panic(fmt.Sprintf("AbortedTxns(%d, %d): %v", from, upTo, err))
	}
	return out
}

// TestTxnUnreadableIndexIsAnError: a sealed segment's .txnindex that cannot
// be read makes AbortedTxns fail (ErrStorage), never answer without that
// segment's aborted transactions (a read_committed reader would deliver
// them, and an upload would write the short list into a footer for good).
func TestTxnUnreadableIndexIsAnError(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", txnCfg, Options{})
	defer l.Close()
	mustAppend(t, l, txnData(1, 0, 3))
	res := mustAppend(t, l, marker(1, false, 0))
	if _, err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	waitDurable(t, l, res.LastOffset)
	mustAppend(t, l, txnData(2, 0, 1)) // the roll's seal is done once this is durable
	waitDurable(t, l, res.LastOffset+1)
	want := []index.AbortedTxn{{ProducerID: 1, FirstOffset: 0, LastOffset: res.LastOffset}}
	if got := l.abortedT(0, 100); !slices.Equal(got, want) {
		t.Fatalf("AbortedTxns = %+v, want %+v", got, want)
	}
	if err := fsys.Remove(filepath.Join("/d", fileName(0, txnIndexSuffix))); err != nil {
		t.Fatal(err)
	}
	l.txns = txnCache{} // forget what was read: the next call reads the file
	got, err := l.AbortedTxns(0, 100)
	if !errors.Is(err, ErrStorage) || got != nil {
		t.Fatalf("AbortedTxns with the index file gone: %+v, %v (want ErrStorage)", got, err)
	}
}
