package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Names used by TestClusterTransactions (its helpers share the ct prefix).
const (
	ctDataTopic  = "txn-data" // the transactions' records, 3 partitions
	ctOpenTopic  = "txn-open" // the abandoned transaction's partition
	ctMainID     = "ct-main"  // the producer committing and aborting
	ctGroup      = "ct-group" // its transactional offset commits
	ctPartitions = 3
	ctPerPart    = 2 // records per partition per transaction
)

// TestClusterTransactions: three brokers on one quorum, __transaction_state
// and the data topic replicated three times (min.insync.replicas 2). A
// transactional producer commits and aborts transactions of known content
// over every data partition, each with a transactional offset commit
// (AddOffsetsToTxn, TxnOffsetCommit), while the test SIGKILLs and restarts
// (a) the broker coordinating its transactional id, with one of its
// transactions held open (written, not yet committed): the new coordinator
// describes it as Ongoing over its partitions and commits it, and the
// producer's own commit after that is answered as a retry; and (b) the
// leader of a data partition, with a transaction written to it whose commit
// the producer gives up on after 200 ms (the marker waits for a new
// leader), then aborts. A second transaction, left open on the coordinator
// that is killed, is aborted by the new coordinator when it times out (its
// LSO moves on). At the end a read_committed consumer finds every
// transaction the producer saw committed exactly once, no record of one it
// aborted, one whose commit failed either whole or absent, and the group's
// committed offset is the one of the last transaction in the log; the
// producer id never changed.
func TestClusterTransactions(t *testing.T) {
	// Few transaction-state partitions: three brokers start faster.
	c := newCluster(t, 3, "--transaction-topic-partitions", "5")
	t.Cleanup(func() {
		// STRATA_TEST_LOG: the brokers' whole logs, also when it passes.
		switch {
		case os.Getenv("STRATA_TEST_LOG") != "":
			for i, p := range c.procs {
				t.Logf("broker %d log:\n%s", i, p.logs())
			}
		case t.Failed():
			for i, p := range c.procs {
				t.Logf("broker %d log tail:\n%s", i, tail(p.logs(), 60))
			}
		}
	})
	ctx := ctxT(t, 3*time.Minute)
	seeds := c.seeds()
	adm := kadm.NewClient(newClient(t, seeds[0], kgo.SeedBrokers(seeds...)))
	mir := map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}
	for topic, n := range map[string]int32{ctDataTopic: ctPartitions, ctOpenTopic: 1} {
		resp, err := adm.CreateTopic(ctx, n, 3, mir, topic)
		if err != nil || resp.Err != nil {
			t.Fatalf("create topic %s: %v %v", topic, err, resp.Err)
		}
	}
	// The first transactional FindCoordinator creates __transaction_state.
	coord := ctWaitCoordinator(ctx, t, adm, ctMainID, -1)
	openID := ctTxnIDOn(ctx, t, adm, coord)
	t.Logf("%s and %s are coordinated by broker %d", ctMainID, openID, coord)

	w := newCTWorkload(t, seeds)
	go w.run(ctx)
	t.Cleanup(w.finish)
	w.waitCommits(t, "first commits", 20, time.Time{}, 30*time.Second)
	before := ctDescribe(ctx, t, seeds, ctMainID)
	if before.Coordinator != coord || before.ProducerID < 0 {
		t.Fatalf("before the kill: %s described as %+v, want coordinator %d", ctMainID, before, coord)
	}

	// (a) The coordinator dies with a transaction of each id open.
	open := ctOpenAbandoned(ctx, t, seeds, openID)
	heldA, release := w.hold(t)
	killedAt := time.Now()
	c.procs[coord].kill()
	newCoord := ctWaitCoordinator(ctx, t, adm, ctMainID, coord)
	ctCheckMoved(t, heldA, ctDescribe(ctx, t, seeds, ctMainID), newCoord)
	// The test commits it at the new coordinator (the producer's client
	// may give up on a coordinator that died under it); the producer's own
	// EndTxn(commit) that follows is a retry, answered with success.
	if err := ctEndTxn(ctx, t, seeds, ctMainID, heldA.pid, heldA.epoch, true); err != nil {
		t.Fatalf("commit transaction %d at the new coordinator: %v", heldA.idx, err)
	}
	release()
	w.waitCommits(t, "commits after killing the coordinator", 10, killedAt, 60*time.Second)
	w.checkRetriedCommit(t, heldA.idx)
	t.Logf("(a) SIGKILLed coordinator %d; broker %d took over; first commit after the kill within %v",
		coord, newCoord, w.firstCommitAfter(killedAt).Sub(killedAt).Round(time.Millisecond))
	open.checkTimedOut(ctx, t, adm, seeds, coord)
	c.restart(int(coord))
	ctWaitInSync(ctx, t, adm)

	// (b) The leader of a data partition dies before a transaction that
	// wrote to it commits (its marker goes to the new leader).
	part, leader := ctDataLeader(ctx, t, adm, newCoord)
	// Its commit is given too little time to finish (the marker waits for
	// a new leader): the producer sees it fail and aborts, which bumps its
	// epoch at the coordinator once the commit has completed.
	heldB, release := w.holdCommitWithin(t, 200*time.Millisecond)
	killedAt = time.Now()
	c.procs[leader].kill()
	release()
	ctWaitLeaderMoved(ctx, t, adm, part, leader)
	w.waitCommits(t, "commits after killing a data partition leader", 10, killedAt, 60*time.Second)
	t.Logf("(b) SIGKILLed broker %d leading %s-%d; first commit after the kill within %v",
		leader, ctDataTopic, part, w.firstCommitAfter(killedAt).Sub(killedAt).Round(time.Millisecond))
	c.restart(int(leader))
	ctWaitInSync(ctx, t, adm)
	w.waitCommits(t, "commits with every broker back", 5, time.Now(), 30*time.Second)
	w.finish()

	runs, pid := w.result()
	inLog := ctCheckLog(ctx, t, adm, seeds, runs)
	if !inLog[heldA.idx] {
		t.Errorf("transaction %d, committed at the new coordinator, is not in the log", heldA.idx)
	}
	outcomeB := ctAborted // (it ended: the producer finished every transaction it began)
	if i := slices.IndexFunc(runs, func(r ctRun) bool { return r.idx == heldB.idx }); i >= 0 {
		outcomeB = runs[i].outcome
	}
	t.Logf("transaction %d, whose commit timed out while the leader of a partition in it was down: %v, in the log: %v",
		heldB.idx, outcomeB, inLog[heldB.idx])
	final := ctDescribe(ctx, t, seeds, ctMainID)
	if final.ProducerID != pid || (final.State != "CompleteCommit" && final.State != "CompleteAbort") {
		t.Errorf("at the end %s is described as %+v; want producer id %d in CompleteCommit or CompleteAbort", ctMainID, final, pid)
	}
	// The abort after an unconfirmed commit re-initializes the producer id
	// with its id and epoch (KIP-360), which bumps the epoch.
	if outcomeB == ctUncertain && final.ProducerEpoch <= heldB.epoch {
		t.Errorf("epoch of %s still %d after an abort that re-initialized it", ctMainID, final.ProducerEpoch)
	}
	t.Logf("at the end %s is %s at broker %d, producer %d epoch %d", ctMainID, final.State, final.Coordinator, final.ProducerID, final.ProducerEpoch)
	if pid != before.ProducerID {
		t.Errorf("the producer id of %s changed from %d to %d across the failovers (Kafka keeps it and bumps the epoch)",
			ctMainID, before.ProducerID, pid)
	}
}

