package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The compaction phase's fixed settings.
const (
	compactBackoff      = 200 * time.Millisecond // --log-cleaner-backoff
	compactLagOff       = "86400000"             // min.compaction.lag.ms that keeps the cleaner away
	compactTopicTput    = "compact-tput"
	compactTopicBacklog = "compact-backlog"
	compactTopicLimited = "compact-backlog-limited"
	compactTopicLat     = "compact-lat"
)

// compactResult is the outcome of the compaction phase.
type compactResult struct {
	mb, keys, valueBytes int
	segmentBytes         int64
	duration             time.Duration
	rateNote             string // where the latency runs' rate comes from
	err                  error  // setup failure outside any row
	passes               []compactPassRow
	lats                 []compactLatRow
}

// cleanerPass is one `msg=compacted` line of the broker's log.
type cleanerPass struct {
	at                          time.Time // when the pass ended (the line's time)
	topic                       string
	from, to                    int64
	recordsKept, recordsRemoved int64
	segmentsIn, segmentsOut     int64
	bytesRead, bytesWritten     int64
	duration                    time.Duration
}

// start returns when the pass began.
func (p cleanerPass) start() time.Time { return p.at.Add(-p.duration) }

// compactPassRow is one line of the pass table.
type compactPassRow struct {
	name     string
	logBytes int64        // the topic's sealed segment bytes before the pass
	pass     *cleanerPass // nil when no pass finished in time
	cpu      time.Duration
	note     string
	err      error
}

// compactLatRow is one line of the latency table, with the latencies of
// the records sent while a cleaner pass ran when one did.
type compactLatRow struct {
	name       string
	targetMBps float64
	st         produceStats
	lat        latencySummary
	inPass     *latencySummary // records sent while the pass ran
	during     string          // the cleaner's activity during the window
	cpu        string
	err        error
}

// latSample is one acknowledged record of a rate-limited run.
type latSample struct {
	sent time.Time
	lat  time.Duration
}

// compactEnv is what the compaction sub-phases share.
type compactEnv struct {
	cfg     config
	dir     string
	dataDir string
	b       *brokerProc
	t       target
}

