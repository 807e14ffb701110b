package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/broker"
)

func TestParseTxnStates(t *testing.T) {
	got, err := parseTxnStates([]string{"ongoing", "PrepareAbort", " completecommit", "Ongoing"})
	if err != nil || !slices.Equal(got, []string{"Ongoing", "PrepareAbort", "CompleteCommit"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := parseTxnStates([]string{"Running"}); err == nil || !strings.Contains(err.Error(), `--state "Running": want one of Empty, Ongoing`) {
		t.Fatalf("unknown state: %v", err)
	}
	if got, err := parseTxnStates(nil); err != nil || got != nil {
		t.Fatalf("no states: %v, %v", got, err)
	}
}

func TestTxnAbortOptionsValidate(t *testing.T) {
	start := func(o txnAbortOptions) txnAbortOptions {
		o.haveStart, o.startOffset = true, 10
		return o
	}
	explicit := func(o txnAbortOptions) txnAbortOptions {
		o.haveProducerID, o.haveProducerEpoch, o.haveCoordinatorEpoch = true, true, true
		o.producerID, o.producerEpoch, o.coordinatorEpoch = 1000, 2, 0
		return o
	}
	base := txnAbortOptions{topic: "events", partition: 0, havePartition: true, startOffset: -1, producerID: -1, producerEpoch: -1, coordinatorEpoch: -1}
	for i, tc := range []struct {
		o    txnAbortOptions
		want string // error substring, "" for none
	}{
		{start(base), ""},
		{explicit(base), ""},
		{base, "give either --start-offset"},
		{start(explicit(base)), "not both"},
		{func() txnAbortOptions { o := start(base); o.topic = ""; return o }(), "--topic is required"},
		{func() txnAbortOptions { o := start(base); o.havePartition = false; return o }(), "--partition is required"},
		{func() txnAbortOptions { o := start(base); o.partition = -2; return o }(), "--partition -2"},
		{func() txnAbortOptions { o := start(base); o.startOffset = -1; return o }(), "--start-offset -1"},
		{func() txnAbortOptions { o := explicit(base); o.haveCoordinatorEpoch = false; return o }(), "give all three"},
		{func() txnAbortOptions { o := base; o.haveProducerID, o.producerID = true, 5; return o }(), "give all three"},
		{func() txnAbortOptions { o := explicit(base); o.producerID = -1; return o }(), "--producer-id -1"},
		{func() txnAbortOptions { o := explicit(base); o.producerEpoch = -1; return o }(), "--producer-epoch -1"},
		{func() txnAbortOptions { o := explicit(base); o.coordinatorEpoch = -1; return o }(), "--coordinator-epoch -1"},
	} {
		err := tc.o.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%d: %v", i, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%d: got %v, want an error with %q", i, err, tc.want)
		}
	}
}

func TestClassifyProducer(t *testing.T) {
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	for _, tc := range []struct {
		name      string
		start, ts int64
		stable    int64
		after     time.Duration
		want      txnNote
		text      string
	}{
		{"no txn", -1, ago(time.Hour), 5, 15 * time.Minute, txnNote{Idle: time.Hour}, "-"},
		{"open behind another", 7, ago(time.Hour), 5, 15 * time.Minute, txnNote{Open: true, Hanging: true, Idle: time.Hour}, "HANGING (idle 1h0m0s)"},
		{"open, recent", 7, ago(time.Minute), 5, 15 * time.Minute, txnNote{Open: true, Idle: time.Minute}, "open"},
		{"holds the LSO, recent", 5, ago(time.Minute), 5, 15 * time.Minute, txnNote{Open: true, HoldsLSO: true, Idle: time.Minute}, "holds LSO"},
		{"holds the LSO, idle", 5, ago(20 * time.Minute), 5, 15 * time.Minute, txnNote{Open: true, HoldsLSO: true, Hanging: true, Idle: 20 * time.Minute}, "holds LSO, HANGING (idle 20m0s)"},
		{"exactly the threshold", 5, ago(15 * time.Minute), 5, 15 * time.Minute, txnNote{Open: true, HoldsLSO: true, Hanging: true, Idle: 15 * time.Minute}, "holds LSO, HANGING (idle 15m0s)"},
		{"unknown timestamp", 5, -1, 5, 15 * time.Minute, txnNote{Open: true, HoldsLSO: true, Idle: -1}, "holds LSO"},
		{"threshold 0", 5, -1, 5, 0, txnNote{Open: true, HoldsLSO: true, Hanging: true, Idle: -1}, "holds LSO, HANGING"},
		{"future timestamp", 5, now.Add(time.Minute).UnixMilli(), 5, 0, txnNote{Open: true, HoldsLSO: true, Hanging: true}, "holds LSO, HANGING (idle 0s)"},
		{"unknown LSO", 5, ago(time.Minute), -1, 15 * time.Minute, txnNote{Open: true, Idle: time.Minute}, "open"},
	} {
		p := kadm.DescribedProducer{ProducerID: 1, CurrentTxnStartOffset: tc.start, LastTimestamp: tc.ts}
		got := classifyProducer(p, tc.stable, now, tc.after)
		if got != tc.want || got.String() != tc.text {
			t.Errorf("%s: got %+v %q, want %+v %q", tc.name, got, got, tc.want, tc.text)
		}
	}
}

