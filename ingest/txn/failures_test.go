package txn

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Coordinator failover: a PrepareCommit left mid-way (some markers written)
// is finished by the next coordinator, with its coordinator epoch; an
// Ongoing transaction keeps its start time and times out there.
func TestFailoverFinishesPreparedCommit(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch, tp("t", 0), tp("t", 1))
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "open", TimeoutMs: 5000, ProducerID: -1, ProducerEpoch: -1}))
	e.add(t, "open", r.ProducerID, r.ProducerEpoch, tp("u", 0))

	e.markers.fail(tp("t", 1), kerr.NotLeaderForPartition)
	ch := e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})
	pending(t, ch)
	if got := e.markers.at(tp("t", 0)); len(got) != 1 {
		t.Fatalf("first marker %+v", got)
	}

	e.clock.Advance(2 * time.Second)
	e.failover(t, 9)
	errIs(t, "answer at unload", wait(t, ch), kerr.NotCoordinator)

	// The new coordinator wrote the markers again, every partition, epoch 9.
	want1 := []marker{{"tx", pid, epoch, 9, true}}
	if got := e.markers.at(tp("t", 1)); !reflect.DeepEqual(got, want1) {
		t.Fatalf("markers at t/1 %+v", got)
	}
	if got := e.markers.at(tp("t", 0)); len(got) != 2 || got[1] != want1[0] {
		t.Fatalf("markers at t/0 %+v", got)
	}
	if d := e.describe(t, "tx"); d.State != CompleteCommit {
		t.Fatalf("after failover: %+v", d)
	}
	errIs(t, "client retry", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), nil)
	if got, want := e.log.states(t, "tx"), []string{"Empty", "Ongoing", "PrepareCommit", "CompleteCommit"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log %v, want %v", got, want)
	}

	// The open transaction started 2 s before the load and times out 5 s after its start.
	d := e.describe(t, "open")
	if d.State != Ongoing || d.StartMs != start.UnixMilli() || !reflect.DeepEqual(d.Partitions, []TopicPartition{tp("u", 0)}) {
		t.Fatalf("open after failover: %+v", d)
	}
	e.c.Tick(start.Add(4 * time.Second))
	if d := e.describe(t, "open"); d.State != Ongoing {
		t.Fatalf("expired early: %v", d.State)
	}
	e.c.Tick(start.Add(5001 * time.Millisecond))
	if d := e.describe(t, "open"); d.State != CompleteAbort || d.ProducerEpoch != r.ProducerEpoch+1 {
		t.Fatalf("open after timeout: %+v", d)
	}
	if got := e.markers.at(tp("u", 0)); !reflect.DeepEqual(got, []marker{{"open", r.ProducerID, r.ProducerEpoch + 1, 9, false}}) {
		t.Fatalf("markers at u/0 %+v", got)
	}
}

// A failed append changes nothing and is answered with Kafka's mapping; the
// client's retry succeeds.
func TestAppendFailures(t *testing.T) {
	e := newEnv(t)
	e.log.setFail(kerr.NotLeaderForPartition)
	errIs(t, "init", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.NotCoordinator)
	e.log.setFail(nil)
	pid, epoch := e.init(t, "tx")
	if pid != 1000 || epoch != 0 {
		t.Fatalf("retry got %d/%d: the producer id allocated first must be reused", pid, epoch)
	}

	for _, tt := range []struct{ fail, want error }{
		{kerr.NotEnoughReplicas, kerr.CoordinatorNotAvailable},
		{kerr.RequestTimedOut, kerr.CoordinatorNotAvailable},
		{kerr.KafkaStorageError, kerr.NotCoordinator},
		{kerr.MessageTooLarge, kerr.UnknownServerError},
		{errTest, kerr.CoordinatorNotAvailable},
	} {
		e.log.setFail(tt.fail)
		errIs(t, "add", wait(t, e.c.AddPartitions("tx", pid, epoch, []TopicPartition{tp("t", 0)}))[tp("t", 0)], tt.want)
		if d := e.describe(t, "tx"); d.State != Empty || len(d.Partitions) != 0 {
			t.Fatalf("failed add changed the state: %+v", d)
		}
	}
	e.log.setFail(nil)
	e.add(t, "tx", pid, epoch, tp("t", 0))

	// A failed prepare leaves the transaction open; a failed fence does not bump the epoch.
	e.log.setFail(kerr.NotEnoughReplicas)
	errIs(t, "end", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.CoordinatorNotAvailable)
	errIs(t, "fence", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.CoordinatorNotAvailable)
	if d := e.describe(t, "tx"); d.State != Ongoing || d.ProducerEpoch != epoch {
		t.Fatalf("after failed prepares: %+v", d)
	}
	if e.markers.callCount() != 0 {
		t.Fatal("markers written for an undecided transaction")
	}
	e.log.setFail(nil)
	errIs(t, "fence", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.ConcurrentTransactions)
	if d := e.describe(t, "tx"); d.State != CompleteAbort || d.ProducerEpoch != epoch+1 {
		t.Fatalf("after fence: %+v", d)
	}
}

