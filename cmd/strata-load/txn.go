package main

// The transactions phase (-txn): one franz-go client producing in
// transactions of -txn-sizes records each, committed one after the other,
// with the time of every EndTransaction, and one more run in which every
// second transaction is aborted; before and after each of these runs, one
// producing at the maximum rate without transactions (idempotent,
// acks=all), so that each transactional run is compared with the
// non-transactional runs around it (this shared machine drifts); then every
// topic consumed back with read_uncommitted and read_committed, which must
// not return an aborted record.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// txnStepTimeout bounds the flush of one transaction's records.
	txnStepTimeout = 2 * time.Minute
	// txnAbortedHeader marks the records of the transactions the phase
	// aborts, so the consumers can tell them apart.
	txnAbortedHeader = "strata-load-aborted"
)

// txnResult is the outcome of the transactions phase.
type txnResult struct {
	partitions int
	recordSize int
	duration   time.Duration
	// nones are the non-transactional runs: before the first transactional
	// run and after each.
	nones    []txnRow
	rows     []txnRow     // one per transaction size
	consumes []txnReadRow // one per topic and isolation level
	err      error        // setup failure outside any row
}

// txnRow is one produce run of the phase.
type txnRow struct {
	size  int // records per transaction; 0 for the non-transactional run
	topic string
	// abort: every second transaction is aborted (the first, the third, …;
	// the run ends with a commit).
	abort   bool
	txns    int64 // committed transactions
	aborted int64 // aborted transactions
	records int64 // acknowledged records, committed and aborted
	bytes   int64 // their value bytes
	// abortedRecords is the acknowledged records of aborted transactions.
	abortedRecords int64
	elapsed        time.Duration
	// warmup is the records written before the clock started (one
	// transaction, or one record, that loads metadata and the producer id).
	warmup int64
	// parts is the sum over the transactions of the partitions each wrote.
	parts int64
	// noneRef is the mean records/s of the non-transactional runs just
	// before and after this one (0: none succeeded).
	noneRef float64
	// flush: BeginTransaction to the end of the flush of the records;
	// endTxn: EndTransaction(TryCommit) calls, after the flush;
	// abortTxn: EndTransaction(TryAbort) calls likewise.
	flush, endTxn, abortTxn latencySummary
	// Round trips on the wire (kgo's HookBrokerE2E) of the EndTxn,
	// AddPartitionsToTxn and Produce requests.
	endTxnRTT, addPartsRTT, produceRTT latencySummary
	// Requests sent and batches written while the clock ran.
	endTxnReqs, addPartsReqs, batches int64
	cpu                               string
	err                               error
}

// txnps returns transactions (committed and aborted) per second.
func (r txnRow) txnps() float64 { return rate(float64(r.txns+r.aborted), r.elapsed) }

// recps returns acknowledged records (committed and aborted) per second.
func (r txnRow) recps() float64 { return rate(float64(r.records), r.elapsed) }

// mbps returns acknowledged MB/s (10^6 bytes).
func (r txnRow) mbps() float64 { return rate(float64(r.bytes)/1e6, r.elapsed) }

// txnReadRow is one consume of a topic of the phase from offset 0.
type txnReadRow struct {
	topic     string
	size      int  // the topic's records per transaction, 0 non-transactional
	abort     bool // the topic's run aborted every second transaction
	committed bool
	want      int64 // data records the topic holds, visible at this isolation level
	// wantAborted is the records of aborted transactions among want.
	wantAborted int64
	st          txnConsumeStats
	cpu         string
	err         error
}

// isolation names the row's isolation level.
func (r txnReadRow) isolation() string {
	if r.committed {
		return "read_committed"
	}
	return "read_uncommitted"
}

// txnTopic names the topic of a transaction size (0: the non-transactional
// run) and mode.
func txnTopic(size int, abort bool) string {
	switch {
	case size == 0:
		return "txn-none"
	case abort:
		return fmt.Sprintf("txn-%d-abort", size)
	}
	return fmt.Sprintf("txn-%d", size)
}

