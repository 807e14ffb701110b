package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/tier/segment"
)

const (
	// tierCheckInterval is the broker's --tier-check-interval.
	tierCheckInterval = 200 * time.Millisecond
	// tierUploadInterval is the broker's --tier-upload-interval: the tail
	// segment left when production stops is rolled and uploaded this long
	// after its first record. Long enough that segments fill to
	// segment.bytes while producing.
	tierUploadInterval = 5 * time.Second
	// tierPollInterval is how often the offsets are polled while waiting
	// for uploads.
	tierPollInterval = 100 * time.Millisecond
	// tierColdSettle is how long after a cold read's response requests are
	// still counted for it (read-ahead would show up here).
	tierColdSettle = 300 * time.Millisecond
	// tierGetBuffer is the copy buffer of raw GETs.
	tierGetBuffer = 1 << 20
	// Raw GET passes: see getRepeated.
	tierGetMinPasses = 3
	tierGetMaxPasses = 10
	tierGetMinTime   = 2 * time.Second
)

// tierResult is the outcome of the tiered-storage phase.
type tierResult struct {
	partitions   int
	segmentBytes int64
	mb           int
	uploads      []tierUpload
	reads        []tierReadRows // per data kind: raw GETs and replay
	cold         *tierCold
	shaped       *tierShaped
	notes        []string
	peakRSS      int64
	logProblems  int
	err          error
}

// tierUpload is the upload measurement of one data kind.
type tierUpload struct {
	kind        tierData
	topic       string
	how         string
	records     int64
	valueBytes  int64
	produceTime time.Duration
	// sealedTime runs from the start (the first produce call, or turning
	// tiering on for a backlog) until every segment sealed when production
	// stopped was in the bucket.
	sealedTime  time.Duration
	sealedBytes int64 // log bytes of those segments
	// tieredTime runs until the remote end reached the log end and
	// nothing was left on local disk (the tail segment is rolled by
	// --tier-upload-interval).
	tieredTime time.Duration
	inv        tierInventory
	reqs       reqCounts
	cpu        cpuUse
	err        error
}

// tierReadRows are the read measurements of one data kind.
type tierReadRows struct {
	kind   tierData
	topic  string
	stored int64 // bytes of the segment objects
	chunks int   // chunks in them
	gets   []tierGet
	replay *tierReplay
	// again is a second replay, served from the broker's read cache.
	again *tierReplay
	// local is the same consumer reading the same data from a topic
	// without tiering (local log, page cache): the broker's and client's
	// limit on this machine without the bucket.
	local *tierReplay
}

// tierShaped is the replay against the proxy shaped like a remote store.
type tierShaped struct {
	shape *storeShape
	rows  []tierShapedRow
}

type tierShapedRow struct {
	kind   tierData
	topic  string
	stored int64
	chunks int
	gets   []tierGet // sequential, then parallel, through the shaped proxy
	replay *tierReplay
}

// tierGet is one raw GET measurement of every segment object: the median
// of several passes.
type tierGet struct {
	how      string
	parallel int
	passes   int
	bytes    int64         // per pass
	elapsed  time.Duration // median pass
	err      error
}

func (g tierGet) mbps() float64 { return rate(float64(g.bytes)/1e6, g.elapsed) }

// tierReplay is a consumer replay of a topic.
type tierReplay struct {
	topic      string
	st         consumeStats
	fetches    int64 // Fetch responses the consumer read
	fetchBytes int64 // their size on the wire
	reqs       reqCounts
	cpu        cpuUse
	err        error
}

// tierCold is the cold random read measurement.
type tierCold struct {
	reads   []coldRead
	startup reqCounts // requests while the restarted broker opened its partitions
	err     error
}

// coldRead is one Fetch at a random offset after the restart.
type coldRead struct {
	topic       string
	partition   int32
	offset      int64
	chunk       int
	footerKnown bool // an earlier read already opened this segment's footer
	elapsed     time.Duration
	reqs        reqCounts
	err         error
}

// tierSeg is one segment object in the bucket, with its footer.
type tierSeg struct {
	key       string
	partition int32
	size      int64
	footer    *segmentFooter
}

// segmentFooter is what the tool needs from a footer.
type segmentFooter struct {
	base, next  int64
	raw, stored int64
	chunks      []chunkRange
	rawChunks   int // chunks stored uncompressed
}

type chunkRange struct{ first, last int64 }

// tierInventory is what the bucket holds for one topic.
type tierInventory struct {
	segs     []tierSeg
	objects  int   // all objects under the topic's prefixes
	stored   int64 // bytes of segment objects
	raw      int64 // log bytes (record batches as on local disk)
	chunks   int
	rawChunk int
	orphans  int // segment objects beyond one per (partition, base offset)
}