// Requests while a state change is being written get CONCURRENT_TRANSACTIONS.
func TestPendingTransition(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.log.setHold(true)
	ch := e.c.AddPartitions("tx", pid, epoch, []TopicPartition{tp("t", 0)})
	pending(t, ch)
	if d := e.describe(t, "tx"); d.State != Empty {
		t.Fatalf("visible before durable: %v", d.State)
	}
	errIs(t, "add", wait(t, e.c.AddPartitions("tx", pid, epoch, []TopicPartition{tp("t", 1)}))[tp("t", 1)], kerr.ConcurrentTransactions)
	errIs(t, "end", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})), kerr.ConcurrentTransactions)
	errIs(t, "init", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.ConcurrentTransactions)
	e.log.release(nil)
	errIs(t, "add", wait(t, ch)[tp("t", 0)], nil)

	// An append completing after Unload answers NOT_COORDINATOR.
	e.log.setHold(true)
	ch = e.c.AddPartitions("tx", pid, epoch, []TopicPartition{tp("t", 1)})
	e.c.Unload()
	e.log.release(nil)
	errIs(t, "add after unload", wait(t, ch)[tp("t", 1)], kerr.NotCoordinator)
}

// Retriable marker failures are retried from Tick with backoff, only for
// the partitions that failed; EndTxn is answered when all are durable.
func TestMarkerRetries(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch, tp("t", 0), tp("t", 1))
	e.markers.fail(tp("t", 1), kerr.NotLeaderForPartition, kerr.NotEnoughReplicas)
	ch := e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})
	pending(t, ch)
	if n := e.markers.callCount(); n != 1 {
		t.Fatalf("%d marker calls", n)
	}
	tick := func(d time.Duration) { e.c.Tick(e.clock.Advance(d)) }
	tick(50 * time.Millisecond) // within the 100 ms backoff
	if n := e.markers.callCount(); n != 1 {
		t.Fatalf("retried before the backoff: %d calls", n)
	}
	tick(50 * time.Millisecond)
	if n := e.markers.callCount(); n != 2 || !reflect.DeepEqual(e.markers.lastCall().Partitions, []TopicPartition{tp("t", 1)}) {
		t.Fatalf("retry: %d calls, last %+v", n, e.markers.lastCall())
	}
	pending(t, ch)
	tick(150 * time.Millisecond) // the second failure doubled the backoff to 200 ms
	if n := e.markers.callCount(); n != 2 {
		t.Fatalf("backoff not doubled: %d calls", n)
	}
	tick(50 * time.Millisecond)
	errIs(t, "commit", wait(t, ch), nil)
	if got := e.markers.at(tp("t", 0)); len(got) != 1 {
		t.Fatalf("t/0 written %d times", len(got))
	}
	if got := e.markers.at(tp("t", 1)); len(got) != 1 || !got[0].commit {
		t.Fatalf("t/1 %+v", got)
	}
}

