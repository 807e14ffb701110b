package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/tier/manifest"
)

// The remote compaction and merge phase (-compact-remote): a broker on
// versitygw behind the counting proxy compacts the history of a tiered
// compacted topic in the bucket, and merges the small objects of a tiered
// topic with small segments.
const (
	remoteTopicCompact = "compact-remote"
	remoteTopicMerge   = "merge-small"
	// Log messages of the remote cleaner (tier/compact.go, and the broker's
	// copies with the topic name in ingest/broker/tier_compact.go).
	msgRemoteCompacted  = "compacted remote history"
	msgRemoteMerged     = "merged remote objects"
	msgRemoteCompactErr = "remote compaction"
	msgRemoteMergeErr   = "remote merge"
)

// remoteResult is the outcome of the remote compaction and merge phase.
type remoteResult struct {
	mb, mergeMB        int
	keys, valueBytes   int
	segBytes, mergeSeg int64
	mergeTarget        int64
	compact            *remoteCompactRow
	merge              *remoteMergeRows
	logProblems        int
	err                error
}

// manifestSummary is what a partition's newest manifest names.
type manifestSummary struct {
	seq          int64
	objects      int
	stored, raw  int64
	deleted      int   // objects waiting out the grace period
	cleanerPoint int64 // remote cleaner point
	end          int64
	m            *manifest.Manifest
}

// remoteLine is one `compacted remote history` or `merged remote objects`
// line of the broker's log.
type remoteLine struct {
	at                          time.Time
	topic                       string
	from, to                    int64 // compaction only
	objectsIn, objectsOut       int64
	recordsKept, recordsRemoved int64 // compaction only
	bytesRead, bytesWritten     int64
	duration                    time.Duration // compaction only
}

// remoteCompactRow is the remote compaction pass.
type remoteCompactRow struct {
	produced     produceStats
	distinctKeys int
	upload       tierUpload // the upload of the updates (times, requests)
	before       manifestSummary
	after        manifestSummary
	pass         *remoteLine
	reqs         reqCounts // proxy counts from the config change to the log line
	cpu          cpuUse
	check        *keyCheck
	err          error
}

// keyCheck is a consumer's read of the compacted topic from offset 0.
type keyCheck struct {
	st        consumeStats
	records   int64 // records read
	keys      int   // distinct keys among them
	stale     int64 // records that are not their key's latest
	dupes     int64 // records of a key already seen
	missing   int   // keys produced but not read
	replayReq reqCounts
	err       error
}

// remoteMergeRows are the merge measurements.
type remoteMergeRows struct {
	produced produceStats
	upload   tierUpload
	before   manifestSummary
	after    manifestSummary
	merges   []remoteLine // the merge passes' log lines, every topic
	mergeFor time.Duration
	// mergeReqs are the proxy's counts from the restart with merging on
	// until the merges were done.
	mergeReqs reqCounts
	// compacted is the compacted topic's manifest before and after merging.
	compactedBefore, compactedAfter *manifestSummary
	replays                         [2]*mergeReplay // before and after merging
	err                             error
}

// mergeReplay is a replay of the merge topic from an empty read cache.
type mergeReplay struct {
	st      consumeStats
	fetches int64
	hash    string
	reqs    reqCounts
	cpu     cpuUse
	err     error
}

// remoteEnv is the phase's broker, bucket and proxy.
type remoteEnv struct {
	*tierEnv
	dir  string
	args []string // the broker's flags without the merge target
	logs []string // every broker log of the phase
	res  *remoteResult
	n    int               // broker starts, for log file names
	ids  map[string]string // topic ids (hex) by name, filled by manifestOf
}

