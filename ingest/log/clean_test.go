package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-io/strata/compactor/ratelimit"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// kv is one keyed record of a test; a nil val is a tombstone, a nil key a
// keyless record.
type kv struct {
	key, val []byte
	ts       int64
}

// cleanRec is a record read back from a log.
type cleanRec struct {
	off      int64
	key, val string
	tomb     bool
	keyless  bool
	ts       int64
}

func (r cleanRec) String() string {
	return fmt.Sprintf("%d:%s=%s(t%v,k%v)", r.off, r.key, r.val, r.tomb, r.keyless)
}

// producerSpec makes a batch idempotent.
type producerSpec struct {
	pid   int64
	epoch int16
	seq   int32
}

// keyedBatch builds a batch of kvs; ts of the first is the base timestamp.
func keyedBatch(recs []kv, ps *producerSpec, codec int) []byte {
	opts := batch.BuildOptions{BaseTimestamp: recs[0].ts, Codec: codec}
	if ps != nil {
		opts.Idempotent, opts.ProducerID, opts.ProducerEpoch, opts.BaseSequence = true, ps.pid, ps.epoch, ps.seq
	}
	rs := make([]batch.Record, len(recs))
	for i, r := range recs {
		rs[i] = batch.Record{Key: r.key, Value: r.val, TimestampDelta: r.ts - recs[0].ts}
	}
	return batch.Build(opts, rs...)
}

