package tier

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
)

// txnGen appends transactional batches of several producers, their commit
// and abort markers and plain batches to a log, and keeps the model: every
// aborted transaction (producer, first offset, abort marker offset).
type txnGen struct {
	l      *plog.Log
	rng    *rand.Rand
	next   int64
	tsBase int64
	keys   int
	seq    map[int64]int32
	open   map[int64]int64 // producer -> first offset of its open transaction
	// producerAt is the producer of each data batch, by base offset.
	producerAt map[int64]int64
	aborted    []index.AbortedTxn
}

// Producers of the transactional workload; plainProducer writes
// idempotent, non-transactional batches.
const plainProducer = 40

var txnProducers = []int64{41, 42, 43}

func newTxnGen(l *plog.Log, seed uint64, tsBase int64) *txnGen {
	return &txnGen{
		l: l, rng: rand.New(rand.NewPCG(seed, seed^0x7e57)), tsBase: tsBase, keys: 30,
		seq: map[int64]int32{}, open: map[int64]int64{}, producerAt: map[int64]int64{},
	}
}

func (g *txnGen) appendBatch(t testing.TB, b []byte) {
	t.Helper()
	res, err := g.l.Append(b, plog.AppendInfo{LeaderEpoch: 1})
	if err != nil || res.BaseOffset != g.next || res.Duplicate {
		t.Fatalf("append at %d: %+v, %v", g.next, res, err)
	}
	g.next = res.LastOffset + 1
}

// data appends one batch of 1 to 4 keyed records from pid, transactional
// (opening a transaction if none is open) unless pid is plainProducer.
func (g *txnGen) data(t testing.TB, pid int64) {
	t.Helper()
	recs := make([]batch.Record, 1+g.rng.IntN(4))
	for i := range recs {
		recs[i] = batch.Record{
			TimestampDelta: int64(i) * 1000,
			Key:            fmt.Appendf(nil, "key-%02d", g.rng.IntN(g.keys)),
			Value:          fmt.Appendf(nil, "%d@%d:%s", pid, g.next+int64(i), bytes.Repeat([]byte{'v'}, 20+g.rng.IntN(60))),
		}
	}
	txn := pid != plainProducer
	b := batch.Build(batch.BuildOptions{
		BaseTimestamp: g.tsBase + g.next*1000, Transactional: txn,
		Idempotent: true, ProducerID: pid, BaseSequence: g.seq[pid],
	}, recs...)
	if _, ok := g.open[pid]; txn && !ok {
		g.open[pid] = g.next
	}
	g.seq[pid] += int32(len(recs))
	g.producerAt[g.next] = pid
	g.appendBatch(t, b)
}

// end appends pid's marker for its open transaction.
func (g *txnGen) end(t testing.TB, pid int64, commit bool) {
	t.Helper()
	first, ok := g.open[pid]
	if !ok {
		t.Fatalf("producer %d has no open transaction", pid)
	}
	b := batch.AppendMarker(nil, batch.MarkerOptions{ProducerID: pid, TimestampMs: g.tsBase + g.next*1000,
		Marker: batch.Marker{Commit: commit, CoordinatorEpoch: 1}})
	if !commit {
		g.aborted = append(g.aborted, index.AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: g.next})
	}
	delete(g.open, pid)
	g.appendBatch(t, b)
}

// random appends n batches: data of the transactional producers and the
// plain one, and markers ending transactions (half of them aborts).
func (g *txnGen) random(t testing.TB, n int) {
	t.Helper()
	for range n {
		pid := txnProducers[g.rng.IntN(len(txnProducers))]
		switch _, open := g.open[pid]; {
		case g.rng.IntN(4) == 0:
			g.data(t, plainProducer)
		case open && g.rng.IntN(4) == 0:
			g.end(t, pid, g.rng.IntN(2) == 0)
		default:
			g.data(t, pid)
		}
	}
}

