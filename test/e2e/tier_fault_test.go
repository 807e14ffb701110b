package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/faulty"
	"github.com/strata-io/strata/tier/objstore/fs"
)

// withFaultyTier gives the broker an fs object store in storeDir behind a
// fault-injecting wrapper (no rules yet: the tier's start-up probe passes),
// a fast tier loop, frequent garbage collection and a short grace period.
func withFaultyTier(t testing.TB, storeDir string, seed uint64, out **faulty.Store) inprocOpt {
	return func(b *brokerCfg, _ *wireCfg) {
		inner, err := fs.New(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		st := faulty.New(inner, seed)
		t.Cleanup(func() { st.Close() })
		tm, err := tier.NewManager(context.Background(), tier.Config{
			Store: st, TempDir: filepath.Join(b.DataDir, "tier-tmp"), Logger: b.Logger,
			ChunkTarget: 4 << 10, GracePeriod: 500 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		b.Tier = tm
		b.TierCheckInterval = 20 * time.Millisecond
		b.TierGCEvery = 5
		*out = st
	}
}

// checkManifests loads every manifest of the partition from s (no faults)
// and fails if one names a segment object that is missing or whose size
// differs from its entry. It returns the newest manifest.
func checkManifests(t testing.TB, s objstore.Store, tid manifest.TopicID) *manifest.Manifest {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	ms, err := manifestClient(s).History(ctx, tid, 0, 1<<20)
	// The broker's GC may delete a superseded manifest between the listing
	// and its read: list again (bounded).
	for try := 0; errors.Is(err, objstore.ErrNotFound) && try < 10; try++ {
		ms, err = manifestClient(s).History(ctx, tid, 0, 1<<20)
	}
	if err != nil {
		t.Fatalf("load manifests: %v", err)
	}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			t.Fatalf("manifest %s: %v", m.Key(), err)
		}
		for _, e := range m.Entries {
			info, err := s.Stat(ctx, e.Key)
			if err != nil {
				t.Fatalf("manifest %s names %s: %v", m.Key(), e.Key, err)
			}
			if info.Size != e.StoredSize {
				t.Fatalf("manifest %s names %s with size %d, the object has %d bytes", m.Key(), e.Key, e.StoredSize, info.Size)
			}
		}
	}
	return ms[0]
}

// unreferenced lists the objects under the partition prefix that neither
// the newest manifest names (Entries or Deleted) nor are one of the newest
// keep manifests (those garbage collection keeps).
func unreferenced(t testing.TB, s objstore.Store, tid manifest.TopicID, keep int) []string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	ms, err := manifestClient(s).History(ctx, tid, 0, keep)
	if err != nil {
		t.Fatalf("load manifests: %v", err)
	}
	named := map[string]bool{}
	for _, m := range ms {
		named[m.Key()] = true
	}
	nameObjects(named, ms[0])
	return keysNotIn(t, ctx, s, manifest.PartitionPrefix(tid, 0), named)
}

// nameObjects marks the objects m names, in Entries or Deleted.
func nameObjects(named map[string]bool, m *manifest.Manifest) {
	for _, e := range m.Entries {
		named[e.Key] = true
	}
	for _, d := range m.Deleted {
		named[d.Key] = true
	}
}