// runCompactRemote runs the phase: versitygw, the counting proxy, and a
// broker with the cleaner's I/O limit off and merging off for the
// compaction pass, then restarted with merging on.
func runCompactRemote(ctx context.Context, cfg config, base string) (res remoteResult) {
	res.mb, res.mergeMB, res.keys, res.valueBytes = cfg.compactRemoteMB, cfg.mergeMB, cfg.compactKeys, cfg.compactValueBytes
	res.segBytes, res.mergeSeg, res.mergeTarget = cfg.compactRemoteSegBytes, cfg.mergeSegBytes, cfg.mergeTargetBytes
	dir := filepath.Join(base, "compact-remote")
	bin, err := findVersityGW(cfg.versitygw)
	if err != nil {
		res.err = err
		return res
	}
	gw, err := startGateway(ctx, bin, filepath.Join(dir, "gw"))
	if err != nil {
		res.err = err
		return res
	}
	defer gw.stop()
	px, err := startProxy(gw.endpoint)
	if err != nil {
		res.err = err
		return res
	}
	defer px.close()
	direct, err := gw.minio(gw.host)
	if err != nil {
		res.err = err
		return res
	}
	bucket := "strata-bench-" + randHex(4)
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = direct.MakeBucket(mctx, bucket, minio.MakeBucketOptions{Region: gwRegion})
	cancel()
	if err != nil {
		res.err = fmt.Errorf("create bucket: %w", err)
		return res
	}
	tcfg := cfg
	tcfg.tierPartitions, tcfg.tierMB = 1, max(cfg.compactRemoteMB, cfg.mergeMB)
	env := &remoteEnv{dir: dir, res: &res, ids: map[string]string{}, tierEnv: &tierEnv{cfg: tcfg, gwPid: gw.cmd.Process.Pid,
		dataDir: filepath.Join(dir, "broker-data"), bucket: bucket, px: px, direct: direct,
		rng: rand.New(rand.NewPCG(42, 4242))}}
	env.args = []string{
		"--object-store", "s3", "--s3-endpoint", "http://" + px.host, "--s3-bucket", bucket,
		"--s3-path-style", "--s3-access-key", gw.accessKey, "--s3-secret-key", gw.secretKey,
		"--s3-region", gwRegion, "--tier-check-interval", tierCheckInterval.String(),
		"--tier-upload-interval", tierUploadInterval.String(),
		"--log-level", "info", "--log-cleaner-backoff", compactBackoff.String(),
		"--log-cleaner-io-max-bytes-per-second", "0",
	}
	defer env.stop()
	if err := env.start(ctx, -1, false); err != nil {
		res.err = err
		return res
	}
	if err := createTopicWith(ctx, env.t.seeds, remoteTopicCompact, 1, map[string]string{
		"cleanup.policy": "compact", "min.compaction.lag.ms": compactLagOff,
		"remote.storage.enable": "true", "local.retention.bytes": "0",
		"segment.bytes": strconv.FormatInt(cfg.compactRemoteSegBytes, 10),
	}); err != nil {
		res.err = err
		return res
	}
	res.compact = env.compactPass(ctx)
	if ctx.Err() != nil {
		return res
	}
	res.merge = env.mergeRows(ctx)
	return res
}

// start starts the phase's broker (mergeTarget -1: merging off) on its
// data directory, first emptying the read cache if fresh.
func (env *remoteEnv) start(ctx context.Context, mergeTarget int64, fresh bool) error {
	if fresh {
		if err := os.RemoveAll(filepath.Join(env.dataDir, "tier-cache")); err != nil {
			return fmt.Errorf("empty the read cache: %w", err)
		}
	}
	env.n++
	logPath := filepath.Join(env.dir, fmt.Sprintf("broker-%d.log", env.n))
	args := append(append([]string{}, env.args...), "--tier-merge-target-bytes", strconv.FormatInt(mergeTarget, 10))
	b, err := startBrokerIn(ctx, env.cfg.strataBin, env.dataDir, logPath, args)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	env.logs = append(env.logs, logPath)
	env.setBroker(b)
	return nil
}

// stop stops the broker, if one runs, and notes what it logged.
func (env *remoteEnv) stop() {
	if env.b == nil {
		return
	}
	if err := env.b.Stop(); err != nil {
		env.res.err = errors.Join(env.res.err, err)
	}
	n, _, _ := env.b.logProblems(0)
	env.res.logProblems += n
	env.b.reportLog("strata remote compaction")
	env.b = nil
}

// restart stops the broker and starts it again with an empty read cache.
func (env *remoteEnv) restart(ctx context.Context, mergeTarget int64) error {
	env.stop()
	logf("compact-remote: restart the broker with an empty read cache (--tier-merge-target-bytes %d)", mergeTarget)
	return env.start(ctx, mergeTarget, true)
}

// compactPass fills the compacted topic until all of it is in the bucket,
// lets the cleaner at it and measures the remote pass, then reads the topic
// back from offset 0.
func (env *remoteEnv) compactPass(ctx context.Context) *remoteCompactRow {
	row := &remoteCompactRow{}
	cfg := env.cfg
	logf("compact-remote: produce %d MB of updates over %d keys to %s", cfg.compactRemoteMB, cfg.compactKeys, remoteTopicCompact)
	var latest []int64
	row.upload = env.uploadWith(ctx, remoteTopicCompact, func(start time.Time) (produceStats, error) {
		st, l, err := produceKeyed(ctx, env.t.seeds, remoteTopicCompact, int64(cfg.compactRemoteMB), cfg.compactKeys, cfg.compactValueBytes)
		latest = l
		return st, err
	})
	row.produced = produceStats{records: row.upload.records, bytes: row.upload.valueBytes, elapsed: row.upload.produceTime}
	for _, o := range latest {
		if o >= 0 {
			row.distinctKeys++
		}
	}
	if row.err = row.upload.err; row.err != nil {
		return row
	}
	if row.before, row.err = env.manifestOf(ctx, remoteTopicCompact); row.err != nil {
		return row
	}
	logf("compact-remote: let the cleaner at %s (%d objects, %.1f MB of log in the bucket)", remoteTopicCompact, row.before.objects, float64(row.before.raw)/1e6)
	before := env.px.snapshot()
	cpu := env.startCPU()
	asked := time.Now()
	if row.err = alterLag(ctx, env.t.seeds, remoteTopicCompact, "0"); row.err != nil {
		return row
	}
	lines, err := env.waitLines(ctx, msgRemoteCompacted, msgRemoteCompactErr, remoteTopicCompact, asked,
		2*time.Minute+time.Duration(row.before.raw/1e6)*100*time.Millisecond, func([]remoteLine) bool { return true })
	row.cpu, row.reqs = cpu.use(), env.px.snapshot().sub(before)
	if err != nil {
		row.err = err
		return row
	}
	row.pass = &lines[0]
	if row.after, row.err = env.manifestOf(ctx, remoteTopicCompact); row.err != nil {
		return row
	}
	logf("compact-remote: read %s from offset 0", remoteTopicCompact)
	row.check = env.checkKeys(ctx, remoteTopicCompact, latest, row.after.end)
	if row.check.err != nil {
		row.err = fmt.Errorf("read back: %w", row.check.err)
	}
	return row
}

