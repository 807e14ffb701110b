package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/cluster"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/fs"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
	"github.com/strata-io/strata/tier/objstore/s3"
)

// tierLsFixture is a broker data directory with a two-partition topic:
// partition 0 tiered into an fs bucket under <data-dir>/objects, with
// sealed segments not uploaded yet and two segments pending deletion;
// partition 1 without remote data.
type tierLsFixture struct {
	dataDir string
	topic   cluster.Topic
	m       *manifest.Manifest // partition 0's newest
	lagSegs int
	lagSize int64
}

func newTierLsFixture(t *testing.T) *tierLsFixture {
	t.Helper()
	return newTierLsFixtureOn(t, nil)
}

// newTierLsFixtureOn builds the fixture on store, or on an fs store under
// the data directory if store is nil.
func newTierLsFixtureOn(t *testing.T, store objstore.Store) *tierLsFixture {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fx := &tierLsFixture{dataDir: t.TempDir()}
	meta, err := cluster.OpenLocal(fx.dataDir, cluster.Broker{})
	if err != nil {
		t.Fatal(err)
	}
	if fx.topic, err = meta.CreateTopic(cluster.Topic{Name: "events", Partitions: make([]cluster.Partition, 2)}, 1); err != nil {
		t.Fatal(err)
	}
	if store == nil {
		st, err := fs.New(filepath.Join(fx.dataDir, "objects"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		store = st
	}
	tm, err := tier.NewManager(ctx, tier.Config{Store: store, TempDir: filepath.Join(fx.dataDir, "tier-tmp"), ChunkTarget: 1024, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tm.Close() })
	for p := range 2 {
		dir := filepath.Join(fx.dataDir, "logs", fmt.Sprintf("%s-%d.%s", fx.topic.Name, p, fx.topic.ID))
		l, err := plog.Open(dir, plog.Config{SegmentBytes: 2048}, plog.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		var last int64
		for i := range 60 {
			val := bytes.Repeat([]byte(fmt.Sprintf("record %d of partition %d; ", i, p)), 4)
			b := batch.Build(batch.BuildOptions{BaseTimestamp: 1_700_000_000_000 + int64(i)}, batch.Record{Value: val}, batch.Record{TimestampDelta: 1, Value: val})
			res, err := l.Append(b, plog.AppendInfo{LeaderEpoch: 1})
			if err != nil {
				t.Fatal(err)
			}
			last = res.LastOffset
		}
		if err := l.WaitDurable(ctx, last); err != nil {
			t.Fatal(err)
		}
		if p == 1 {
			continue
		}
		tp, err := tm.OpenPartition(ctx, fx.topic.ID, int32(p), 1, l)
		if err != nil {
			t.Fatal(err)
		}
		segs := l.Segments()
		if len(segs) < 8 {
			t.Fatalf("setup: %d segments", len(segs))
		}
		if _, err := tp.Upload(ctx, segs[5].Next); err != nil {
			t.Fatal(err)
		}
		// DeleteRecords up to the third segment: two leave the manifest.
		if err := l.SetStartOffset(segs[2].Base); err != nil {
			t.Fatal(err)
		}
		if _, remote, err := tp.ApplyRetention(ctx, tier.Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: -1}); err != nil || remote != 2 {
			t.Fatalf("retention: %d dropped, %v", remote, err)
		}
		fx.m = tp.Manifest()
		for _, s := range l.Segments() {
			if s.Sealed && s.Next > fx.m.EndOffset() {
				fx.lagSegs++
				fx.lagSize += s.Size
			}
		}
		if fx.lagSegs == 0 || len(fx.m.Deleted) != 2 {
			t.Fatalf("setup: lag %d segments, %d pending deletions", fx.lagSegs, len(fx.m.Deleted))
		}
	}
	return fx
}

func runTierLsCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := tierCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(append([]string{"ls"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// checkListsSegments checks that out has a row for every segment of m,
// with its offsets, records, sizes, epochs and key, and the manifest line.
func checkListsSegments(t *testing.T, out string, m *manifest.Manifest) {
	t.Helper()
	if !strings.Contains(out, "manifest "+m.ID().String()) || !strings.Contains(out, m.Key()) {
		t.Fatalf("output lacks manifest %s:\n%s", m.ID(), out)
	}
	want := fmt.Sprintf("log start %d  remote end %d  segments %d", m.LogStartOffset, m.EndOffset(), len(m.Entries))
	if !strings.Contains(out, want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	for _, e := range m.Entries {
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 9 && f[0] == fmt.Sprint(e.BaseOffset) && f[1] == fmt.Sprint(e.NextOffset) && f[2] == fmt.Sprint(e.RecordCount) &&
				f[3] == fmt.Sprint(e.RawSize) && f[4] == fmt.Sprint(e.StoredSize) && f[5] == ratio(e.RawSize, e.StoredSize) &&
				f[6] == fmt.Sprintf("1@%d", e.BaseOffset) && f[8] == e.Key {
				found = true
			}
		}
		if !found {
			t.Fatalf("no row for segment [%d, %d) %s:\n%s", e.BaseOffset, e.NextOffset, e.Key, out)
		}
	}
	for _, d := range m.Deleted {
		if !strings.Contains(out, d.Key) {
			t.Fatalf("pending deletion %s not listed:\n%s", d.Key, out)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("pending deletion: %d objects", len(m.Deleted))) {
		t.Fatalf("no pending deletion summary:\n%s", out)
	}
}

// TestTierLsWithDataDir: by topic name, with the data directory for ids,
// the partition count and the upload lag.
func TestTierLsWithDataDir(t *testing.T) {
	fx := newTierLsFixture(t)
	out, err := runTierLsCmd(t, "--data-dir", fx.dataDir, "--topic", "events")
	if err != nil {
		t.Fatalf("tier ls: %v\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
	checkListsSegments(t, out, fx.m)
	if !strings.Contains(out, "topic events  id "+fx.topic.ID.String()) {
		t.Fatalf("no topic line:\n%s", out)
	}
	p0, p1, ok := strings.Cut(out, "\npartition 1\n")
	if !ok || !strings.Contains(p0, "\npartition 0\n") {
		t.Fatalf("partitions 0 and 1 not both listed:\n%s", out)
	}
	lag := fmt.Sprintf("upload lag: ~%d sealed segments above the remote end, %s", fx.lagSegs, sizeString(fx.lagSize))
	if !strings.Contains(p0, lag) {
		t.Fatalf("partition 0: want %q:\n%s", lag, p0)
	}
	if !strings.Contains(p1, "no remote data") || !strings.Contains(p1, "upload lag: ~") {
		t.Fatalf("partition 1 should have no remote data and a lag:\n%s", p1)
	}
	total := fmt.Sprintf("total: 2 partitions (1 with remote data), %d segments", len(fx.m.Entries))
	if !strings.Contains(out, total) {
		t.Fatalf("no totals:\n%s", out)
	}
}

// TestTierLsByTopicID: without a data directory, by topic id and
// partition, straight from the bucket.
func TestTierLsByTopicID(t *testing.T) {
	fx := newTierLsFixture(t)
	out, err := runTierLsCmd(t, "--object-store", "fs", "--object-store-dir", filepath.Join(fx.dataDir, "objects"),
		"--topic-id", fx.topic.ID.String(), "--partition", "0")
	if err != nil {
		t.Fatalf("tier ls: %v\n%s", err, out)
	}
	checkListsSegments(t, out, fx.m)
	if strings.Contains(out, "upload lag") || strings.Contains(out, "partition 1") {
		t.Fatalf("unexpected lag or partition 1:\n%s", out)
	}
	// --partitions lists each; the id is found in the data dir's metadata
	// too, which gives the lag.
	out, err = runTierLsCmd(t, "--data-dir", fx.dataDir, "--topic-id", fx.topic.ID.String(), "--partitions", "3")
	if err != nil {
		t.Fatalf("tier ls: %v\n%s", err, out)
	}
	checkListsSegments(t, out, fx.m)
	if !strings.Contains(out, "partition 2\n  no remote data") || !strings.Contains(out, "topic events") {
		t.Fatalf("partition 2 missing or topic name not found:\n%s", out)
	}
}

// TestTierLsErrors: what cannot be listed is refused with a reason, and a
// missing metadata file is not created.
func TestTierLsErrors(t *testing.T) {
	fx := newTierLsFixture(t)
	empty := t.TempDir()
	id := fx.topic.ID.String()
	objects := filepath.Join(fx.dataDir, "objects")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", empty, "--topic", "events"}, "metadata"},
		{[]string{"--data-dir", fx.dataDir, "--topic", "nope"}, "no topic"},
		{[]string{"--object-store-dir", objects, "--topic", "events"}, "--topic needs --data-dir"},
		{[]string{"--object-store-dir", objects, "--topic-id", id}, "partition count is unknown"},
		{[]string{"--object-store-dir", objects, "--topic-id", "xyz", "--partition", "0"}, "not 32 hex digits"},
		{[]string{"--object-store-dir", objects, "--topic-id", id, "--partition", "0", "--partitions", "2"}, "not both"},
		{[]string{"--object-store-dir", filepath.Join(empty, "nothing"), "--topic-id", id, "--partition", "0"}, "not a directory"},
		{[]string{"--object-store", "none", "--topic-id", id, "--partition", "0"}, "tiering is off"},
		{[]string{"--data-dir", fx.dataDir, "--topic", "events", "--topic-id", strings.Repeat("0", 32)}, "has id"},
		{[]string{"--object-store-dir", objects}, "--topic-id or --topic"},
	} {
		out, err := runTierLsCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tier ls %v: %v, want an error about %q\n%s", tc.args, err, tc.want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, "metadata.json")); !os.IsNotExist(err) {
		t.Fatalf("tier ls created metadata in an empty data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(empty, "nothing")); !os.IsNotExist(err) {
		t.Fatalf("tier ls created an fs store directory: %v", err)
	}
}

// TestTierLsS3: the s3 flags reach a real S3-compatible server (Versity S3
// Gateway), as serve's do.
func TestTierLsS3(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	store := gw.NewStore(t, s3.Options{})
	fx := newTierLsFixtureOn(t, store)
	opts := gw.Options("")
	out, err := runTierLsCmd(t, "--object-store", "s3", "--s3-endpoint", opts.Endpoint, "--s3-region", opts.Region,
		"--s3-path-style", "--s3-access-key", opts.AccessKeyID, "--s3-secret-key", opts.SecretAccessKey,
		"--s3-bucket", store.Bucket(), "--data-dir", fx.dataDir, "--topic", "events")
	if err != nil {
		t.Fatalf("tier ls: %v\n%s", err, out)
	}
	checkListsSegments(t, out, fx.m)
}