func TestFindAbortTarget(t *testing.T) {
	ps := []kadm.DescribedProducer{
		{ProducerID: 10, ProducerEpoch: 1, CoordinatorEpoch: 3, CurrentTxnStartOffset: -1},
		{ProducerID: 11, ProducerEpoch: 2, CoordinatorEpoch: -1, CurrentTxnStartOffset: 40},
		{ProducerID: 12, ProducerEpoch: 5, CoordinatorEpoch: 4, CurrentTxnStartOffset: 17},
	}
	if got, err := findAbortTarget(ps, 17); err != nil || got != (abortTarget{ProducerID: 12, ProducerEpoch: 5, CoordinatorEpoch: 4}) {
		t.Errorf("start 17: %+v, %v", got, err)
	}
	// No marker yet: coordinator epoch 0, as Kafka's tool sends.
	if got, err := findAbortTarget(ps, 40); err != nil || got != (abortTarget{ProducerID: 11, ProducerEpoch: 2, CoordinatorEpoch: 0}) {
		t.Errorf("start 40: %+v, %v", got, err)
	}
	if _, err := findAbortTarget(ps, 18); err == nil || !strings.Contains(err.Error(), "no open transaction starts at offset 18; open transactions start at 40 (producer 11), 17 (producer 12)") {
		t.Errorf("start 18: %v", err)
	}
	if _, err := findAbortTarget(ps[:1], 18); err == nil || !strings.Contains(err.Error(), "the partition has no open transaction") {
		t.Errorf("no open transaction: %v", err)
	}
}

// startTxnBroker runs an in-process broker whose transaction state and
// offsets topics have one partition.
func startTxnBroker(t *testing.T) string {
	t.Helper()
	return startCLIBroker(t, func(c *broker.Config) { c.TxnTopicPartitions, c.OffsetsTopicPartitions = 1, 1 })
}

// runTxn runs `strata txn args…` and returns stdout and the error.
func runTxn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCommand(t, txnCmd(), args...)
}

// txnFixture is a broker with a topic "events" of one partition, and
// clients of it.
type txnFixture struct {
	t    *testing.T
	ctx  context.Context
	addr string
	adm  *kadm.Client
}

func newTxnFixture(t *testing.T) *txnFixture {
	t.Helper()
	addr := startTxnBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	fx := &txnFixture{t: t, ctx: ctx, addr: addr}
	fx.adm = kadm.NewClient(fx.client())
	if _, err := fx.adm.CreateTopic(ctx, 1, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	return fx
}

// client is a client of the broker producing to events, closed at the
// end of the test (closing twice is harmless).
func (fx *txnFixture) client(opts ...kgo.Opt) *kgo.Client {
	fx.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(fx.addr), kgo.DefaultProduceTopic("events")}, opts...)...)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(cl.Close)
	return cl
}

// txnClient is a transactional client whose transactions time out only
// after 5 minutes, so that the coordinator does not abort them during the
// test.
func (fx *txnFixture) txnClient(id string) *kgo.Client {
	return fx.client(kgo.TransactionalID(id), kgo.TransactionTimeout(5*time.Minute))
}

func (fx *txnFixture) produce(cl *kgo.Client, values ...string) {
	fx.t.Helper()
	for _, v := range values {
		if err := cl.ProduceSync(fx.ctx, kgo.StringRecord(v)).FirstErr(); err != nil {
			fx.t.Fatalf("produce %s: %v", v, err)
		}
	}
}