// mergeRows uploads small segments with merging off, replays them from an
// empty cache, restarts with merging on, waits until nothing more would
// be merged and replays again.
func (env *remoteEnv) mergeRows(ctx context.Context) *remoteMergeRows {
	rows := &remoteMergeRows{}
	cfg := env.cfg
	if rows.err = createTieredTopic(ctx, env.t.seeds, remoteTopicMerge, 1, cfg.mergeSegBytes); rows.err != nil {
		return rows
	}
	kind := mergeKind()
	logf("compact-remote: produce %d MB of %s to %s (segment.bytes %d)", cfg.mergeMB, kind.about, remoteTopicMerge, cfg.mergeSegBytes)
	rows.upload = env.uploadWith(ctx, remoteTopicMerge, func(start time.Time) (produceStats, error) {
		return produceSmallBatches(ctx, env.t.seeds, remoteTopicMerge, kind, int64(cfg.mergeMB)*1e6, mergeBatchBytes(cfg.mergeSegBytes), start)
	})
	rows.produced = produceStats{records: rows.upload.records, bytes: rows.upload.valueBytes, elapsed: rows.upload.produceTime}
	if rows.err = rows.upload.err; rows.err != nil {
		return rows
	}
	if rows.before, rows.err = env.manifestOf(ctx, remoteTopicMerge); rows.err != nil {
		return rows
	}
	if s, err := env.manifestOf(ctx, remoteTopicCompact); err == nil {
		rows.compactedBefore = &s
	}
	if rows.err = env.restart(ctx, -1); rows.err != nil {
		return rows
	}
	rows.replays[0] = env.replayMerge(ctx, rows.before.end)
	if rows.err = rows.replays[0].err; rows.err != nil {
		return rows
	}

	// Merging on: wait until the planner would merge nothing more.
	env.stop()
	logf("compact-remote: restart the broker with --tier-merge-target-bytes %d", cfg.mergeTargetBytes)
	before := env.px.snapshot()
	started := time.Now()
	if rows.err = env.start(ctx, cfg.mergeTargetBytes, false); rows.err != nil {
		return rows
	}
	rows.merges, rows.err = env.waitMerged(ctx, started, cfg.mergeTargetBytes)
	rows.mergeFor = time.Since(started)
	rows.mergeReqs = env.px.snapshot().sub(before)
	if rows.err != nil {
		return rows
	}
	if rows.after, rows.err = env.manifestOf(ctx, remoteTopicMerge); rows.err != nil {
		return rows
	}
	if s, err := env.manifestOf(ctx, remoteTopicCompact); err == nil {
		rows.compactedAfter = &s
	}
	if rows.err = env.restart(ctx, cfg.mergeTargetBytes); rows.err != nil {
		return rows
	}
	rows.replays[1] = env.replayMerge(ctx, rows.after.end)
	if rows.err = rows.replays[1].err; rows.err != nil {
		return rows
	}
	a, b := rows.replays[0], rows.replays[1]
	if a.st.records != b.st.records || a.hash != b.hash {
		rows.err = fmt.Errorf("replays differ: %d records (hash %s) before merging, %d (hash %s) after", a.st.records, a.hash, b.st.records, b.hash)
	}
	return rows
}

// uploadWith runs produce against an existing tiered topic while watching
// its offsets, waits until all of it is in the bucket and takes the
// upload's requests and inventory.
func (env *remoteEnv) uploadWith(ctx context.Context, topic string, produce func(start time.Time) (produceStats, error)) (up tierUpload) {
	up.topic, up.how = topic, "tiered while producing"
	before := env.px.snapshot()
	cpu := env.startCPU()
	start := time.Now()
	w, err := env.watch(ctx, topic, start)
	if err != nil {
		up.err = err
		return up
	}
	defer w.stop()
	st, err := produce(start)
	up.records, up.valueBytes, up.produceTime = st.records, st.bytes, st.elapsed
	if err != nil {
		up.err = withAlive(fmt.Errorf("produce: %w", err), env.t)
		return up
	}
	env.finishUpload(ctx, w, &up, before, cpu)
	return up
}

// mergeKind is the data of the merge topic: incompressible values in
// uncompressed batches, so that an object is about segment.bytes whatever
// the broker's chunk compression does (compressible text would make objects
// a fraction of it, and the merge count depend on the ratio).
func mergeKind() tierData {
	return tierData{name: "random", about: "random bytes (1 KiB, incompressible), uncompressed batches",
		codec: kgo.NoCompression(), newGen: randomGen}
}