// runTxn starts a broker and runs the phase on it.
func runTxn(ctx context.Context, cfg config, base string) (res txnResult) {
	res.partitions, res.recordSize, res.duration = cfg.partitions, cfg.recordSize, cfg.txnDuration
	dir := filepath.Join(base, "txn")
	b, err := startBrokerIn(ctx, cfg.strataBin, filepath.Join(dir, "data"), filepath.Join(dir, "broker.log"),
		strings.Fields(cfg.txnBrokerFlags))
	if err != nil {
		res.err = fmt.Errorf("start broker: %w", err)
		return res
	}
	defer func() {
		if err := b.Stop(); err != nil && res.err == nil {
			res.err = err
		}
		b.reportLog("txn")
	}()
	t := target{name: "strata", seeds: []string{b.addr}, alive: b.alive,
		cpu: func() (time.Duration, error) { return procCPU(b.Pid()) }}
	specs := make([]txnSpec, 0, len(cfg.txnSizes)+1)
	for _, n := range cfg.txnSizes {
		specs = append(specs, txnSpec{size: n})
	}
	if cfg.txnAbortSize > 0 {
		specs = append(specs, txnSpec{size: cfg.txnAbortSize, abort: true})
	}
	topics := []string{txnTopic(0, false)}
	for i := range specs {
		sp := &specs[i]
		sp.topic, sp.recordSize, sp.duration, sp.partitions = txnTopic(sp.size, sp.abort), cfg.recordSize,
			cfg.txnDuration, cfg.partitions
		sp.id = "strata-load-" + sp.topic
		topics = append(topics, sp.topic)
	}
	if err := createTopics(ctx, t.seeds, int32(cfg.partitions), topics...); err != nil {
		res.err = err
		return res
	}

	res.nones = append(res.nones, produceNone(ctx, cfg, t, topics[0]))
	for _, sp := range specs {
		if ctx.Err() != nil {
			return res
		}
		logf("txn: transactions of %d records for %v (every second one aborted: %v)", sp.size, cfg.txnDuration, sp.abort)
		cpu := startCPU(t)
		row, err := produceTxns(ctx, t.seeds, sp)
		row.cpu = cpu.String()
		if err != nil {
			row.err = withAlive(err, t)
		}
		res.rows = append(res.rows, row)
		if ctx.Err() != nil {
			return res
		}
		res.nones = append(res.nones, produceNone(ctx, cfg, t, topics[0]))
	}
	for i := range res.rows {
		res.rows[i].noneRef = meanRate(res.nones[i : i+2])
	}
	if !cfg.txnConsume {
		return res
	}
	// The none topic holds every none run: reading it back may take as
	// long as writing it did.
	readTimeout := 2*time.Duration(len(res.nones))*cfg.txnDuration + phaseGrace
	for _, row := range append([]txnRow{res.noneTotal()}, res.rows...) {
		for _, committed := range []bool{false, true} {
			if ctx.Err() != nil {
				return res
			}
			r := txnReadRow{topic: row.topic, size: row.size, abort: row.abort, committed: committed,
				want: row.records + row.warmup, wantAborted: row.abortedRecords}
			if committed {
				r.want, r.wantAborted = r.want-row.abortedRecords, 0
			}
			if row.err != nil {
				r.err = errors.New("skipped: the produce run failed")
				res.consumes = append(res.consumes, r)
				continue
			}
			logf("txn: consume %s, %s", r.topic, r.isolation())
			cpu := startCPU(t)
			r.st, err = consumeExactly(ctx, t.seeds, readTimeout, r.topic, r.want, committed)
			r.cpu = cpu.String()
			if err != nil {
				r.err = withAlive(err, t)
			} else if r.st.aborted != r.wantAborted {
				r.err = fmt.Errorf("%d records of aborted transactions among %d, want %d", r.st.aborted, r.st.records, r.wantAborted)
			}
			res.consumes = append(res.consumes, r)
		}
	}
	return res
}

// produceNone runs one non-transactional produce into topic and turns it
// into a row.
func produceNone(ctx context.Context, cfg config, t target, topic string) txnRow {
	logf("txn: non-transactional produce for %v", cfg.txnDuration)
	cpu := startCPU(t)
	hook := &txnHook{}
	st, err := produce(ctx, t.seeds, produceSpec{topic: topic, acks: acksAll, recordSize: cfg.recordSize,
		duration: cfg.txnDuration, hooks: []kgo.Hook{hook}, started: hook.reset})
	row := txnRow{topic: topic, records: st.records, bytes: st.bytes, elapsed: st.elapsed, warmup: 1,
		cpu: cpu.String(), produceRTT: summarize(hook.rtts(kmsg.Produce)), batches: hook.batches.Load()}
	if err != nil {
		row.err = withAlive(err, t)
	}
	return row
}