// runTier starts versitygw, a counting proxy and a broker using them, and
// measures upload, raw GET vs replay, and cold random reads.
func runTier(ctx context.Context, cfg config, base string) (res tierResult) {
	res.partitions, res.segmentBytes, res.mb = cfg.tierPartitions, cfg.tierSegmentBytes, cfg.tierMB
	dir := filepath.Join(base, "tier")
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
	if err == nil {
		var viaProxy *minio.Client
		if viaProxy, err = gw.minio(px.host); err == nil {
			err = runTierWith(ctx, cfg, dir, gw, px, direct, viaProxy, &res)
		}
	}
	if err != nil {
		res.err = errors.Join(res.err, err)
	}
	return res
}

// tierEnv is what the tier sub-phases share.
type tierEnv struct {
	cfg      config
	dataDir  string
	bucket   string
	px       *countingProxy
	direct   *minio.Client
	viaProxy *minio.Client
	b        *brokerProc
	t        target
	gwPid    int
	rng      *rand.Rand
}

func runTierWith(ctx context.Context, cfg config, dir string, gw *gateway, px *countingProxy, direct, viaProxy *minio.Client, res *tierResult) error {
	bucket := "strata-bench-" + randHex(4)
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := direct.MakeBucket(mctx, bucket, minio.MakeBucketOptions{Region: gwRegion})
	cancel()
	if err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	env := &tierEnv{cfg: cfg, gwPid: gw.cmd.Process.Pid, dataDir: filepath.Join(dir, "broker-data"), bucket: bucket, px: px,
		direct: direct, viaProxy: viaProxy, rng: rand.New(rand.NewPCG(42, 4242))}
	brokerArgs := []string{
		"--object-store", "s3", "--s3-endpoint", "http://" + px.host, "--s3-bucket", bucket,
		"--s3-path-style", "--s3-access-key", gw.accessKey, "--s3-secret-key", gw.secretKey,
		"--s3-region", gwRegion, "--tier-check-interval", tierCheckInterval.String(),
		"--tier-upload-interval", tierUploadInterval.String(),
	}
	brokerArgs = append(brokerArgs, strings.Fields(cfg.tierBrokerFlags)...)
	logf("tier: versitygw on %s, counting proxy on %s, bucket %s", gw.host, px.host, bucket)
	b, err := startBrokerIn(ctx, cfg.strataBin, env.dataDir, filepath.Join(dir, "broker.log"), brokerArgs)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	env.setBroker(b)
	stopBroker := func() {
		if env.b == nil {
			return
		}
		if env.b.alive() == nil {
			if hwm, err := procStatusBytes(env.b.Pid(), "VmHWM"); err == nil {
				res.peakRSS = max(res.peakRSS, hwm)
			}
		}
		if err := env.b.Stop(); err != nil {
			res.err = errors.Join(res.err, err)
		}
		n, _, _ := env.b.logProblems(0)
		res.logProblems += n
		if n, first := env.b.foreignLines(); n > 0 {
			res.notes = append(res.notes, fmt.Sprintf("%s: %d lines on the broker's stderr did not come from its logger (they bypass --log-level), the first: `%s`",
				filepath.Base(env.b.logPath), n, first))
		}
		env.b.reportLog("strata tier")
		env.b = nil
	}
	defer stopBroker()

	// Upload each kind of data, then read it back.
	for _, kind := range tierDataKinds {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		up := env.upload(ctx, kind)
		res.uploads = append(res.uploads, up)
		if up.err != nil {
			continue
		}
		rows := tierReadRows{kind: kind, topic: up.topic, stored: up.inv.stored, chunks: up.inv.chunks}
		rows.gets = env.rawGets(ctx, up.inv)
		rows.replay = env.replay(ctx, up)
		if rows.replay.err == nil {
			rows.again = env.replay(ctx, up)
		}
		var lst produceStats
		rows.local, lst = env.localReference(ctx, kind)
		res.reads = append(res.reads, rows)
		if rows.local.err == nil && ctx.Err() == nil {
			res.uploads = append(res.uploads, env.backlog(ctx, kind, rows.local.topic, lst.records, lst.bytes))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Cold random reads on a restarted broker with an empty read cache.
	var segs []tierSeg
	topicOf := map[string]string{}
	for _, up := range res.uploads {
		for _, s := range up.inv.segs {
			segs = append(segs, s)
			topicOf[s.key] = up.topic
		}
	}
	if len(segs) == 0 {
		return errors.New("cold reads: no segment objects to read")
	}
	stopBroker()
	if err := os.RemoveAll(filepath.Join(env.dataDir, "tier-cache")); err != nil {
		return fmt.Errorf("empty the read cache: %w", err)
	}
	before := px.snapshot()
	logf("tier: restarting the broker with an empty read cache")
	b, err = startBrokerIn(ctx, cfg.strataBin, env.dataDir, filepath.Join(dir, "broker-restart.log"), brokerArgs)
	if err != nil {
		return fmt.Errorf("restart broker: %w", err)
	}
	env.setBroker(b)
	cold := env.coldReads(ctx, segs, topicOf, before)
	res.cold = &cold
	if cfg.tierShapeMBps <= 0 || ctx.Err() != nil {
		return nil
	}

	// The same replays against a store shaped like a remote one (latency,
	// per-request bandwidth), from an empty read cache again.
	stopBroker()
	if err := os.RemoveAll(filepath.Join(env.dataDir, "tier-cache")); err != nil {
		return fmt.Errorf("empty the read cache: %w", err)
	}
	sh := &storeShape{latency: cfg.tierShapeLatency, bytesPerSec: cfg.tierShapeMBps * 1e6}
	logf("tier: restarting the broker with an empty read cache; the proxy now adds %s", sh)
	b, err = startBrokerIn(ctx, cfg.strataBin, env.dataDir, filepath.Join(dir, "broker-shaped.log"), brokerArgs)
	if err != nil {
		return fmt.Errorf("restart broker: %w", err)
	}
	env.setBroker(b)
	px.setShape(sh)
	defer px.setShape(nil)
	res.shaped = env.shapedReplays(ctx, sh, res)
	return nil
}

// shapedReplays GETs every segment object of each tiered topic through the
// shaped proxy, one at a time and in parallel (one pass each: the proxy sets
// the pace), and replays the topic through the broker.
func (env *tierEnv) shapedReplays(ctx context.Context, sh *storeShape, res *tierResult) *tierShaped {
	out := &tierShaped{shape: sh}
	for _, rr := range res.reads {
		var up *tierUpload
		for i := range res.uploads {
			if res.uploads[i].topic == rr.topic && res.uploads[i].err == nil {
				up = &res.uploads[i]
				break
			}
		}
		if up == nil || ctx.Err() != nil {
			continue
		}
		keys := make([]string, len(up.inv.segs))
		for i, s := range up.inv.segs {
			keys[i] = s.key
		}
		row := tierShapedRow{kind: rr.kind, topic: rr.topic, stored: rr.stored, chunks: rr.chunks}
		for _, par := range []int{1, env.cfg.tierParallel} {
			how := "raw GET, sequential"
			if par > 1 {
				how = fmt.Sprintf("raw GET, %d in parallel", par)
			}
			logf("tier: S3-like store: %s of %d objects", how, len(keys))
			g := getAll(ctx, env.viaProxy, env.bucket, keys, par)
			g.how, g.parallel, g.passes = how, par, 1
			row.gets = append(row.gets, g)
		}
		row.replay = env.replay(ctx, *up)
		out.rows = append(out.rows, row)
	}
	return out
}

func (env *tierEnv) setBroker(b *brokerProc) {
	env.b = b
	env.t = target{name: "strata", seeds: []string{b.addr}, alive: b.alive,
		cpu: func() (time.Duration, error) { return procCPU(b.Pid()) }}
}

// partOffsets are one partition's offsets on both tiers.
type partOffsets struct {
	end        int64 // high watermark
	remoteEnd  int64 // latest tiered offset + 1 (0 when nothing is tiered)
	localStart int64 // earliest offset on local disk
}

// listTierOffsets asks ListOffsets v9 for -1 (end), -5 (latest tiered) and
// -4 (earliest local) of every partition.
func listTierOffsets(ctx context.Context, cl *kgo.Client, topic string, n int) ([]partOffsets, error) {
	out := make([]partOffsets, n)
	for _, ts := range []int64{-1, -5, -4} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = 9
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for p := range n {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = int32(p)
			rp.Timestamp = ts
			rp.CurrentLeaderEpoch = -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, fmt.Errorf("list offsets %d: %w", ts, err)
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("list offsets %d of %s[%d]: %w", ts, topic, p.Partition, err)
				}
				if p.Partition < 0 || int(p.Partition) >= n {
					continue
				}
				o := &out[p.Partition]
				switch ts {
				case -1:
					o.end = p.Offset
				case -5:
					o.remoteEnd = p.Offset + 1
				case -4:
					o.localStart = p.Offset
				}
			}
		}
	}
	return out, nil
}

