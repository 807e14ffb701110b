package e2e

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/fs"
	"github.com/strata-io/strata/tier/segment"
)

// TestTieredCompactionSurvivesSIGKILL kills the real binary (fs object
// store) six times while it compacts and merges the history of a tiered,
// compacted topic in the bucket: 16 KiB segments uploaded and dropped
// locally at once, remote compaction and merging every 20 ms (the
// cleaner's I/O limit stretches a pass over the whole history to a few
// hundred milliseconds), GC every 100 ms with a 1 s grace period. Each
// round produces 2500 keyed updates and deletes over 2000 keys with an
// idempotent producer, then kills in turn while a rewritten object is
// being built (its temp file exists), as soon as a rewritten object has
// landed in the store (most likely before the manifest naming it), or at
// a random moment after a pass finished.
//
// After every kill, with the process dead, the newest manifest must name
// only complete objects that decode (footer, chunk checksums, batch CRCs,
// records); the restart must remove the killed pass's temp files, and a
// consumer from offset 0 must then read only acknowledged records, at
// their offsets and in order, the latest acknowledged record of every key
// among them. At the end, with the broker running, the same holds and,
// once compaction has caught up, the consumer reads nothing else; the
// orphans of killed passes are gone and the bucket holds exactly the
// objects of the newest manifest, which decode.
func TestTieredCompactionSurvivesSIGKILL(t *testing.T) {
	start := time.Now()
	dataDir, storeDir := t.TempDir(), t.TempDir()
	port := freePort(t)
	flags := []string{
		"--object-store", "fs", "--object-store-dir", storeDir,
		"--log-cleaner-backoff", "20ms", "--log-cleaner-io-max-bytes-per-second", "2000000",
		"--tier-check-interval", "50ms", "--tier-upload-interval", "200ms", "--tier-merge-target-bytes", "65536",
		"--tier-grace-period", "1s", "--tier-gc-every", "2",
	}
	p := startProc(t, dataDir, port, flags...)
	ctx := ctxT(t, 2*time.Minute)
	const (
		topic  = "tiered-compact-kill"
		rounds = 6
		keys   = 2000
	)
	cr, err := newAdmin(t, p.addr).CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy": ptr("compact"), "remote.storage.enable": ptr("true"),
		"segment.bytes": ptr("16384"), "local.retention.bytes": ptr("0"),
		"min.cleanable.dirty.ratio": ptr("0.01"), "delete.retention.ms": ptr("86400000"),
	}, topic)
	if err == nil {
		err = cr.Err
	}
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	tid := manifest.TopicID(cr.ID)
	st, err := fs.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	cl := newClient(t, p.addr,
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(8<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(time.Minute),
		kgo.RetryTimeout(time.Minute),
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	acked := newAckedLog()
	produce := func(recs []*kgo.Record) {
		t.Helper()
		res := cl.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce: %v\n%s", err, p.logs())
		}
		acked.add(recs)
	}

	tmpDir := filepath.Join(dataDir, "tier-tmp")
	rewriteTemps := func() []string {
		m, _ := filepath.Glob(filepath.Join(tmpDir, "upload-rewrite-*.seg"))
		return m
	}
	segKeys := func() []string {
		var keys []string
		if err := st.List(ctx, manifest.SegmentPrefix(tid, 0), func(o objstore.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	passes := func() int {
		l := p.logs()
		return strings.Count(l, `msg="compacted remote history"`) + strings.Count(l, `msg="merged remote objects"`)
	}

	orphans := map[string]bool{} // segment objects no manifest named right after a kill
	var compactions, merges, inBuild, unpublished int
	for round := range rounds {
		roundStart := time.Now()
		before := passes()
		var recs []*kgo.Record
		for i := range 2500 {
			k := fmt.Sprintf("k%04d", rng.IntN(keys))
			var v []byte
			if rng.IntN(10) > 0 { // one in ten is a delete (tombstone)
				v = fmt.Appendf(nil, "%s=%d.%d;%x", k, round, i, rng.Uint64())
				for range 12 { // 200 bytes that compress poorly
					v = fmt.Appendf(v, "%x", rng.Uint64())
				}
			}
			recs = append(recs, &kgo.Record{Key: []byte(k), Value: v})
		}
		produce(recs)

		// Kill while a rewritten object is built, as soon as one has landed
		// in the store, or at a random moment after a pass.
		mode := [...]string{"build", "landed", "random"}[round%3]
		saw := false
		deadline := time.Now().Add(10 * time.Second)
		switch mode {
		case "build":
			for !saw && time.Now().Before(deadline) {
				saw = len(rewriteTemps()) > 0
				time.Sleep(100 * time.Microsecond)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
		case "landed":
			old := segKeys()
			for !saw && time.Now().Before(deadline) {
				saw = landedRewrite(old, segKeys())
				time.Sleep(100 * time.Microsecond)
			}
		case "random":
			for !saw && time.Now().Before(deadline) {
				saw = passes() > before
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(100 * time.Millisecond))))
		}
		p.kill()
		compactions += strings.Count(p.logs(), `msg="compacted remote history"`)
		merges += strings.Count(p.logs(), `msg="merged remote objects"`)

		// With the process dead: the newest manifest names complete
		// objects only, and whatever it does not name is an orphan that GC
		// must remove later.
		temps := rewriteTemps()
		newest := checkNewestManifest(t, st, tid)
		u := unreferencedSegments(t, st, tid)
		fresh := 0 // rewritten objects of the killed pass, not published
		for _, k := range u {
			if !orphans[k] && rewrittenOrphan(k, newest) {
				fresh++
			}
			orphans[k] = true
		}
		if len(temps) > 0 {
			inBuild++
		}
		if fresh > 0 {
			unpublished++
		}
		checkTierLog(t, p)
		p = startProc(t, dataDir, port, flags...)
		for _, f := range temps {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temp file %s of the killed pass still there after the restart (%v)", filepath.Base(f), err)
			}
		}
		acked.check(t, readAllRecords(t, p.addr, topic))
		t.Logf("round %d (%s): activity seen %v, killed after %v; rewrite temp files %d, unnamed segment objects %d (%d new rewritten); newest manifest %s: %d objects, cleaner point %d",
			round, mode, saw, time.Since(roundStart).Round(time.Millisecond), len(temps), len(u), fresh,
			newest.ID(), len(newest.Entries), newest.CleanerPoint)
	}
	tKilled := time.Now()

	// Fillers with unique keys push the last updates out of the active
	// segment (each batch over segment.bytes); then let things settle.
	for b := range 4 {
		var fill []*kgo.Record
		for i := range 300 {
			v := make([]byte, 100) // random: compression must not shrink it
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			fill = append(fill, &kgo.Record{Key: fmt.Appendf(nil, "f%d-%03d", b, i), Value: v})
		}
		produce(fill)
	}
	var state string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		compacted := acked.check(t, readAllRecords(t, p.addr, topic))
		manifests, extra, m := bucketState(t, st, tid)
		var left []string
		for k := range orphans {
			if _, err := st.Stat(ctx, k); !errors.Is(err, objstore.ErrNotFound) {
				left = append(left, k)
			}
		}
		if compacted && extra == 0 && len(left) == 0 && len(m.Deleted) == 0 && manifests <= 3 {
			break
		}
		state = fmt.Sprintf("fully compacted %v; newest manifest %s: %d objects, %d deleted records; %d unnamed segment objects; %d manifests; orphans of killed passes left: %v",
			compacted, m.ID(), len(m.Entries), len(m.Deleted), extra, manifests, left)
		if time.Now().After(deadline) {
			t.Fatalf("not settled 30 s after the last restart: %s\n%s", state, p.logs())
		}
	}
	tSettled := time.Now()
	compactions += strings.Count(p.logs(), `msg="compacted remote history"`)
	merges += strings.Count(p.logs(), `msg="merged remote objects"`)
	checkTierLog(t, p)
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	newest := checkNewestManifest(t, st, tid)
	if compactions == 0 || merges == 0 || inBuild+unpublished == 0 {
		t.Fatalf("%d compaction and %d merge log lines, %d kills during a rewrite: the kills missed the passes they were aimed at",
			compactions, merges, inBuild+unpublished)
	}
	t.Logf("%d SIGKILLs: %d while a rewritten object was built, %d left rewritten objects unpublished; %d orphans collected; %d compaction and %d merge log lines; %d records acknowledged over %d keys, %d remote objects at the end; kills %v, settle %v, total %v",
		rounds, inBuild, unpublished, len(orphans), compactions, merges, len(acked.at), len(acked.latest), len(newest.Entries),
		tKilled.Sub(start).Round(time.Millisecond), tSettled.Sub(tKilled).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// ackedLog holds every acknowledged record by offset and the latest of each
// key.
type ackedLog struct {
	at     map[int64]*kgo.Record
	latest map[string]*kgo.Record
}

func newAckedLog() *ackedLog {
	return &ackedLog{at: map[int64]*kgo.Record{}, latest: map[string]*kgo.Record{}}
}

func (a *ackedLog) add(recs []*kgo.Record) {
	for _, r := range recs {
		a.at[r.Offset] = r
		if l := a.latest[string(r.Key)]; l == nil || r.Offset > l.Offset {
			a.latest[string(r.Key)] = r
		}
	}
}

// check fails unless every record read was acknowledged at its offset with
// its key and value, offsets strictly increase, and the latest acknowledged
// record of every key is there (tombstones included). It reports whether
// the log is fully compacted: nothing but those latest records.
func (a *ackedLog) check(t *testing.T, got []*kgo.Record) bool {
	t.Helper()
	last := int64(-1)
	for _, r := range got {
		if r.Offset <= last {
			t.Fatalf("offset %d after %d", r.Offset, last)
		}
		last = r.Offset
		w := a.at[r.Offset]
		if w == nil || string(w.Key) != string(r.Key) || string(w.Value) != string(r.Value) || (w.Value == nil) != (r.Value == nil) {
			t.Fatalf("offset %d: key %q value %q; acknowledged there: %v", r.Offset, r.Key, r.Value, w)
		}
	}
	checkLatestPresent(t, got, a.latest)
	return len(got) == len(a.latest)
}

// readAllRecords consumes partition 0 of topic from offset 0 to its end.
// The last record must be one compaction keeps (the latest of its key, not
// a tombstone past delete.retention.ms).
func readAllRecords(t testing.TB, addr, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	admCl.Close()
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for done := end.Offset == 0; !done; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume to offset %d: %v after %d records", end.Offset, ctx.Err(), len(out))
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			done = done || r.Offset >= end.Offset-1
		})
	}
	return out
}