// meanRate returns the mean records/s of the runs that succeeded (0: none).
func meanRate(runs []txnRow) float64 {
	var sum float64
	var n int
	for _, r := range runs {
		if r.err == nil && r.records > 0 {
			sum += r.recps()
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// noneTotal sums the non-transactional runs, which share a topic: records,
// bytes, time, warm-up records, Produce requests and batches; its error is
// the first failed run's error.
func (t *txnResult) noneTotal() txnRow {
	total := txnRow{topic: txnTopic(0, false)}
	for _, r := range t.nones {
		total.records += r.records
		total.bytes += r.bytes
		total.elapsed += r.elapsed
		total.warmup += r.warmup
		total.batches += r.batches
		total.produceRTT.n += r.produceRTT.n
		if r.err != nil && total.err == nil {
			total.err = r.err
		}
	}
	return total
}

// txnSpec describes one transactional produce run.
type txnSpec struct {
	topic      string
	size       int // records per transaction
	recordSize int
	duration   time.Duration
	id         string // transactional.id
	partitions int    // of the topic
	// abort aborts every second transaction, starting with the first.
	abort bool
}

// txnHook counts the transactional requests and the produced batches of a
// client and keeps the round trips of its Produce, AddPartitionsToTxn and
// EndTxn requests. kgo calls it from its connection goroutines.
type txnHook struct {
	endTxn, addParts, batches atomic.Int64

	mu  sync.Mutex
	rtt map[kmsg.Key][]time.Duration
}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (h *txnHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	k := kmsg.Key(key)
	switch k {
	case kmsg.AddPartitionsToTxn:
		h.addParts.Add(1)
	case kmsg.EndTxn:
		h.endTxn.Add(1)
	case kmsg.Produce:
	default:
		return
	}
	if e2e.Err() != nil {
		return
	}
	h.mu.Lock()
	if h.rtt == nil {
		h.rtt = map[kmsg.Key][]time.Duration{}
	}
	h.rtt[k] = append(h.rtt[k], e2e.DurationE2E())
	h.mu.Unlock()
}

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (h *txnHook) OnProduceBatchWritten(kgo.BrokerMetadata, string, int32, kgo.ProduceBatchMetrics) {
	h.batches.Add(1)
}

// reset forgets what the hook saw so far (the warm-up).
func (h *txnHook) reset() {
	h.endTxn.Store(0)
	h.addParts.Store(0)
	h.batches.Store(0)
	h.mu.Lock()
	h.rtt = nil
	h.mu.Unlock()
}

// rtts returns the round trips of the requests of key k seen since the
// last reset.
func (h *txnHook) rtts(k kmsg.Key) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.rtt[k]...)
}

// txnProducer runs transactions of one size on one client.
type txnProducer struct {
	cl      *kgo.Client
	spec    txnSpec
	payload []byte
	c       *collector
	touched []atomic.Bool // partitions written by the current transaction
	// aborted is the header of the records of a transaction to abort.
	aborted []kgo.RecordHeader
}

// produceTxns runs transactions of spec.size records one after the other
// for spec.duration (the last one started before the deadline is
// finished, and with spec.abort the run ends with a committed one):
// BeginTransaction, Produce, Flush, EndTransaction. One warm-up transaction
// of one record (producer id, coordinator, metadata) precedes the clock. It
// stops at the first failure, aborting the open transaction.
func produceTxns(ctx context.Context, seeds []string, spec txnSpec) (txnRow, error) {
	row := txnRow{size: spec.size, topic: spec.topic, abort: spec.abort}
	hook := &txnHook{}
	opts := append(producerOpts(seeds, produceSpec{topic: spec.topic, acks: acksAll, hooks: []kgo.Hook{hook}}),
		kgo.TransactionalID(spec.id))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return row, fmt.Errorf("new transactional client: %w", err)
	}
	defer cl.Close()
	p := &txnProducer{cl: cl, spec: spec, payload: make([]byte, spec.recordSize), c: &collector{},
		touched: make([]atomic.Bool, spec.partitions),
		aborted: []kgo.RecordHeader{{Key: txnAbortedHeader, Value: []byte("1")}}}
	_, _ = rand.Read(p.payload) // incompressible, as in the other produce phases

	if _, _, _, err := p.one(ctx, 1, false); err != nil {
		return row, fmt.Errorf("warm-up transaction: %w", err)
	}
	row.warmup = 1
	p.c = &collector{}
	hook.reset()

	var flush, lat, abortLat []time.Duration
	start := time.Now()
	finish := func() {
		row.elapsed = time.Since(start)
		row.records, row.bytes = p.c.records.Load(), p.c.bytes.Load()
		row.flush, row.endTxn, row.abortTxn = summarize(flush), summarize(lat), summarize(abortLat)
		row.endTxnRTT = summarize(hook.rtts(kmsg.EndTxn))
		row.addPartsRTT = summarize(hook.rtts(kmsg.AddPartitionsToTxn))
		row.produceRTT = summarize(hook.rtts(kmsg.Produce))
		row.endTxnReqs, row.addPartsReqs, row.batches = hook.endTxn.Load(), hook.addParts.Load(), hook.batches.Load()
	}
	deadline := start.Add(spec.duration)
	for ctx.Err() == nil && (time.Now().Before(deadline) || spec.abort && row.txns < row.aborted) {
		abort := spec.abort && row.txns == row.aborted
		flushed, took, parts, err := p.one(ctx, spec.size, abort)
		if err != nil {
			finish()
			return row, fmt.Errorf("transaction %d: %w", row.txns+row.aborted+1, err)
		}
		row.parts += int64(parts)
		flush = append(flush, flushed)
		if abort {
			row.aborted++
			row.abortedRecords += int64(spec.size)
			abortLat = append(abortLat, took)
		} else {
			row.txns++
			lat = append(lat, took)
		}
	}
	finish()
	if want := (row.txns + row.aborted) * int64(spec.size); row.records != want {
		return row, fmt.Errorf("%d records acknowledged in %d transactions of %d", row.records, row.txns+row.aborted, spec.size)
	}
	return row, ctx.Err()
}