// tierSample is the offsets at one moment of an upload phase.
type tierSample struct {
	sent time.Duration // when the requests were sent
	at   time.Duration // when the last answer came
	offs []partOffsets
}

// activeBases returns the base offset of each partition's newest local
// segment file, read from the broker's data directory.
func activeBases(dataDir, topic string, n int) ([]int64, error) {
	out := make([]int64, n)
	for p := range n {
		dirs, err := filepath.Glob(filepath.Join(dataDir, "logs", fmt.Sprintf("%s-%d.*", topic, p)))
		if err != nil || len(dirs) != 1 {
			return nil, fmt.Errorf("log directory of %s-%d: found %v (%v)", topic, p, dirs, err)
		}
		ents, err := os.ReadDir(dirs[0])
		if err != nil {
			return nil, err
		}
		out[p] = -1
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".log")
			if !ok || len(name) != 20 {
				continue
			}
			if v, err := strconv.ParseInt(name, 10, 64); err == nil && v > out[p] {
				out[p] = v
			}
		}
		if out[p] < 0 {
			return nil, fmt.Errorf("no segment file in %s", dirs[0])
		}
	}
	return out, nil
}

// createTieredTopic creates a topic with remote.storage.enable=true,
// segment.bytes and local.retention.bytes=0 (local segments go as soon as
// they are uploaded).
func createTieredTopic(ctx context.Context, seeds []string, topic string, partitions int, segBytes int64) error {
	return createTopicWith(ctx, seeds, topic, partitions, map[string]string{
		"remote.storage.enable": "true",
		"segment.bytes":         strconv.FormatInt(segBytes, 10),
		"local.retention.bytes": "0",
	})
}

