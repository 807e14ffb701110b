package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/strata-io/strata/ingest/log/vfs"
)

func TestOffsetForTimestamp(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1500, IndexIntervalBytes: 200}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	// Batch i has 4 records; timestamps mostly rise, with some going back.
	type info struct{ base, maxTs, ts int64 }
	deltas := []int64{0, 3, 1, 2}
	var model []info
	for i := range 60 {
		ts := int64(10_000 + 100*i)
		if i%7 == 3 {
			ts -= 450 // an older batch
		}
		b := makeBatch(batchSpec{records: 4, valSize: 20, ts: ts, pid: -1, seq: -1, tsDeltas: deltas})
		res := mustAppend(t, l, b)
		model = append(model, info{res.BaseOffset, ts + 3, ts})
	}
	waitDurable(t, l, l.EndOffset()-1)
	want := func(ts int64) (int64, int64, bool) {
		for _, m := range model {
			for i, d := range deltas {
				if m.ts+d >= ts {
					return m.base + int64(i), m.ts + d, true
				}
			}
		}
		return -1, -1, false
	}
	check := func(l *Log) {
		t.Helper()
		for ts := int64(9_000); ts < 17_000; ts += 37 {
			off, got, ok, err := l.OffsetForTimestamp(ts)
			woff, wts, wok := want(ts)
			if err != nil || ok != wok || off != woff || got != wts {
				t.Fatalf("OffsetForTimestamp(%d) = %d@%d %v %v, want %d@%d %v", ts, off, got, ok, err, woff, wts, wok)
			}
		}
		off, ts, err := l.MaxTimestamp()
		last := model[0]
		for _, m := range model {
			if m.maxTs > last.maxTs {
				last = m
			}
		}
		if err != nil || off != last.base+1 || ts != last.maxTs {
			t.Fatalf("MaxTimestamp = %d@%d %v, want %d@%d", off, ts, err, last.base+1, last.maxTs)
		}
	}
	check(l)
	l.Close()
	l = mustOpen(t, fsys, "/d", cfg, Options{}) // sealed segments from time index files
	defer l.Close()
	check(l)
}

func TestFileCacheBound(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cache := NewFileCache(3)
	cfg := Config{SegmentBytes: 600}
	l := mustOpen(t, fsys, "/d", cfg, Options{Files: cache})
	defer l.Close()
	fillSegments(t, l, 60)
	nseg := len(segmentBases(l))
	if nseg < 10 {
		t.Fatalf("%d segments", nseg)
	}
	if open := fsys.OpenFiles(); open != 1 {
		t.Fatalf("%d files open with no reads; sealed segments must hold none", open)
	}
	for range 2 {
		for off := int64(0); off < l.EndOffset(); off += 10 {
			if _, err := l.Read(off, 1, 1<<40); err != nil {
				t.Fatal(err)
			}
			if open := fsys.OpenFiles(); open > 3+1 {
				t.Fatalf("%d files open, bound 3 + the active segment", open)
			}
		}
	}
	if cache.Len() != 3 {
		t.Fatalf("cache holds %d", cache.Len())
	}
	// Deleting segments closes their cached descriptors.
	l.ApplyRetention(-1, 0)
	if open := fsys.OpenFiles(); open != 1 {
		t.Fatalf("%d files open after deleting every sealed segment", open)
	}
}