// one runs a transaction of n records, committed or, with abort, aborted
// after its records were flushed (so they are in the log), and returns the
// time from its BeginTransaction to the end of the flush, the time its
// EndTransaction took and the partitions it wrote. On a failure it aborts
// the transaction.
func (p *txnProducer) one(ctx context.Context, n int, abort bool) (flushed, took time.Duration, parts int, err error) {
	for i := range p.touched {
		p.touched[i].Store(false)
	}
	begin := time.Now()
	if err := p.cl.BeginTransaction(); err != nil {
		return 0, 0, 0, fmt.Errorf("begin: %w", err)
	}
	promise := func(r *kgo.Record, err error) {
		p.c.done(r, err)
		if err == nil && int(r.Partition) < len(p.touched) {
			p.touched[r.Partition].Store(true)
		}
	}
	var headers []kgo.RecordHeader
	if abort {
		headers = p.aborted
	}
	for range n {
		p.cl.Produce(ctx, &kgo.Record{Value: p.payload, Headers: headers}, promise)
	}
	fctx, cancel := context.WithTimeout(ctx, txnStepTimeout)
	err = p.cl.Flush(fctx)
	cancel()
	if err == nil {
		err = p.c.err()
	}
	if err != nil {
		return 0, 0, 0, p.abort(ctx, fmt.Errorf("flush: %w", err))
	}
	// The phase's context is not given a shorter deadline here: kgo
	// recommends not cancelling an EndTransaction in flight.
	start := time.Now()
	flushed = start.Sub(begin)
	end, what := kgo.TryCommit, "commit"
	if abort {
		end, what = kgo.TryAbort, "abort"
	}
	if err := p.cl.EndTransaction(ctx, end); err != nil {
		return 0, 0, 0, p.abort(ctx, fmt.Errorf("%s: %w", what, err))
	}
	took = time.Since(start)
	for i := range p.touched {
		if p.touched[i].Load() {
			parts++
		}
	}
	return flushed, took, parts, nil
}