// createTopicWith creates a topic with the given configs.
func createTopicWith(ctx context.Context, seeds []string, topic string, partitions int, cfgs map[string]string) error {
	return withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		configs := map[string]*string{}
		for k, v := range cfgs {
			configs[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopics(ctx, int32(partitions), 1, configs, topic)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
		return nil
	})
}

// upload produces cfg.tierMB MB of one kind of data to a new tiered topic
// while polling the offsets, waits until everything is in the bucket, and
// takes the topic's inventory from the bucket.
func (env *tierEnv) upload(ctx context.Context, kind tierData) (up tierUpload) {
	up.kind, up.topic, up.how = kind, "tier-"+kind.name, "tiered while producing"
	n := env.cfg.tierPartitions
	if up.err = createTieredTopic(ctx, env.t.seeds, up.topic, n, env.cfg.tierSegmentBytes); up.err != nil {
		return up
	}
	logf("tier: produce %d MB of %s to %s", env.cfg.tierMB, kind.about, up.topic)
	before := env.px.snapshot()
	cpu := env.startCPU()
	start := time.Now()
	w, err := env.watch(ctx, up.topic, start)
	if err != nil {
		up.err = err
		return up
	}
	defer w.stop()
	st, err := produceData(ctx, env.t.seeds, up.topic, kind, int64(env.cfg.tierMB)*1e6, start)
	up.records, up.valueBytes, up.produceTime = st.records, st.bytes, st.elapsed
	if err != nil {
		up.err = withAlive(fmt.Errorf("produce: %w", err), env.t)
		return up
	}
	env.finishUpload(ctx, w, &up, before, cpu)
	return up
}

// backlog turns tiering on for a topic that was produced without it and
// measures how fast the uploader drains the backlog of sealed segments.
// The tail segment is older than --tier-upload-interval by then, so the
// first tier pass rolls and uploads it too.
func (env *tierEnv) backlog(ctx context.Context, kind tierData, topic string, records, valueBytes int64) (up tierUpload) {
	up.kind, up.topic, up.how = kind, topic, "backlog: tiering turned on after producing"
	up.records, up.valueBytes = records, valueBytes
	logf("tier: turn tiering on for %s (backlog upload)", topic)
	before := env.px.snapshot()
	cpu := env.startCPU()
	start := time.Now()
	w, err := env.watch(ctx, topic, start)
	if err != nil {
		up.err = err
		return up
	}
	defer w.stop()
	err = withAdmin(ctx, env.t.seeds, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "remote.storage.enable", Value: kadm.StringPtr("true")},
			{Op: kadm.SetConfig, Name: "local.retention.bytes", Value: kadm.StringPtr("0")},
		}, topic)
		if err != nil {
			return err
		}
		for _, r := range resp {
			if r.Err != nil {
				return fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
			}
		}
		return nil
	})
	if err != nil {
		up.err = fmt.Errorf("turn tiering on: %w", err)
		return up
	}
	env.finishUpload(ctx, w, &up, before, cpu)
	return up
}

// finishUpload waits until the topic is fully tiered and fills in the
// upload's times, requests and inventory.
func (env *tierEnv) finishUpload(ctx context.Context, w *tierWatch, up *tierUpload, before reqCounts, cpu tierCPU) {
	bases, err := activeBases(env.dataDir, up.topic, env.cfg.tierPartitions)
	if err != nil {
		up.err = err
		return
	}
	deadline := time.Now().Add(3*time.Minute + time.Duration(env.cfg.tierMB)*300*time.Millisecond)
	if up.err = w.waitTiered(ctx, env.t, deadline); up.err != nil {
		return
	}
	w.stop()
	up.cpu = cpu.use()
	up.reqs = env.px.snapshot().sub(before)
	up.sealedTime, up.tieredTime = w.times(bases)
	up.inv, up.err = env.inventory(ctx, up.topic, env.cfg.tierPartitions)
	for _, s := range up.inv.segs {
		if s.footer.next <= bases[s.partition] {
			up.sealedBytes += s.footer.raw
		}
	}
}

