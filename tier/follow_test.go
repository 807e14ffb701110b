package tier

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/objstore/mem"
)

// openLogSized opens a partition log rolling at segmentBytes.
func openLogSized(t testing.TB, dir string, segmentBytes int64) *plog.Log {
	t.Helper()
	l, err := plog.Open(dir, plog.Config{SegmentBytes: segmentBytes, IndexIntervalBytes: testIndexInterval},
		plog.Options{FS: vfs.NewCrashFS(), Logger: discardLogger()})
	if err != nil {
		t.Fatalf("open log %s: %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestLeaderChangeContinuesUploads: two replicas hold the same batches in
// segments that end at different offsets. The first leader uploads; the
// second, after a leader change, continues from the remote end in the middle
// of its own segment; the manifest stays contiguous, every record reads back
// from the bucket as the local log has it, and the deposed leader's tier is
// fenced. A follower's local retention deletes only what the bucket holds.
func TestLeaderChangeContinuesUploads(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	a := openLogSized(t, "/a", testSegmentBytes)
	b := openLogSized(t, "/b", testSegmentBytes*3/2+100)
	g := newBatchGen(11, nil)
	g.appendTo(t, 1, 120, a, b)

	ma := newTestManager(t, store, Config{})
	pa, err := ma.OpenPartition(ctx, testTopic, testPartition, 1, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pa.Upload(ctx, a.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	end1 := pa.RemoteEndOffset()
	if end1 == 0 {
		t.Fatal("setup: nothing uploaded")
	}
	straddles := false
	for _, s := range b.Segments() {
		straddles = straddles || s.Base < end1 && end1 < s.Next
	}
	if !straddles {
		t.Fatalf("setup: no segment of the second replica straddles the remote end %d", end1)
	}

	// The second replica, following: it learns the remote end and lets
	// local retention delete only segments entirely below it.
	mb := newTestManager(t, store, Config{})
	pb, err := mb.OpenPartition(ctx, testTopic, testPartition, 1, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := pb.Refresh(ctx); err != nil || pb.RemoteEndOffset() != end1 {
		t.Fatalf("Refresh: %v, remote end %d, want %d", err, pb.RemoteEndOffset(), end1)
	}
	n, err := pb.ApplyLocalRetention(Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: 0})
	if err != nil || n == 0 {
		t.Fatalf("follower local retention: %d segments, %v", n, err)
	}
	if ls := b.LocalStartOffset(); ls > end1 || b.StartOffset() != 0 {
		t.Fatalf("follower local start %d (remote end %d), log start %d", ls, end1, b.StartOffset())
	}
	if m := newestManifest(t, store); m.EndOffset() != end1 || m.Epoch != 1 {
		t.Fatalf("a follower published: manifest epoch %d end %d", m.Epoch, m.EndOffset())
	}

	// Leader change: more records, then the second replica leads at
	// epoch 2 and uploads the rest, from the remote end on.
	g.appendTo(t, 2, 60, a, b)
	pb2, err := mb.OpenPartition(ctx, testTopic, testPartition, 2, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := pb2.Upload(ctx, b.DurableOffset()); err != nil {
		t.Fatalf("upload after the leader change: %v", err)
	}
	m := newestManifest(t, store)
	if m.EndOffset() != b.EndOffset() || m.Epoch != 2 {
		t.Fatalf("manifest epoch %d ends at %d, want epoch 2 and %d", m.Epoch, m.EndOffset(), b.EndOffset())
	}
	for i := 1; i < len(m.Entries); i++ {
		if m.Entries[i].BaseOffset != m.Entries[i-1].NextOffset {
			t.Fatalf("entries %d and %d not contiguous: %+v %+v", i-1, i, m.Entries[i-1], m.Entries[i])
		}
	}
	for _, e := range m.Entries {
		if !objectExists(t, store, e.Key) {
			t.Fatalf("manifest names missing object %s", e.Key)
		}
	}
	// Every record reads back from the bucket as the first replica's log
	// has it.
	want, _ := localBytes(t, a, 0, b.EndOffset())
	var got []byte
	for off := int64(0); off < b.EndOffset(); {
		data, err := pb2.Read(ctx, off, 1<<20)
		if err != nil || len(data) == 0 {
			t.Fatalf("remote Read(%d): %d bytes, %v", off, len(data), err)
		}
		got = append(got, data...)
		off = lastOffsetOf(t, data) + 1
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("remote bytes differ from the log (%d vs %d bytes)", len(got), len(want))
	}
	// The deposed leader cannot publish any more.
	g.appendTo(t, 1, 30, a)
	if _, err := a.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := pa.Upload(ctx, a.DurableOffset()); !errors.Is(err, ErrFenced) {
		t.Fatalf("deposed leader's upload: %v, want ErrFenced", err)
	}
}

// TestRebuildLogFromBucket: a replica whose log holds no records continues
// at the bucket's end; one with records is refused.
func TestRebuildLogFromBucket(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	a := openLogSized(t, "/a", testSegmentBytes)
	g := newBatchGen(12, nil)
	g.pid, g.pepoch = 77, 1
	g.appendTo(t, 3, 80, a)
	m := newTestManager(t, store, Config{})
	pa, err := m.OpenPartition(ctx, testTopic, testPartition, 3, a)
	if err != nil {
		t.Fatal(err)
	}
	uploadAll(t, pa, a)
	end := pa.RemoteEndOffset()

	// Opened before the bucket had anything (the tier was attached to an
	// empty log early): RebuildLog catches up with the newest manifest.
	empty := openLogSized(t, "/e", testSegmentBytes)
	m2 := newTestManager(t, mem.New(), Config{})
	pe, err := m2.OpenPartition(ctx, testTopic, testPartition, 3, empty)
	if err != nil {
		t.Fatal(err)
	}
	pe.m = m // now the bucket with the uploads
	if err := pe.PrepareRebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pe.RebuildLog(ctx); err != nil {
		t.Fatal(err)
	}
	if empty.EndOffset() != end || empty.LocalStartOffset() != end {
		t.Fatalf("rebuilt log: local start %d, end %d; want %d", empty.LocalStartOffset(), empty.EndOffset(), end)
	}
	if ep, _ := empty.EndOffsetForEpoch(3); ep != 3 {
		t.Fatalf("epochs not rebuilt: EndOffsetForEpoch(3) epoch %d", ep)
	}
	res, err := empty.Append(bytes.Clone(g.last), plog.AppendInfo{LeaderEpoch: 4})
	if err != nil || !res.Duplicate {
		t.Fatalf("producer state not rebuilt: retry of the last batch %+v, %v", res, err)
	}

	short := openLogSized(t, "/s", testSegmentBytes)
	newBatchGen(13, nil).appendTo(t, 1, 3, short)
	ps, err := m2.OpenPartition(ctx, testTopic, testPartition, 3, short)
	if err != nil {
		t.Fatal(err)
	}
	ps.m = m
	if err := ps.PrepareRebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ps.RebuildLog(ctx); err == nil {
		t.Fatal("RebuildLog of a log with records succeeded")
	}
}

// lastOffsetOf returns the last offset of the last batch in data.
func lastOffsetOf(t testing.TB, data []byte) int64 {
	t.Helper()
	last := int64(-1)
	for len(data) > 0 {
		h, err := batch.ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		last = h.LastOffset()
		data = data[h.Size():]
	}
	return last
}