// runCompact measures the broker's cleaner: one pass over -compact-mb MB of
// updates on an otherwise idle broker, then produce latency at a fixed rate
// with no compaction, while a pass rewrites a large backlog, and the same
// with --log-cleaner-io-max-bytes-per-second.
func runCompact(ctx context.Context, cfg config, base string) (res compactResult) {
	res.mb, res.keys, res.valueBytes, res.duration = cfg.compactMB, cfg.compactKeys, cfg.compactValueBytes, cfg.duration
	res.segmentBytes = cfg.compactSegBytes
	env := &compactEnv{cfg: cfg, dir: filepath.Join(base, "compact")}
	env.dataDir = filepath.Join(env.dir, "data")
	// Unlimited: the cleaner's own speed.
	if err := env.start(ctx, "broker.log", []string{"--log-cleaner-io-max-bytes-per-second", "0"}); err != nil {
		res.err = err
		return res
	}
	defer func() {
		if err := env.b.Stop(); err != nil && res.err == nil {
			res.err = err
		}
		env.b.reportLog("compaction")
	}()
	compacted := map[string]string{
		"cleanup.policy": "compact", "segment.bytes": strconv.FormatInt(cfg.compactSegBytes, 10),
		"min.compaction.lag.ms": compactLagOff,
	}
	for _, topic := range []string{compactTopicTput, compactTopicBacklog, compactTopicLimited} {
		if err := createTopicWith(ctx, env.t.seeds, topic, 1, compacted); err != nil {
			res.err = err
			return res
		}
	}
	if err := createTopicWith(ctx, env.t.seeds, compactTopicLat, cfg.partitions, nil); err != nil {
		res.err = err
		return res
	}

	// 1. Throughput: one pass over -compact-mb MB on an idle broker.
	logf("compaction: produce %d MB of updates over %d keys", cfg.compactMB, cfg.compactKeys)
	st, _, err := env.produce(ctx, compactTopicTput, int64(cfg.compactMB), 0, 0)
	if err != nil {
		res.err = fmt.Errorf("produce %s: %w", compactTopicTput, err)
		return res
	}
	tput := env.cleanNow(ctx, compactTopicTput)
	tput.name = fmt.Sprintf("%d MB of updates over %d keys, idle broker", cfg.compactMB, cfg.compactKeys)
	tput.note = fmt.Sprintf("produced at %.1f MB/s (max rate)", st.mbps())
	cpuBefore := tput.cpu
	tput.cpu = 0
	if tput.err == nil {
		tput.pass, tput.err = waitPass(ctx, env.b, compactTopicTput, time.Time{}, env.passTimeout(tput.logBytes, 0))
		if cpu, err := env.t.cpu(); err == nil && tput.pass != nil {
			tput.cpu = cpu - cpuBefore // the broker does nothing else meanwhile
		}
	}
	res.passes = append(res.passes, tput)
	if tput.err != nil || ctx.Err() != nil {
		return res
	}

	// 2. Produce latency at a fixed rate without and with compaction.
	rateMBps := cfg.compactRate
	res.rateNote = fmt.Sprintf("%.1f MB/s (-compact-rate)", rateMBps)
	if rateMBps == 0 {
		rateMBps = st.mbps() / 2
		res.rateNote = fmt.Sprintf("%.1f MB/s, half the max-rate produce of the throughput pass", rateMBps)
	}
	logMBps := rate(float64(tput.logBytes)/1e6, tput.pass.duration)
	backlogMB := int64(min(max(logMBps*cfg.duration.Seconds()*1.5, float64(cfg.compactMB)), 16*float64(cfg.compactMB)))
	for _, topic := range []string{compactTopicBacklog, compactTopicLimited} {
		logf("compaction: produce a backlog of %d MB to %s", backlogMB, topic)
		if _, _, err := env.produce(ctx, topic, backlogMB, 0, 0); err != nil {
			res.err = fmt.Errorf("produce %s: %w", topic, err)
			return res
		}
	}
	row, _ := env.latency(ctx, "no compaction running", rateMBps)
	res.lats = append(res.lats, row)

	row, pass := env.latencyDuringPass(ctx, "while a pass compacts a backlog, no I/O limit", rateMBps, compactTopicBacklog, backlogMB, 0)
	res.lats, res.passes = append(res.lats, row), append(res.passes, pass)
	if ctx.Err() != nil {
		return res
	}

	limit, limitNote := cfg.compactIOLimit, "-compact-io-limit"
	if limit == 0 {
		p := pass.pass
		if p == nil {
			p = tput.pass
		}
		limit = int64(rate(float64(p.bytesRead+p.bytesWritten), p.duration) / 4)
		limitNote = "a quarter of the unlimited pass's read+write rate"
	}
	if err := env.b.Stop(); err != nil {
		res.err = fmt.Errorf("stop broker before the I/O-limited run: %w", err)
		return res
	}
	env.b.reportLog("compaction")
	if err := env.start(ctx, "broker-limited.log", []string{"--log-cleaner-io-max-bytes-per-second", strconv.FormatInt(limit, 10)}); err != nil {
		res.err = err
		return res
	}
	name := fmt.Sprintf("while a pass compacts a backlog, `--log-cleaner-io-max-bytes-per-second %d` (%.1f MB/s, %s)", limit, float64(limit)/1e6, limitNote)
	row, pass = env.latencyDuringPass(ctx, name, rateMBps, compactTopicLimited, backlogMB, limit)
	pass.name += fmt.Sprintf(", I/O limit %.1f MB/s", float64(limit)/1e6)
	res.lats, res.passes = append(res.lats, row), append(res.passes, pass)
	return res
}

// start starts the phase's broker on its data directory with a fast
// cleaner and info-level logs (the cleaner's numbers are in its log lines).
func (env *compactEnv) start(ctx context.Context, logName string, extra []string) error {
	flags := append([]string{"--log-level", "info", "--log-cleaner-backoff", compactBackoff.String()}, extra...)
	b, err := startBrokerIn(ctx, env.cfg.strataBin, env.dataDir, filepath.Join(env.dir, logName), flags)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	env.b = b
	env.t = target{name: "strata", seeds: []string{b.addr}, alive: b.alive,
		cpu: func() (time.Duration, error) { return procCPU(b.Pid()) }}
	return nil
}