func TestEndOffsetForEpoch(t *testing.T) {
	c := epochCache{}
	if e, o := c.endOffsetFor(1, 100); e != -1 || o != -1 {
		t.Fatalf("empty: %d %d", e, o)
	}
	c.assign(2, 10)
	c.assign(4, 50)
	c.assign(3, 60) // older epoch: ignored
	c.assign(7, 80)
	tests := []struct {
		epoch     int32
		wantEpoch int32
		wantOff   int64
	}{
		{-1, -1, -1},
		{1, 1, 10},
		{2, 2, 50},
		{3, 2, 50},
		{4, 4, 80},
		{5, 4, 80},
		{7, 7, 100},
		{8, -1, -1},
	}
	for _, tt := range tests {
		if e, o := c.endOffsetFor(tt.epoch, 100); e != tt.wantEpoch || o != tt.wantOff {
			t.Errorf("endOffsetFor(%d) = %d, %d; want %d, %d", tt.epoch, e, o, tt.wantEpoch, tt.wantOff)
		}
	}
	c.truncateFromStart(60)
	if c.entries[0] != (epochEntry{4, 60}) || len(c.entries) != 2 {
		t.Fatalf("truncateFromStart: %+v", c.entries)
	}
	c.truncateFromEnd(80)
	if len(c.entries) != 1 {
		t.Fatalf("truncateFromEnd: %+v", c.entries)
	}
	got, err := decodeEpochs(encodeEpochs(c.entries))
	if err != nil || len(got) != 1 || got[0] != c.entries[0] {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

func TestEpochsThroughLog(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 800}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	for i, epoch := range []int32{1, 1, 1, 3, 3, 3, 3, 5, 5} {
		_, err := l.Append(simpleBatch(5, 50, byte(i)), AppendInfo{LeaderEpoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitDurable(t, l, l.EndOffset()-1)
	check := func(l *Log) {
		t.Helper()
		for _, tt := range []struct {
			epoch, we int32
			wo        int64
		}{{1, 1, 15}, {2, 1, 15}, {3, 3, 35}, {5, 5, 45}, {6, -1, -1}} {
			if e, o := l.EndOffsetForEpoch(tt.epoch); e != tt.we || o != tt.wo {
				t.Errorf("EndOffsetForEpoch(%d) = %d, %d; want %d, %d", tt.epoch, e, o, tt.we, tt.wo)
			}
		}
	}
	check(l)
	l.Close()
	l = mustOpen(t, fsys.CrashClone(nil), "/d", cfg, Options{})
	defer l.Close()
	check(l)
}

func TestUnknownVersionsRefused(t *testing.T) {
	setup := func(t *testing.T) *vfs.CrashFS {
		fsys := vfs.NewCrashFS()
		l := mustOpen(t, fsys, "/d", Config{SegmentBytes: 500}, Options{})
		fillSegments(t, l, 10)
		l.Close()
		return fsys
	}
	patch := func(fsys *vfs.CrashFS, name string, at int64, b []byte) {
		data, _ := readFile(fsys, "/d/"+name)
		copy(data[at:], b)
		writeAtomic(fsys, "/d", name, data, true)
	}
	tests := []struct {
		name string
		file string
		at   int64
	}{
		{"segment", fileName(0, logSuffix), 4},
		{"active segment", "", 4},
		{"offset index", fileName(0, indexSuffix), 4},
		{"time index", fileName(0, timeIndexSuffix), 4},
		{"epoch checkpoint", epochCheckpoint, 4},
		{"producer snapshot", "", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := setup(t)
			names, _ := fsys.ReadDir("/d")
			file := tt.file
			for _, n := range names {
				if tt.name == "active segment" && strings.HasSuffix(n, logSuffix) {
					file = n
				}
				if tt.name == "producer snapshot" && strings.HasSuffix(n, snapshotSuffix) {
					file = n
				}
			}
			patch(fsys, file, tt.at, []byte{0, 9})
			_, err := Open("/d", Config{SegmentBytes: 500}, testOptions(fsys))
			if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "9") {
				t.Fatalf("Open = %v; want ErrVersion naming %s and version 9", err, file)
			}
		})
	}
}

func TestIndexRebuilt(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 1000, IndexIntervalBytes: 100}
	l := mustOpen(t, fsys, "/d", cfg, Options{})
	fillSegments(t, l, 30)
	want := readAll(t, l)
	l.Close()
	fsys.Remove("/d/" + fileName(0, indexSuffix))
	data, _ := readFile(fsys, "/d/"+fileName(segmentBases(l)[2], timeIndexSuffix))
	data[len(data)-1] ^= 0xff
	writeAtomic(fsys, "/d", fileName(segmentBases(l)[2], timeIndexSuffix), data, true)
	l = mustOpen(t, fsys, "/d", cfg, Options{})
	defer l.Close()
	if got := readAll(t, l); len(got) != len(want) {
		t.Fatalf("%d batches after rebuild, want %d", len(got), len(want))
	}
	if _, err := fsys.Stat("/d/" + fileName(0, indexSuffix)); err != nil {
		t.Fatalf("index not rewritten: %v", err)
	}
	if off, _, ok, _ := l.OffsetForTimestamp(15_000); !ok || off != 140 {
		t.Fatalf("time lookup after rebuild: %d %v", off, ok)
	}
}

func TestFlushMessagesForcesSync(t *testing.T) {
	fsys := vfs.NewCrashFS()
	syncer := NewSyncer(quietLogger(), 1)
	syncer.Close() // no background syncs: only forced ones
	l := mustOpen(t, fsys, "/d", Config{FlushMessages: 5}, Options{Syncer: syncer})
	defer l.Close()
	res := mustAppend(t, l, simpleBatch(5, 1, 1))
	if l.DurableOffset() != res.LastOffset+1 {
		t.Fatalf("durable %d after flush.messages reached, want %d", l.DurableOffset(), res.LastOffset+1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.WaitDurable(ctx, res.LastOffset); err != nil {
		t.Fatalf("WaitDurable on durable data: %v", err)
	}
}

func TestRecoverRemovesTempFiles(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/d", Config{}, Options{})
	l.Close()
	f, _ := fsys.Create("/d/log-start-offset.tmp")
	f.Close()
	l = mustOpen(t, fsys, "/d", Config{}, Options{})
	defer l.Close()
	if _, err := fsys.Stat("/d/log-start-offset.tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left: %v", err)
	}
}

func TestRealDisk(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, vfs.Default, dir+"/p", Config{SegmentBytes: 2000}, Options{})
	for i := range 20 {
		res := mustAppend(t, l, simpleBatch(3, 100, byte(i)))
		waitDurable(t, l, res.LastOffset)
	}
	want := readAll(t, l)
	l.Close()
	l = mustOpen(t, vfs.Default, dir+"/p", Config{SegmentBytes: 2000}, Options{})
	if got := readAll(t, l); len(got) != len(want) {
		t.Fatalf("%d batches, want %d", len(got), len(want))
	}
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/p"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(fmt.Errorf("dir left after Delete: %w", err))
	}
}