// ctOutcome is what the producer knows of how a transaction ended.
type ctOutcome int

const (
	ctCommitted ctOutcome = iota // EndTxn(commit) succeeded
	ctAborted                    // never asked to commit, or the commit was not attempted
	ctUncertain                  // the commit failed after it was sent: either outcome, but whole
)

func (o ctOutcome) String() string {
	return [...]string{"committed", "aborted", "uncertain"}[o]
}

// ctRun is one transaction of the workload: its records ("<idx>/<p>/<j>"
// in partition p) and the group offset it commits (idx+1).
type ctRun struct {
	idx     int
	values  []string
	outcome ctOutcome
	err     error // of the commit, if it failed
	ended   time.Time
}

// ctWorkload is the transactional producer of TestClusterTransactions:
// transaction i writes ctPerPart records to each data partition and
// commits offset i+1 for ctGroup; every fourth one is aborted on purpose.
type ctWorkload struct {
	t     *testing.T
	seeds []string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	holds chan ctHoldReq // hold asks the producer to stop before a commit

	mu   sync.Mutex
	runs []ctRun
	errs map[string]int // stage: error → count
	pid  int64          // the producer id of the last committed transaction
}

func newCTWorkload(t *testing.T, seeds []string) *ctWorkload {
	return &ctWorkload{t: t, seeds: seeds, stop: make(chan struct{}), done: make(chan struct{}),
		holds: make(chan ctHoldReq), errs: map[string]int{}}
}