// passTimeout bounds the wait for a pass over logBytes: generous for an
// unlimited pass (at least 10 MB/s), and the limit's time twice over.
func (env *compactEnv) passTimeout(logBytes, limit int64) time.Duration {
	d := 2*time.Minute + time.Duration(logBytes/1e6)*100*time.Millisecond
	if limit > 0 {
		d += time.Duration(float64(4*logBytes) / float64(limit) * float64(time.Second))
	}
	return d
}

// produce writes keyed records of -compact-value-bytes random bytes over
// -compact-keys keys with the acks=-1 idempotent producer: mb MB of values
// as fast as possible (rateMBps 0), or at rateMBps for d, returning each
// record's send time and latency.
func (env *compactEnv) produce(ctx context.Context, topic string, mb int64, rateMBps float64, d time.Duration) (produceStats, []latSample, error) {
	cfg := env.cfg
	spec := produceSpec{topic: topic, acks: acksAll, recordSize: cfg.compactValueBytes, duration: d}
	timeout := d + phaseGrace
	if mb > 0 {
		spec.maxRecords = mb * 1e6 / int64(cfg.compactValueBytes)
		timeout += time.Duration(mb) * 100 * time.Millisecond // at least 10 MB/s
	}
	if rateMBps > 0 {
		spec.rate = rateMBps * 1e6 / float64(cfg.compactValueBytes)
	}
	cl, err := kgo.NewClient(producerOpts(env.t.seeds, spec)...)
	if err != nil {
		return produceStats{}, nil, fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	next := keyedRecords(cfg.compactKeys, cfg.compactValueBytes)
	if err := cl.ProduceSync(ctx, next()).FirstErr(); err != nil {
		return produceStats{}, nil, fmt.Errorf("warm-up record to %s: %w", topic, err)
	}
	c := &collector{}
	var (
		mu      sync.Mutex
		samples []latSample
	)
	start := time.Now()
	if spec.rate > 0 {
		samples = make([]latSample, 0, int(spec.rate*d.Seconds()*1.1))
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for sent := int64(0); !spec.done(ctx, c, sent, start.Add(d)); {
			select {
			case <-ctx.Done():
			case now := <-tick.C:
				for due := int64(spec.rate * now.Sub(start).Seconds()); sent < due; sent++ {
					at := time.Now()
					cl.Produce(ctx, next(), func(r *kgo.Record, err error) {
						lat := time.Since(at)
						c.done(r, err)
						if err == nil {
							mu.Lock()
							samples = append(samples, latSample{at, lat})
							mu.Unlock()
						}
					})
				}
			}
		}
	} else {
		deadline := start.Add(timeout)
		for n := int64(0); n < spec.maxRecords; n++ {
			if n%64 == 0 && spec.done(ctx, c, n, deadline) {
				break
			}
			cl.Produce(ctx, next(), c.done)
		}
	}
	flushErr := cl.Flush(ctx)
	st := produceStats{records: c.records.Load(), bytes: c.bytes.Load(), failed: c.failed.Load(), elapsed: time.Since(start)}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case c.err() != nil:
		return st, samples, fmt.Errorf("%d records failed, first: %w", st.failed, c.err())
	case flushErr != nil:
		return st, samples, fmt.Errorf("flush: %w", flushErr)
	}
	return st, samples, nil
}

// keyedRecords returns a generator of records with a uniformly random key
// of keys (k00000042) and valueBytes of incompressible value, sliced from a
// shared random pool (records only read their value).
func keyedRecords(keys, valueBytes int) func() *kgo.Record {
	const poolBytes = 1 << 20
	pool := make([]byte, poolBytes+valueBytes)
	_, _ = rand.Read(pool)
	rng := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
	return func() *kgo.Record {
		off := rng.IntN(poolBytes)
		return &kgo.Record{Key: fmt.Appendf(nil, "k%08d", rng.IntN(keys)), Value: pool[off : off+valueBytes]}
	}
}

// cleanNow lets the cleaner at topic (min.compaction.lag.ms=0). The row
// has the topic's sealed bytes and, in cpu, the broker's CPU time so far.
func (env *compactEnv) cleanNow(ctx context.Context, topic string) compactPassRow {
	row := compactPassRow{}
	if row.logBytes, row.err = sealedBytes(env.dataDir, topic); row.err != nil {
		return row
	}
	if row.logBytes == 0 {
		row.err = fmt.Errorf("%s has no sealed segment to clean (-compact-mb below -compact-segment-bytes?)", topic)
		return row
	}
	row.cpu, _ = env.t.cpu()
	logf("compaction: let the cleaner at %s (%.1f MB sealed)", topic, float64(row.logBytes)/1e6)
	row.err = alterLag(ctx, env.t.seeds, topic, "0")
	return row
}

