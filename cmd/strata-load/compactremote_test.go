package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-io/strata/tier/manifest"
)

func TestParseRemoteLine(t *testing.T) {
	compacted := `time=2026-11-25T16:42:03.512Z level=INFO msg="compacted remote history" topic=compact-remote partition=0 from=0 to=40000 ` +
		`reason="dirty ratio above min.cleanable.dirty.ratio" cleaner_point=40000 objects_in=10 objects_out=10 records_kept=2000 ` +
		`records_removed=38000 tombstones_removed=0 bytes_read=12100000 bytes_written=400000 duration=140.5ms`
	l, err := parseRemoteLine(compacted)
	if err != nil {
		t.Fatal(err)
	}
	want := remoteLine{at: time.Date(2026, 11, 25, 16, 42, 3, 512e6, time.UTC), topic: "compact-remote", from: 0, to: 40000,
		objectsIn: 10, objectsOut: 10, recordsKept: 2000, recordsRemoved: 38000, bytesRead: 12100000, bytesWritten: 400000,
		duration: 140500 * time.Microsecond}
	if !l.at.Equal(want.at) {
		t.Errorf("at = %v, want %v", l.at, want.at)
	}
	l.at = want.at
	if l != want {
		t.Errorf("line = %+v\nwant   %+v", l, want)
	}
	merged := `time=2026-11-25T16:42:10.001Z level=INFO msg="merged remote objects" topic=merge-small partition=0 objects_in=68 objects_out=1 bytes_read=700000 bytes_written=690000`
	if l, err = parseRemoteLine(merged); err != nil || l.objectsIn != 68 || l.objectsOut != 1 || l.duration != 0 || l.topic != "merge-small" {
		t.Errorf("merge line = %+v, %v", l, err)
	}
	if _, err := parseRemoteLine(`time=2026-11-25T16:42:10.001Z msg="merged remote objects" topic=x objects_in=lots`); err == nil {
		t.Error("no error for a line without the numbers")
	}
}

func TestFindRemoteLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.log")
	lines := []string{
		`time=2026-11-25T16:00:00.000Z level=INFO msg="merged remote objects" topic=merge-small partition=0 objects_in=4 objects_out=1 bytes_read=10 bytes_written=9`,
		// The tier package's own line names the topic by id only.
		`time=2026-11-25T16:00:01.000Z level=INFO msg="merged remote objects" topic_id=00112233445566778899aabbccddeeff partition=0 objects_in=9 objects_out=1 bytes_read=20 bytes_written=19`,
		`time=2026-11-25T16:00:02.000Z level=INFO msg="merged remote objects" topic=merge-small-2 partition=0 objects_in=5 objects_out=1 bytes_read=30 bytes_written=29`,
		`time=2026-11-25T16:00:03.000Z level=INFO msg="merged remote objects" topic=merge-small partition=0 objects_in=3 objects_out=1 bytes_read=40 bytes_written=39`,
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const id = "00112233445566778899aabbccddeeff"
	got, err := findRemoteLines(path, msgRemoteMerged, msgRemoteMergeErr, "merge-small", id, time.Time{})
	if err != nil || len(got) != 2 || got[0].objectsIn != 4 || got[1].objectsIn != 3 {
		t.Fatalf("lines = %+v, %v; want the two merge-small lines", got, err)
	}
	since := time.Date(2026, 11, 25, 16, 0, 1, 0, time.UTC)
	if got, err := findRemoteLines(path, msgRemoteMerged, msgRemoteMergeErr, "merge-small", id, since); err != nil || len(got) != 1 {
		t.Errorf("lines after %v = %+v, %v", since, got, err)
	}
	// Without the broker's lines, the tier's (by topic id) count.
	if err := os.WriteFile(path, []byte(lines[1]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := findRemoteLines(path, msgRemoteMerged, msgRemoteMergeErr, "merge-small", id, time.Time{}); err != nil || len(got) != 1 ||
		got[0].objectsIn != 9 || got[0].topic != "merge-small" {
		t.Errorf("tier lines = %+v, %v", got, err)
	}
	failed := `time=2026-11-25T16:00:04.000Z level=WARN msg="remote compaction" topic=compact-remote partition=0 err="store unavailable"`
	if err := os.WriteFile(path, []byte(failed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findRemoteLines(path, msgRemoteCompacted, msgRemoteCompactErr, "compact-remote", "", time.Time{}); err == nil || !strings.Contains(err.Error(), "store unavailable") {
		t.Errorf("failed pass: err = %v", err)
	}
}

func TestSummarizeManifest(t *testing.T) {
	m := &manifest.Manifest{Seq: 7, CleanerPoint: 30, Entries: []manifest.Entry{
		{BaseOffset: 0, NextOffset: 10, StoredSize: 100, RawSize: 300},
		{BaseOffset: 10, NextOffset: 30, StoredSize: 50, RawSize: 200},
	}, Deleted: []manifest.Deleted{{Key: "x", Size: 1}}}
	s := summarizeManifest(m)
	if s.seq != 7 || s.objects != 2 || s.stored != 150 || s.raw != 500 || s.deleted != 1 || s.end != 30 || s.cleanerPoint != 30 {
		t.Errorf("summary = %+v", s)
	}
}

func TestMergeBatchBytes(t *testing.T) {
	for _, c := range []struct {
		seg  int64
		want int32
	}{{256 << 10, 64 << 10}, {1024, 1024}, {64 << 20, 1_000_000}} {
		if got := mergeBatchBytes(c.seg); got != c.want {
			t.Errorf("mergeBatchBytes(%d) = %d, want %d", c.seg, got, c.want)
		}
	}
}

func TestParseFlagsCompactRemote(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil || !cfg.compactRemote || cfg.compactRemoteMB != 128 || cfg.mergeMB != 64 ||
		cfg.mergeSegBytes != 256<<10 || cfg.mergeTargetBytes != 8<<20 || cfg.compactRemoteSegBytes != 8<<20 {
		t.Errorf("-all config = %+v, %v", cfg, err)
	}
	if _, err := parseFlags([]string{"-compact-remote", "-strata", ""}); err == nil {
		t.Error("-compact-remote without a broker binary accepted")
	}
	if _, err := parseFlags([]string{"-compact-remote", "-strata", "/bin/true", "-merge-target-bytes", "0"}); err == nil {
		t.Error("zero merge target accepted")
	}
}

// TestCompactRemotePhase runs the whole phase, small, against $STRATA_BIN
// and versitygw.
func TestCompactRemotePhase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the broker and versitygw for about 20 s")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN not set")
	}
	if _, err := findVersityGW(""); err != nil {
		t.Skip(err)
	}
	cfg := config{strataBin: bin, compactKeys: 2000, compactValueBytes: 100,
		compactRemoteMB: 4, compactRemoteSegBytes: 512 << 10,
		mergeMB: 2, mergeSegBytes: 32 << 10, mergeTargetBytes: 256 << 10}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := runCompactRemote(ctx, cfg, t.TempDir())
	if errs := res.errs(); len(errs) > 0 {
		t.Fatal(errs)
	}
	c := res.compact
	if c == nil || c.pass == nil || c.check == nil {
		t.Fatalf("compaction row = %+v", c)
	}
	if c.pass.bytesRead <= 0 || c.pass.recordsKept != int64(c.distinctKeys) || c.check.records != int64(c.distinctKeys) {
		t.Errorf("pass %+v, %d distinct keys, %d read back", c.pass, c.distinctKeys, c.check.records)
	}
	if c.before.objects < 2 || c.after.cleanerPoint != c.before.end {
		t.Errorf("manifest before %+v, after %+v", c.before, c.after)
	}
	m := res.merge
	if m == nil || m.replays[0] == nil || m.replays[1] == nil {
		t.Fatalf("merge rows = %+v", m)
	}
	if len(m.merges) == 0 {
		t.Error("no merge line logged")
	}
	if m.before.objects < 10 || m.after.objects >= m.before.objects {
		t.Errorf("objects %d before merging, %d after", m.before.objects, m.after.objects)
	}
	before, after := m.replays[0].reqs.calls(getClasses, keyKindSegment), m.replays[1].reqs.calls(getClasses, keyKindSegment)
	if after >= before {
		t.Errorf("segment GETs %d before merging, %d after", before, after)
	}
	md := (&report{cfg: cfg, compactRemote: &res}).markdown()
	for _, want := range []string{"### Remote compaction and merging", "exactly one record per key", "The two replays are identical"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