// checkNewestManifest loads the newest manifest of partition 0 with the
// test's own client and fails unless it validates and every object it
// names exists with its stored size and decodes: footer and trailer, the
// offsets of its entry, chunk checksums, batch CRCs and records, the
// entry's record count. It returns the manifest.
func checkNewestManifest(t testing.TB, st objstore.Store, tid manifest.TopicID) *manifest.Manifest {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	m, _, err := manifestClient(st).Load(ctx, tid, 0)
	if err != nil {
		t.Fatalf("load the newest manifest: %v", err)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("manifest %s: %v", m.Key(), err)
	}
	for i := range m.Entries {
		if err := checkObject(ctx, st, &m.Entries[i]); err != nil {
			t.Fatalf("newest manifest %s: %v", m.Key(), err)
		}
	}
	return m
}

// checkObject reads the whole object of e and checks it against e.
func checkObject(ctx context.Context, st objstore.Store, e *manifest.Entry) error {
	info, err := st.Stat(ctx, e.Key)
	if err != nil {
		return fmt.Errorf("names %s: %w", e.Key, err)
	}
	if info.Size != e.StoredSize {
		return fmt.Errorf("names %s with size %d, the object has %d bytes", e.Key, e.StoredSize, info.Size)
	}
	r, err := segment.OpenReader(ctx, func(ctx context.Context, off, n int64) ([]byte, error) {
		return st.GetRange(ctx, e.Key, off, n)
	}, e.StoredSize, segment.WithName(e.Key))
	if err != nil {
		return err
	}
	sum := r.Footer().Summary
	if sum.BaseOffset < e.BaseOffset || sum.NextOffset != e.NextOffset || sum.RecordCount != e.RecordCount {
		return fmt.Errorf("%s holds [%d, %d) with %d records, its entry [%d, %d) with %d",
			e.Key, sum.BaseOffset, sum.NextOffset, sum.RecordCount, e.BaseOffset, e.NextOffset, e.RecordCount)
	}
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	var records int64
	for i := range r.Footer().Chunks {
		raw, err := r.ReadChunk(ctx, i) // checksum, framing, offsets
		if err != nil {
			return err
		}
		for pos := 0; pos < len(raw); {
			h, err := batch.ParseHeader(raw[pos:])
			if err != nil {
				return fmt.Errorf("%s chunk %d at %d: %w", e.Key, i, pos, err)
			}
			b := raw[pos : pos+h.Size()]
			// The v2 batch CRC covers everything from the attributes on.
			if got := crc32.Checksum(b[21:], castagnoli); got != h.CRC {
				return fmt.Errorf("%s: batch at offset %d: CRC %08x, header says %08x", e.Key, h.BaseOffset, got, h.CRC)
			}
			if h.RecordCount > 0 {
				if err := batch.Records(b, 0, func(batch.Record) error { return nil }); err != nil {
					return fmt.Errorf("%s: batch at offset %d: %w", e.Key, h.BaseOffset, err)
				}
			}
			records += int64(h.RecordCount)
			pos += h.Size()
		}
	}
	if records != e.RecordCount {
		return fmt.Errorf("%s holds %d records, its entry says %d", e.Key, records, e.RecordCount)
	}
	return nil
}