// latency produces at rateMBps for -duration and summarizes the
// latencies.
func (env *compactEnv) latency(ctx context.Context, name string, rateMBps float64) (compactLatRow, []latSample) {
	row := compactLatRow{name: name, targetMBps: rateMBps, during: "none (no topic cleanable)"}
	if err := env.t.alive(); err != nil {
		row.err = err
		return row, nil
	}
	logf("compaction: produce latency at %.1f MB/s, %s", rateMBps, name)
	cpu := startCPU(env.t)
	st, samples, err := env.produce(ctx, compactTopicLat, 0, rateMBps, env.cfg.duration)
	row.st, row.cpu = st, cpu.String()
	row.lat = summarizeSamples(samples, time.Time{}, time.Time{})
	if err != nil {
		row.err = withAlive(err, env.t)
	}
	return row, samples
}

// summarizeSamples returns the percentiles of the samples sent in
// [from, to] (all of them when both are zero).
func summarizeSamples(samples []latSample, from, to time.Time) latencySummary {
	lat := make([]time.Duration, 0, len(samples))
	for _, s := range samples {
		if from.IsZero() && to.IsZero() || !s.sent.Before(from) && !s.sent.After(to) {
			lat = append(lat, s.lat)
		}
	}
	return summarize(lat)
}

// latencyDuringPass lets the cleaner at backlog, waits two backoffs so
// that the pass has started, runs a latency row, then waits for the pass
// to end (limit: the broker's cleaner I/O limit, 0 for none) and
// summarizes the latencies of the records sent while it ran.
func (env *compactEnv) latencyDuringPass(ctx context.Context, name string, rateMBps float64, backlog string, mb, limit int64) (compactLatRow, compactPassRow) {
	pass := env.cleanNow(ctx, backlog)
	pass.name = fmt.Sprintf("%d MB backlog, while producing at %.1f MB/s", mb, rateMBps)
	pass.cpu = 0 // the broker also serves the producer: see the latency row
	if pass.err != nil {
		return compactLatRow{name: name, targetMBps: rateMBps, err: fmt.Errorf("start the backlog's pass: %w", pass.err)}, pass
	}
	asked := time.Now()
	time.Sleep(2 * compactBackoff)
	windowStart := time.Now()
	row, samples := env.latency(ctx, name, rateMBps)
	windowEnd := time.Now()
	p, err := waitPass(ctx, env.b, backlog, asked, env.passTimeout(pass.logBytes, limit))
	pass.pass = p
	switch {
	case p != nil:
		row.during = overlapNote(p.start(), p.at, windowStart, windowEnd)
		s := summarizeSamples(samples, p.start(), p.at)
		row.inPass = &s
		pass.note = "broker CPU: see the latency row"
	case errors.Is(err, errNoPass):
		row.during = fmt.Sprintf("a pass over the %d MB backlog, not finished when the phase gave up on it", mb)
		pass.note = "not finished in time; stopped with the broker"
	default:
		pass.err = err
		row.during = "pass failed: " + err.Error()
	}
	return row, pass
}

// overlapNote says which share of the window [ws, we] the pass [ps, pe]
// covered.
func overlapNote(ps, pe, ws, we time.Time) string {
	from, to := ps, pe
	if ws.After(from) {
		from = ws
	}
	if we.Before(to) {
		to = we
	}
	share := max(to.Sub(from).Seconds(), 0) / we.Sub(ws).Seconds()
	return fmt.Sprintf("pass of %.1f s, from %+.1f s to %+.1f s of the window: %.0f %% of it",
		pe.Sub(ps).Seconds(), ps.Sub(ws).Seconds(), pe.Sub(ws).Seconds(), 100*share)
}

// alterLag sets the topic's min.compaction.lag.ms.
func alterLag(ctx context.Context, seeds []string, topic, ms string) error {
	return withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "min.compaction.lag.ms", Value: kadm.StringPtr(ms)},
		}, topic)
		if err != nil {
			return fmt.Errorf("alter %s: %w", topic, err)
		}
		for _, r := range resp {
			if r.Err != nil {
				return fmt.Errorf("alter %s: %w: %s", topic, r.Err, r.ErrMessage)
			}
		}
		return nil
	})
}

