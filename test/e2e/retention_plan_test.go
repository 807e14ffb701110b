package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore/fs"
)

// planJSON is the part of the admin API's retention plan the test reads.
type planJSON struct {
	Partitions []struct {
		Retention struct {
			LogStartBefore int64         `json:"log_start_before"`
			LogStartAfter  int64         `json:"log_start_after"`
			Remote         []planSegment `json:"remote"`
			Local          []planSegment `json:"local"`
		} `json:"retention"`
	} `json:"partitions"`
}

type planSegment struct {
	Name       string `json:"name"`
	BaseOffset int64  `json:"base_offset"`
	NextOffset int64  `json:"next_offset"`
	Reason     string `json:"reason"`
}

func segmentNames(segs []planSegment) []string {
	var out []string
	for _, s := range segs {
		out = append(out, s.Name)
	}
	return out
}

// strataCLI runs the strata binary and returns its stdout, stderr and
// exit code.
func strataCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(strataBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestRetentionPlanMatchesDeletion: `strata retention plan` on a tiered
// topic, for a lower retention.ms and then a lower retention.bytes, names
// exactly the remote objects that then leave the manifest, the local
// segments then deleted and the new log start; an invalid proposal exits 1
// naming the config; a compacted topic's plan names the range the cleaner
// would compact.
func TestRetentionPlanMatchesDeletion(t *testing.T) {
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, dir, freePort(t), "--admin-addr", admin, "--tier-check-interval", "100ms", "--log-cleaner-backoff", "1h")
	ctx := ctxT(t, time.Minute)
	adm := newAdmin(t, p.addr)
	const topic, segBytes = "plan-tiered", 16384
	created, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"remote.storage.enable": ptr("true"),
		"segment.bytes":         ptr(fmt.Sprint(segBytes)),
		"local.retention.bytes": ptr(fmt.Sprint(14 * segBytes)),
	}, topic)
	if err == nil {
		err = created.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	// 15 segments of records from three hours ago, then 10 of current ones.
	cl := newClient(t, p.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	old := time.Now().Add(-3 * time.Hour)
	for i := 0; i < 400; i += 8 {
		var recs []*kgo.Record
		for j := i; j < i+8; j++ {
			ts := time.Now()
			if j < 240 {
				ts = old.Add(time.Duration(j) * time.Millisecond)
			}
			recs = append(recs, &kgo.Record{Value: bytes.Repeat([]byte{byte(j)}, 1000), Timestamp: ts})
		}
		produceSync(t, ctx, cl, recs)
	}

	st, err := fs.New(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mc := tier.ManifestClient(st)
	loadManifest := func() *manifest.Manifest {
		t.Helper()
		m, _, err := mc.Load(ctx, manifest.TopicID(created.ID), 0)
		if err != nil && !errors.Is(err, manifest.ErrNoManifest) {
			t.Fatal(err)
		}
		return m
	}
	manifestKeys := func(m *manifest.Manifest) []string {
		var out []string
		for _, e := range m.Entries {
			out = append(out, e.Key)
		}
		return out
	}
	// localFiles are the partition's segment files, oldest first: the last
	// one is the active segment.
	localFiles := func() []string {
		t.Helper()
		paths, err := filepath.Glob(filepath.Join(dir, "logs", topic+"-0.*", "*.log"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		slices.Sort(out)
		return out
	}
	planURL := fmt.Sprintf("http://%s/v1/topics/%s/retention-plan", admin, topic)
	currentPlan := func() planJSON {
		t.Helper()
		resp, err := http.Get(planURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pl planJSON
		if err := json.NewDecoder(resp.Body).Decode(&pl); err != nil || resp.StatusCode != 200 {
			t.Fatalf("current plan: %d %v", resp.StatusCode, err)
		}
		return pl
	}
	// settled: every sealed segment is in the bucket and a pass with the
	// current configs has nothing left to delete.
	settled := func() bool {
		m, files := loadManifest(), localFiles()
		if m == nil || len(files) == 0 || fmt.Sprintf("%020d.log", m.EndOffset()) != files[len(files)-1] {
			return false
		}
		r := currentPlan().Partitions[0].Retention
		return len(r.Remote)+len(r.Local) == 0
	}
	gone := func(before, after []string) []string {
		var out []string
		for _, k := range before {
			if !slices.Contains(after, k) {
				out = append(out, k)
			}
		}
		return out
	}

	// planThenApply asks for the plan of set, applies set with kadm and
	// checks that retention deleted exactly what was planned.
	planThenApply := func(set map[string]string) {
		t.Helper()
		waitFor(t, "uploads and local retention to settle", 30*time.Second, settled)
		args := []string{"retention", "plan", topic, "--admin", "http://" + admin}
		var alter []kadm.AlterConfig
		for _, k := range slices.Sorted(maps.Keys(set)) {
			args = append(args, "--set", k+"="+set[k])
			alter = append(alter, kadm.AlterConfig{Name: k, Value: ptr(set[k])})
		}
		text, stderr, code := strataCLI(t, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		out, stderr, code := strataCLI(t, append(args, "--output", "json")...)
		if code != 0 {
			t.Fatalf("%v --output json: exit %d: %s", args, code, stderr)
		}
		var pl planJSON
		if err := json.Unmarshal([]byte(out), &pl); err != nil {
			t.Fatalf("plan json: %v\n%s", err, out)
		}
		r := pl.Partitions[0].Retention
		if len(r.Remote) == 0 || len(r.Local) == 0 || r.LogStartAfter <= r.LogStartBefore {
			t.Fatalf("plan with %v deletes too little:\n%s", set, text)
		}
		t.Logf("plan with %v:\n%s", set, text)
		// The printed plan names every object and segment, and the new log
		// start.
		for _, n := range append(segmentNames(r.Remote), segmentNames(r.Local)...) {
			if !strings.Contains(text, n) {
				t.Fatalf("printed plan does not name %s:\n%s", n, text)
			}
		}
		if want := fmt.Sprintf("log start: %d -> %d\n", r.LogStartBefore, r.LogStartAfter); !strings.Contains(text, want) {
			t.Fatalf("printed plan lacks %q:\n%s", want, text)
		}

		mBefore, filesBefore := loadManifest(), localFiles()
		resp, err := adm.AlterTopicConfigs(ctx, alter, topic)
		if err == nil {
			err = resp[0].Err
		}
		if err != nil {
			t.Fatalf("alter %v: %v", set, err)
		}
		waitFor(t, "retention to apply", 20*time.Second, func() bool {
			return loadManifest().LogStartOffset == r.LogStartAfter && len(gone(filesBefore, localFiles())) >= len(r.Local)
		})
		time.Sleep(300 * time.Millisecond) // a few more passes: nothing more goes
		mAfter := loadManifest()
		if got, want := gone(manifestKeys(mBefore), manifestKeys(mAfter)), segmentNames(r.Remote); !slices.Equal(got, want) {
			t.Fatalf("with %v the manifest lost %v\nplanned %v", set, got, want)
		}
		for _, k := range segmentNames(r.Remote) {
			if !slices.ContainsFunc(mAfter.Deleted, func(d manifest.Deleted) bool { return d.Key == k }) {
				t.Fatalf("%s left the manifest but is not pending deletion", k)
			}
		}
		if got, want := gone(filesBefore, localFiles()), segmentNames(r.Local); !slices.Equal(got, want) {
			t.Fatalf("with %v local segments deleted %v\nplanned %v", set, got, want)
		}
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if lo, _ := starts.Lookup(topic, 0); lo.Err != nil || lo.Offset != r.LogStartAfter || mAfter.LogStartOffset != r.LogStartAfter {
			t.Fatalf("with %v: log start %d (%v), manifest's %d, planned %d", set, lo.Offset, lo.Err, mAfter.LogStartOffset, r.LogStartAfter)
		}
	}
	planThenApply(map[string]string{"retention.ms": "3600000"})

	// Proposing a retention.bytes below the topic's local.retention.bytes
	// is refused as AlterConfigs would refuse it.
	_, stderr, code := strataCLI(t, "retention", "plan", topic, "--admin", admin, "--set", fmt.Sprintf("retention.bytes=%d", 5*segBytes))
	if code != 1 || !strings.Contains(stderr, "local.retention.bytes") {
		t.Fatalf("invalid proposal: exit %d: %s", code, stderr)
	}
	if _, stderr, code := strataCLI(t, "retention", "plan", "no-such-topic", "--admin", admin); code != 1 || !strings.Contains(stderr, "unknown topic") {
		t.Fatalf("unknown topic: exit %d: %s", code, stderr)
	}
	planThenApply(map[string]string{"retention.bytes": fmt.Sprint(5 * segBytes), "local.retention.bytes": fmt.Sprint(2 * segBytes)})

	// A compacted topic: the plan names the cleanable range, up to the
	// active segment, and follows a proposed dirty ratio.
	const compacted = "plan-compacted"
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact"), "segment.bytes": ptr(fmt.Sprint(segBytes))}, compacted); err != nil {
		t.Fatal(err)
	}
	cl = newClient(t, p.addr, kgo.DefaultProduceTopic(compacted), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < 100; i += 10 {
		var recs []*kgo.Record
		for j := i; j < i+10; j++ {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint("key-", j%7)), Value: bytes.Repeat([]byte{byte(j)}, 1000)})
		}
		produceSync(t, ctx, cl, recs)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "logs", compacted+"-0.*", "*.log"))
	if err != nil || len(paths) < 3 {
		t.Fatalf("compacted topic's segments: %v %v", paths, err)
	}
	slices.Sort(paths)
	var active int64
	fmt.Sscanf(filepath.Base(paths[len(paths)-1]), "%d.log", &active)
	text, stderr, code := strataCLI(t, "retention", "plan", compacted, "--admin", admin)
	for _, want := range []string{
		"compaction plan (local, cleanup.policy=compact): clean: dirty ratio above min.cleanable.dirty.ratio",
		fmt.Sprintf("cleanable: offsets [0, %d), ", active),
		fmt.Sprintf("first uncleanable offset %d\n", active),
		"rewrite ",
		"local: nothing to delete",
	} {
		if code != 0 || !strings.Contains(text, want) {
			t.Fatalf("compacted plan: exit %d %s; lacks %q:\n%s", code, stderr, want, text)
		}
	}
	t.Logf("compacted topic's plan:\n%s", text)
	text, _, code = strataCLI(t, "retention", "plan", compacted, "--admin", admin, "--set", "min.cleanable.dirty.ratio=1")
	if code != 0 || !strings.Contains(text, "nothing to do: dirty ratio not above min.cleanable.dirty.ratio") {
		t.Fatalf("compacted plan with min.cleanable.dirty.ratio=1: exit %d:\n%s", code, text)
	}
}