// abort ends the open transaction with an abort, best effort, and returns
// cause joined with the abort's failure.
func (p *txnProducer) abort(ctx context.Context, cause error) error {
	actx, cancel := context.WithTimeout(ctx, txnStepTimeout)
	defer cancel()
	if err := p.cl.AbortBufferedRecords(actx); err != nil {
		return errors.Join(cause, fmt.Errorf("abort buffered records: %w", err))
	}
	if err := p.cl.EndTransaction(actx, kgo.TryAbort); err != nil {
		return errors.Join(cause, fmt.Errorf("abort: %w", err))
	}
	return cause
}

// txnConsumeStats is the outcome of a consume of the phase.
type txnConsumeStats struct {
	consumeStats
	aborted int64 // records carrying txnAbortedHeader
}

// consumeExactly reads topic from offset 0 with the given isolation level
// until it has seen want records, and fails if it sees more (the end
// offsets also count control records, so they cannot be the target), on a
// fetch error or after timeout. It counts the records marked as written by
// an aborted transaction.
func consumeExactly(ctx context.Context, seeds []string, timeout time.Duration, topic string, want int64, committed bool) (txnConsumeStats, error) {
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso),
	)
	if err != nil {
		return txnConsumeStats{}, fmt.Errorf("new consumer: %w", err)
	}
	defer cl.Close()
	var st txnConsumeStats
	start := time.Now()
	for st.records < want {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			st.elapsed = time.Since(start)
			return st, fmt.Errorf("consumed %d of %d records: %w", st.records, want, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("%s[%d]: %w", t, p, err))
		})
		if ferr != nil {
			st.elapsed = time.Since(start)
			return st, fmt.Errorf("fetch after %d of %d records: %w", st.records, want, ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			st.records++
			st.bytes += int64(len(r.Key) + len(r.Value))
			for _, h := range r.Headers {
				if h.Key == txnAbortedHeader {
					st.aborted++
				}
			}
		})
	}
	st.elapsed = time.Since(start)
	if st.records > want {
		return st, fmt.Errorf("consumed %d records, the topic should hold %d", st.records, want)
	}
	return st, nil
}

// errs returns the phase's failures.
func (t *txnResult) errs() []error {
	var errs []error
	if t.err != nil {
		errs = append(errs, fmt.Errorf("txn: %w", t.err))
	}
	for i, r := range t.nones {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("txn: non-transactional run %d: %w", i+1, r.err))
		}
	}
	for _, r := range t.rows {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("txn: %s: %w", r.topic, r.err))
		}
	}
	for _, r := range t.consumes {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("txn: consume %s %s: %w", r.topic, r.isolation(), r.err))
		}
	}
	return errs
}

// latCells renders a summary's p50 and p99, empty when there are no samples.
func latCells(s latencySummary) (string, string) {
	if s.n == 0 {
		return "", ""
	}
	return ms(s.p50), ms(s.p99)
}

// sizeCell names a run's transaction size in the report.
func sizeCell(size int, abort bool) string {
	switch {
	case size == 0:
		return "none"
	case abort:
		return fmt.Sprintf("%d, every 2nd aborted", size)
	}
	return fmt.Sprint(size)
}

// rttNote renders round trips as " (RTT p50 …, p99 …)", empty without
// samples.
func rttNote(s latencySummary) string {
	if s.n == 0 {
		return ""
	}
	return fmt.Sprintf(" (RTT p50 %s, p99 %s)", ms(s.p50), ms(s.p99))
}

// batchNote renders the batches a run wrote and their mean size.
func batchNote(r txnRow) string {
	if r.batches == 0 {
		return "0 batches"
	}
	return fmt.Sprintf("%d batches of %.0f records", r.batches, float64(r.records)/float64(r.batches))
}