// sealedBytes sums the .log files of the topic's partitions in the data
// directory (logs/<topic>-<partition>.<topic id>), without each
// partition's last (active) segment.
func sealedBytes(dataDir, topic string) (int64, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "logs"))
	if err != nil {
		return 0, fmt.Errorf("log directories: %w", err)
	}
	var total int64
	found := false
	for _, e := range ents {
		if !isPartitionDir(e.Name(), topic) {
			continue
		}
		found = true
		logs, err := filepath.Glob(filepath.Join(dataDir, "logs", e.Name(), "*.log"))
		if err != nil {
			return 0, err
		}
		// Names are zero-padded base offsets: the last in order is active.
		for i := 0; i < len(logs)-1; i++ {
			fi, err := os.Stat(logs[i])
			if err != nil {
				return 0, fmt.Errorf("segment size: %w", err)
			}
			total += fi.Size()
		}
	}
	if !found {
		return 0, fmt.Errorf("no log directory of %s in %s", topic, dataDir)
	}
	return total, nil
}

// isPartitionDir reports whether name is the log directory of a partition
// of topic: <topic>-<digits>.<id>.
func isPartitionDir(name, topic string) bool {
	rest, ok := strings.CutPrefix(name, topic+"-")
	if !ok {
		return false
	}
	num, _, ok := strings.Cut(rest, ".")
	_, err := strconv.ParseUint(num, 10, 32)
	return ok && err == nil
}

// errNoPass is waitPass's error when no pass ended in time.
var errNoPass = errors.New("no cleaner pass ended in time")

// waitPass waits up to d for the broker to log the end of a pass over
// topic that ended after since, and fails on a failed pass.
func waitPass(ctx context.Context, b *brokerProc, topic string, since time.Time, d time.Duration) (*cleanerPass, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		p, err := findPass(b.logPath, topic, since)
		if p != nil || err != nil {
			return p, err
		}
		if err := b.alive(); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v): %s", errNoPass, d.Round(time.Second), topic)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// findPass scans the broker's log for the first pass over topic that ended
// after since, or a failed one.
func findPass(logPath, topic string, since time.Time) (*cleanerPass, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, fmt.Errorf("broker log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "topic="+topic+" ") {
			continue
		}
		if strings.Contains(line, "msg=compaction ") {
			return nil, fmt.Errorf("cleaner pass failed: %s", line)
		}
		if !strings.Contains(line, "msg=compacted ") {
			continue
		}
		p, err := parseCompacted(line)
		if err != nil {
			return nil, err
		}
		if p.topic == topic && p.at.After(since) {
			return &p, nil
		}
	}
	return nil, sc.Err()
}

// parseCompacted reads the broker's `msg=compacted` line (slog text:
// key=value, values with spaces quoted).
func parseCompacted(line string) (cleanerPass, error) {
	kv, err := logFields(line)
	if err != nil {
		return cleanerPass{}, fmt.Errorf("compacted line %q: %w", line, err)
	}
	var p cleanerPass
	var errs []error
	num := func(k string) int64 {
		n, err := strconv.ParseInt(kv[k], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		return n
	}
	at, err := time.Parse(time.RFC3339Nano, kv["time"])
	errs = append(errs, err)
	d, err := time.ParseDuration(kv["duration"])
	errs = append(errs, err)
	p.at, p.duration, p.topic = at, d, kv["topic"]
	p.from, p.to = num("from"), num("to")
	p.recordsKept, p.recordsRemoved = num("records_kept"), num("records_removed")
	p.segmentsIn, p.segmentsOut = num("segments_in"), num("segments_out")
	p.bytesRead, p.bytesWritten = num("bytes_read"), num("bytes_written")
	if err := errors.Join(errs...); err != nil {
		return p, fmt.Errorf("compacted line %q: %w", line, err)
	}
	return p, nil
}

// logFields splits a slog text line into its key=value fields (values
// with spaces are quoted).
func logFields(line string) (map[string]string, error) {
	kv := map[string]string{}
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		v := rest
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, err
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		kv[k], s = v, rest
	}
	return kv, nil
}