// rewrittenOrphan reports whether key is an unpublished output of a
// rewrite: a segment object whose base offset is that of an entry of m
// (a new upload starts at or past m's end).
func rewrittenOrphan(key string, m *manifest.Manifest) bool {
	n, err := manifest.ParseSegmentKey(key)
	return err == nil && n.BaseOffset < m.EndOffset()
}

// landedRewrite reports whether now holds a segment object that old did
// not and whose base offset another object of now has: the output of a
// rewrite, which starts at the base of the first object it replaces.
func landedRewrite(old, now []string) bool {
	bases := map[int64]int{}
	for _, k := range now {
		if n, err := manifest.ParseSegmentKey(k); err == nil {
			bases[n.BaseOffset]++
		}
	}
	for _, k := range now {
		if slices.Contains(old, k) {
			continue
		}
		if n, err := manifest.ParseSegmentKey(k); err == nil && bases[n.BaseOffset] > 1 {
			return true
		}
	}
	return false
}

// bucketState returns the number of manifests of partition 0, the number
// of segment objects the newest manifest names neither as entries nor as
// deleted records, and the newest manifest.
func bucketState(t testing.TB, st objstore.Store, tid manifest.TopicID) (manifests, unnamed int, newest *manifest.Manifest) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	m, _, err := manifestClient(st).Load(ctx, tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = st.List(ctx, manifest.ManifestPrefix(tid, 0), func(objstore.ObjectInfo) error { manifests++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	nameObjects(named, m)
	return manifests, len(keysNotIn(t, ctx, st, manifest.SegmentPrefix(tid, 0), named)), m
}

// checkTierLog fails on errors, panics and failed compaction, merge or
// tier passes in the process's log.
func checkTierLog(t testing.TB, p *proc) {
	t.Helper()
	for _, line := range strings.Split(p.logs(), "\n") {
		for _, bad := range []string{"level=ERROR", "panic", `msg="remote compaction"`, `msg="remote merge"`, "msg=compaction ",
			`msg="tier upload"`, `msg="tier retention"`, `msg="tier garbage collection"`} {
			if strings.Contains(line, bad) {
				t.Fatalf("broker logged: %s\n%s", line, p.logs())
			}
		}
	}
}