// tierWatch polls a topic's offsets on both tiers in the background.
type tierWatch struct {
	start    time.Time
	cl       *kgo.Client
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	samples []tierSample
	err     error
}

// watch starts polling topic's offsets every tierPollInterval; sample
// times count from start.
func (env *tierEnv) watch(ctx context.Context, topic string, start time.Time) (*tierWatch, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.t.seeds...))
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	w := &tierWatch{cl: cl, cancel: cancel, done: make(chan struct{}), start: start}
	n := env.cfg.tierPartitions
	go func() {
		defer close(w.done)
		tick := time.NewTicker(tierPollInterval)
		defer tick.Stop()
		for {
			sent := time.Since(start)
			offs, err := listTierOffsets(pctx, cl, topic, n)
			w.mu.Lock()
			if err != nil && pctx.Err() == nil && w.err == nil {
				w.err = err
			} else if err == nil {
				w.samples = append(w.samples, tierSample{sent: sent, at: time.Since(start), offs: offs})
			}
			w.mu.Unlock()
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w, nil
}

// stop ends the polling; it may be called more than once.
func (w *tierWatch) stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		<-w.done
		w.cl.Close()
	})
}

// waitTiered waits until a sample taken after the call shows every
// partition fully tiered: the remote end at the log end and nothing left
// on local disk. (Earlier samples may predate the records: all zero.)
func (w *tierWatch) waitTiered(ctx context.Context, t target, deadline time.Time) error {
	since := time.Since(w.start)
	for {
		w.mu.Lock()
		var last []partOffsets
		if n := len(w.samples); n > 0 && w.samples[n-1].sent >= since {
			last = w.samples[n-1].offs
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return withAlive(err, t)
		}
		done := last != nil
		for _, o := range last {
			done = done && o.remoteEnd == o.end && o.localStart == o.end
		}
		if done {
			return nil
		}
		if err := t.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not fully tiered in time; last offsets %+v", last)
		}
		time.Sleep(tierPollInterval)
	}
}

// times returns when every partition's remote end first reached bases
// (the segments sealed when production stopped were all in the bucket),
// and the time of the last sample.
func (w *tierWatch) times(bases []int64) (sealed, tiered time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.samples {
		ok := true
		for p, o := range s.offs {
			ok = ok && o.remoteEnd >= bases[p]
		}
		if ok {
			sealed = s.at
			break
		}
	}
	if n := len(w.samples); n > 0 {
		tiered = w.samples[n-1].at
	}
	return sealed, tiered
}

// produceData produces values of the kind until total value bytes are
// acknowledged (acks=-1, idempotent, the kind's batch compression). The
// clock runs from start.
func produceData(ctx context.Context, seeds []string, topic string, kind tierData, total int64, start time.Time) (produceStats, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kind.codec),
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
	var sent int64
	for sent < total && ctx.Err() == nil && c.failed.Load() == 0 {
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

// topicID returns the topic's id as 32 hex digits, as in object keys.
func topicID(ctx context.Context, seeds []string, topic string) (string, error) {
	var id string
	err := withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		d, ok := td[topic]
		if !ok || d.Err != nil {
			return fmt.Errorf("topic %s: %v", topic, d.Err)
		}
		id = fmt.Sprintf("%x", d.ID[:])
		return nil
	})
	return id, err
}

// inventory lists the topic's objects in the bucket (directly, not through
// the counting proxy) and opens every segment object's footer.
func (env *tierEnv) inventory(ctx context.Context, topic string, n int) (tierInventory, error) {
	var inv tierInventory
	id, err := topicID(ctx, env.t.seeds, topic)
	if err != nil {
		return inv, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	marker := "/t/" + id + "/"
	seen := map[[2]int64]bool{}
	for o := range env.direct.ListObjects(ctx, env.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return inv, fmt.Errorf("list bucket: %w", o.Err)
		}
		if !strings.Contains(o.Key, marker) {
			continue
		}
		inv.objects++
		if !strings.Contains(o.Key, "/seg/") {
			continue
		}
		// <hash4>/t/<id>/<partition>/seg/<base>-<epoch>-<upload>.seg
		rest := o.Key[strings.Index(o.Key, marker)+len(marker):]
		pstr, _, _ := strings.Cut(rest, "/")
		p, err := strconv.Atoi(pstr)
		if err != nil || p < 0 || p >= n {
			return inv, fmt.Errorf("unexpected segment key %s", o.Key)
		}
		f, err := env.openFooter(ctx, o.Key, o.Size)
		if err != nil {
			return inv, err
		}
		if k := [2]int64{int64(p), f.base}; seen[k] {
			inv.orphans++
			continue
		} else {
			seen[k] = true
		}
		inv.segs = append(inv.segs, tierSeg{key: o.Key, partition: int32(p), size: o.Size, footer: f})
		inv.stored += o.Size
		inv.raw += f.raw
		inv.chunks += len(f.chunks)
		inv.rawChunk += f.rawChunks
	}
	sort.Slice(inv.segs, func(i, j int) bool {
		a, b := inv.segs[i], inv.segs[j]
		if a.partition != b.partition {
			return a.partition < b.partition
		}
		return a.footer.base < b.footer.base
	})
	if len(inv.segs) == 0 {
		return inv, fmt.Errorf("no segment objects of %s (id %s) in the bucket", topic, id)
	}
	return inv, nil
}