// errs returns the phase's failures.
func (c *compactResult) errs() []error {
	var errs []error
	if c.err != nil {
		errs = append(errs, fmt.Errorf("compaction: %w", c.err))
	}
	for _, p := range c.passes {
		if p.err != nil {
			errs = append(errs, fmt.Errorf("compaction: pass over %s: %w", p.name, p.err))
		}
	}
	for _, l := range c.lats {
		if l.err != nil {
			errs = append(errs, fmt.Errorf("compaction: produce %s: %w", l.name, l.err))
		}
	}
	return errs
}

// writeCompact renders the compaction phase.
func (r *report) writeCompact(b *strings.Builder) {
	c := r.compact
	if c == nil {
		return
	}
	b.WriteString("\n### Compaction\n\n")
	fmt.Fprintf(b, "Topics with `cleanup.policy=compact`, `segment.bytes` %s; records with %d-byte random values "+
		"over %d keys from one acks=-1 idempotent kgo producer, no compression. A topic is filled while "+
		"`min.compaction.lag.ms` keeps the cleaner off it, then set to 0; the broker runs with "+
		"`--log-cleaner-backoff %v`. Pass numbers are the broker's `msg=compacted` log line: input MB/s = "+
		"bytes_read / duration (the dirty part is read twice, to map it and to rewrite it), log MB/s = the "+
		"topic's sealed segment bytes before the pass / duration.\n\n",
		mibOrBytes(c.segmentBytes), c.valueBytes, c.keys, compactBackoff)
	b.WriteString("| pass | log before | read → written | records kept / removed | segments in → out | duration | input MB/s | log MB/s | broker CPU | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, row := range c.passes {
		p := row.pass
		if p == nil {
			fmt.Fprintf(b, "| %s | %.1f MB | | | | | | | | %s |\n", row.name, float64(row.logBytes)/1e6, errOr(row.note, row.err))
			continue
		}
		cpu := ""
		if row.cpu > 0 {
			cpu = fmt.Sprintf("%.1f CPU-s (%.2f cores)", row.cpu.Seconds(), row.cpu.Seconds()/p.duration.Seconds())
		}
		fmt.Fprintf(b, "| %s | %.1f MB | %.1f → %.1f MB | %d / %d | %d → %d | %.2f s | **%.1f** | %.1f | %s | %s |\n",
			row.name, float64(row.logBytes)/1e6, float64(p.bytesRead)/1e6, float64(p.bytesWritten)/1e6,
			p.recordsKept, p.recordsRemoved, p.segmentsIn, p.segmentsOut, p.duration.Seconds(),
			rate(float64(p.bytesRead)/1e6, p.duration), rate(float64(row.logBytes)/1e6, p.duration), cpu,
			errOr(fmt.Sprintf("offsets [%d, %d); %s", p.from, p.to, row.note), row.err))
	}
	if len(c.lats) == 0 {
		return
	}
	fmt.Fprintf(b, "\nProduce latency: the same producer at a fixed rate (%s) for %v to a %d-partition topic that "+
		"is not compacted, each record from its `Produce` call to its promise; for the runs with a pass, also over "+
		"the records sent while the pass ran (from the log line's time minus its duration to its time).\n\n",
		c.rateNote, c.duration, r.cfg.partitions)
	b.WriteString("| run | target MB/s | MB/s | records/s | p50 | p99 | p99.9 | cleaner during the window | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, l := range c.lats {
		p50, p99, p999 := "", "", ""
		if l.lat.n > 0 {
			p50, p99, p999 = ms(l.lat.p50), ms(l.lat.p99), ms(l.lat.p999)
		}
		fmt.Fprintf(b, "| %s | %.1f | %.1f | %.0f | %s | %s | %s | %s | %s |\n", cell(l.name, 0), l.targetMBps,
			l.st.mbps(), l.st.recps(), p50, p99, p999, cell(l.during, 0),
			errOr(fmt.Sprintf("%d records in %.1fs; %s", l.st.records, l.st.elapsed.Seconds(), l.cpu), l.err))
		if s := l.inPass; s != nil && s.n > 0 && s.n < l.lat.n { // else: the pass covered the whole window
			fmt.Fprintf(b, "| … records sent while the pass ran | | | | %s | %s | %s | | %d records |\n",
				ms(s.p50), ms(s.p99), ms(s.p999), s.n)
		}
	}
}