// plain appends n batches of the plain producer.
func (g *txnGen) plain(t testing.TB, n int) {
	t.Helper()
	for range n {
		g.data(t, plainProducer)
	}
}

// rounds appends rounds of random transactional work, each ended by
// aborting what is still open and followed by a stretch of plain batches.
func (g *txnGen) rounds(t testing.TB, rounds, txnBatches, plainBatches int) {
	t.Helper()
	for range rounds {
		g.random(t, txnBatches)
		g.closeAll(t)
		g.plain(t, plainBatches)
	}
}

// closeAll ends every open transaction (aborting them), so that the last
// stable offset is the log end.
func (g *txnGen) closeAll(t testing.TB) {
	t.Helper()
	for _, pid := range txnProducers {
		if _, ok := g.open[pid]; ok {
			g.end(t, pid, false)
		}
	}
}

// model is what a local log's AbortedTxns returns: the aborted
// transactions overlapping [from, upTo), ordered by first offset.
func (g *txnGen) model(from, upTo int64) []index.AbortedTxn {
	var out []index.AbortedTxn
	for _, a := range g.aborted {
		if a.LastOffset >= from && a.FirstOffset < upTo {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(x, y index.AbortedTxn) int { return cmp.Compare(x.FirstOffset, y.FirstOffset) })
	return out
}

// clipped is the model clipped to [first, last], as a footer lists it.
func (g *txnGen) clipped(first, last int64) []index.AbortedTxn {
	out := g.model(first, last+1)
	for i := range out {
		out[i].FirstOffset, out[i].LastOffset = max(out[i].FirstOffset, first), min(out[i].LastOffset, last)
	}
	slices.SortStableFunc(out, func(x, y index.AbortedTxn) int {
		return cmp.Or(cmp.Compare(x.FirstOffset, y.FirstOffset), cmp.Compare(x.ProducerID, y.ProducerID))
	})
	return out
}

// remoteWant is what Partition.AbortedTxns(from, upTo) must return over
// manifest m: the aborted transactions overlapping the range, each once,
// its last offset lowered to the end of the last object the range touches
// and its first offset raised to the first batch of the first object the
// range touches, or of the object it begins in if compaction removed the
// batches before it (a footer's entries lie within its batches).
func (g *txnGen) remoteWant(t testing.TB, s objstore.Store, m *manifest.Manifest, from, upTo int64) []index.AbortedTxn {
	t.Helper()
	type obj struct{ base, first, next int64 }
	var objs []obj
	for _, e := range m.Entries {
		if e.NextOffset > from && e.BaseOffset < upTo {
			r, _ := openObject(t, s, e.Key)
			objs = append(objs, obj{e.BaseOffset, r.Footer().Summary.BaseOffset, e.NextOffset})
		}
	}
	if len(objs) == 0 {
		return nil
	}
	var out []index.AbortedTxn
	for _, a := range g.model(from, upTo) {
		a.FirstOffset, a.LastOffset = max(a.FirstOffset, objs[0].first), min(a.LastOffset, objs[len(objs)-1].next-1)
		for _, o := range objs {
			if a.FirstOffset >= o.base && a.FirstOffset < o.next {
				a.FirstOffset = max(a.FirstOffset, o.first)
			}
		}
		// A transaction whose batches in the range were all compacted
		// away may no longer reach into it.
		if a.FirstOffset <= a.LastOffset && a.FirstOffset < upTo {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(x, y index.AbortedTxn) int {
		return cmp.Or(cmp.Compare(x.FirstOffset, y.FirstOffset), cmp.Compare(x.ProducerID, y.ProducerID))
	})
	return out
}

// txnEnv is a tiered partition whose local log holds a transactional
// workload; uploads take their aborted transactions from the model unless
// fromLog is set (then from the local log's AbortedTxns).
type txnEnv struct {
	ctx   context.Context
	store objstore.Store
	clock *testClock
	l     *plog.Log
	p     *Partition
	g     *txnGen
}

func newTxnEnv(t *testing.T, seed uint64, fromLog bool) *txnEnv {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	e := &txnEnv{ctx: context.Background(), store: mem.New(), clock: newTestClock(now)}
	e.l = openTestLog(t, vfs.NewCrashFS(), "/p")
	e.g = newTxnGen(e.l, seed, now.Add(-100*time.Hour).UnixMilli())
	m := newTestManager(t, e.store, Config{Now: e.clock.Now, GracePeriod: compactGrace})
	var err error
	if e.p, err = m.OpenPartition(e.ctx, testTopic, testPartition, 1, e.l); err != nil {
		t.Fatal(err)
	}
	if !fromLog {
		e.p.abortedTxns = func(from, upTo int64) ([]index.AbortedTxn, error) { return e.g.model(from, upTo), nil }
	}
	return e
}

// upload makes everything appended durable, sealed and uploaded.
func (e *txnEnv) upload(t testing.TB) {
	t.Helper()
	waitAllDurable(t, e.g.next, e.l)
	uploadAll(t, e.p, e.l)
}

// checkFooters checks that every object of the newest manifest lists the
// model's aborted transactions clipped to it, and returns how many objects
// list some and how many transactions span objects. With exact false
// (compaction removed batches), an entry's first offset may lie above the
// clipped model's, but no batch of the transaction may lie between.
func (e *txnEnv) checkFooters(t testing.TB, exact bool) (withAborted, spanning int) {
	t.Helper()
	m := e.p.Manifest()
	for _, en := range m.Entries {
		r, _ := openObject(t, e.store, en.Key)
		s := r.Footer().Summary
		got, want := r.Footer().Aborted, e.g.clipped(s.BaseOffset, s.NextOffset-1)
		ok := slices.Equal(got, want)
		if !exact && len(got) == len(want) {
			ok = true
			slices.SortStableFunc(want, func(x, y index.AbortedTxn) int {
				return cmp.Or(cmp.Compare(x.LastOffset, y.LastOffset), cmp.Compare(x.ProducerID, y.ProducerID))
			})
			byLast := slices.Clone(got)
			slices.SortStableFunc(byLast, func(x, y index.AbortedTxn) int {
				return cmp.Or(cmp.Compare(x.LastOffset, y.LastOffset), cmp.Compare(x.ProducerID, y.ProducerID))
			})
			hdrs := headersOf(t, objectBatches(t, r))
			for i, a := range byLast {
				w := want[i]
				skipped := slices.ContainsFunc(hdrs, func(h batch.Header) bool {
					return h.ProducerID == a.ProducerID && h.IsTransactional() && h.BaseOffset >= w.FirstOffset && h.BaseOffset < a.FirstOffset
				})
				if a.ProducerID != w.ProducerID || a.LastOffset != w.LastOffset || a.FirstOffset < w.FirstOffset || skipped {
					ok = false
				}
			}
		}
		if !ok {
			t.Fatalf("object %s [%d, %d): aborted\n got %v\nwant %v", en.Key, s.BaseOffset, s.NextOffset, got, want)
		}
		if len(want) > 0 {
			withAborted++
		}
	}
	for _, a := range e.g.aborted {
		i := slices.IndexFunc(m.Entries, func(en manifest.Entry) bool { return en.NextOffset > a.FirstOffset })
		if i >= 0 && m.Entries[i].NextOffset <= a.LastOffset {
			spanning++
		}
	}
	return withAborted, spanning
}

func headersOf(t testing.TB, raw []byte) []batch.Header {
	t.Helper()
	var out []batch.Header
	for len(raw) > 0 {
		h, err := batch.ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
		raw = raw[h.Size():]
	}
	return out
}

// checkLoose checks AbortedTxns(from, upTo) over a history compaction
// rewrote, where first offsets may have been raised to the first batch of
// a rewritten object: entries are ordered and overlap the range; each is
// one aborted transaction of the model, with its abort marker (or the end
// of the last object the range touches) as last offset and a first offset
// at or above the model's; and every aborted transaction with a data batch
// in the range is listed, with a first offset at or before that batch.
func (g *txnGen) checkLoose(got []index.AbortedTxn, hdrs []batch.Header, m *manifest.Manifest, from, upTo int64) error {
	if !slices.IsSortedFunc(got, func(x, y index.AbortedTxn) int { return cmp.Compare(x.FirstOffset, y.FirstOffset) }) {
		return errors.New("not ordered by first offset")
	}
	lastEnd := int64(-1)
	for _, e := range m.Entries {
		if e.NextOffset > from && e.BaseOffset < upTo {
			lastEnd = e.NextOffset - 1
		}
	}
	used := map[int]bool{}
	for _, a := range got {
		if a.FirstOffset >= upTo || a.LastOffset < from {
			return fmt.Errorf("%v outside the range", a)
		}
		i := slices.IndexFunc(g.aborted, func(w index.AbortedTxn) bool {
			return w.ProducerID == a.ProducerID && min(w.LastOffset, lastEnd) == a.LastOffset && w.FirstOffset <= a.FirstOffset
		})
		if i < 0 || used[i] {
			return fmt.Errorf("%v is no aborted transaction, or one listed twice", a)
		}
		used[i] = true
	}
	for i, w := range g.aborted {
		for _, h := range hdrs {
			if h.ProducerID != w.ProducerID || h.IsControl() || !h.IsTransactional() || h.BaseOffset < w.FirstOffset ||
				h.BaseOffset > w.LastOffset || h.LastOffset() < from || h.BaseOffset >= upTo {
				continue
			}
			if !used[i] {
				return fmt.Errorf("%v, with a batch at %d, is missing", w, h.BaseOffset)
			}
			if j := slices.IndexFunc(got, func(a index.AbortedTxn) bool {
				return a.ProducerID == w.ProducerID && a.LastOffset == min(w.LastOffset, lastEnd)
			}); got[j].FirstOffset > h.BaseOffset {
				return fmt.Errorf("%v starts after its batch at %d", got[j], h.BaseOffset)
			}
			break
		}
	}
	return nil
}

// readCommitted consumes [from, end) from the bucket as a read_committed
// Kafka client does, fetch by fetch (at most maxBytes each, but at least
// one batch): each fetch carries AbortedTxns over the offsets it returns,
// and the client drops a transactional batch of a producer once the
// batch's base offset reaches the smallest aborted first offset listed for
// it, an abort marker so dropped ending that transaction (it pops the
// offset). It returns the base offsets of the data batches delivered and
// of those dropped.
func (e *txnEnv) readCommitted(t testing.TB, from, end int64, maxBytes int) (delivered, dropped []int64) {
	t.Helper()
	for off := from; off < end; {
		b, err := e.p.Read(e.ctx, off, maxBytes)
		if err != nil || len(b) == 0 {
			t.Fatalf("Read(%d): %d bytes, %v", off, len(b), err)
		}
		hdrs := headersOf(t, b)
		upTo := hdrs[len(hdrs)-1].LastOffset() + 1
		aborted, err := e.p.AbortedTxns(e.ctx, off, upTo)
		if err != nil {
			t.Fatalf("AbortedTxns(%d, %d): %v", off, upTo, err)
		}
		firsts := map[int64][]int64{}
		for _, a := range aborted {
			firsts[a.ProducerID] = append(firsts[a.ProducerID], a.FirstOffset)
		}
		pos := 0
		for _, h := range hdrs {
			one := b[pos : pos+h.Size()]
			pos += h.Size()
			q := firsts[h.ProducerID]
			drop := h.IsTransactional() && len(q) > 0 && h.BaseOffset >= q[0]
			if h.IsControl() {
				if m, err := batch.ParseMarker(one); err != nil {
					t.Fatal(err)
				} else if drop && !m.Commit {
					firsts[h.ProducerID] = q[1:]
				}
				continue
			}
			if h.LastOffset() < from {
				continue
			}
			if drop {
				dropped = append(dropped, h.BaseOffset)
			} else {
				delivered = append(delivered, h.BaseOffset)
			}
		}
		off = upTo
	}
	return delivered, dropped
}

// checkReadCommitted reads [from, end) as a read_committed client and
// checks that of the data batches it reads it drops exactly those of
// aborted transactions (and some, reading from the log start).
func (e *txnEnv) checkReadCommitted(t testing.TB, from, end int64, maxBytes int) {
	t.Helper()
	delivered, dropped := e.readCommitted(t, from, end, maxBytes)
	isAborted := func(off int64) bool {
		return slices.ContainsFunc(e.g.aborted, func(a index.AbortedTxn) bool {
			return off >= a.FirstOffset && off <= a.LastOffset && a.ProducerID == e.g.producerAt[off]
		})
	}
	for _, off := range delivered {
		if isAborted(off) {
			t.Fatalf("read_committed from %d (fetches of %d bytes) delivered the aborted batch at %d", from, maxBytes, off)
		}
	}
	for _, off := range dropped {
		if !isAborted(off) {
			t.Fatalf("read_committed from %d (fetches of %d bytes) dropped the batch at %d, not aborted", from, maxBytes, off)
		}
	}
	if from == e.p.Manifest().LogStartOffset && len(dropped) == 0 {
		t.Fatalf("read_committed from the log start (fetches of %d bytes) dropped nothing", maxBytes)
	}
}

// checkRemote compares Partition.AbortedTxns with the model for every
// object's range, the whole history and random ranges. With exact (no
// compaction removed batches), the whole history must give the model
// itself: every transaction with its true first offset.
func (e *txnEnv) checkRemote(t testing.TB, rng *rand.Rand, exact bool) {
	t.Helper()
	m := e.p.Manifest()
	end := m.EndOffset()
	var hdrs []batch.Header // every batch in the bucket
	for _, en := range m.Entries {
		r, _ := openObject(t, e.store, en.Key)
		hdrs = append(hdrs, headersOf(t, objectBatches(t, r))...)
	}
	check := func(from, upTo int64) {
		t.Helper()
		got, err := e.p.AbortedTxns(e.ctx, from, upTo)
		if err != nil {
			t.Fatalf("AbortedTxns(%d, %d): %v", from, upTo, err)
		}
		if exact {
			if want := e.g.remoteWant(t, e.store, m, from, upTo); !slices.Equal(got, want) {
				t.Fatalf("AbortedTxns(%d, %d)\n got %v\nwant %v", from, upTo, got, want)
			}
			return
		}
		if err := e.g.checkLoose(got, hdrs, m, from, upTo); err != nil {
			t.Fatalf("AbortedTxns(%d, %d) = %v: %v", from, upTo, got, err)
		}
	}
	if exact {
		// The whole history: every aborted transaction once, as the log had it.
		got, err := e.p.AbortedTxns(e.ctx, m.LogStartOffset, end)
		if err != nil || !slices.Equal(got, e.g.model(0, end)) {
			t.Fatalf("AbortedTxns of the whole history: %v\n got %v\nwant %v", err, got, e.g.model(0, end))
		}
	}
	check(m.LogStartOffset, end)
	for _, maxBytes := range []int{1, 700, 1 << 20} {
		e.checkReadCommitted(t, m.LogStartOffset, end, maxBytes)
		e.checkReadCommitted(t, m.LogStartOffset+rng.Int64N(end-m.LogStartOffset), end, maxBytes)
	}
	for _, en := range m.Entries {
		check(en.BaseOffset, en.NextOffset)
	}
	for range 200 {
		from := rng.Int64N(end)
		check(from, from+1+rng.Int64N(end-from))
	}
	if got, err := e.p.AbortedTxns(e.ctx, 10, 10); err != nil || got != nil {
		t.Fatalf("empty range: %v, %v", got, err)
	}
}

// TestUploadWritesAbortedTxns: the footer of every uploaded object lists
// the aborted transactions overlapping it, clipped to it; AbortedTxns over
// the bucket returns each aborted transaction once, with its true first
// offset when the range reaches back to it, whatever range is asked.
func TestUploadWritesAbortedTxns(t *testing.T) {
	e := newTxnEnv(t, 1, false)
	e.g.rounds(t, 4, 80, 40)
	e.upload(t)
	with, spanning := e.checkFooters(t, true)
	t.Logf("%d objects, %d with aborted transactions; %d aborted transactions, %d spanning objects",
		len(e.p.Manifest().Entries), with, len(e.g.aborted), spanning)
	if with == 0 || with == len(e.p.Manifest().Entries) || spanning == 0 {
		t.Fatal("setup: want objects with and without aborted transactions and transactions spanning objects")
	}
	e.checkRemote(t, rand.New(rand.NewPCG(1, 2)), true)
}

// TestUploadAbortedTxnsFromLocalLog is TestUploadWritesAbortedTxns with
// the aborted transactions the local log itself reports
// (plog.Log.AbortedTxns): the footers must list what the model says.
func TestUploadAbortedTxnsFromLocalLog(t *testing.T) {
	e := newTxnEnv(t, 2, true)
	e.g.rounds(t, 4, 80, 40)
	got, err := e.l.AbortedTxns(0, e.g.next)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.g.model(0, e.g.next); !slices.Equal(got, want) {
		t.Fatalf("local log AbortedTxns(0, %d)\n got %v\nwant %v", e.g.next, got, want)
	}
	e.upload(t)
	e.checkFooters(t, true)
	e.checkRemote(t, rand.New(rand.NewPCG(3, 4)), true)
}

// TestMergeAborted: pieces of one transaction in adjacent objects merge
// unless the earlier object ends with the producer's marker; the last
// batch is looked at only for such pairs, once per object.
func TestMergeAborted(t *testing.T) {
	type obj struct {
		base, first, next int64 // manifest base, first batch, next offset
		aborted           []index.AbortedTxn
		marker            int64 // producer of the control batch ending the object, -1: not a control batch
	}
	ab := func(pid, first, last int64) index.AbortedTxn {
		return index.AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: last}
	}
	for _, tc := range []struct {
		name   string
		objs   []obj
		want   []index.AbortedTxn
		looked []int // objects whose last batch was read
	}{
		{
			name: "none",
			objs: []obj{{0, 0, 10, nil, -1}, {10, 10, 20, nil, -1}},
		},
		{
			name: "one transaction across three objects",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 4, 9)}, -1},
				{10, 10, 20, []index.AbortedTxn{ab(1, 10, 19)}, -1},
				{20, 20, 30, []index.AbortedTxn{ab(1, 20, 25)}, -1},
			},
			want:   []index.AbortedTxn{ab(1, 4, 25)},
			looked: []int{0, 1},
		},
		{
			name: "marker ends the object, next transaction starts the next",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 4, 9)}, 1},
				{10, 10, 20, []index.AbortedTxn{ab(1, 10, 12)}, -1},
			},
			want:   []index.AbortedTxn{ab(1, 4, 9), ab(1, 10, 12)},
			looked: []int{0},
		},
		{
			name: "another producer's marker ends the object",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 2, 9), ab(2, 5, 9)}, 2},
				{10, 10, 20, []index.AbortedTxn{ab(1, 10, 11), ab(2, 10, 15)}, -1},
			},
			want:   []index.AbortedTxn{ab(1, 2, 11), ab(2, 5, 9), ab(2, 10, 15)},
			looked: []int{0},
		},
		{
			name: "no piece at the next object's start: nothing to look at",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 2, 9)}, -1},
				{10, 10, 20, []index.AbortedTxn{ab(1, 12, 14), ab(3, 10, 11)}, -1},
			},
			want: []index.AbortedTxn{ab(1, 2, 9), ab(3, 10, 11), ab(1, 12, 14)},
		},
		{
			name: "piece ending before the object's end",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 2, 8)}, -1},
				{10, 10, 20, []index.AbortedTxn{ab(1, 10, 14)}, -1},
			},
			want: []index.AbortedTxn{ab(1, 2, 8), ab(1, 10, 14)},
		},
		{
			name: "compacted object starting after its manifest base",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 2, 9)}, 7},
				{10, 13, 20, []index.AbortedTxn{ab(1, 13, 16)}, -1},
			},
			want:   []index.AbortedTxn{ab(1, 2, 16)},
			looked: []int{0},
		},
		{
			name: "objects not adjacent",
			objs: []obj{
				{0, 0, 10, []index.AbortedTxn{ab(1, 2, 9)}, -1},
				{12, 12, 20, []index.AbortedTxn{ab(1, 12, 16)}, -1},
			},
			want: []index.AbortedTxn{ab(1, 2, 9), ab(1, 12, 16)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]abortedObject, len(tc.objs))
			for i, o := range tc.objs {
				objs[i] = abortedObject{key: fmt.Sprint(i), entryBase: o.base, entryNext: o.next, first: o.first, next: o.next, aborted: o.aborted}
			}
			var looked []int
			got, err := mergeAborted(objs, func(i int) (int64, bool, error) {
				looked = append(looked, i)
				return tc.objs[i].marker, tc.objs[i].marker >= 0, nil
			})
			if err != nil || !slices.Equal(got, tc.want) || !slices.Equal(looked, tc.looked) {
				t.Fatalf("got %v, %v (looked at %v)\nwant %v (looked at %v)", got, err, looked, tc.want, tc.looked)
			}
			for _, o := range tc.objs {
				for _, a := range o.aborted {
					if a.LastOffset >= o.next {
						t.Fatal("mergeAborted modified its input")
					}
				}
			}
		})
	}
	boom := errors.New("boom")
	_, err := mergeAborted([]abortedObject{
		{entryBase: 0, entryNext: 10, first: 0, next: 10, aborted: []index.AbortedTxn{ab(1, 2, 9)}},
		{entryBase: 10, entryNext: 20, first: 10, next: 20, aborted: []index.AbortedTxn{ab(1, 10, 12)}},
	}, func(int) (int64, bool, error) { return 0, false, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
}

// TestAbortedTxnsAtObjectBoundaries places segment boundaries where the
// pieces of aborted transactions meet: a transaction crossing a boundary
// whose last batch is another producer's marker (one entry), a producer's
// abort marker ending an object and its next aborted transaction starting
// the next (two entries), transactions spanning three objects, and a
// commit at a boundary.
func TestAbortedTxnsAtObjectBoundaries(t *testing.T) {
	e := newTxnEnv(t, 3, false)
	g := e.g
	var cuts []int64
	roll := func() {
		t.Helper()
		if _, err := e.l.Roll(); err != nil {
			t.Fatal(err)
		}
		cuts = append(cuts, g.next)
	}
	const p, q = 41, 42
	g.plain(t, 2)
	g.data(t, p)
	g.data(t, q)
	g.end(t, q, false) // the last batch: q's marker
	roll()
	g.data(t, p)
	g.end(t, p, false) // p's transaction crossed the boundary
	g.data(t, p)
	g.end(t, p, false) // the last batch: p's marker
	roll()
	g.data(t, p) // p's next transaction starts the object
	g.end(t, p, false)
	g.data(t, q)
	g.end(t, q, true) // the last batch: q's commit
	roll()
	g.data(t, q)
	g.data(t, p)
	roll()
	g.plain(t, 1)
	roll()
	g.data(t, p)
	g.end(t, q, false)
	g.end(t, p, false)
	g.plain(t, 2)
	e.upload(t)

	m := e.p.Manifest()
	var bases []int64
	for _, en := range m.Entries[1:] {
		bases = append(bases, en.BaseOffset)
	}
	if !slices.Equal(bases, cuts) {
		t.Fatalf("setup: objects start at %v, want %v", bases, cuts)
	}
	e.checkFooters(t, true)
	got, err := e.p.AbortedTxns(e.ctx, 0, m.EndOffset())
	if want := g.model(0, m.EndOffset()); err != nil || !slices.Equal(got, want) || len(want) != 6 {
		t.Fatalf("AbortedTxns: %v\n got %v\nwant %v", err, got, want)
	}
	e.checkRemote(t, rand.New(rand.NewPCG(5, 6)), true)
}

// TestRewritesKeepAbortedTxns: compaction and merging rewrite runs of
// objects into one; the new objects list the aborted transactions of the
// run clipped to them, spanning pieces merged, and AbortedTxns answers as
// before.
func TestRewritesKeepAbortedTxns(t *testing.T) {
	e := newTxnEnv(t, 4, false)
	e.g.rounds(t, 4, 80, 40)
	e.upload(t)
	before := e.p.Manifest()
	res, err := e.p.Compact(e.ctx, compactCfg(1000*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	compacted := e.p.Manifest()
	t.Logf("compaction: %d objects -> %d, %d records removed", len(before.Entries), len(compacted.Entries), res.RecordsRemoved)
	if !res.Plan.Clean || res.ObjectsOut == 0 || res.RecordsRemoved == 0 || len(compacted.Entries) >= len(before.Entries) {
		t.Fatalf("setup: compaction %+v", res)
	}
	if _, spanning := e.checkFooters(t, false); spanning == 0 {
		t.Fatal("setup: no aborted transaction spans objects after compaction")
	}
	e.checkRemote(t, rand.New(rand.NewPCG(7, 8)), false)

	// More history, uploaded in small objects, then merged.
	e.g.rounds(t, 2, 60, 20)
	e.upload(t)
	m := e.p.Manifest()
	var size int64
	for _, en := range m.Entries {
		size += en.StoredSize
	}
	mres, err := e.p.Merge(e.ctx, 4*size/int64(len(m.Entries)), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("merge: %d objects -> %d", mres.ObjectsIn, mres.ObjectsOut)
	if mres.ObjectsOut == 0 {
		t.Fatalf("setup: nothing merged: %+v", mres)
	}
	e.checkFooters(t, false)
	e.checkRemote(t, rand.New(rand.NewPCG(9, 10)), false)
}

// TestUploadStopsAtLastStableOffset: with a transaction open, Upload given
// the last stable offset uploads no segment reaching past the
// transaction's first offset; once it is aborted, the rest goes up with
// its entry.
func TestUploadStopsAtLastStableOffset(t *testing.T) {
	e := newTxnEnv(t, 5, true)
	e.g.rounds(t, 2, 60, 20)
	e.g.data(t, 42)
	first := e.g.open[42]
	e.g.plain(t, 80) // several segments past the open transaction
	waitAllDurable(t, e.g.next, e.l)
	if _, err := e.l.Roll(); err != nil {
		t.Fatal(err)
	}
	lso := e.l.DurableOffset()
	if fu, ok := e.l.FirstUnstableOffset(); !ok || fu != first {
		t.Fatalf("first unstable offset %d, %v; want %d", fu, ok, first)
	} else {
		lso = min(lso, fu)
	}
	if _, err := e.p.Upload(e.ctx, lso); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for _, s := range sealedBelow(e.l, lso) {
		want = s.Next
	}
	if end := e.p.RemoteEndOffset(); end != want || end > first || end == 0 {
		t.Fatalf("uploaded up to %d with the last stable offset %d, want %d", end, lso, want)
	}
	e.g.end(t, 42, false)
	e.upload(t)
	e.checkFooters(t, true)
	e.checkRemote(t, rand.New(rand.NewPCG(11, 12)), true)
}