// readBatches reads the whole log from its start, as readAll does, but
// allows offset gaps: a read returns the batch holding the offset or, if it
// was compacted away, the next one.
func readBatches(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	off := l.StartOffset()
	for {
		b, err := l.Read(off, 1<<20, 1<<62)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(b) == 0 {
			if off != l.EndOffset() {
				t.Fatalf("empty read at %d, end %d", off, l.EndOffset())
			}
			return out
		}
		for len(b) > 0 {
			h, err := batch.ParseHeader(b)
			if err != nil {
				t.Fatalf("batch at %d: %v", off, err)
			}
			if crc32.Checksum(b[21:h.Size()], crc32.MakeTable(crc32.Castagnoli)) != h.CRC {
				t.Fatalf("batch at %d: bad CRC", h.BaseOffset)
			}
			if h.LastOffset() < off {
				t.Fatalf("batch [%d, %d] read at %d", h.BaseOffset, h.LastOffset(), off)
			}
			out = append(out, b[:h.Size()])
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
}

// readRecords reads every record of the log from its start, checking that
// offsets only increase.
func readRecords(t testing.TB, l *Log) []cleanRec {
	t.Helper()
	var out []cleanRec
	last := int64(-1)
	for _, b := range readBatches(t, l) {
		h, _ := batch.ParseHeader(b)
		err := batch.Records(b, 0, func(r batch.Record) error {
			off := h.BaseOffset + int64(r.OffsetDelta)
			if off <= last {
				return fmt.Errorf("offset %d after %d", off, last)
			}
			last = off
			out = append(out, cleanRec{off: off, key: string(r.Key), val: string(r.Value),
				tomb: r.Value == nil, keyless: r.Key == nil, ts: h.BaseTimestamp + r.TimestampDelta})
			return nil
		})
		if err != nil {
			t.Fatalf("batch at %d: %v", h.BaseOffset, err)
		}
	}
	return out
}

// cleanModel is every record appended to a test log, by offset.
type cleanModel struct {
	recs []cleanRec
}

func (m *cleanModel) add(res AppendResult, recs []kv) {
	for i, r := range recs {
		m.recs = append(m.recs, cleanRec{off: res.BaseOffset + int64(i), key: string(r.key), val: string(r.val),
			tomb: r.val == nil, keyless: r.key == nil, ts: r.ts})
	}
}

// survivors is what a full clean of the records below end leaves: the latest
// record of every key (tombstones unless dropTombstones), keyless records,
// and every record at or after end.
func (m *cleanModel) survivors(end int64, dropTombstones bool) []cleanRec {
	latest := map[string]int64{}
	for _, r := range m.recs {
		if !r.keyless && r.off < end {
			latest[r.key] = r.off
		}
	}
	var out []cleanRec
	for _, r := range m.recs {
		switch {
		case r.off >= end || r.keyless:
			out = append(out, r)
		case latest[r.key] == r.off && !(r.tomb && dropTombstones):
			out = append(out, r)
		}
	}
	return out
}

func diffRecs(t testing.TB, what string, got, want []cleanRec) {
	t.Helper()
	if len(got) == len(want) {
		same := true
		for i := range got {
			if got[i] != want[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			t.Fatalf("%s: %d records, want %d; first difference at %d: got %s, want %s", what, len(got), len(want), i, g, w)
		}
	}
}

// cleanLog is a test log filled with updates and deletes over a key space.
type cleanLog struct {
	l     *Log
	fsys  *vfs.CrashFS
	cfg   Config
	clock *testClock
	model cleanModel
	// the last batch of producer 7 and its append result, for retries
	lastPID  []byte
	lastRes  AppendResult
	lastKeys []kv
}

const cleanDir = "/data/p"

var cleanCfg = Config{SegmentBytes: 4096, IndexIntervalBytes: 256, SegmentMs: 1 << 50}

// fillCleanLog appends batches of updates and tombstones over keys keys:
// a keyless batch first (data from before the topic was compacted), then
// idempotent batches of producer 7 mixed with plain ones, some compressed;
// the last batch of producer 7 is fully superseded by later plain batches.
// Every segment but the active one is sealed and durable.
func fillCleanLog(t testing.TB, fsys *vfs.CrashFS, batches, keys int, seed uint64) *cleanLog {
	t.Helper()
	c := &cleanLog{fsys: fsys, cfg: cleanCfg, clock: &testClock{ms: 1_000_000}}
	c.l = mustOpen(t, fsys, cleanDir, c.cfg, Options{Now: c.clock.now})
	rng := rand.New(rand.NewPCG(seed, 3))
	ts := int64(1_000_000)
	appendKV := func(recs []kv, ps *producerSpec, codec int) AppendResult {
		b := keyedBatch(recs, ps, codec)
		res := mustAppend(t, c.l, b)
		c.model.add(res, recs)
		return res
	}
	appendKV([]kv{{nil, []byte("old-1"), ts}, {nil, []byte("old-2"), ts}}, nil, batch.CodecNone)
	seq := int32(0)
	for i := range batches {
		n := 1 + rng.IntN(6)
		recs := make([]kv, n)
		for j := range recs {
			ts++
			k := fmt.Sprintf("key-%04d", rng.IntN(keys))
			var v []byte
			if rng.IntN(10) > 0 {
				v = fmt.Appendf(nil, "v%d.%d-%s", i, j, strings.Repeat("x", rng.IntN(40)))
			}
			recs[j] = kv{[]byte(k), v, ts}
		}
		codec := batch.CodecNone
		if i%5 == 4 {
			codec = batch.CodecZstd
		}
		if i%3 == 0 {
			ps := &producerSpec{pid: 7, epoch: 1, seq: seq}
			res := appendKV(recs, ps, codec)
			c.lastPID, c.lastRes, c.lastKeys = keyedBatch(recs, ps, codec), res, recs
			seq += int32(n)
		} else {
			appendKV(recs, nil, codec)
		}
	}
	// Supersede producer 7's last batch.
	for _, r := range c.lastKeys {
		ts++
		appendKV([]kv{{r.key, []byte("after-7"), ts}}, nil, batch.CodecNone)
	}
	if _, err := c.l.Roll(); err != nil {
		t.Fatal(err)
	}
	// Some records in the active segment, which is never cleaned.
	ts++
	appendKV([]kv{{[]byte("key-0000"), []byte("active"), ts}}, nil, batch.CodecNone)
	waitDurable(t, c.l, c.l.EndOffset()-1)
	return c
}

// activeBase is the base of the active segment.
func activeBase(l *Log) int64 {
	segs := l.Segments()
	return segs[len(segs)-1].Base
}

func (c *cleanLog) clean(t testing.TB, opts CleanOptions) CleanResult {
	t.Helper()
	if opts.To == 0 {
		opts.From, opts.To = c.l.StartOffset(), activeBase(c.l)
	}
	res, err := c.l.Clean(opts)
	if err != nil {
		t.Fatalf("Clean: %v", err)
	}
	return res
}

// checkRetryIsDuplicate resends producer 7's last batch.
func (c *cleanLog) checkRetryIsDuplicate(t testing.TB, l *Log) {
	t.Helper()
	res, err := l.Append(slices.Clone(c.lastPID), AppendInfo{LeaderEpoch: 1})
	if err != nil || !res.Duplicate || res.BaseOffset != c.lastRes.BaseOffset || res.LastOffset != c.lastRes.LastOffset {
		t.Fatalf("retry of producer 7's last batch: %+v, %v; want a duplicate of [%d, %d]", res, err, c.lastRes.BaseOffset, c.lastRes.LastOffset)
	}
}

func cleanedFiles(t testing.TB, fsys vfs.FS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, cleanedSuffix) {
			out = append(out, n)
		}
	}
	return out
}

func TestCleanKeepsLatestPerKey(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 400, 60, 1)
	defer c.l.Close()
	to := activeBase(c.l)
	before := readRecords(t, c.l)
	diffRecs(t, "before cleaning", before, c.model.recs)
	segsBefore := len(c.l.Segments())

	res := c.clean(t, CleanOptions{})
	want := c.model.survivors(to, false)
	diffRecs(t, "after cleaning", readRecords(t, c.l), want)
	if res.CleanerPoint != to || c.l.CleanerPoint() != to || res.End != to || res.MapFull {
		t.Fatalf("result %+v, CleanerPoint %d; want the point at %d", res, c.l.CleanerPoint(), to)
	}
	var inRange int64
	for _, r := range c.model.recs {
		if r.off < to {
			inRange++
		}
	}
	if res.RecordsKept+res.RecordsRemoved != inRange || res.RecordsKept != int64(len(want)-1) || res.TombstonesRemoved != 0 {
		t.Fatalf("counts %+v, want %d records in the range, %d kept", res, inRange, len(want)-1)
	}
	if len(c.l.Segments()) != segsBefore-res.SegmentsIn+res.SegmentsOut {
		t.Fatalf("segments %d -> %d (%+v)", segsBefore, len(c.l.Segments()), res)
	}
	if res.BytesWritten >= res.BytesRead || res.BytesWritten == 0 {
		t.Fatalf("bytes read %d, written %d", res.BytesRead, res.BytesWritten)
	}
	if f := cleanedFiles(t, fsys, cleanDir); len(f) > 0 {
		t.Fatalf("leftover files %v", f)
	}
	c.checkRetryIsDuplicate(t, c.l)

	// A second pass finds nothing new: same records, nothing removed.
	firstPass := c.l.Segments()
	res2 := c.clean(t, CleanOptions{})
	diffRecs(t, "after a second pass", readRecords(t, c.l), want)
	if res2.RecordsRemoved != 0 {
		t.Fatalf("second pass removed %d records", res2.RecordsRemoved)
	}
	// Grouping goes by input sizes, so the segments the first pass shrank
	// merge in the second.
	if res2.SegmentsOut >= res2.SegmentsIn || res2.SegmentsIn != res.SegmentsOut {
		t.Fatalf("second pass: segments %d -> %d: small cleaned segments were not merged", res2.SegmentsIn, res2.SegmentsOut)
	}
	// What the remote tier reads: every sealed segment opens with its size
	// and has its producer snapshot; the bases merged away are gone.
	after := c.l.Segments()
	for _, s := range after[:len(after)-1] {
		rc, n, err := c.l.OpenSegment(s.Base)
		if err != nil || n != s.Size {
			t.Fatalf("OpenSegment(%d): %d bytes, %v; want %d", s.Base, n, err, s.Size)
		}
		data := make([]byte, n)
		if _, err := rc.(io.ReaderAt).ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if h, err := batch.ParseHeader(data); err != nil || h.BaseOffset < s.Base {
			t.Fatalf("segment %d starts with batch %d: %v", s.Base, h.BaseOffset, err)
		}
		if _, err := c.l.ProducerSnapshotAt(s.Next); err != nil {
			t.Fatalf("ProducerSnapshotAt(%d): %v", s.Next, err)
		}
	}
	for _, s := range firstPass {
		if !slices.ContainsFunc(after, func(a SegmentInfo) bool { return a.Base == s.Base }) {
			if _, _, err := c.l.OpenSegment(s.Base); !errors.Is(err, ErrNotFound) {
				t.Fatalf("OpenSegment(%d) merged away: %v", s.Base, err)
			}
		}
	}

	// Reopen: from the index files, then with every index and producer
	// snapshot gone, so that recovery scans the compacted segments and
	// replays producer state from the cleaned batches.
	if err := c.l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, rebuild := range []bool{false, true} {
		if rebuild {
			names, _ := fsys.ReadDir(cleanDir)
			for _, n := range names {
				if strings.HasSuffix(n, indexSuffix) || strings.HasSuffix(n, timeIndexSuffix) || strings.HasSuffix(n, snapshotSuffix) {
					if err := fsys.Remove(cleanDir + "/" + n); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		r := mustOpen(t, fsys.KillClone(), cleanDir, c.cfg, Options{})
		diffRecs(t, fmt.Sprintf("after reopen (rebuild %v)", rebuild), readRecords(t, r), want)
		if r.CleanerPoint() != to {
			t.Fatalf("cleaner point %d after reopen, want %d", r.CleanerPoint(), to)
		}
		c.checkRetryIsDuplicate(t, r)
		r.Close()
	}
}

// TestCleanControlAndTransactional: control batches stay as they are, and
// transactional records do not supersede (an aborted write must not remove
// the committed value before it) but are superseded by later plain ones.
func TestCleanControlAndTransactional(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, cleanDir, cleanCfg, Options{})
	defer l.Close()
	rec := func(k, v string) batch.Record { return batch.Record{Key: []byte(k), Value: []byte(v)} }
	txn := func(seq int32, r batch.Record) []byte {
		return batch.Build(batch.BuildOptions{BaseTimestamp: 1, Transactional: true, Idempotent: true, ProducerID: 9, BaseSequence: seq}, r)
	}
	plain := func(r batch.Record) []byte { return batch.Build(batch.BuildOptions{BaseTimestamp: 1}, r) }
	marker := batch.Build(batch.BuildOptions{BaseTimestamp: 1, Transactional: true, Control: true, Idempotent: true, ProducerID: 9, BaseSequence: -1},
		batch.Record{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}) // COMMIT
	for _, b := range [][]byte{
		txn(0, rec("a", "t1")), // 0: superseded by 1
		plain(rec("a", "p1")),  // 1: kept
		plain(rec("b", "p0")),  // 2: kept: 3 is transactional
		txn(1, rec("b", "t2")), // 3: kept
		marker,                 // 4: kept
		plain(rec("c", "x")),   // 5: superseded by 6
		plain(rec("c", "y")),   // 6
	} {
		mustAppend(t, l, b)
	}
	if _, err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Clean(CleanOptions{From: 0, To: activeBase(l)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range readBatches(t, l) {
		h, _ := batch.ParseHeader(b)
		_ = batch.Records(b, 0, func(r batch.Record) error {
			v := string(r.Value)
			if h.IsControl() {
				v = "marker"
			}
			got = append(got, fmt.Sprintf("%d:%s", h.BaseOffset+int64(r.OffsetDelta), v))
			return nil
		})
	}
	if want := []string{"1:p1", "2:p0", "3:t2", "4:marker", "6:y"}; !slices.Equal(got, want) {
		t.Fatalf("records %q, want %q", got, want)
	}
}

func TestCleanTombstoneHorizon(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 300, 40, 2)
	defer c.l.Close()
	to := activeBase(c.l)
	var tombs int
	for _, r := range c.model.survivors(to, false) {
		if r.tomb && r.off < to {
			tombs++
		}
	}
	if tombs == 0 {
		t.Fatal("test data has no live tombstones")
	}
	// Before the horizon passes the segments' timestamps, tombstones stay.
	minTs := c.model.recs[0].ts
	res := c.clean(t, CleanOptions{TombstoneHorizon: time.UnixMilli(minTs)})
	diffRecs(t, "horizon before the data", readRecords(t, c.l), c.model.survivors(to, false))
	if res.TombstonesRemoved != 0 {
		t.Fatalf("%d tombstones removed before the horizon", res.TombstonesRemoved)
	}
	// A tiered log (local segments deleted below the log start): tombstones
	// stay whatever the horizon.
	maxTs := c.model.recs[len(c.model.recs)-1].ts
	tl := mustOpen(t, fsys.KillClone(), cleanDir, c.cfg, Options{})
	if n, err := tl.DeleteLocalBefore(tl.Segments()[0].Next); n != 1 || err != nil {
		t.Fatalf("DeleteLocalBefore: %d, %v", n, err)
	}
	res, err := tl.Clean(CleanOptions{From: tl.LocalStartOffset(), To: to, TombstoneHorizon: time.UnixMilli(maxTs + 1)})
	if err != nil || res.TombstonesRemoved != 0 {
		t.Fatalf("tiered log: %+v, %v; want no tombstone removed", res, err)
	}
	tl.Close()
	// After it: every tombstone goes, and with it every trace of the key.
	res = c.clean(t, CleanOptions{TombstoneHorizon: time.UnixMilli(maxTs + 1)})
	diffRecs(t, "horizon after the data", readRecords(t, c.l), c.model.survivors(to, true))
	if res.TombstonesRemoved != int64(tombs) {
		t.Fatalf("%d tombstones removed, want %d", res.TombstonesRemoved, tombs)
	}
	c.checkRetryIsDuplicate(t, c.l)
}

func TestCleanMapFull(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 400, 500, 3)
	defer c.l.Close()
	to := activeBase(c.l)

	if _, err := c.l.Clean(CleanOptions{From: 0, To: to, MaxMapEntries: 2}); !errors.Is(err, ErrCleanMapFull) {
		t.Fatalf("map of 2 entries: %v, want ErrCleanMapFull", err)
	}
	diffRecs(t, "after the refused pass", readRecords(t, c.l), c.model.recs)

	passes := 0
	for c.l.CleanerPoint() < to {
		point := c.l.CleanerPoint()
		res := c.clean(t, CleanOptions{MaxMapEntries: 200})
		passes++
		if !res.MapFull && res.End != to || res.End <= point || res.CleanerPoint != res.End || res.MapEntries > 200 {
			t.Fatalf("pass %d from %d: %+v", passes, point, res)
		}
		// Everything below the pass's end is clean against what follows
		// it up to the end; what is after the end is untouched.
		got := readRecords(t, c.l)
		for _, r := range c.model.recs {
			if r.off >= res.End && !slices.Contains(got, r) {
				t.Fatalf("pass %d: record %v past the end %d was removed", passes, r, res.End)
			}
		}
		if passes > 50 {
			t.Fatal("no progress")
		}
	}
	if passes < 3 {
		t.Fatalf("%d passes: the map never filled", passes)
	}
	diffRecs(t, "after all passes", readRecords(t, c.l), c.model.survivors(to, false))
}

// TestCleanOffsetGaps reads and looks up every offset and time of a
// compacted log: a read at a removed offset returns the batch holding the
// next record, time lookups find surviving records only.
func TestCleanOffsetGaps(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 400, 30, 4)
	defer c.l.Close()
	to := activeBase(c.l)
	c.clean(t, CleanOptions{})
	want := c.model.survivors(to, false)
	end := c.l.EndOffset()

	check := func(l *Log) {
		t.Helper()
		for off := int64(0); off < end; off++ {
			b, err := l.Read(off, 1, end)
			if err != nil || len(b) == 0 {
				t.Fatalf("Read(%d): %d bytes, %v", off, len(b), err)
			}
			h, _ := batch.ParseHeader(b)
			if h.LastOffset() < off || h.BaseOffset > off && h.BaseOffset > nextSurvivor(want, off) {
				t.Fatalf("Read(%d) returned batch [%d, %d]; next record at %d", off, h.BaseOffset, h.LastOffset(), nextSurvivor(want, off))
			}
			var first int64 = -1
			_ = batch.Records(b, 0, func(r batch.Record) error {
				if o := h.BaseOffset + int64(r.OffsetDelta); first < 0 && o >= off {
					first = o
				}
				return nil
			})
			if first >= 0 && first != nextSurvivor(want, off) {
				t.Fatalf("Read(%d): first record at or after it is %d, want %d", off, first, nextSurvivor(want, off))
			}
		}
		for ts := want[0].ts - 1; ts <= want[len(want)-1].ts+1; ts++ {
			off, rts, ok, err := l.OffsetForTimestamp(ts)
			wr, wok := firstAtOrAfterTs(want, ts)
			if err != nil || ok != wok || ok && (off != wr.off || rts != wr.ts) {
				t.Fatalf("OffsetForTimestamp(%d) = %d@%d %v %v, want %d@%d %v", ts, off, rts, ok, err, wr.off, wr.ts, wok)
			}
		}
		off, ts, err := l.MaxTimestamp()
		last := want[len(want)-1]
		if err != nil || off != last.off || ts != last.ts {
			t.Fatalf("MaxTimestamp = %d@%d %v, want %d@%d", off, ts, err, last.off, last.ts)
		}
	}
	check(c.l)
	c.l.Close()
	r := mustOpen(t, fsys.KillClone(), cleanDir, c.cfg, Options{})
	defer r.Close()
	check(r)
}

func nextSurvivor(recs []cleanRec, off int64) int64 {
	for _, r := range recs {
		if r.off >= off {
			return r.off
		}
	}
	return -1
}

func firstAtOrAfterTs(recs []cleanRec, ts int64) (cleanRec, bool) {
	for _, r := range recs {
		if r.ts >= ts {
			return r, true
		}
	}
	return cleanRec{}, false
}

// TestCleanRateLimit runs a pass on a fake clock whose sleeps advance it and
// checks that the time slept matches the bytes moved at the configured rate.
func TestCleanRateLimit(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 400, 60, 5)
	defer c.l.Close()
	var slept time.Duration
	var sleeps int
	c.l.cleanSleep = func(_ context.Context, d time.Duration) error {
		slept += d
		sleeps++
		c.clock.ms += d.Milliseconds() + 1 // a sleep lasts at least as long as asked
		return nil
	}
	const rate = 50_000
	start := c.clock.ms
	res := c.clean(t, CleanOptions{RateLimit: rate})
	moved := res.BytesRead + res.BytesWritten
	if moved < 3*rate || sleeps < 10 {
		t.Fatalf("moved %d bytes in %d sleeps: too little to measure", moved, sleeps)
	}
	// The clock moves only in sleeps: the pass took what the bytes beyond
	// the 100 ms burst cost at the rate, give or take the millisecond a
	// sleep may oversleep.
	elapsed := time.Duration(c.clock.ms-start) * time.Millisecond
	want := time.Duration((float64(moved) - rate/10) / rate * float64(time.Second))
	if elapsed < want-time.Millisecond || elapsed > want+2*time.Millisecond || slept > elapsed {
		t.Fatalf("%d bytes at %d B/s took %v (slept %v), want %v", moved, rate, elapsed, slept, want)
	}
	if res.Duration != elapsed {
		t.Fatalf("duration %v, clock moved %v", res.Duration, elapsed)
	}
	diffRecs(t, "rate-limited pass", readRecords(t, c.l), c.model.survivors(activeBase(c.l), false))
}