// randomGen returns a generator of 1 KiB values of pseudo-random bytes.
func randomGen(seed uint64) func() []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() []byte {
		b := make([]byte, 1024)
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], r.Uint64())
		}
		return b
	}
}

// mergeBatchBytes is the producer's batch limit for the merge topic: a
// quarter of segment.bytes (kgo's default of 1 MB at most), so that
// segments fill to about segment.bytes instead of holding one large batch
// each.
func mergeBatchBytes(segBytes int64) int32 {
	return int32(min(max(segBytes/4, 1024), 1_000_000))
}

// produceSmallBatches is produceData with producer batches of at most
// batchBytes.
func produceSmallBatches(ctx context.Context, seeds []string, topic string, kind tierData, total int64, batchBytes int32, start time.Time) (produceStats, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kind.codec),
		kgo.ProducerBatchMaxBytes(batchBytes),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	)
	if err != nil {
		return produceStats{}, fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute+time.Duration(total/1e6)*time.Second)
	defer cancel()
	gen := kind.newGen(kind.seed())
	c := &collector{}
	for sent := int64(0); sent < total && ctx.Err() == nil && c.failed.Load() == 0; {
		v := gen()
		sent += int64(len(v))
		cl.Produce(ctx, &kgo.Record{Value: v}, c.done)
	}
	flushErr := cl.Flush(ctx)
	st := produceStats{records: c.records.Load(), bytes: c.bytes.Load(), failed: c.failed.Load(), elapsed: time.Since(start)}
	switch {
	case c.err() != nil:
		return st, fmt.Errorf("%d records failed, first: %w", st.failed, c.err())
	case flushErr != nil:
		return st, fmt.Errorf("flush: %w", flushErr)
	case ctx.Err() != nil:
		return st, ctx.Err()
	}
	return st, nil
}

// produceKeyed produces mb MB of keyed records (keyedRecords) as fast as
// possible with the acks=-1 idempotent producer and returns, per key, the
// offset of its latest acknowledged record (-1: none).
func produceKeyed(ctx context.Context, seeds []string, topic string, mb int64, keys, valueBytes int) (produceStats, []int64, error) {
	spec := produceSpec{topic: topic, acks: acksAll, recordSize: valueBytes, maxRecords: mb * 1e6 / int64(valueBytes)}
	cl, err := kgo.NewClient(producerOpts(seeds, spec)...)
	if err != nil {
		return produceStats{}, nil, fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	timeout := phaseGrace + time.Duration(mb)*100*time.Millisecond // at least 10 MB/s
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	latest := make([]int64, keys)
	for i := range latest {
		latest[i] = -1
	}
	c := &collector{}
	promise := func(r *kgo.Record, err error) {
		c.done(r, err)
		if err != nil {
			return
		}
		k, perr := strconv.Atoi(string(r.Key[1:]))
		if perr != nil || k < 0 || k >= keys {
			c.fail(fmt.Errorf("unexpected key %q", r.Key))
			return
		}
		mu.Lock()
		latest[k] = max(latest[k], r.Offset)
		mu.Unlock()
	}
	next := keyedRecords(keys, valueBytes)
	start := time.Now()
	deadline := start.Add(timeout)
	for n := int64(0); n < spec.maxRecords; n++ {
		if n%64 == 0 && spec.done(ctx, c, n, deadline) {
			break
		}
		cl.Produce(ctx, next(), promise)
	}
	flushErr := cl.Flush(ctx)
	st := produceStats{records: c.records.Load(), bytes: c.bytes.Load(), failed: c.failed.Load(), elapsed: time.Since(start)}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case c.err() != nil:
		return st, latest, fmt.Errorf("%d records failed, first: %w", st.failed, c.err())
	case flushErr != nil:
		return st, latest, fmt.Errorf("flush: %w", flushErr)
	}
	return st, latest, nil
}