// openFooter reads a segment object's footer with ranged minio-go GETs.
func (env *tierEnv) openFooter(ctx context.Context, key string, size int64) (*segmentFooter, error) {
	fetch := func(ctx context.Context, off, n int64) ([]byte, error) {
		var opts minio.GetObjectOptions
		if err := opts.SetRange(off, off+n-1); err != nil {
			return nil, err
		}
		obj, err := env.direct.GetObject(ctx, env.bucket, key, opts)
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		buf := make([]byte, n)
		if _, err := io.ReadFull(obj, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	r, err := segment.OpenReader(ctx, fetch, size, segment.WithName(key))
	if err != nil {
		return nil, fmt.Errorf("footer of %s: %w", key, err)
	}
	ft := r.Footer()
	f := &segmentFooter{base: ft.Summary.BaseOffset, next: ft.Summary.NextOffset,
		raw: ft.Summary.RawSize, stored: ft.Summary.StoredSize}
	for _, c := range ft.Chunks {
		f.chunks = append(f.chunks, chunkRange{c.FirstOffset, c.LastOffset})
		if c.Codec == 0 {
			f.rawChunks++
		}
	}
	return f, nil
}

// rawGets reads every segment object of the inventory with minio-go:
// sequentially and cfg.tierParallel at a time from the gateway, and
// sequentially through the counting proxy (the broker's path).
func (env *tierEnv) rawGets(ctx context.Context, inv tierInventory) []tierGet {
	keys := make([]string, len(inv.segs))
	for i, s := range inv.segs {
		keys[i] = s.key
	}
	var out []tierGet
	for _, g := range []struct {
		how      string
		mc       *minio.Client
		parallel int
	}{
		{"raw GET, sequential", env.direct, 1},
		{fmt.Sprintf("raw GET, %d in parallel", env.cfg.tierParallel), env.direct, env.cfg.tierParallel},
		{"raw GET through the counting proxy, sequential", env.viaProxy, 1},
	} {
		if ctx.Err() != nil {
			break
		}
		logf("tier: %s of %d objects", g.how, len(keys))
		r := getRepeated(ctx, g.mc, env.bucket, keys, g.parallel)
		r.how, r.parallel = g.how, g.parallel
		out = append(out, r)
	}
	return out
}

// getRepeated runs getAll at least tierGetMinPasses times and until
// tierGetMinTime has passed (at most tierGetMaxPasses), and returns the
// median pass: one pass over a few hundred MB in the page cache takes a
// fraction of a second, too short to trust alone.
func getRepeated(ctx context.Context, mc *minio.Client, bucket string, keys []string, parallel int) tierGet {
	var passes []tierGet
	var total time.Duration
	for len(passes) < tierGetMaxPasses && (len(passes) < tierGetMinPasses || total < tierGetMinTime) {
		g := getAll(ctx, mc, bucket, keys, parallel)
		if g.err != nil {
			return g
		}
		passes = append(passes, g)
		total += g.elapsed
	}
	sort.Slice(passes, func(i, j int) bool { return passes[i].elapsed < passes[j].elapsed })
	g := passes[len(passes)/2]
	g.passes = len(passes)
	return g
}

// getAll GETs every key, parallel at a time, discarding the bytes.
func getAll(ctx context.Context, mc *minio.Client, bucket string, keys []string, parallel int) tierGet {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var (
		mu    sync.Mutex
		res   tierGet
		wg    sync.WaitGroup
		next  int
		start = time.Now()
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, tierGetBuffer)
			for {
				mu.Lock()
				if next >= len(keys) || res.err != nil {
					mu.Unlock()
					return
				}
				key := keys[next]
				next++
				mu.Unlock()
				n, err := getOne(ctx, mc, bucket, key, buf)
				mu.Lock()
				res.bytes += n
				if err != nil && res.err == nil {
					res.err = fmt.Errorf("GET %s: %w", key, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func getOne(ctx context.Context, mc *minio.Client, bucket, key string, buf []byte) (int64, error) {
	obj, err := mc.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	return io.CopyBuffer(io.Discard, struct{ io.Reader }{obj}, buf)
}

// replay consumes the fully tiered topic from offset 0 with a kgo consumer
// and counts the object requests it caused.
func (env *tierEnv) replay(ctx context.Context, up tierUpload) *tierReplay {
	r := &tierReplay{topic: up.topic}
	if r.err = env.t.alive(); r.err != nil {
		return r
	}
	logf("tier: replay %s from offset 0", up.topic)
	before := env.px.snapshot()
	env.consumeInto(ctx, r, up.topic)
	r.reqs = env.px.snapshot().sub(before)
	if r.err == nil && r.st.records != up.records {
		r.err = fmt.Errorf("consumed %d records, produced %d", r.st.records, up.records)
	}
	return r
}

// consumeInto consumes topic from offset 0 with the replay consumer's
// settings, counting its Fetch responses.
func (env *tierEnv) consumeInto(ctx context.Context, r *tierReplay, topic string) {
	h := &fetchCounter{}
	opts := []kgo.Opt{kgo.WithHooks(h)}
	if n := env.cfg.tierFetchPartBytes; n > 0 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(n))
	}
	cpu := env.startCPU()
	r.st, r.err = consumeWith(ctx, env.t.seeds, 5*time.Minute+time.Duration(env.cfg.tierMB)*time.Second, opts, topic)
	r.cpu = cpu.use()
	r.fetches, r.fetchBytes = h.n.Load(), h.bytes.Load()
	if r.err != nil {
		r.err = withAlive(r.err, env.t)
	}
}

// fetchCounter is a kgo hook counting Fetch responses and their bytes.
type fetchCounter struct{ n, bytes atomic.Int64 }

func (h *fetchCounter) OnBrokerRead(_ kgo.BrokerMetadata, key int16, bytesRead int, _, _ time.Duration, err error) {
	if key == 1 && err == nil {
		h.n.Add(1)
		h.bytes.Add(int64(bytesRead))
	}
}

// localReference produces the same amount of the same kind of data to a
// topic without tiering and consumes it from offset 0 with the replay
// consumer's settings. The topic stays for the backlog upload.
func (env *tierEnv) localReference(ctx context.Context, kind tierData) (*tierReplay, produceStats) {
	r := &tierReplay{topic: "local-" + kind.name}
	if r.err = createTopicWith(ctx, env.t.seeds, r.topic, env.cfg.tierPartitions, map[string]string{
		"segment.bytes": strconv.FormatInt(env.cfg.tierSegmentBytes, 10),
	}); r.err != nil {
		return r, produceStats{}
	}
	logf("tier: reference: produce the same %s to %s (no tiering) and consume it", kind.name, r.topic)
	st, err := produceData(ctx, env.t.seeds, r.topic, kind, int64(env.cfg.tierMB)*1e6, time.Now())
	if err != nil {
		r.err = withAlive(fmt.Errorf("produce: %w", err), env.t)
		return r, st
	}
	env.consumeInto(ctx, r, r.topic)
	if r.err == nil && r.st.records != st.records {
		r.err = fmt.Errorf("consumed %d records, produced %d", r.st.records, st.records)
	}
	return r, st
}

// coldReads fetches random offsets from the restarted broker: for each
// chosen segment one offset in a random chunk (its footer is not cached
// unless an earlier read opened it) and a second one in a chunk of the same
// segment at least two chunks away (footer cached, chunk not, and no
// read-ahead, which only follows sequential reads).
func (env *tierEnv) coldReads(ctx context.Context, segs []tierSeg, topicOf map[string]string, before reqCounts) tierCold {
	var res tierCold
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.t.seeds...))
	if err != nil {
		res.err = err
		return res
	}
	defer cl.Close()
	// Connect and learn the metadata before the first timed read.
	if err := cl.Ping(ctx); err != nil {
		res.err = fmt.Errorf("ping broker: %w", err)
		return res
	}
	mreq := kmsg.NewPtrMetadataRequest()
	if _, err := mreq.RequestWith(ctx, cl); err != nil {
		res.err = fmt.Errorf("metadata: %w", err)
		return res
	}
	time.Sleep(tierColdSettle)
	res.startup = env.px.snapshot().sub(before)

	// Prefer segments with at least three chunks, so the second read can
	// skip a chunk.
	order := env.rng.Perm(len(segs))
	sort.SliceStable(order, func(i, j int) bool {
		return len(segs[order[i]].footer.chunks) >= 3 && len(segs[order[j]].footer.chunks) < 3
	})
	opened := map[string]bool{}
	logf("tier: %d pairs of cold random reads", env.cfg.tierColdReads)
	for i := 0; i < env.cfg.tierColdReads && ctx.Err() == nil; i++ {
		s := segs[order[i%len(order)]]
		ca := env.rng.IntN(len(s.footer.chunks))
		cb := pickOtherChunk(env.rng, len(s.footer.chunks), ca)
		for _, c := range []int{ca, cb} {
			if c < 0 {
				continue
			}
			cr := s.footer.chunks[c]
			off := cr.first + env.rng.Int64N(cr.last-cr.first+1)
			rd := env.fetchAt(ctx, cl, topicOf[s.key], s.partition, off)
			rd.chunk, rd.footerKnown = c, opened[s.key]
			opened[s.key] = true
			res.reads = append(res.reads, rd)
		}
	}
	return res
}

// pickOtherChunk returns a chunk index at least two away from a, or any
// other chunk if there is none, or -1 for a single-chunk segment.
func pickOtherChunk(r *rand.Rand, n, a int) int {
	var far, other []int
	for i := range n {
		switch d := i - a; {
		case d >= 2 || d <= -2:
			far = append(far, i)
		case d != 0:
			other = append(other, i)
		}
	}
	if len(far) > 0 {
		return far[r.IntN(len(far))]
	}
	if len(other) > 0 {
		return other[r.IntN(len(other))]
	}
	return -1
}

// fetchAt sends one Fetch for offset and times it until the response, which
// must start with the batch holding offset.
func (env *tierEnv) fetchAt(ctx context.Context, cl *kgo.Client, topic string, partition int32, offset int64) coldRead {
	rd := coldRead{topic: topic, partition: partition, offset: offset}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 5000
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = 1 << 20
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	before := env.px.snapshot()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := req.RequestWith(ctx, cl)
	rd.elapsed = time.Since(start)
	time.Sleep(tierColdSettle)
	rd.reqs = env.px.snapshot().sub(before)
	if err != nil {
		rd.err = err
		return rd
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		rd.err = fmt.Errorf("fetch response with %d topics", len(resp.Topics))
		return rd
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		rd.err = fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, offset, err)
		return rd
	}
	rd.err = checkFirstBatch(p.RecordBatches, offset)
	return rd
}

// checkFirstBatch checks that the record set starts with the batch that
// holds offset.
func checkFirstBatch(b []byte, offset int64) error {
	if len(b) < 61 {
		return fmt.Errorf("fetch at %d returned %d bytes, no whole batch", offset, len(b))
	}
	base := int64(binary.BigEndian.Uint64(b[0:8]))
	last := base + int64(int32(binary.BigEndian.Uint32(b[23:27])))
	if offset < base || offset > last {
		return fmt.Errorf("fetch at %d returned a batch holding [%d, %d]", offset, base, last)
	}
	return nil
}

// tierCPU measures the CPU used over a phase by the broker, versitygw, this
// tool (clients and the counting proxy) and the rest of the machine.
type tierCPU struct {
	start                    time.Time
	broker, gw, self, busy   time.Duration
	brokerPid, gwPid         int
	brokerErr, gwErr, mchErr error
}

// cpuUse is what a tierCPU measured, in cores (CPU seconds per second).
type cpuUse struct {
	ok                         bool
	broker, gw, tool, rest     float64
	brokerSeconds, wallSeconds float64
}

func (env *tierEnv) startCPU() tierCPU {
	m := tierCPU{start: time.Now(), self: selfCPU(), gwPid: env.gwPid}
	if env.b != nil {
		m.brokerPid = env.b.Pid()
		m.broker, m.brokerErr = procCPU(m.brokerPid)
	}
	m.gw, m.gwErr = procCPU(m.gwPid)
	m.busy, m.mchErr = machineBusy()
	return m
}

func (m tierCPU) use() cpuUse {
	wall := time.Since(m.start).Seconds()
	if wall <= 0 || m.brokerPid == 0 || m.brokerErr != nil || m.gwErr != nil || m.mchErr != nil {
		return cpuUse{}
	}
	b, err1 := procCPU(m.brokerPid)
	g, err2 := procCPU(m.gwPid)
	busy, err3 := machineBusy()
	if errors.Join(err1, err2, err3) != nil {
		return cpuUse{}
	}
	u := cpuUse{ok: true, wallSeconds: wall, brokerSeconds: (b - m.broker).Seconds()}
	u.broker = u.brokerSeconds / wall
	u.gw = (g - m.gw).Seconds() / wall
	u.tool = (selfCPU() - m.self).Seconds() / wall
	u.rest = max((busy-m.busy).Seconds()/wall-u.broker-u.gw-u.tool, 0)
	return u
}

// String formats the use, e.g. "CPU cores: broker 0.90, versitygw 0.10,
// load tool 0.50, rest of machine 0.05".
func (u cpuUse) String() string {
	if !u.ok {
		return "CPU not measured"
	}
	return fmt.Sprintf("CPU cores: broker %.2f, versitygw %.2f, load tool (clients, proxy) %.2f, rest of machine %.2f",
		u.broker, u.gw, u.tool, u.rest)
}

// brokerPerGB returns the broker's CPU seconds per 10^9 bytes.
func (u cpuUse) brokerPerGB(bytes int64) float64 {
	if !u.ok || bytes <= 0 {
		return 0
	}
	return u.brokerSeconds / (float64(bytes) / 1e9)
}