// A deleted topic's partition is dropped at once; an unknown partition
// after UnknownPartitionRetries attempts; the transaction completes.
func TestMarkerDroppedPartitions(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch, tp("gone", 0), tp("moving", 0), tp("t", 0))
	e.markers.fail(tp("gone", 0), ErrPartitionDeleted)
	unknown := make([]error, 10)
	for i := range unknown {
		unknown[i] = kerr.UnknownTopicOrPartition
	}
	e.markers.fail(tp("moving", 0), unknown...)
	ch := e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})
	now := start
	for i := 0; i < 20; i++ {
		now = now.Add(10 * time.Second)
		e.c.Tick(now)
	}
	errIs(t, "abort", wait(t, ch), nil)
	if n := e.markers.callCount(); n != 10 {
		t.Fatalf("%d marker calls, want 10 (one per UNKNOWN_TOPIC_OR_PARTITION attempt)", n)
	}
	if got := e.markers.at(tp("moving", 0)); len(got) != 0 {
		t.Fatalf("moving written %+v", got)
	}
	if d := e.describe(t, "tx"); d.State != CompleteAbort {
		t.Fatalf("state %v", d.State)
	}
}

// A partition leader that knows a newer coordinator stops this one.
func TestMarkerFenced(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch, tp("t", 0))
	e.markers.fail(tp("t", 0), kerr.TransactionCoordinatorFenced)
	errIs(t, "commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.NotCoordinator)
	e.c.Tick(start.Add(time.Hour))
	if n := e.markers.callCount(); n != 1 {
		t.Fatalf("fenced coordinator kept writing: %d calls", n)
	}
	if d := e.describe(t, "tx"); d.State != PrepareCommit {
		t.Fatalf("state %v", d.State)
	}
}

// A failed completion record is retried from Tick; the waiting EndTxn gets
// the error, its retry CONCURRENT_TRANSACTIONS until the record is durable.
func TestCompletionRecordRetried(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch, tp("t", 0))
	e.markers.setHold(true)
	ch := e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})
	e.log.setFail(kerr.NotEnoughReplicas)
	e.markers.release()
	errIs(t, "commit", wait(t, ch), kerr.CoordinatorNotAvailable)
	end := EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true}
	errIs(t, "retry", wait(t, e.c.EndTxn(end)), kerr.ConcurrentTransactions)
	e.log.setFail(nil)
	e.c.Tick(start.Add(time.Second))
	errIs(t, "retry", wait(t, e.c.EndTxn(end)), nil)
	if n := len(e.markers.at(tp("t", 0))); n != 1 {
		t.Fatalf("%d markers: the completion retry must not rewrite them", n)
	}
	if got, want := e.log.states(t, "tx"), []string{"Empty", "Ongoing", "PrepareCommit", "CompleteCommit"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log %v, want %v", got, want)
	}
}

// Ids idle for transactional.id.expiration.ms are tombstoned, checked every
// ExpirationCheckInterval; ids with an open transaction are kept.
func TestExpiration(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "idle")
	e.add(t, "idle", pid, epoch, tp("t", 0))
	errIs(t, "commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "idle", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), nil)
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "open", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1}))
	e.add(t, "open", r.ProducerID, r.ProducerEpoch, tp("t", 1))
	e.markers.setHold(true)
	abort := e.c.Abort("open") // PrepareAbort with its markers held: not expirable
	pending(t, abort)

	week := 7 * 24 * time.Hour
	e.c.Tick(start.Add(week - time.Minute))
	e.c.Tick(start.Add(week + time.Hour - 2*time.Minute)) // not an hour since the last scan yet
	if d := e.c.Describe([]string{"idle"})[0]; d.Err != nil {
		t.Fatalf("expired before the check interval: %v", d.Err)
	}
	e.c.Tick(start.Add(week + time.Hour))
	if d := e.c.Describe([]string{"idle"})[0]; d.Err != kerr.TransactionalIDNotFound {
		t.Fatalf("idle id not expired: %+v", d)
	}
	if d := e.c.Describe([]string{"open"})[0]; d.Err != nil || d.State != PrepareAbort {
		t.Fatalf("open id: %+v", d)
	}
	if got := e.log.states(t, "idle"); got[len(got)-1] != "tombstone" {
		t.Fatalf("log %v", got)
	}
	e.markers.setHold(false)
	e.failover(t, 6)
	if d := e.c.Describe([]string{"idle"})[0]; d.Err != kerr.TransactionalIDNotFound {
		t.Fatalf("expired id back after load: %+v", d)
	}
	// A new producer with the expired id starts afresh.
	if pid2, epoch2 := e.init(t, "idle"); pid2 == pid || epoch2 != 0 {
		t.Fatalf("reused expired id: %d/%d", pid2, epoch2)
	}
}