// manifestOf reads partition 0's newest manifest of topic from the bucket
// (directly, not through the proxy).
func (env *remoteEnv) manifestOf(ctx context.Context, topic string) (manifestSummary, error) {
	var s manifestSummary
	idHex, err := topicID(ctx, env.t.seeds, topic)
	if err != nil {
		return s, err
	}
	env.ids[topic] = idHex
	var id manifest.TopicID
	if b, err := hex.DecodeString(idHex); err != nil || len(b) != len(id) {
		return s, fmt.Errorf("topic id %q of %s", idHex, topic)
	} else {
		copy(id[:], b)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	newest := ""
	for o := range env.direct.ListObjects(ctx, env.bucket, minio.ListObjectsOptions{Prefix: manifest.ManifestPrefix(id, 0), Recursive: true}) {
		if o.Err != nil {
			return s, fmt.Errorf("list manifests of %s: %w", topic, o.Err)
		}
		newest = max(newest, o.Key) // zero-padded: the newest sorts last
	}
	if newest == "" {
		return s, fmt.Errorf("no manifest of %s in the bucket", topic)
	}
	obj, err := env.direct.GetObject(ctx, env.bucket, newest, minio.GetObjectOptions{})
	if err != nil {
		return s, fmt.Errorf("get %s: %w", newest, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		return s, fmt.Errorf("get %s: %w", newest, err)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		return s, fmt.Errorf("decode %s: %w", newest, err)
	}
	return summarizeManifest(m), nil
}

// summarizeManifest counts what a manifest names.
func summarizeManifest(m *manifest.Manifest) manifestSummary {
	s := manifestSummary{seq: m.Seq, objects: len(m.Entries), deleted: len(m.Deleted), cleanerPoint: m.CleanerPoint, end: m.EndOffset(), m: m}
	for _, e := range m.Entries {
		s.stored += e.StoredSize
		s.raw += e.RawSize
	}
	return s
}

// waitLines waits up to d for the broker's log lines msg about topic that
// ended after since, until done accepts them; a line errMsg about the topic
// fails the wait.
func (env *remoteEnv) waitLines(ctx context.Context, msg, errMsg, topic string, since time.Time, d time.Duration, done func([]remoteLine) bool) ([]remoteLine, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		lines, err := findRemoteLines(env.b.logPath, msg, errMsg, topic, env.ids[topic], since)
		if err != nil {
			return lines, err
		}
		if len(lines) > 0 && done(lines) {
			return lines, nil
		}
		if err := env.b.alive(); err != nil {
			return lines, err
		}
		select {
		case <-ctx.Done():
			return lines, fmt.Errorf("no %q line for %s within %v", msg, topic, d.Round(time.Second))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitMerged waits until the merge planner, with target, would merge
// nothing more in either topic, and returns the merge lines since since.
func (env *remoteEnv) waitMerged(ctx context.Context, since time.Time, target int64) ([]remoteLine, error) {
	d := 2*time.Minute + time.Duration(env.cfg.mergeMB+env.cfg.compactRemoteMB)*200*time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var all []remoteLine
	var settled time.Time // when the planner first had nothing left
	for {
		all = all[:0]
		pending, logged := 0, false
		for _, topic := range []string{remoteTopicMerge, remoteTopicCompact} {
			lines, err := findRemoteLines(env.b.logPath, msgRemoteMerged, msgRemoteMergeErr, topic, env.ids[topic], since)
			if err != nil {
				return all, err
			}
			all = append(all, lines...)
			logged = logged || topic == remoteTopicMerge && len(lines) > 0
			s, err := env.manifestOf(ctx, topic)
			if err != nil {
				return all, err
			}
			pending += len(compactor.PlanMerge(manifest.RemoteSegments(s.m), target).Groups)
		}
		// The manifest is published before the broker logs the pass: wait
		// for the line too (a little, in case nothing was ever planned).
		switch {
		case pending > 0:
			settled = time.Time{}
		case logged:
			return all, nil
		case settled.IsZero():
			settled = time.Now()
		case time.Since(settled) > 10*compactBackoff:
			return all, nil
		}
		if err := env.b.alive(); err != nil {
			return all, err
		}
		select {
		case <-ctx.Done():
			return all, fmt.Errorf("%d merges still planned after %v", pending, d.Round(time.Second))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// findRemoteLines returns the lines msg about topic logged after since, in
// order, or the first line errMsg about it as an error. Lines name the
// topic (topic=, the broker's) or its id (topic_id=, the tier's): the
// broker's lines are used when there are any, else the tier's.
func findRemoteLines(logPath, msg, errMsg, topic, id string, since time.Time) ([]remoteLine, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, fmt.Errorf("broker log: %w", err)
	}
	defer f.Close()
	var byName, byID []remoteLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		named := strings.Contains(line, " topic="+topic+" ")
		if !named && (id == "" || !strings.Contains(line, " topic_id="+id+" ")) {
			continue
		}
		if strings.Contains(line, "msg="+strconv.Quote(errMsg)+" ") {
			return nil, fmt.Errorf("broker: %s", line)
		}
		if !strings.Contains(line, "msg="+strconv.Quote(msg)+" ") {
			continue
		}
		l, err := parseRemoteLine(line)
		if err != nil {
			return nil, err
		}
		if !l.at.After(since) {
			continue
		}
		if named {
			byName = append(byName, l)
		} else {
			l.topic = topic
			byID = append(byID, l)
		}
	}
	if len(byName) > 0 {
		return byName, sc.Err()
	}
	return byID, sc.Err()
}

// parseRemoteLine reads a `compacted remote history` or `merged remote
// objects` line; fields a line lacks stay zero.
func parseRemoteLine(line string) (remoteLine, error) {
	var l remoteLine
	kv, err := logFields(line)
	if err != nil {
		return l, fmt.Errorf("remote cleaner line %q: %w", line, err)
	}
	var errs []error
	num := func(k string, required bool) int64 {
		v, ok := kv[k]
		if !ok && !required {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		return n
	}
	l.at, err = time.Parse(time.RFC3339Nano, kv["time"])
	errs = append(errs, err)
	l.topic = kv["topic"]
	l.objectsIn, l.objectsOut = num("objects_in", true), num("objects_out", true)
	l.bytesRead, l.bytesWritten = num("bytes_read", true), num("bytes_written", true)
	l.from, l.to = num("from", false), num("to", false)
	l.recordsKept, l.recordsRemoved = num("records_kept", false), num("records_removed", false)
	if v, ok := kv["duration"]; ok {
		l.duration, err = time.ParseDuration(v)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return l, fmt.Errorf("remote cleaner line %q: %w", line, err)
	}
	return l, nil
}

// scanTopic reads partition 0 of topic from offset 0 with a kgo consumer
// until it has seen the record at offset end-1, calling fn for every record
// (end: the log end offset; the last record is never compacted away).
func scanTopic(ctx context.Context, seeds []string, topic string, end int64, timeout time.Duration, fn func(*kgo.Record)) (consumeStats, int64, error) {
	var st consumeStats
	if end <= 0 {
		return st, 0, fmt.Errorf("%s is empty", topic)
	}
	h := &fetchCounter{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(h))
	if err != nil {
		return st, 0, fmt.Errorf("new consumer: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	for last := int64(-1); last < end-1; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			st.elapsed = time.Since(start)
			return st, h.n.Load(), fmt.Errorf("read %d records up to offset %d of %d: %w", st.records, last, end, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("%s[%d]: %w", t, p, err))
		})
		if ferr != nil {
			st.elapsed = time.Since(start)
			return st, h.n.Load(), fmt.Errorf("fetch after %d records: %w", st.records, ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			st.records++
			st.bytes += int64(len(r.Key) + len(r.Value))
			last = max(last, r.Offset)
			fn(r)
		})
	}
	st.elapsed = time.Since(start)
	return st, h.n.Load(), nil
}

// checkKeys reads the compacted topic from offset 0 and checks that it
// holds exactly the latest record of every key produced.
func (env *remoteEnv) checkKeys(ctx context.Context, topic string, latest []int64, end int64) *keyCheck {
	kc := &keyCheck{}
	seen := make([]bool, len(latest))
	before := env.px.snapshot()
	st, _, err := scanTopic(ctx, env.t.seeds, topic, end, 2*time.Minute+time.Duration(env.cfg.compactRemoteMB)*time.Second, func(r *kgo.Record) {
		kc.records++
		k, perr := strconv.Atoi(string(r.Key[1:]))
		if perr != nil || k < 0 || k >= len(latest) {
			kc.stale++
			return
		}
		if seen[k] {
			kc.dupes++
		} else {
			seen[k] = true
			kc.keys++
		}
		if r.Offset != latest[k] {
			kc.stale++
		}
	})
	kc.st, kc.replayReq = st, env.px.snapshot().sub(before)
	for k, o := range latest {
		if o >= 0 && !seen[k] {
			kc.missing++
		}
	}
	switch {
	case err != nil:
		kc.err = withAlive(err, env.t)
	case kc.dupes > 0 || kc.stale > 0 || kc.missing > 0:
		kc.err = fmt.Errorf("%d records over %d keys: %d of a key read before, %d not their key's latest, %d keys missing", kc.records, kc.keys, kc.dupes, kc.stale, kc.missing)
	}
	return kc
}

// replayMerge replays the merge topic from offset 0, hashing partition,
// offset, key and value of every record in order, and counts the object
// requests.
func (env *remoteEnv) replayMerge(ctx context.Context, end int64) *mergeReplay {
	r := &mergeReplay{}
	logf("compact-remote: replay %s from offset 0", remoteTopicMerge)
	h := sha256.New()
	var hdr [20]byte
	before := env.px.snapshot()
	cpu := env.startCPU()
	r.st, r.fetches, r.err = scanTopic(ctx, env.t.seeds, remoteTopicMerge, end, 2*time.Minute+time.Duration(env.cfg.mergeMB)*time.Second, func(rec *kgo.Record) {
		binary.BigEndian.PutUint32(hdr[0:4], uint32(rec.Partition))
		binary.BigEndian.PutUint64(hdr[4:12], uint64(rec.Offset))
		binary.BigEndian.PutUint32(hdr[12:16], uint32(len(rec.Key)))
		binary.BigEndian.PutUint32(hdr[16:20], uint32(len(rec.Value)))
		h.Write(hdr[:])
		h.Write(rec.Key)
		h.Write(rec.Value)
	})
	r.cpu, r.reqs = cpu.use(), env.px.snapshot().sub(before)
	r.hash = hex.EncodeToString(h.Sum(nil)[:8])
	if r.err != nil {
		r.err = withAlive(r.err, env.t)
	} else if r.st.records != end {
		r.err = fmt.Errorf("read %d records, the log holds %d offsets", r.st.records, end)
	}
	return r
}

// errs returns the phase's failures.
func (r *remoteResult) errs() []error {
	var errs []error
	if r.err != nil {
		errs = append(errs, fmt.Errorf("remote compaction: %w", r.err))
	}
	if c := r.compact; c != nil && c.err != nil {
		errs = append(errs, fmt.Errorf("remote compaction: pass over %s: %w", remoteTopicCompact, c.err))
	}
	if m := r.merge; m != nil && m.err != nil {
		errs = append(errs, fmt.Errorf("remote merging: %w", m.err))
	}
	return errs
}

// callBytes returns the calls of the classes on kind and their payload
// bytes (response bodies for reads, request bodies for writes).
func callBytes(c reqCounts, classes []reqClass, kind string) (calls, bytes int64) {
	for _, cl := range classes {
		s := c[cl][kind]
		calls += s.calls
		bytes += s.bytesIn + s.bytesOut
	}
	return calls, bytes
}

// writeCompactRemote renders the remote compaction and merge phase.
func (r *report) writeCompactRemote(b *strings.Builder) {
	c := r.compactRemote
	if c == nil {
		return
	}
	b.WriteString("\n### Remote compaction and merging (versitygw on loopback)\n\n")
	fmt.Fprintf(b, "Broker → counting HTTP proxy (in the load tool) → versitygw posix backend in the temp dir; "+
		"the broker runs with `--log-level info --log-cleaner-backoff %v --log-cleaner-io-max-bytes-per-second 0 "+
		"--tier-check-interval %v --tier-upload-interval %v`, and `--tier-merge-target-bytes -1` (merging off) "+
		"until the merge step. Object counts and sizes are those the partition's newest manifest names "+
		"(replaced objects stay in the bucket until garbage collection). MB = 10^6 bytes.\n",
		compactBackoff, tierCheckInterval, tierUploadInterval)
	if c.err != nil {
		fmt.Fprintf(b, "\nFAILED: %s\n", cell(c.err.Error(), 400))
	}
	writeRemoteCompact(b, c)
	writeRemoteMerge(b, c)
	if c.logProblems > 0 {
		fmt.Fprintf(b, "\n- the broker logged %d warning/error lines (see stderr)\n", c.logProblems)
	} else {
		b.WriteString("\n- the broker logged no warnings or errors\n")
	}
}

func writeRemoteCompact(b *strings.Builder, c *remoteResult) {
	row := c.compact
	if row == nil {
		return
	}
	b.WriteString("\n#### Remote compaction\n\n")
	fmt.Fprintf(b, "A 1-partition topic with `cleanup.policy=compact`, `remote.storage.enable=true`, `local.retention.bytes=0`, "+
		"`segment.bytes` %s and `min.compaction.lag.ms=%s` gets %d MB of %d-byte values over %d random keys "+
		"(values are slices of a 1 MiB random pool, so the broker's chunk compression finds repeats; one acks=-1 "+
		"idempotent kgo producer, no compression) and is left until all of it is in the bucket; "+
		"then `min.compaction.lag.ms=0` lets the next cleaner check compact the remote history. "+
		"Read → written, records and duration are the broker's `msg=\"%s\"` line; input MB/s = bytes_read "+
		"(stored chunk bytes read from the store) / duration, log MB/s = the log bytes (record batches) the "+
		"manifest named before the pass / duration. Proxy columns: requests and bytes the proxy saw from the "+
		"config change until the line was logged, MB/s over the pass's duration. Broker CPU over the same window.\n\n",
		mibOrBytes(c.segBytes), compactLagOff, c.mb, c.valueBytes, c.keys, msgRemoteCompacted)
	b.WriteString("| pass | log (stored) in the bucket | objects before → after | read → written | records kept / removed | duration | input MB/s | log MB/s | proxy: segment GETs, MB (MB/s) | proxy: PUT-class, MB | broker CPU | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	name := fmt.Sprintf("%d MB of updates over %d keys, idle broker, no I/O limit", c.mb, c.keys)
	p := row.pass
	if p == nil {
		fmt.Fprintf(b, "| %s | %.1f MB (%.1f MB) | %d | | | | | | | | | %s |\n", name, float64(row.before.raw)/1e6,
			float64(row.before.stored)/1e6, row.before.objects, errOr("", row.err))
	} else {
		gets, getBytes := callBytes(row.reqs, getClasses, keyKindSegment)
		puts, putBytes := int64(0), int64(0)
		for _, k := range []string{keyKindSegment, keyKindManifest} {
			n, by := callBytes(row.reqs, putClasses, k)
			puts, putBytes = puts+n, putBytes+by
		}
		cpu := ""
		if row.cpu.ok {
			cpu = fmt.Sprintf("%.1f CPU-s (%.2f cores)", row.cpu.brokerSeconds, row.cpu.brokerSeconds/p.duration.Seconds())
		}
		note := fmt.Sprintf("offsets [%d, %d), cleaner point %d → %d; produced at %.1f MB/s, %d records, %d distinct keys; "+
			"in the bucket %.1f s after the first record; all requests during the pass: %s",
			p.from, p.to, row.before.cleanerPoint, row.after.cleanerPoint, row.produced.mbps(), row.produced.records,
			row.distinctKeys, row.upload.tieredTime.Seconds(), row.reqs)
		fmt.Fprintf(b, "| %s | %.1f MB (%.1f MB) | %d → %d | %.1f → %.1f MB | %d / %d | %.2f s | **%.1f** | %.1f | %d, %.1f (%.1f) | %d, %.1f | %s | %s |\n",
			name, float64(row.before.raw)/1e6, float64(row.before.stored)/1e6, row.before.objects, row.after.objects,
			float64(p.bytesRead)/1e6, float64(p.bytesWritten)/1e6, p.recordsKept, p.recordsRemoved, p.duration.Seconds(),
			rate(float64(p.bytesRead)/1e6, p.duration), rate(float64(row.before.raw)/1e6, p.duration),
			gets, float64(getBytes)/1e6, rate(float64(getBytes)/1e6, p.duration), puts, float64(putBytes)/1e6,
			cpu, errOr(note, row.err))
	}
	if k := row.check; k != nil {
		verdict := "exactly one record per key, each at its key's latest offset"
		if k.err != nil {
			verdict = "FAILED: " + cell(k.err.Error(), 300)
		}
		fmt.Fprintf(b, "\nA kgo consumer from offset 0 then read %d records for the %d distinct keys produced: %s "+
			"(%d keys read, %d read twice, %d not their key's latest, %d missing; %.1f MB/s of records in %.2f s; object requests: %s).\n",
			k.records, row.distinctKeys, verdict, k.keys, k.dupes, k.stale, k.missing, k.st.mbps(), k.st.elapsed.Seconds(), k.replayReq)
	}
}

func writeRemoteMerge(b *strings.Builder, c *remoteResult) {
	m := c.merge
	if m == nil {
		return
	}
	b.WriteString("\n#### Merging small remote objects\n\n")
	fmt.Fprintf(b, "A 1-partition tiered topic (`remote.storage.enable=true`, `local.retention.bytes=0`, `segment.bytes` %s, "+
		"delete policy) gets %d MB of %s from an acks=-1 idempotent producer whose batches hold at most %d bytes "+
		"(so that segments fill to segment.bytes), and is uploaded with merging off. "+
		"Each replay is one kgo consumer from offset 0 after a broker restart with `<data>/tier-cache` deleted, "+
		"so every chunk comes from the store; it hashes partition, offset, key and value of every record in order. "+
		"Between the replays the broker is restarted with `--tier-merge-target-bytes %d` and left until the "+
		"merge planner (compactor.PlanMerge over the newest manifest) finds nothing more to merge. "+
		"Segment GETs are ranged GETs of segment objects (footers and chunks) through the proxy; per GB of log = "+
		"per 10^9 bytes of record batches replayed.\n\n",
		mibOrBytes(c.mergeSeg), c.mergeMB, mergeKind().about, mergeBatchBytes(c.mergeSeg), c.mergeTarget)
	b.WriteString("| replay from an empty read cache | segment objects | stored MB | log MB | records | records MB/s | time | segment GETs | per GB of log | all object requests | record hash | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n")
	for i, s := range []manifestSummary{m.before, m.after} {
		rp := m.replays[i]
		name := "before merging (as uploaded)"
		if i == 1 {
			name = fmt.Sprintf("after merging (target %s)", mibOrBytes(c.mergeTarget))
		}
		if rp == nil {
			if s.objects > 0 {
				fmt.Fprintf(b, "| %s | %d | %.1f | %.1f | | | | | | | | not replayed |\n", name, s.objects, float64(s.stored)/1e6, float64(s.raw)/1e6)
			}
			continue
		}
		gets := rp.reqs.calls(getClasses, keyKindSegment)
		note := fmt.Sprintf("%d Fetch responses; %v; broker %.2f CPU-s per GB of records", rp.fetches, rp.cpu, rp.cpu.brokerPerGB(rp.st.bytes))
		fmt.Fprintf(b, "| %s | %d | %.1f | %.1f | %d | %.1f | %.2f s | %d | **%.0f** | %s | `%s` | %s |\n", name, s.objects,
			float64(s.stored)/1e6, float64(s.raw)/1e6, rp.st.records, rp.st.mbps(), rp.st.elapsed.Seconds(), gets,
			perGB(gets, s.raw), rp.reqs, rp.hash, errOr(note, rp.err))
	}
	var in, out, read, written int64
	passes := 0
	for _, l := range m.merges {
		if l.topic == remoteTopicMerge {
			passes++
			in, out, read, written = in+l.objectsIn, out+l.objectsOut, read+l.bytesRead, written+l.bytesWritten
		}
	}
	b.WriteString("\n")
	if passes > 0 {
		fmt.Fprintf(b, "- Merging: %d `msg=\"%s\"` line(s) for %s, %d objects → %d, %.1f MB read → %.1f MB written; "+
			"nothing left to merge %.1f s after the broker was started with merging on; object requests meanwhile: %s.\n",
			passes, msgRemoteMerged, remoteTopicMerge, in, out, float64(read)/1e6, float64(written)/1e6, m.mergeFor.Seconds(), m.mergeReqs)
	}
	if a, z := m.compactedBefore, m.compactedAfter; a != nil && z != nil {
		fmt.Fprintf(b, "- The compacted topic above (%s) went from %d objects (%.1f MB stored) to %d (%.1f MB) in the same merge step.\n",
			remoteTopicCompact, a.objects, float64(a.stored)/1e6, z.objects, float64(z.stored)/1e6)
	}
	if x, y := m.replays[0], m.replays[1]; x != nil && y != nil && x.err == nil && y.err == nil {
		same := "identical: same record count and hash"
		if x.st.records != y.st.records || x.hash != y.hash {
			same = "DIFFERENT"
		}
		fmt.Fprintf(b, "- The two replays are %s (%d records).\n", same, y.st.records)
	}
	if m.err != nil {
		fmt.Fprintf(b, "- FAILED: %s\n", cell(m.err.Error(), 400))
	}
}