// ctHoldReq stops the producer before the commit of its next transaction
// that is to commit: it sends the transaction on held and waits for release
// (or stop).
type ctHoldReq struct {
	held    chan ctHeld
	release chan struct{}
	within  time.Duration // the commit's deadline, if not 0
}

// ctHeld is a transaction the producer holds open: its index and the
// producer id and epoch it was written with.
type ctHeld struct {
	idx   int
	pid   int64
	epoch int16
}

// hold waits until the producer holds a transaction open, written (records
// and offsets) and about to commit, and returns it and the function that
// lets it commit.
func (w *ctWorkload) hold(t *testing.T) (ctHeld, func()) {
	t.Helper()
	return w.holdCommitWithin(t, 0)
}

// holdCommitWithin is hold, with a deadline for the commit when released.
func (w *ctWorkload) holdCommitWithin(t *testing.T, within time.Duration) (ctHeld, func()) {
	t.Helper()
	h := ctHoldReq{held: make(chan ctHeld, 1), release: make(chan struct{}), within: within}
	select {
	case w.holds <- h:
	case <-w.done:
		t.Fatalf("the producer stopped (errors %v)", w.errors())
	case <-time.After(30 * time.Second):
		t.Fatalf("the producer did not reach a commit within 30s (errors %v)", w.errors())
	}
	return <-h.held, func() { close(h.release) }
}

// checkRetriedCommit: the producer's commit of transaction idx, which the
// test had committed already, succeeded, or failed in the client (a
// transport error: the client may give up on a coordinator that died) but
// not with an error from a broker (Kafka answers a retried commit of a
// committed transaction with success).
func (w *ctWorkload) checkRetriedCommit(t *testing.T, idx int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.runs {
		if r.idx != idx {
			continue
		}
		var ke *kerr.Error
		switch {
		case r.outcome == ctCommitted:
		case errors.As(r.err, &ke):
			t.Errorf("transaction %d, committed at the new coordinator: the producer's commit got %v", idx, r.err)
		default:
			t.Logf("transaction %d, committed at the new coordinator: the producer's client failed its commit: %v", idx, r.err)
		}
		return
	}
	t.Fatalf("transaction %d never ended", idx)
}

// ctEndTxn sends EndTxn for txnID's transaction to its coordinator and
// returns the answer, retrying retriable errors for up to 30 s (each try
// with a new client: see ctDescribe).
func ctEndTxn(ctx context.Context, t *testing.T, seeds []string, txnID string, pid int64, epoch int16, commit bool) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrEndTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = txnID, pid, epoch, commit
		resp, err := req.RequestWith(ctx, cl)
		cl.Close()
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		var ke *kerr.Error
		if err == nil || (errors.As(err, &ke) && !ke.Retriable && !errors.Is(err, kerr.ConcurrentTransactions)) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("EndTxn(commit %v) of %s (producer %d, epoch %d) retried for 30s: %w", commit, txnID, pid, epoch, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *ctWorkload) newClient() (*kgo.Client, error) {
	return kgo.NewClient(kgo.SeedBrokers(w.seeds...), kgo.TransactionalID(ctMainID),
		kgo.TransactionTimeout(15*time.Second), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProduceRequestTimeout(10*time.Second), kgo.RetryTimeout(20*time.Second))
}