// writeTxn renders the transactions phase.
func (r *report) writeTxn(b *strings.Builder) {
	t := r.txn
	if t == nil {
		return
	}
	b.WriteString("\n### Transactions\n\n")
	if t.err != nil {
		fmt.Fprintf(b, "FAILED: %s\n", cell(t.err.Error(), 300))
	}
	fmt.Fprintf(b, "One franz-go client per run, %d-byte random records, no compression, topics of %d partitions, "+
		"%v per run, kgo's default partitioner. **none**: idempotent acks=all produce at the maximum rate, once "+
		"before the first transactional run and once after each; the row sums them, and **vs none** compares a "+
		"transactional run with the mean records/s of the two none runs around it. "+
		"**N records/txn**: kgo `TransactionalID`, then BeginTransaction, N × Produce, Flush, "+
		"EndTransaction(TryCommit), one transaction after the other; the clock starts after one warm-up "+
		"transaction. **every 2nd aborted**: the same, but every second transaction ends with "+
		"EndTransaction(TryAbort) after its records were flushed (so they are in the log); transactions, "+
		"records/s and MB/s count both. **flush**: BeginTransaction to the end of the Flush (kgo sends "+
		"AddPartitionsToTxn before the first Produce to a partition); **EndTransaction**: the commit call, after "+
		"the flush (Strata answers EndTxn once the markers are durable); **EndTxn RTT**: the request's round trip "+
		"on the wire (kgo HookBrokerE2E; commits and aborts), as are the AddPartitionsToTxn and Produce RTTs in "+
		"the notes. Percentiles are nearest-rank over the run's transactions (n).\n\n",
		t.recordSize, t.partitions, t.duration)
	b.WriteString("| records/txn | transactions | txn/s | records/s | MB/s | vs none | partitions/txn | " +
		"flush p50 | EndTransaction p50 | p99 | EndTxn RTT p50 | p99 | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	if len(t.nones) > 0 {
		total := t.noneTotal()
		rates := make([]string, len(t.nones))
		for i, r := range t.nones {
			rates[i] = fmt.Sprintf("%.0f", r.recps())
		}
		note := fmt.Sprintf("%d runs: %s records/s; %d records in %.1f s; %d Produce requests, %s; first run: %s",
			len(t.nones), strings.Join(rates, ", "), total.records, total.elapsed.Seconds(), total.produceRTT.n,
			batchNote(total), t.nones[0].cpu)
		fmt.Fprintf(b, "| none | | | %.0f | %.1f | 100%% | | | | | | | %s |\n", total.recps(), total.mbps(),
			errOr(note, total.err))
	}
	for _, row := range t.rows {
		vs, parts, txns := "", "", fmt.Sprint(row.txns)
		if row.noneRef > 0 {
			vs = fmt.Sprintf("%.0f%% of %.0f", 100*row.recps()/row.noneRef, row.noneRef)
		}
		if n := row.txns + row.aborted; n > 0 {
			parts = fmt.Sprintf("%.1f", float64(row.parts)/float64(n))
		}
		if row.abort {
			txns = fmt.Sprintf("%d + %d aborted", row.txns, row.aborted)
		}
		f50, _ := latCells(row.flush)
		p50, p99 := latCells(row.endTxn)
		r50, r99 := latCells(row.endTxnRTT)
		note := fmt.Sprintf("n=%d; %d EndTxn, %d AddPartitionsToTxn%s, %d Produce requests%s, %s; %s", row.endTxn.n,
			row.endTxnReqs, row.addPartsReqs, rttNote(row.addPartsRTT), row.produceRTT.n, rttNote(row.produceRTT),
			batchNote(row), row.cpu)
		if row.abort {
			x50, x99 := latCells(row.abortTxn)
			note = fmt.Sprintf("EndTransaction(TryAbort) p50 %s, p99 %s (n=%d); ", x50, x99, row.abortTxn.n) + note
		}
		fmt.Fprintf(b, "| %s | %s | %.1f | %.0f | %.1f | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			sizeCell(row.size, row.abort), txns, row.txnps(), row.recps(), row.mbps(), vs, parts, f50, p50, p99, r50,
			r99, errOr(note, row.err))
	}
	if len(t.consumes) == 0 {
		return
	}
	b.WriteString("\nEach topic consumed from offset 0 by one kgo client until it has seen every record it should " +
		"(warm-up included; read_committed: none of the aborted transactions); control records are not counted. " +
		"Records of aborted transactions carry a header; read_committed must return none of them, " +
		"read_uncommitted all.\n\n")
	b.WriteString("| topic | records/txn | isolation | records | of aborted txns | records/s | MB/s | notes |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---|\n")
	for _, c := range t.consumes {
		fmt.Fprintf(b, "| %s | %s | %s | %d | %d | %.0f | %.1f | %s |\n", c.topic, sizeCell(c.size, c.abort),
			c.isolation(), c.st.records, c.st.aborted, c.st.recps(), c.st.mbps(),
			errOr(fmt.Sprintf("in %.2f s; %s", c.st.elapsed.Seconds(), c.cpu), c.err))
	}
}