// offsets returns the last stable offset and high watermark of events-0.
func (fx *txnFixture) offsets() (lso, hw int64) {
	fx.t.Helper()
	stable, err := fx.adm.ListCommittedOffsets(fx.ctx, "events")
	if err != nil {
		fx.t.Fatal(err)
	}
	ends, err := fx.adm.ListEndOffsets(fx.ctx, "events")
	if err != nil {
		fx.t.Fatal(err)
	}
	s, _ := stable.Lookup("events", 0)
	e, _ := ends.Lookup("events", 0)
	if s.Err != nil || e.Err != nil {
		fx.t.Fatalf("list offsets: %v, %v", s.Err, e.Err)
	}
	return s.Offset, e.Offset
}

// readCommitted consumes events from the start with read_committed until
// it has want records (or fails after a minute) and returns their values.
func (fx *txnFixture) readCommitted(want int) []string {
	fx.t.Helper()
	cl := fx.client(kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(fx.ctx, time.Minute)
	defer cancel()
	var got []string
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			fx.t.Fatalf("read_committed: %d records of %d after a minute: %v", len(got), want, got)
		}
		fs.EachError(func(_ string, _ int32, err error) { fx.t.Fatalf("read_committed: %v", err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// describedProducer returns the state events-0's leader keeps for pid.
func (fx *txnFixture) describedProducer(pid int64) kadm.DescribedProducer {
	fx.t.Helper()
	ds, err := fx.adm.DescribeProducers(fx.ctx, kadm.TopicsSet{"events": {0: {}}})
	if err != nil {
		fx.t.Fatal(err)
	}
	p, ok := ds["events"].Partitions[0].ActiveProducers[pid]
	if !ok {
		fx.t.Fatalf("no producer %d on events-0: %+v", pid, ds)
	}
	return p
}

func (fx *txnFixture) producerID(txnID string) (int64, int16) {
	fx.t.Helper()
	ds, err := fx.adm.DescribeTransactions(fx.ctx, txnID)
	if err != nil {
		fx.t.Fatal(err)
	}
	d, err := ds.On(txnID, nil)
	if err != nil || d.Err != nil {
		fx.t.Fatalf("describe %s: %v %v", txnID, err, d.Err)
	}
	return d.ProducerID, d.ProducerEpoch
}

func mustMatch(t *testing.T, what, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("%s: no %s in\n%s", what, re, out)
		}
	}
}

func mustNotMatch(t *testing.T, what, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if regexp.MustCompile(re).MatchString(out) {
			t.Errorf("%s: unexpected %s in\n%s", what, re, out)
		}
	}
}

// TestTxnListDescribeProducers: ls, describe and producers show a
// committed and an open transaction; the open one holds the last stable
// offset at its first offset.
func TestTxnListDescribeProducers(t *testing.T) {
	fx := newTxnFixture(t)
	// events-0: c1 c2 (committed) 0-1, commit marker 2, "open" 3, plain 4.
	committed := fx.txnClient("billing-committed")
	if err := committed.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	fx.produce(committed, "c1", "c2")
	if err := committed.EndTransaction(fx.ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	open := fx.txnClient("billing-open")
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	fx.produce(open, "open")
	fx.produce(fx.client(), "plain")
	pidC, _ := fx.producerID("billing-committed")
	pidO, _ := fx.producerID("billing-open")
	if lso, hw := fx.offsets(); lso != 3 || hw != 5 {
		t.Fatalf("LSO %d, high watermark %d; want 3 and 5", lso, hw)
	}
	a := "--bootstrap=" + fx.addr

	out, err := runTxn(t, "ls", a)
	if err != nil {
		t.Fatal(err)
	}
	rowC := fmt.Sprintf(`(?m)^billing-committed\s+0\s+%d\s+CompleteCommit$`, pidC)
	rowO := fmt.Sprintf(`(?m)^billing-open\s+0\s+%d\s+Ongoing$`, pidO)
	mustMatch(t, "ls", out, `(?m)^TRANSACTIONAL-ID\s+COORDINATOR\s+PRODUCER-ID\s+STATE$`, rowC, rowO)
	out, err = runTxn(t, "ls", "--state", "ongoing", a)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "ls --state ongoing", out, rowO)
	mustNotMatch(t, "ls --state ongoing", out, `billing-committed`)
	out, err = runTxn(t, "ls", "--producer-id", fmt.Sprint(pidC), a)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "ls --producer-id", out, rowC)
	mustNotMatch(t, "ls --producer-id", out, `billing-open`)

	out, err = runTxn(t, "describe", "billing-open", "billing-committed", a)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "describe", out,
		fmt.Sprintf(`(?m)^billing-open\s+0\s+Ongoing\s+%d\s+0\s+5m0s\s+\d{4}-\d\d-\d\dT\S+Z\s+\d\S*s\s+events-0$`, pidO),
		fmt.Sprintf(`(?m)^billing-committed\s+0\s+CompleteCommit\s+%d\s+0\s+5m0s\s+\S+\s+-\s+-$`, pidC))
	if i, j := strings.Index(out, "billing-open"), strings.Index(out, "billing-committed"); i < 0 || j < i {
		t.Errorf("describe: rows not in the order asked:\n%s", out)
	}
	// An unknown id fails the command after the known ones are shown.
	out, err = runTxn(t, "describe", "billing-open", "nobody", a)
	if err == nil || !strings.Contains(err.Error(), `unknown transactional id "nobody"`) {
		t.Errorf("describe nobody: %v", err)
	}
	mustMatch(t, "describe billing-open nobody", out, `(?m)^billing-open\s+0\s+Ongoing\s`)

	// The open transaction holds the LSO; with the default threshold it
	// is not flagged as hanging (it wrote a moment ago).
	out, err = runTxn(t, "producers", "events", a)
	if err != nil {
		t.Fatal(err)
	}
	rowOpen := fmt.Sprintf(`(?m)^0\s+%d\s+0\s+0\s+\d{4}-\S+Z\s+-?\d+\s+3\s+billing-open\s+holds LSO`, pidO)
	mustMatch(t, "producers", out,
		`(?m)^PARTITION\s+LEADER\s+HIGH-WATERMARK\s+LAST-STABLE-OFFSET\s+PRODUCERS\s+OPEN-TXNS$`,
		`(?m)^0\s+0\s+5\s+3\s+3\s+1$`, // the plain client is idempotent: a third producer
		rowOpen+`$`,
		fmt.Sprintf(`(?m)^0\s+%d\s+0\s+1\s+\S+\s+\d+\s+-\s+-\s+-$`, pidC))
	mustNotMatch(t, "producers", out, `HANGING`, `strata txn abort`)
	out, err = runTxn(t, "producers", "events", "--partition", "0", "--hanging-after", "0s", a)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "producers --hanging-after 0s", out, rowOpen+`, HANGING \(idle \S+\)$`,
		fmt.Sprintf(`(?m)^  strata txn abort --topic events --partition 0 --start-offset 3   # producer %d, transactional id billing-open \(Ongoing at its coordinator\)$`, pidO))

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"producers", "nope", a}, `unknown topic "nope"`},
		{[]string{"producers", "events", "--partition", "7", a}, `topic "events" has no partition 7`},
		{[]string{"ls", "--state", "Running", a}, `--state "Running"`},
		{[]string{"describe", a}, "requires at least 1 arg"},
		{[]string{"ls", "--bootstrap", "127.0.0.1:1", "--timeout", "5s"}, "cannot reach a broker at 127.0.0.1:1"},
	} {
		if _, err := runTxn(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestTxnAbortHanging: a transactional producer that produced and went
// away holds the last stable offset back; `txn abort --start-offset`
// refuses offsets where no transaction starts, aborts it at its start
// offset, and read_committed consumers then get the records after it.
// The explicit form refuses a stale producer epoch and aborts with the
// right one.
func TestTxnAbortHanging(t *testing.T) {
	fx := newTxnFixture(t)
	a := "--bootstrap=" + fx.addr
	plain := fx.client()
	fx.produce(plain, "p0")
	gone := fx.txnClient("hung")
	if err := gone.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	fx.produce(gone, "aborted-1") // offset 1
	gone.Close()                  // without ending the transaction
	fx.produce(plain, "p2")       // offset 2
	pid, epoch := fx.producerID("hung")
	if lso, hw := fx.offsets(); lso != 1 || hw != 3 {
		t.Fatalf("LSO %d, high watermark %d; want 1 and 3", lso, hw)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"abort", "--topic", "events", "--partition", "0", "--start-offset", "2", a},
			fmt.Sprintf("abort on events-0: no open transaction starts at offset 2; open transactions start at 1 (producer %d)", pid)},
		{[]string{"abort", "--topic", "events", "--partition", "0", a}, "give either --start-offset"},
		{[]string{"abort", "--topic", "events", "--start-offset", "1", a}, "--partition is required"},
		{[]string{"abort", "--topic", "events", "--partition", "0", "--producer-id", fmt.Sprint(pid), a}, "give all three"},
		{[]string{"abort", "--topic", "nope", "--partition", "0", "--start-offset", "1", a}, `unknown topic "nope"`},
		{[]string{"abort", "--topic", "events", "--partition", "3", "--start-offset", "1", a}, `topic "events" has no partition 3`},
	} {
		if _, err := runTxn(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	if lso, _ := fx.offsets(); lso != 1 {
		t.Fatalf("a refused abort moved the LSO to %d", lso)
	}

	out, err := runTxn(t, "abort", "--topic", "events", "--partition", "0", "--start-offset", "1", a)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "abort", out,
		fmt.Sprintf(`(?m)^aborted the transaction of producer %d \(epoch %d, coordinator epoch 0\) on events-0: abort marker written by broker 0$`, pid, epoch),
		`(?m)^last stable offset 1 -> 4, high watermark 4$`)
	if lso, hw := fx.offsets(); lso != 4 || hw != 4 {
		t.Fatalf("after the abort: LSO %d, high watermark %d; want 4 and 4", lso, hw)
	}
	fx.produce(plain, "p4")
	if got := fx.readCommitted(3); !slices.Equal(got, []string{"p0", "p2", "p4"}) {
		t.Fatalf("read_committed after the abort: %v", got)
	}
	if p := fx.describedProducer(pid); p.CurrentTxnStartOffset != -1 {
		t.Fatalf("after the abort the producer still has a transaction open at %d", p.CurrentTxnStartOffset)
	}

	// The application comes back: a new producer of the same transactional
	// id (the coordinator fences the old epoch, aborting the transaction
	// it still thought open) opens a transaction and goes away again.
	again := fx.txnClient("hung")
	if err := again.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	fx.produce(again, "aborted-2")
	again.Close()
	fx.produce(plain, "p-last")
	p := fx.describedProducer(pid)
	if p.CurrentTxnStartOffset < 0 || p.ProducerEpoch <= epoch {
		t.Fatalf("the second transaction: %+v (first epoch %d)", p, epoch)
	}
	if lso, _ := fx.offsets(); lso != p.CurrentTxnStartOffset {
		t.Fatalf("LSO %d, want the second transaction's start %d", lso, p.CurrentTxnStartOffset)
	}
	explicit := func(epoch int16) []string {
		return []string{"abort", "--topic", "events", "--partition", "0", "--producer-id", fmt.Sprint(pid),
			"--producer-epoch", fmt.Sprint(epoch), "--coordinator-epoch", fmt.Sprint(max(p.CoordinatorEpoch, 0)), a}
	}
	if _, err := runTxn(t, explicit(epoch)...); err == nil || !strings.Contains(err.Error(), "INVALID_PRODUCER_EPOCH") ||
		!strings.Contains(err.Error(), fmt.Sprintf("producer epoch %d is older", epoch)) {
		t.Fatalf("abort with the stale epoch %d: %v", epoch, err)
	}
	out, err = runTxn(t, explicit(p.ProducerEpoch)...)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "explicit abort", out, fmt.Sprintf(`(?m)^aborted the transaction of producer %d \(epoch %d,`, pid, p.ProducerEpoch))
	lso, hw := fx.offsets()
	if lso != hw {
		t.Fatalf("after the explicit abort: LSO %d, high watermark %d", lso, hw)
	}
	if got := fx.readCommitted(4); !slices.Equal(got, []string{"p0", "p2", "p4", "p-last"}) {
		t.Fatalf("read_committed after the explicit abort: %v", got)
	}
	out, err = runTxn(t, "producers", "events", "--hanging-after", "0s", a)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "producers after the aborts", out, fmt.Sprintf(`(?m)^0\s+0\s+%d\s+%d\s+2\s+0$`, hw, lso))
	mustNotMatch(t, "producers after the aborts", out, `holds LSO`, `HANGING`)
}