// run produces transactions until stop is closed; each transaction it
// starts ends (or is given up on) before it looks at stop again.
func (w *ctWorkload) run(ctx context.Context) {
	defer close(w.done)
	cl, err := w.newClient()
	if err != nil {
		w.note("client", err)
		return
	}
	defer func() { cl.Close() }()
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		if err := cl.BeginTransaction(); err != nil {
			// A fatal producer state: a new instance fences the old one.
			w.note("begin", err)
			cl.Close()
			if cl, err = w.newClient(); err != nil {
				w.note("client", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		run := ctRun{idx: i}
		run.outcome, run.err = w.oneTxn(ctx, cl, i, i%4 != 3)
		for p := range ctPartitions {
			for j := range ctPerPart {
				run.values = append(run.values, fmt.Sprintf("%d/%d/%d", i, p, j))
			}
		}
		run.ended = time.Now()
		w.mu.Lock()
		w.runs = append(w.runs, run)
		w.mu.Unlock()
		if run.outcome == ctCommitted {
			// (Asked only while the producer id is sound: asking a
			// failed one would reload it.)
			if pid, _, err := cl.ProducerID(ctx); err == nil {
				w.mu.Lock()
				w.pid = pid
				w.mu.Unlock()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// oneTxn writes and ends transaction i (begun) and says how it ended, with
// the commit's error if it failed.
func (w *ctWorkload) oneTxn(ctx context.Context, cl *kgo.Client, i int, commit bool) (ctOutcome, error) {
	var rs []*kgo.Record
	for p := range ctPartitions {
		for j := range ctPerPart {
			rs = append(rs, &kgo.Record{Topic: ctDataTopic, Partition: int32(p), Value: fmt.Appendf(nil, "%d/%d/%d", i, p, j)})
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := cl.ProduceSync(pctx, rs...).FirstErr()
	if err != nil {
		w.note("produce", err)
	} else if err = ctCommitOffset(pctx, cl, ctGroup, int64(i+1)); err != nil {
		w.note("txn offset commit", err)
	}
	if err == nil && commit {
		cctx := pctx
		select {
		case h := <-w.holds:
			// (The id is sound: the records and offsets were written.)
			pid, epoch, _ := cl.ProducerID(pctx)
			h.held <- ctHeld{idx: i, pid: pid, epoch: epoch}
			select {
			case <-h.release:
			case <-w.stop:
			}
			within := 20 * time.Second // (pctx may be spent by the hold)
			if h.within > 0 {
				within = h.within
			}
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(ctx, within)
			defer cancel()
		default:
		}
		err = cl.EndTransaction(cctx, kgo.TryCommit)
		if err == nil {
			return ctCommitted, nil
		}
		w.note("commit", err)
		if !errors.Is(err, kerr.OperationNotAttempted) {
			w.abort(ctx, cl)
			return ctUncertain, err
		}
	}
	w.abort(ctx, cl)
	return ctAborted, err
}

// abort ends the open transaction with an abort; when that fails, the next
// BeginTransaction recovers (or fails and the client is replaced), which
// fences the transaction either way.
func (w *ctWorkload) abort(ctx context.Context, cl *kgo.Client) {
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := cl.AbortBufferedRecords(actx); err != nil {
		w.note("abort buffered", err)
	}
	if err := cl.EndTransaction(actx, kgo.TryAbort); err != nil {
		w.note("abort", err)
	}
}

func (w *ctWorkload) note(stage string, err error) {
	w.mu.Lock()
	w.errs[stage+": "+err.Error()]++
	w.mu.Unlock()
}

// finish stops the workload and waits for it (idempotent).
func (w *ctWorkload) finish() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// waitCommits waits until n transactions ended committed after since.
func (w *ctWorkload) waitCommits(t *testing.T, what string, n int, since time.Time, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		got := 0
		for _, r := range w.runs {
			if r.outcome == ctCommitted && r.ended.After(since) {
				got++
			}
		}
		w.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-w.done:
			t.Fatalf("waiting for %s: the producer stopped (errors %v)", what, w.errors())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %d of %d commits within %v (errors %v)", what, got, n, d, w.errors())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *ctWorkload) firstCommitAfter(since time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.runs {
		if r.outcome == ctCommitted && r.ended.After(since) {
			return r.ended
		}
	}
	return time.Time{}
}

func (w *ctWorkload) errors() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.errs)
}

func (w *ctWorkload) result() ([]ctRun, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Logf("producer errors (expected around the kills): %v", w.errs)
	return slices.Clone(w.runs), w.pid
}

// ctCommitOffset adds group to cl's open transaction (AddOffsetsToTxn)
// and commits offset for partition 0 of the data topic in it
// (TxnOffsetCommit, as a member-less group does).
func ctCommitOffset(ctx context.Context, cl *kgo.Client, group string, offset int64) error {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	err = ctRetry(ctx, func() error {
		req := kmsg.NewPtrAddOffsetsToTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = ctMainID, id, epoch, group
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	})
	if err != nil {
		return fmt.Errorf("AddOffsetsToTxn: %w", err)
	}
	err = ctRetry(ctx, func() error {
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = ctMainID, group, id, epoch
		req.Generation = -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = ctDataTopic
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = 0, offset, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("TxnOffsetCommit: %w", err)
	}
	return nil
}

// ctRetry runs fn until it succeeds, fails with a Kafka error that
// is not retriable, or 15 s have passed.
func ctRetry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		var ke *kerr.Error
		retriable := err != nil && (!errors.As(err, &ke) || ke.Retriable || errors.Is(err, kerr.ConcurrentTransactions))
		if !retriable || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// ctWaitCoordinator waits until FindCoordinator names a live coordinator
// for txnID other than not, and returns it.
func ctWaitCoordinator(ctx context.Context, t *testing.T, adm *kadm.Client, txnID string, not int32) int32 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last kadm.FindCoordinatorResponse
	for time.Now().Before(deadline) {
		r := adm.FindTxnCoordinators(ctx, txnID)[txnID]
		last = r
		if r.Err == nil && r.NodeID >= 0 && r.NodeID != not {
			return r.NodeID
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no coordinator for %s other than %d within 60s (last answer: %+v)", txnID, not, last)
	return -1
}

// ctTxnIDOn returns a transactional id whose coordinator is node.
func ctTxnIDOn(ctx context.Context, t *testing.T, adm *kadm.Client, node int32) string {
	t.Helper()
	var ids []string
	for i := range 60 {
		ids = append(ids, fmt.Sprintf("ct-open-%d", i))
	}
	for range 50 {
		rs := adm.FindTxnCoordinators(ctx, ids...)
		for _, id := range ids {
			if r := rs[id]; r.Err == nil && r.NodeID == node {
				return id
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("none of %d transactional ids is coordinated by broker %d", len(ids), node)
	return ""
}

// ctDescribe describes txnID at its coordinator, retrying while it moves.
// Each try uses a new client: a kgo client keeps the coordinator it found
// for a sharded request like DescribeTransactions after that broker died.
func ctDescribe(ctx context.Context, t *testing.T, seeds []string, txnID string) kadm.DescribedTransaction {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			t.Fatal(err)
		}
		ds, err := kadm.NewClient(cl).DescribeTransactions(ctx, txnID)
		cl.Close()
		d, ok := ds[txnID]
		switch {
		case err != nil:
			lastErr = err
		case !ok:
			lastErr = fmt.Errorf("%s missing from the answer", txnID)
		case d.Err != nil:
			lastErr = d.Err
		default:
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("describe transaction %s: %v", txnID, lastErr)
	return kadm.DescribedTransaction{}
}

// ctCheckMoved: the coordinator that took over knows the transaction held
// open as the old one did: same producer id and epoch, Ongoing, over every
// data partition and a partition of __consumer_offsets (AddOffsetsToTxn),
// with the producer's timeout.
func ctCheckMoved(t *testing.T, held ctHeld, after kadm.DescribedTransaction, coord int32) {
	t.Helper()
	parts := after.Topics[ctDataTopic]
	if after.Coordinator != coord || after.ProducerID != held.pid || after.ProducerEpoch != held.epoch ||
		after.State != "Ongoing" || after.TimeoutMillis != 15000 || len(parts) != ctPartitions ||
		len(after.Topics["__consumer_offsets"]) != 1 {
		t.Fatalf("after the coordinator moved to %d: %+v; the transaction held open: %+v", coord, after, held)
	}
	t.Logf("the new coordinator describes %s as %s over %v (producer %d, epoch %d)",
		after.TxnID, after.State, after.Topics, after.ProducerID, after.ProducerEpoch)
}

// ctAbandoned is a transaction left open on ctOpenTopic: ctOpenCount
// records of it, then one non-transactional record.
type ctAbandoned struct {
	id    string
	cl    *kgo.Client
	pid   int64
	epoch int16
}

const ctOpenCount = 3

// ctOpenAbandoned opens a transaction of id with a 6 s timeout, writes
// ctOpenCount records in it and a plain record after them, and checks that
// the transaction holds the LSO of the partition at 0.
func ctOpenAbandoned(ctx context.Context, t *testing.T, seeds []string, id string) *ctAbandoned {
	t.Helper()
	cl := newClient(t, seeds[0], kgo.SeedBrokers(seeds...), kgo.TransactionalID(id),
		kgo.TransactionTimeout(6*time.Second), kgo.DefaultProduceTopic(ctOpenTopic))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var rs []*kgo.Record
	for i := range ctOpenCount {
		rs = append(rs, kgo.StringRecord(fmt.Sprintf("open-%d", i)))
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce in the transaction left open: %v", err)
	}
	plain := newClient(t, seeds[0], kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(ctOpenTopic))
	if err := plain.ProduceSync(ctx, kgo.StringRecord("plain")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(plain)
	hw, lso := ctOpenOffsets(ctx, adm)
	if hw != ctOpenCount+1 || lso != 0 {
		t.Fatalf("%s with the transaction open: high watermark %d, LSO %d (want %d, 0)", ctOpenTopic, hw, lso, ctOpenCount+1)
	}
	return &ctAbandoned{id: id, cl: cl, pid: pid, epoch: epoch}
}

// ctOpenOffsets returns the high watermark and the last stable offset of
// ctOpenTopic's partition, or -1s when either cannot be listed (callers
// check or retry: its leader may just have died).
func ctOpenOffsets(ctx context.Context, adm *kadm.Client) (hw, lso int64) {
	end, err1 := adm.ListEndOffsets(ctx, ctOpenTopic)
	stable, err2 := adm.ListCommittedOffsets(ctx, ctOpenTopic)
	e, ok1 := end.Lookup(ctOpenTopic, 0)
	s, ok2 := stable.Lookup(ctOpenTopic, 0)
	if err1 != nil || err2 != nil || !ok1 || !ok2 || e.Err != nil || s.Err != nil {
		return -1, -1
	}
	return e.Offset, s.Offset
}

// checkTimedOut: the coordinator that took over from dead aborted the
// transaction when it timed out: the LSO reached the high watermark past
// the abort marker, read_committed sees only the plain record, the id is
// described as CompleteAbort with a bumped epoch, and the abandoned
// producer cannot commit.
func (a *ctAbandoned) checkTimedOut(ctx context.Context, t *testing.T, adm *kadm.Client, seeds []string, dead int32) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var hw, lso int64
	for {
		hw, lso = ctOpenOffsets(ctx, adm)
		if lso == hw && hw > ctOpenCount+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the transaction left open was never aborted: %s high watermark %d, LSO %d", ctOpenTopic, hw, lso)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d := ctDescribe(ctx, t, seeds, a.id)
	if d.Coordinator == dead || d.State != "CompleteAbort" || d.ProducerID != a.pid || d.ProducerEpoch <= a.epoch {
		t.Fatalf("the timed-out transaction is described as %+v; want CompleteAbort on a live coordinator, producer %d, epoch above %d",
			d, a.pid, a.epoch)
	}
	ctAppendSentinels(ctx, t, seeds, ctOpenTopic, 1)
	if vals := ctValues(ctConsume(t, seeds, ctOpenTopic, 1, true)); !slices.Equal(vals, []string{"plain"}) {
		t.Fatalf("read_committed %s after the timeout: %q, want only the plain record", ctOpenTopic, vals)
	}
	if raw := ctValues(ctConsume(t, seeds, ctOpenTopic, 1, false)); len(raw) != ctOpenCount+1 {
		t.Fatalf("read_uncommitted %s: %q, want the %d aborted records and the plain one", ctOpenTopic, raw, ctOpenCount)
	}
	// (Sent by the test: the abandoned client may fail in itself, on the
	// coordinator it knew.)
	if err := ctEndTxn(ctx, t, seeds, a.id, a.pid, a.epoch, true); !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("committing the aborted transaction with its old epoch: %v, want PRODUCER_FENCED", err)
	}
	if err := a.cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("the abandoned producer committed a transaction its coordinator aborted")
	}
	t.Logf("the transaction left open was aborted by broker %d: LSO = high watermark = %d, epoch %d → %d",
		d.Coordinator, hw, a.epoch, d.ProducerEpoch)
}

// ctWaitInSync waits until every replicated partition of every topic
// (internal ones included) has all its replicas in sync.
func ctWaitInSync(ctx context.Context, t *testing.T, adm *kadm.Client) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var lagging []string
	for time.Now().Before(deadline) {
		lagging = lagging[:0]
		md, err := adm.Metadata(ctx)
		if err != nil {
			lagging = append(lagging, err.Error())
		}
		for _, td := range md.Topics {
			for _, pd := range td.Partitions {
				if pd.Err != nil || len(pd.ISR) != len(pd.Replicas) || pd.Leader < 0 {
					lagging = append(lagging, fmt.Sprintf("%s-%d", td.Topic, pd.Partition))
				}
			}
		}
		if len(lagging) == 0 && err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("replicas still out of sync after 60s: %v", lagging)
}

// ctDataLeader returns a data partition and its leader, one not led
// by avoid if there is one.
func ctDataLeader(ctx context.Context, t *testing.T, adm *kadm.Client, avoid int32) (int32, int32) {
	t.Helper()
	part, leader := int32(-1), int32(-1)
	for p := range int32(ctPartitions) {
		l, _, err := leaderOf(ctx, adm, ctDataTopic, p)
		if err != nil || l < 0 {
			t.Fatalf("leader of %s-%d: %d %v", ctDataTopic, p, l, err)
		}
		if part < 0 || (leader == avoid && l != avoid) {
			part, leader = p, l
		}
	}
	return part, leader
}

// ctWaitLeaderMoved waits until partition p of the data topic is led by a
// broker other than old.
func ctWaitLeaderMoved(ctx context.Context, t *testing.T, adm *kadm.Client, p, old int32) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l, _, err := leaderOf(ctx, adm, ctDataTopic, p); err == nil && l >= 0 && l != old {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s-%d still led by %d (or by none) 30s after it was killed", ctDataTopic, p, old)
}

// ctSentinel is the value ctAppendSentinels writes.
const ctSentinel = "end"

// ctAppendSentinels appends a non-transactional ctSentinel record to each of
// the n partitions of topic (ctConsume reads up to them).
func ctAppendSentinels(ctx context.Context, t *testing.T, seeds []string, topic string, n int32) {
	t.Helper()
	cl := newClient(t, seeds[0], kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(ctSentinel)}).FirstErr(); err != nil {
			t.Fatalf("append the end sentinel to %s-%d: %v", topic, p, err)
		}
	}
}

// ctConsume reads the n partitions of topic from the start with the
// isolation level up to their sentinels (ctAppendSentinels) and returns the
// records before them; it fails the test if a sentinel does not show up
// within 60 s (under read_committed: the LSO does not reach it).
func ctConsume(t *testing.T, seeds []string, topic string, n int32, committed bool) []*kgo.Record {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	level := kgo.ReadUncommitted()
	if committed {
		level = kgo.ReadCommitted()
	}
	cl := newClient(t, seeds[0], kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(level),
		kgo.FetchMaxWait(200*time.Millisecond))
	var out []*kgo.Record
	ended := map[int32]bool{}
	for int32(len(ended)) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s (read_committed %v): only partitions %v reached their end sentinel within 60s", topic, committed, ended)
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case string(r.Value) == ctSentinel:
				ended[r.Partition] = true
			case !ended[r.Partition]:
				out = append(out, r)
			}
		})
	}
	return out
}

func ctValues(rs []*kgo.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Value))
	}
	return out
}