// keysNotIn lists the keys under prefix that named does not hold.
func keysNotIn(t testing.TB, ctx context.Context, s objstore.Store, prefix string, named map[string]bool) []string {
	t.Helper()
	var out []string
	err := s.List(ctx, prefix, func(o objstore.ObjectInfo) error {
		if !named[o.Key] {
			out = append(out, o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fetchCheck fetches from offset over rc and checks what comes back: either
// an error code with no data, or whole, CRC-correct batches starting with
// the one holding offset whose records are exactly want's. It reports
// whether data came back.
func fetchCheck(t testing.TB, rc *rawConn, topic string, offset int64, want []*kgo.Record) (ok bool, code int16) {
	t.Helper()
	req := fetchReq(topic, offset, 0, 1, 1<<20, 64<<10)
	rc.send(req)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.Version = req.Version
	if err := rc.recv(resp); err != nil {
		t.Fatalf("fetch at %d: %v", offset, err)
	}
	if resp.ErrorCode != 0 {
		return false, resp.ErrorCode
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch at %d: malformed response", offset)
	}
	sp := resp.Topics[0].Partitions[0]
	data := sp.RecordBatches
	if sp.ErrorCode != 0 {
		if len(data) > 0 {
			t.Fatalf("fetch at %d: error %d with %d bytes of data", offset, sp.ErrorCode, len(data))
		}
		return false, sp.ErrorCode
	}
	if len(data) == 0 {
		t.Fatalf("fetch at %d below the high watermark %d: no data and no error", offset, sp.HighWatermark)
	}
	next := int64(-1)
	for len(data) > 0 {
		h, err := batch.ParseHeader(data)
		if err != nil || h.Size() > len(data) {
			if next < 0 {
				t.Fatalf("fetch at %d: first batch broken (%v, %d bytes for a batch of %d)", offset, err, len(data), h.Size())
			}
			break // a partial batch at the end is allowed by the protocol
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		if crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)) != h.CRC {
			t.Fatalf("fetch at %d: batch at %d fails its CRC", offset, h.BaseOffset)
		}
		if next < 0 && (h.BaseOffset > offset || h.LastOffset() < offset) {
			t.Fatalf("fetch at %d: first batch holds [%d, %d]", offset, h.BaseOffset, h.LastOffset())
		}
		if next >= 0 && h.BaseOffset != next {
			t.Fatalf("fetch at %d: batch at %d follows one ending at %d", offset, h.BaseOffset, next)
		}
		next = h.LastOffset() + 1
		n := 0
		err = batch.Records(b, 0, func(r batch.Record) error {
			o := h.BaseOffset + int64(r.OffsetDelta)
			if o < 0 || o >= int64(len(want)) {
				return fmt.Errorf("offset %d was never produced", o)
			}
			w := want[o]
			if !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || h.BaseTimestamp+r.TimestampDelta != w.Timestamp.UnixMilli() || len(r.Headers) != len(w.Headers) {
				return fmt.Errorf("offset %d: key %q, want %q (or value, timestamp, headers differ)", o, r.Key, w.Key)
			}
			for i, hd := range r.Headers {
				if string(hd.Key) != w.Headers[i].Key || !bytes.Equal(hd.Value, w.Headers[i].Value) {
					return fmt.Errorf("offset %d: header %d differs", o, i)
				}
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("fetch at %d: wrong bytes served: %v", offset, err)
		}
		if n != int(h.RecordCount) {
			t.Fatalf("fetch at %d: batch at %d has %d records, header says %d", offset, h.BaseOffset, n, h.RecordCount)
		}
	}
	return true, 0
}

// consumeThroughErrors reads n records of partition 0 from offset 0 with
// franz-go, polling on through fetch errors, and returns them and the number
// of errors seen.
func consumeThroughErrors(t testing.TB, addr, topic string, n int) ([]*kgo.Record, int) {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	ctx := ctxT(t, 60*time.Second)
	var out []*kgo.Record
	errs := 0
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records (%d errors) before timeout", len(out), n, errs)
		}
		fs.EachError(func(string, int32, error) { errs++ })
		out = append(out, fs.Records()...)
	}
	return out, errs
}

// TestTierObjectStoreFaults runs a tiered topic on an object store that
// fails a good share of calls (before and after taking effect), cuts read
// bodies short (reporting it, and silently), fails upload bodies part-way
// and adds latency. Uploads complete anyway; no manifest ever names a
// missing or partial object; reads during the faults return the right bytes
// or an error, never wrong bytes; with the faults off, every acknowledged
// record reads back once, in order, and garbage collection leaves only what
// the newest manifests name.
func TestTierObjectStoreFaults(t *testing.T) {
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	storeDir := t.TempDir()
	var fst *faulty.Store
	ip := startInproc(t, "", withFaultyTier(t, storeDir, seed, &fst))
	ctx := ctxT(t, 2*time.Minute)
	const topic = "tiered-faults"
	tid := createTieredTopic(t, ctx, ip.addr, topic)

	reads := []objstore.Op{objstore.OpGet, objstore.OpGetRange}
	fst.SetRules(
		faulty.Rule{Kind: faulty.Latency, Prob: 0.3, Latency: 3 * time.Millisecond},
		faulty.Rule{Kind: faulty.Error, Prob: 0.25, Ops: []objstore.Op{objstore.OpPut, objstore.OpPutIfAbsent, objstore.OpGetRange, objstore.OpList}},
		faulty.Rule{Kind: faulty.Error, Prob: 0.1, Ops: []objstore.Op{objstore.OpGet, objstore.OpStat, objstore.OpDelete}},
		// Lost responses: the create or delete happened, the caller hears it failed.
		faulty.Rule{Kind: faulty.ErrorAfter, Prob: 0.1, Ops: []objstore.Op{objstore.OpPutIfAbsent, objstore.OpDelete}},
		faulty.Rule{Kind: faulty.FailAfterBytes, Prob: 0.1, Bytes: 1000, Ops: []objstore.Op{objstore.OpPutIfAbsent}},
		faulty.Rule{Kind: faulty.Truncate, Prob: 0.15, Ops: reads},
		// Breaks the store contract on purpose: the checks above the store
		// (lengths, CRCs, footers) must catch it.
		faulty.Rule{Kind: faulty.SilentTruncate, Prob: 0.05, Bytes: 100, Ops: reads},
	)

	const n = 3000
	want := testRecords(n, "faults")
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < n; i += 50 {
		produceSync(t, ctx, cl, want[i:i+50])
	}
	tProduced := time.Now()

	// Read below the local start while the faults are on and uploads are
	// still running: right bytes or an error, nothing else.
	p := tieredPartition(t, ip.b, topic)
	rc := dialRaw(t, ip.addr)
	rng := rand.New(rand.NewPCG(seed, 1))
	var okReads, errReads int
	codes := map[int16]int{}
	read := func() {
		local := p.LocalStartOffset()
		if local == 0 {
			return
		}
		ok, code := fetchCheck(t, rc, topic, rng.Int64N(local), want)
		if ok {
			okReads++
		} else {
			errReads++
			codes[code]++
		}
	}
	deadline := time.Now().Add(45 * time.Second)
	var maxGap int64 // uploaded records still held locally, at most
	iter := 0
	for p.Tier().Lag().Segments > 0 || p.Tier().RemoteEndOffset() < n-200 || p.LocalStartOffset() < p.Tier().RemoteEndOffset() {
		if time.Now().After(deadline) {
			t.Fatalf("uploads did not complete under faults: remote end %d, lag %+v, local start %d, %d faults injected",
				p.Tier().RemoteEndOffset(), p.Tier().Lag(), p.LocalStartOffset(), fst.Injected())
		}
		if gap := p.Tier().RemoteEndOffset() - p.LocalStartOffset(); gap > maxGap {
			maxGap = gap
		}
		read()
		if iter++; iter%20 == 0 {
			checkManifests(t, fst.Inner(), tid) // also while uploads are failing
		}
		time.Sleep(5 * time.Millisecond)
	}
	tUploaded := time.Now()
	remoteEnd := p.Tier().RemoteEndOffset()
	checkManifests(t, fst.Inner(), tid)
	for range 200 {
		read()
	}
	if okReads == 0 {
		t.Fatalf("no remote read succeeded under faults (%d errors: %v)", errReads, codes)
	}
	// A consumer reading from 0 while the faults are on gets every record
	// once, in order (franz-go retries KAFKA_STORAGE_ERROR by itself; other
	// errors reach the application, which keeps polling).
	got, pollErrs := consumeThroughErrors(t, ip.addr, topic, n)
	checkRecords(t, got, want, 0)
	injected := fst.Injected()
	if injected < 50 {
		t.Fatalf("only %d faults injected", injected)
	}
	tReads := time.Now()

	// Faults off: everything reads back, GC leaves only what the newest
	// manifests name.
	fst.Clear()
	checkRecords(t, consumeAll(t, ip.addr, topic, n, kgo.NewOffset().AtStart()), want, 0)
	waitFor(t, "garbage collection to remove every unnamed object", 30*time.Second, func() bool {
		return len(unreferenced(t, fst.Inner(), tid, 3)) == 0
	})
	newest := checkManifests(t, fst.Inner(), tid)
	if newest.EndOffset() != remoteEnd || newest.LogStartOffset != 0 || len(newest.Entries) == 0 || newest.Entries[0].BaseOffset != 0 {
		t.Fatalf("newest manifest covers [%d, %d) in %d entries, want [0, %d) from offset 0", newest.LogStartOffset, newest.EndOffset(), len(newest.Entries), remoteEnd)
	}
	t.Logf("up to %d uploaded records were still on local disk during the faults", maxGap)
	t.Logf("%d faults injected; %d segments in the bucket; %d raw fetches under faults succeeded, %d returned error codes %v; a consumer from 0 under faults saw %d errors; produce %v, upload under faults %v, reads %v, after faults %v",
		injected, len(newest.Entries), okReads, errReads, codes, pollErrs, tProduced.Sub(start).Round(time.Millisecond),
		tUploaded.Sub(tProduced).Round(time.Millisecond), tReads.Sub(tUploaded).Round(time.Millisecond), time.Since(tReads).Round(time.Millisecond))
}

// TestTierSIGKILLDuringUpload kills the real binary (fs object store) at
// random points while it uploads, restarts it, and checks that the orphans
// of interrupted uploads (and one planted orphan) are removed after the
// grace period, that what remains is exactly what the newest manifests
// name, and that every acknowledged record reads back once, in order.
func TestTierSIGKILLDuringUpload(t *testing.T) {
	start := time.Now()
	dataDir, storeDir := t.TempDir(), t.TempDir()
	port := freePort(t)
	flags := []string{"--object-store", "fs", "--object-store-dir", storeDir, "--tier-grace-period", "1s", "--tier-check-interval", "50ms"}
	p := startProc(t, dataDir, port, flags...)
	ctx := ctxT(t, 3*time.Minute)
	const topic = "tiered-kill"
	tid := createTieredTopic(t, ctx, p.addr, topic)
	st, err := fs.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	cl := newClient(t, p.addr,
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(2*time.Minute),
		kgo.RetryTimeout(2*time.Minute),
		kgo.MaxBufferedRecords(2000),
		kgo.ProducerBatchMaxBytes(32<<10),
	)
	var (
		mu    sync.Mutex
		acked = map[int]bool{}
		errs  []error
	)
	pctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := make(chan int, 1)
	pad := strings.Repeat("x", 200)
	go func() {
		i := 0
		defer func() { produced <- i }()
		for pctx.Err() == nil {
			v := i
			cl.Produce(pctx, &kgo.Record{Value: []byte(strconv.Itoa(v) + " " + pad)}, func(_ *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if pctx.Err() == nil {
						errs = append(errs, err)
					}
					return
				}
				acked[v] = true
			})
			i++
		}
	}()
	waitAcked := func(n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d acknowledged records", n), 60*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= n
		})
	}

	// Kill at random moments of an upload: on even rounds while an object is
	// being built or uploaded (its temp file exists), a random moment later;
	// on odd rounds as soon as a new segment object lands in the store,
	// before (most likely) the manifest naming it is published.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	countSegs := func() int {
		n := 0
		st.List(ctx, manifest.SegmentPrefix(tid, 0), func(objstore.ObjectInfo) error { n++; return nil })
		return n
	}
	const kills = 6
	orphans := map[string]bool{} // unnamed segment objects seen right after a kill
	for k := 0; k < kills; k++ {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		waitAcked(n + 500)
		uploading := false
		segs := countSegs()
		for spin := time.Now(); time.Since(spin) < 10*time.Second; {
			if k%2 == 0 {
				if m, _ := filepath.Glob(filepath.Join(dataDir, "tier-tmp", "upload-*.seg")); len(m) > 0 {
					uploading = true
					break
				}
			} else if countSegs() > segs {
				uploading = true
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		if k%2 == 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
		}
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		u := unreferencedSegments(t, st, tid)
		for _, key := range u {
			orphans[key] = true
		}
		t.Logf("kill %d: upload in progress %v, %d unnamed segment objects after the kill", k, uploading, len(u))
		p = startProc(t, dataDir, port, flags...)
	}
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	waitAcked(n + 500)
	cancel()
	total := <-produced
	cl.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d produce errors across the restarts, first: %v", len(errs), errs[0])
	}
	tKilled := time.Now()

	// Plant an orphan: an upload that never made it into a manifest.
	planted := manifest.SegmentName{Topic: tid, Partition: 0, BaseOffset: 0, Epoch: 0, UploadID: manifest.NewUploadID()}.Key()
	if err := st.PutIfAbsent(ctx, planted, strings.NewReader("orphan"), 6); err != nil {
		t.Fatal(err)
	}
	var ends kadm.ListedOffsets
	adm := newAdmin(t, p.addr)
	var state string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		ends, err = adm.ListEndOffsets(ctx, topic)
		if err == nil {
			end, _ := ends.Lookup(topic, 0)
			local, err := tryListOffset(t, p.addr, topic, 8, -4)
			if err != nil {
				t.Fatalf("%v\n%s", err, p.logs())
			}
			tiered, err := tryListOffset(t, p.addr, topic, 9, -5)
			if err != nil {
				t.Fatalf("%v\n%s", err, p.logs())
			}
			// Only the active segment is left locally: every sealed one
			// was uploaded (and then deleted by local retention).
			logs, _ := filepath.Glob(filepath.Join(dataDir, "logs", topic+"-0.*", "*.log"))
			// (Every kill may have come before a first manifest: the
			// restarted broker publishes one within a pass or two.)
			var u []string
			if _, _, err := manifestClient(st).Load(ctx, tid, 0); err == nil {
				u = unreferenced(t, st, tid, 3)
			} else {
				u = []string{err.Error()}
			}
			if len(logs) == 1 && local == tiered+1 && len(u) == 0 {
				break
			}
			state = fmt.Sprintf("log end %d, local start %d, latest tiered %d, local segment files %d, unnamed objects %v", end.Offset, local, tiered, len(logs), u)
		}
		if time.Now().After(deadline) {
			t.Fatalf("uploads did not catch up or orphans were not collected within 30s: %s\n%s", state, p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tCollected := time.Now()
	newest := checkManifests(t, st, tid)
	orphans[planted] = true
	for key := range orphans {
		if _, err := st.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("orphan %s still there: %v", key, err)
		}
	}

	end, _ := ends.Lookup(topic, 0)
	cons := newClient(t, p.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	rctx := ctxT(t, time.Minute)
	seen := map[int]bool{}
	last := -1
	for read := int64(0); read < end.Offset; {
		fs := cons.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read %d of %d records before timeout", read, end.Offset)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		for _, r := range fs.Records() {
			if r.Offset != read {
				t.Fatalf("offset %d after %d", r.Offset, read-1)
			}
			read++
			v, err := strconv.Atoi(strings.Fields(string(r.Value))[0])
			if err != nil {
				t.Fatalf("offset %d: bad value %q", r.Offset, r.Value)
			}
			if seen[v] {
				t.Fatalf("value %d read twice (offset %d)", v, r.Offset)
			}
			if v <= last {
				t.Fatalf("value %d after %d at offset %d: out of order", v, last, r.Offset)
			}
			seen[v], last = true, v
		}
	}
	cons.Close()
	var missing []int
	for v := range acked {
		if !seen[v] {
			missing = append(missing, v)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged records missing after %d SIGKILLs, first %v", len(missing), len(acked), kills, missing[:min(10, len(missing))])
	}
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d SIGKILLs (%d orphans from interrupted uploads and 1 planted, all collected): %d produced, %d acknowledged, %d in the log, %d remote segments; produce+kills %v, catch-up+GC %v, total %v",
		kills, len(orphans)-1, total, len(acked), end.Offset, len(newest.Entries),
		tKilled.Sub(start).Round(time.Millisecond), tCollected.Sub(tKilled).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// unreferencedSegments lists the segment objects of the partition that the
// newest manifest does not name.
func unreferencedSegments(t testing.TB, s objstore.Store, tid manifest.TopicID) []string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	named := map[string]bool{}
	m, _, err := manifestClient(s).Load(ctx, tid, 0)
	if err != nil && !errors.Is(err, manifest.ErrNoManifest) {
		t.Fatal(err)
	}
	if m != nil {
		nameObjects(named, m)
	}
	return keysNotIn(t, ctx, s, manifest.SegmentPrefix(tid, 0), named)
}

// createTieredTopic creates a one-partition tiered topic with 16 KiB
// segments and (almost) no local retention, and returns its id.
func createTieredTopic(t testing.TB, ctx context.Context, addr, topic string) manifest.TopicID {
	t.Helper()
	cr, err := newAdmin(t, addr).CreateTopic(ctx, 1, 1, map[string]*string{
		"remote.storage.enable": ptr("true"),
		"segment.bytes":         ptr("16384"),
		"local.retention.bytes": ptr("1"),
	}, topic)
	if err == nil {
		err = cr.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	return manifest.TopicID(cr.ID)
}