func TestGroupSegments(t *testing.T) {
	const h = segHeaderSize
	span := func(base, next, batches int64) segSpan { return segSpan{base: base, next: next, size: h + batches} }
	tests := []struct {
		name string
		segs []segSpan
		max  int64
		want [][2]int
	}{
		{"empty", nil, 100, nil},
		{"one", []segSpan{span(0, 10, 50)}, 100, [][2]int{{0, 1}}},
		{"merge while it fits", []segSpan{span(0, 10, 40), span(10, 20, 40), span(20, 30, 40)}, h + 80, [][2]int{{0, 2}, {2, 3}}},
		{"exact fit", []segSpan{span(0, 10, 40), span(10, 20, 60)}, h + 100, [][2]int{{0, 2}}},
		{"too big alone", []segSpan{span(0, 10, 500), span(10, 20, 10), span(20, 30, 10)}, h + 100, [][2]int{{0, 1}, {1, 3}}},
		{"offset span over u32", []segSpan{span(0, 1<<31, 10), span(1<<31, 1<<33, 10)}, 1 << 20, [][2]int{{0, 1}, {1, 2}}},
		{"all small", []segSpan{span(0, 1, 1), span(1, 2, 1), span(2, 3, 1), span(3, 4, 1)}, 1 << 20, [][2]int{{0, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := groupSegments(tt.segs, tt.max); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCleanRefusesBadRanges(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 100, 20, 6)
	defer c.l.Close()
	segs := c.l.Segments()
	act := segs[len(segs)-1]
	for _, tc := range []struct {
		name     string
		from, to int64
		ok       bool
	}{
		{"into the active segment", 0, act.Next, false},
		{"past the active base", 0, act.Base + 1, false},
		{"not a segment end", 0, segs[0].Next + 1, false},
		{"not a segment base", segs[1].Base + 1, act.Base, false},
		{"below the log", -5, segs[0].Next, false},
		{"empty", segs[2].Base, segs[1].Base, true},
		{"one segment", segs[1].Base, segs[1].Next, true},
		{"from inside the first segment", 1, segs[2].Next, true},
		{"everything", 0, act.Base, true},
	} {
		// SegmentBytes 1: no merging, so the boundaries stay.
		_, err := c.l.Clean(CleanOptions{From: tc.from, To: tc.to, SegmentBytes: 1})
		if (err == nil) != tc.ok {
			t.Fatalf("%s: Clean [%d, %d): %v; want ok %v", tc.name, tc.from, tc.to, err, tc.ok)
		}
	}
	if got := c.l.Segments(); len(got) != len(segs) {
		t.Fatalf("%d segments, was %d", len(got), len(segs))
	}
	diffRecs(t, "after the passes", readRecords(t, c.l), c.model.survivors(act.Base, false))
}

// TestCleanCancelAndRace checks that a cancelled pass and a pass whose
// segments retention deleted meanwhile change nothing and leave no file.
func TestCleanCancelAndRace(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 300, 40, 7)
	defer c.l.Close()
	to := activeBase(c.l)
	before := c.l.Segments()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.l.Clean(CleanOptions{From: 0, To: to, Context: ctx}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pass: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	c.l.cleanSleep = func(context.Context, time.Duration) error {
		cancel() // in the middle of the pass
		return nil
	}
	if _, err := c.l.Clean(CleanOptions{From: 0, To: to, Context: ctx, RateLimit: 10_000}); !errors.Is(err, context.Canceled) {
		t.Fatalf("pass cancelled midway: %v", err)
	}
	c.l.cleanSleep = func(context.Context, time.Duration) error {
		if c.l.StartOffset() == 0 {
			if err := c.l.SetStartOffset(before[0].Next); err != nil {
				t.Error(err)
			}
		}
		return nil
	}
	if _, err := c.l.Clean(CleanOptions{From: 0, To: to, RateLimit: 10_000}); !errors.Is(err, ErrCleanRaced) {
		t.Fatalf("pass raced by retention: %v", err)
	}
	if f := cleanedFiles(t, fsys, cleanDir); len(f) > 0 {
		t.Fatalf("leftover files %v", f)
	}
	if got := c.l.Segments(); len(got) != len(before)-1 || c.l.CleanerPoint() != before[1].Base {
		t.Fatalf("segments %d (was %d), cleaner point %d", len(got), len(before), c.l.CleanerPoint())
	}
	var want []cleanRec
	for _, r := range c.model.recs {
		if r.off >= before[0].Next {
			want = append(want, r)
		}
	}
	diffRecs(t, "after refused passes", readRecords(t, c.l), want)
}

// TestCloseStopsClean closes the log while a pass sleeps on its rate limit.
func TestCloseStopsClean(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 300, 40, 8)
	to := activeBase(c.l)
	sleeping := make(chan struct{})
	var once sync.Once
	c.l.cleanSleep = func(ctx context.Context, d time.Duration) error {
		once.Do(func() { close(sleeping) })
		return ratelimit.Sleep(ctx, d)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.l.Clean(CleanOptions{From: 0, To: to, RateLimit: 1000})
		errc <- err
	}()
	<-sleeping
	if err := c.l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Clean after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Clean still running after Close returned")
	}
	if _, err := c.l.Clean(CleanOptions{From: 0, To: to}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Clean on a closed log: %v", err)
	}
	if f := cleanedFiles(t, fsys, cleanDir); len(f) > 0 {
		t.Fatalf("leftover files %v", f)
	}
}

// TestCleanConcurrentReads reads the whole log over and over, checking every
// record against what was appended at its offset, while producers append,
// segments roll and cleaner passes swap segments.
func TestCleanConcurrentReads(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 2048, IndexIntervalBytes: 128}
	l := mustOpen(t, fsys, cleanDir, cfg, Options{Files: NewFileCache(2)})
	defer l.Close()
	var mu sync.Mutex
	written := map[int64]kv{}
	appendSome := func(i int) {
		recs := []kv{{fmt.Appendf(nil, "k%d", i%17), fmt.Appendf(nil, "v%d", i), int64(1000 + i)}, {fmt.Appendf(nil, "k%d", i%5), fmt.Appendf(nil, "w%d", i), int64(1000 + i)}}
		mu.Lock() // the offsets are known only after the append
		defer mu.Unlock()
		res, err := l.Append(keyedBatch(recs, nil, batch.CodecNone), AppendInfo{LeaderEpoch: 1})
		if err != nil {
			t.Error(err)
			return
		}
		for k, r := range recs {
			written[res.BaseOffset+int64(k)] = r
		}
	}
	for i := range 200 {
		appendSome(i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				end := l.DurableOffset()
				for off := l.StartOffset(); off < end; {
					b, err := l.Read(off, 300, end)
					if err == nil && len(b) == 0 {
						// Nothing below end from off: the cleaner removed the
						// records up to a batch at or past end (an empty one).
						b, err = l.Read(off, 300, 1<<62)
						if h, _ := batch.ParseHeader(b); err == nil && len(b) > 0 && h.BaseOffset >= end {
							break
						}
					}
					if err != nil || len(b) == 0 {
						t.Errorf("Read(%d) up to %d: %d bytes, %v", off, end, len(b), err)
						return
					}
					for len(b) > 0 {
						h, err := batch.ParseHeader(b)
						if err != nil || h.Size() > len(b) {
							t.Errorf("Read(%d): bad batch: %v", off, err)
							return
						}
						if h.LastOffset() < off {
							t.Errorf("Read(%d): batch ends at %d", off, h.LastOffset())
							return
						}
						err = batch.Records(b, 0, func(r batch.Record) error {
							o := h.BaseOffset + int64(r.OffsetDelta)
							mu.Lock()
							w := written[o]
							mu.Unlock()
							if !bytes.Equal(r.Key, w.key) || !bytes.Equal(r.Value, w.val) {
								return fmt.Errorf("record at %d is %s=%s, was written as %s=%s", o, r.Key, r.Value, w.key, w.val)
							}
							return nil
						})
						if err != nil {
							t.Error(err)
							return
						}
						off = h.LastOffset() + 1
						b = b[h.Size():]
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a producer, rolling segments as it goes
		defer wg.Done()
		for i := 200; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			appendSome(i)
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for passes, last := 0, int64(0); passes < 30; {
		to := int64(-1)
		for _, s := range l.Segments() {
			if s.Sealed && s.Durable {
				to = s.Next
			}
		}
		if to <= last {
			time.Sleep(time.Millisecond)
			continue
		}
		if _, err := l.Clean(CleanOptions{From: l.StartOffset(), To: to, SegmentBytes: 3000}); err != nil {
			t.Fatal(err)
		}
		passes, last = passes+1, to
	}
	close(stop)
	wg.Wait()
	if l.CleanerPoint() == 0 {
		t.Fatal("nothing was cleaned")
	}
}

func TestCleanerCheckpointCodec(t *testing.T) {
	groups := []cleanedGroup{{0, 10, 100}, {10, 30, 5000}}
	b := encodeCleanerCheckpoint(42, groups)
	point, got, err := decodeCleanerCheckpoint(b)
	if err != nil || point != 42 || !slices.Equal(got, groups) {
		t.Fatalf("round trip: %d %v %v", point, got, err)
	}
	if _, _, err := decodeCleanerCheckpoint(encodeCleanerCheckpoint(5, []cleanedGroup{{10, 30, 100}, {0, 10, 100}})); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("overlapping groups: %v", err)
	}
	bad := slices.Clone(b)
	bad[len(bad)-1] ^= 1
	if _, _, err := decodeCleanerCheckpoint(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad CRC: %v", err)
	}
	v2 := slices.Clone(b)
	v2[5] = 2
	if _, _, err := decodeCleanerCheckpoint(v2); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 2: %v", err)
	}
}

func FuzzDecodeCleanerCheckpoint(f *testing.F) {
	f.Add(encodeCleanerCheckpoint(7, nil))
	f.Add(encodeCleanerCheckpoint(7, []cleanedGroup{{0, 10, 100}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if point, groups, err := decodeCleanerCheckpoint(b); err == nil && !bytes.Equal(encodeCleanerCheckpoint(point, groups), b) {
			t.Fatal("cleaner checkpoint does not re-encode")
		}
	})
}

// BenchmarkClean cleans a 32 MiB log of 16-record batches (100-byte
// values) over 20,000 keys and reports MB/s of input: "mem" on the
// in-memory file system (the cost of the pass itself), "disk" on the real
// one, fsyncs included.
func BenchmarkClean(b *testing.B) {
	b.Run("mem", func(b *testing.B) {
		tmpl := vfs.NewCrashFS()
		to, input := fillBenchLog(b, tmpl, cleanDir)
		benchClean(b, input, to, func() (vfs.FS, string) { return tmpl.KillClone(), cleanDir })
	})
	b.Run("disk", func(b *testing.B) {
		src := filepath.Join(b.TempDir(), "tmpl")
		to, input := fillBenchLog(b, vfs.Default, src)
		benchClean(b, input, to, func() (vfs.FS, string) {
			dst := filepath.Join(b.TempDir(), "p")
			copyDir(b, src, dst)
			return vfs.Default, dst
		})
	})
}

func fillBenchLog(b *testing.B, fsys vfs.FS, dir string) (to, input int64) {
	l := mustOpen(b, fsys, dir, Config{SegmentBytes: 8 << 20}, Options{})
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	val := bytes.Repeat([]byte("v"), 100)
	for l.Size() < 32<<20 {
		var buf []byte // 64 batches per append: fewer sync rounds to build it
		for range 64 {
			recs := make([]kv, 16)
			for i := range recs {
				recs[i] = kv{fmt.Appendf(nil, "key-%06d", rng.IntN(20_000)), val, 1000}
			}
			buf = append(buf, keyedBatch(recs, nil, batch.CodecNone)...)
		}
		mustAppend(b, l, buf)
	}
	if _, err := l.Roll(); err != nil {
		b.Fatal(err)
	}
	for _, s := range l.Segments() {
		input += s.Size
	}
	return activeBase(l), input
}

func benchClean(b *testing.B, input, to int64, fresh func() (vfs.FS, string)) {
	b.SetBytes(input)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		fsys, dir := fresh()
		l := mustOpen(b, fsys, dir, Config{SegmentBytes: 8 << 20}, Options{})
		b.StartTimer()
		if _, err := l.Clean(CleanOptions{From: 0, To: to}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		l.Close()
		b.StartTimer()
	}
}

func copyDir(b *testing.B, src, dst string) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	names, err := os.ReadDir(src)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(src, n.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, n.Name()), data, 0o644)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// slowOpenFS holds an Open of path, after the file is opened, until release
// is closed.
type slowOpenFS struct {
	*vfs.CrashFS
	path            string
	once            sync.Once
	opened, release chan struct{}
}

func (s *slowOpenFS) Open(name string) (vfs.File, error) {
	f, err := s.CrashFS.Open(name)
	if name == s.path {
		s.once.Do(func() {
			close(s.opened)
			<-s.release
		})
	}
	return f, err
}

// TestFileCacheDoesNotCacheAcrossEviction: a descriptor opened before the
// cleaner renamed a new file over its path and evicted it must not be
// cached, or readers of the new segment would read the old file.
func TestFileCacheDoesNotCacheAcrossEviction(t *testing.T) {
	mem := vfs.NewCrashFS()
	if err := mem.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		f, err := mem.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(data))
		f.Close()
	}
	write("/d/a", "old")
	fsys := &slowOpenFS{CrashFS: mem, path: "/d/a", opened: make(chan struct{}), release: make(chan struct{})}
	c := NewFileCache(4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, release, err := c.acquire(fsys, "/d/a")
		if err != nil {
			t.Error(err)
			return
		}
		release()
	}()
	<-fsys.opened // the old file is open
	write("/d/a.new", "new")
	if err := mem.Rename("/d/a.new", "/d/a"); err != nil {
		t.Fatal(err)
	}
	c.evict(fsys, "/d/a")
	close(fsys.release)
	<-done
	f, release, err := c.acquire(fsys, "/d/a")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	buf := make([]byte, 3)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "new" {
		t.Fatalf("read %q, %v through the cache after the swap; want the new file", buf, err)
	}
}