// ctWaitStable waits until no transaction holds the LSO of a partition of
// topic below its high watermark.
func ctWaitStable(ctx context.Context, t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var diff []string
	for time.Now().Before(deadline) {
		diff = diff[:0]
		end, err1 := adm.ListEndOffsets(ctx, topic)
		stable, err2 := adm.ListCommittedOffsets(ctx, topic)
		if err := errors.Join(err1, err2); err != nil {
			diff = append(diff, err.Error())
		} else {
			end.Each(func(e kadm.ListedOffset) {
				s, ok := stable.Lookup(topic, e.Partition)
				if e.Err != nil || !ok || s.Err != nil || s.Offset != e.Offset {
					diff = append(diff, fmt.Sprintf("%s-%d: high watermark %d, LSO %d (%v %v)", topic, e.Partition, e.Offset, s.Offset, e.Err, s.Err))
				}
			})
		}
		if len(diff) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("transactions still open 30s after the producer stopped: %v", diff)
}

// ctCheckLog: with the producer stopped, no transaction holds back an LSO;
// read_committed returns every committed transaction exactly once, no
// record of an aborted one, a transaction whose commit failed whole or not
// at all, and each partition's transactions in order; read_uncommitted
// shows that aborted records were written (so that the check tested
// something); the group's committed offset (RequireStable) is the one of
// the last transaction in the log.
func ctCheckLog(ctx context.Context, t *testing.T, adm *kadm.Client, seeds []string, runs []ctRun) (inLog map[int]bool) {
	t.Helper()
	ctWaitStable(ctx, t, adm, ctDataTopic)
	ctAppendSentinels(ctx, t, seeds, ctDataTopic, ctPartitions)
	count := map[string]int{}
	lastIdx := map[int32]int{}
	for _, r := range ctConsume(t, seeds, ctDataTopic, ctPartitions, true) {
		v := string(r.Value)
		count[v]++
		var i, p, j int
		if _, err := fmt.Sscanf(v, "%d/%d/%d", &i, &p, &j); err != nil || int32(p) != r.Partition {
			t.Errorf("record %q in partition %d is not one the producer wrote there", v, r.Partition)
			continue
		}
		if last, ok := lastIdx[r.Partition]; ok && i < last {
			t.Errorf("partition %d: transaction %d's record %q after transaction %d's", r.Partition, i, v, last)
		}
		lastIdx[r.Partition] = i
	}
	inLog = map[int]bool{}
	outcome := map[int]ctOutcome{}
	known := map[string]bool{}
	tally := map[string]int{}
	lastInLog := -1
	for _, run := range runs {
		outcome[run.idx] = run.outcome
		present := 0
		for _, v := range run.values {
			known[v] = true
			if count[v] > 1 {
				t.Errorf("transaction %d (%v): record %q read %d times", run.idx, run.outcome, v, count[v])
			}
			if count[v] > 0 {
				present++
			}
		}
		switch {
		case run.outcome == ctCommitted && present != len(run.values):
			t.Errorf("committed transaction %d: %d of its %d records in the log", run.idx, present, len(run.values))
		case run.outcome == ctAborted && present != 0:
			t.Errorf("aborted transaction %d: %d of its %d records visible to read_committed", run.idx, present, len(run.values))
		case run.outcome == ctUncertain && present != 0 && present != len(run.values):
			t.Errorf("transaction %d, whose commit failed: %d of its %d records in the log (not atomic)", run.idx, present, len(run.values))
		}
		if present > 0 {
			lastInLog = max(lastInLog, run.idx)
			inLog[run.idx] = true
		}
		tally[fmt.Sprintf("%v (in the log: %v)", run.outcome, present > 0)]++
	}
	for v := range count {
		if !known[v] {
			t.Errorf("read_committed returned %q, of no transaction the producer ended", v)
		}
	}
	abortedWritten := 0
	for _, r := range ctConsume(t, seeds, ctDataTopic, ctPartitions, false) {
		var i, p, j int
		if _, err := fmt.Sscanf(string(r.Value), "%d/%d/%d", &i, &p, &j); err == nil {
			if o, ok := outcome[i]; ok && o == ctAborted {
				abortedWritten++
			}
		}
	}
	if abortedWritten == 0 {
		t.Error("read_uncommitted finds no record of an aborted transaction: the aborts tested nothing")
	}
	offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), ctGroup)
	if err != nil {
		t.Fatalf("fetch the offsets of %s: %v", ctGroup, err)
	}
	o, ok := offs.Lookup(ctDataTopic, 0)
	if !ok || o.Err != nil || o.At != int64(lastInLog+1) {
		t.Errorf("group %s's committed offset: %+v (found %v); want %d, committed by transaction %d, the last in the log",
			ctGroup, o, ok, lastInLog+1, lastInLog)
	}
	t.Logf("%d transactions: %v; %d aborted records in the log, hidden from read_committed", len(runs), tally, abortedWritten)
	return inLog
}
