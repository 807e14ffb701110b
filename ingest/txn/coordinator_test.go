package txn

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestCommit(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	if pid != 1000 || epoch != 0 {
		t.Fatalf("new id got %d/%d, want 1000/0", pid, epoch)
	}
	e.add(t, "tx", pid, epoch, tp("t", 0), tp("t", 1))
	e.add(t, "tx", pid, epoch, tp("t", 1)) // already in: no write
	errIs(t, "add offsets", wait(t, e.c.AddOffsets("tx", pid, epoch, "group")), nil)
	if d := e.describe(t, "tx"); d.State != Ongoing || d.StartMs != start.UnixMilli() ||
		!reflect.DeepEqual(d.Partitions, []TopicPartition{offsetsPartition("group"), tp("t", 0), tp("t", 1)}) {
		t.Fatalf("ongoing: %+v", d)
	}

	e.markers.setHold(true)
	ch := e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})
	pending(t, ch) // markers not durable yet
	if d := e.describe(t, "tx"); d.State != PrepareCommit {
		t.Fatalf("state %v while markers are written", d.State)
	}
	// A retried EndTxn meanwhile: CONCURRENT_TRANSACTIONS; the other outcome: INVALID_TXN_STATE.
	errIs(t, "retry", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.ConcurrentTransactions)
	errIs(t, "abort", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})), kerr.InvalidTxnState)
	errIs(t, "add", wait(t, e.c.AddPartitions("tx", pid, epoch, []TopicPartition{tp("t", 2)}))[tp("t", 2)], kerr.ConcurrentTransactions)
	e.markers.release()
	errIs(t, "commit", wait(t, ch), nil)

	want := marker{"tx", pid, epoch, 5, true}
	for _, p := range []TopicPartition{tp("t", 0), tp("t", 1), offsetsPartition("group")} {
		if got := e.markers.at(p); !reflect.DeepEqual(got, []marker{want}) {
			t.Fatalf("markers at %v: %+v", p, got)
		}
	}
	if d := e.describe(t, "tx"); d.State != CompleteCommit || len(d.Partitions) != 0 || d.ProducerEpoch != epoch {
		t.Fatalf("after commit: %+v", d)
	}
	if got, want := e.log.states(t, "tx"), []string{"Empty", "Ongoing", "Ongoing", "PrepareCommit", "CompleteCommit"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log %v, want %v", got, want)
	}
	// Retries of the completed commit.
	errIs(t, "retry commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), nil)
	errIs(t, "late abort", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})), kerr.InvalidTxnState)

	// The next transaction starts afresh.
	e.clock.Advance(time.Second)
	e.add(t, "tx", pid, epoch, tp("u", 0))
	if d := e.describe(t, "tx"); d.State != Ongoing || d.StartMs != start.Add(time.Second).UnixMilli() ||
		!reflect.DeepEqual(d.Partitions, []TopicPartition{tp("u", 0)}) {
		t.Fatalf("second transaction: %+v", d)
	}
}

func TestAbort(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	// Abort with nothing open succeeds (clients abort after errors); commit does not.
	errIs(t, "abort empty", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})), nil)
	errIs(t, "commit empty", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.InvalidTxnState)

	e.add(t, "tx", pid, epoch, tp("t", 0))
	errIs(t, "abort", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})), nil)
	if got := e.markers.at(tp("t", 0)); !reflect.DeepEqual(got, []marker{{"tx", pid, epoch, 5, false}}) {
		t.Fatalf("markers %+v", got)
	}
	if d := e.describe(t, "tx"); d.State != CompleteAbort || d.ProducerEpoch != epoch {
		t.Fatalf("after abort: %+v", d)
	}
	errIs(t, "retry abort", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch})), nil)
	errIs(t, "late commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.InvalidTxnState)
}

// EndTxn is answered only once the completion record is durable, after
// the markers.
func TestEndTxnWaitsForCompletionRecord(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch, tp("t", 0))
	e.markers.setHold(true)
	ch := e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})
	e.log.setHold(true)
	e.markers.release()
	if len(e.markers.at(tp("t", 0))) != 1 {
		t.Fatal("marker not written")
	}
	pending(t, ch)
	e.log.release(nil)
	errIs(t, "commit", wait(t, ch), nil)
}

func TestTransactionWithoutPartitions(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	e.add(t, "tx", pid, epoch) // AddPartitions of nothing opens an empty transaction, as Kafka
	errIs(t, "commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), nil)
	if e.markers.callCount() != 0 {
		t.Fatal("markers written for no partitions")
	}
	if d := e.describe(t, "tx"); d.State != CompleteCommit {
		t.Fatalf("state %v", d.State)
	}
}

func TestZombieFencing(t *testing.T) {
	e := newEnv(t)
	pid, old := e.init(t, "tx")
	e.add(t, "tx", pid, old, tp("t", 0))
	errIs(t, "commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: old, Commit: true})), nil)

	pid2, epoch := e.init(t, "tx") // a new instance
	if pid2 != pid || epoch != old+1 {
		t.Fatalf("second init %d/%d, want %d/%d", pid2, epoch, pid, old+1)
	}
	errIs(t, "zombie add", wait(t, e.c.AddPartitions("tx", pid, old, []TopicPartition{tp("t", 1)}))[tp("t", 1)], kerr.ProducerFenced)
	errIs(t, "zombie offsets", wait(t, e.c.AddOffsets("tx", pid, old, "g")), kerr.ProducerFenced)
	errIs(t, "zombie end", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: old, Commit: true})), kerr.ProducerFenced)
	errIs(t, "future epoch", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch + 1})), kerr.ProducerFenced)
	errIs(t, "wrong pid", wait(t, e.c.AddOffsets("tx", pid+1, epoch, "g")), kerr.InvalidProducerIDMapping)
	errIs(t, "unknown id", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "nope", ProducerID: pid, ProducerEpoch: epoch})), kerr.InvalidProducerIDMapping)
	errIs(t, "empty id", wait(t, e.c.EndTxn(EndRequest{ProducerID: pid, ProducerEpoch: epoch})), kerr.InvalidRequest)
	// The new instance works.
	e.add(t, "tx", pid, epoch, tp("t", 1))
	errIs(t, "new commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), nil)
}

// InitProducerId during an open transaction aborts it with a bumped epoch,
// answering CONCURRENT_TRANSACTIONS; the retry bumps again.
func TestInitAbortsOpenTransaction(t *testing.T) {
	e := newEnv(t)
	pid, old := e.init(t, "tx")
	e.add(t, "tx", pid, old, tp("t", 0), tp("t", 1))

	e.markers.setHold(true)
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 60000, ProducerID: -1, ProducerEpoch: -1}))
	errIs(t, "init during txn", r.Err, kerr.ConcurrentTransactions)
	if r.ProducerID != -1 || r.ProducerEpoch != -1 {
		t.Fatalf("error answer carries %d/%d", r.ProducerID, r.ProducerEpoch)
	}
	if d := e.describe(t, "tx"); d.State != PrepareAbort || d.ProducerEpoch != old+1 {
		t.Fatalf("fencing: %+v", d)
	}
	// Still aborting: retries get CONCURRENT_TRANSACTIONS, the old producer is fenced.
	errIs(t, "retry init", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 60000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.ConcurrentTransactions)
	errIs(t, "old commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: old, Commit: true})), kerr.ProducerFenced)
	e.markers.release()

	for _, p := range []TopicPartition{tp("t", 0), tp("t", 1)} {
		if got := e.markers.at(p); !reflect.DeepEqual(got, []marker{{"tx", pid, old + 1, 5, false}}) {
			t.Fatalf("markers at %v: %+v (want an abort with the bumped epoch)", p, got)
		}
	}
	if d := e.describe(t, "tx"); d.State != CompleteAbort || d.ProducerEpoch != old+1 {
		t.Fatalf("after fence: %+v", d)
	}
	if _, epoch := e.init(t, "tx"); epoch != old+2 {
		t.Fatalf("retried init got epoch %d, want %d", epoch, old+2)
	}
	if got, want := e.log.states(t, "tx"), []string{"Empty", "Ongoing", "PrepareAbort", "CompleteAbort", "Empty"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log %v, want %v", got, want)
	}
}

func TestTimeoutAbort(t *testing.T) {
	e := newEnv(t)
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1}))
	pid, epoch := r.ProducerID, r.ProducerEpoch
	e.add(t, "tx", pid, epoch, tp("t", 0))
	e.c.Tick(start.Add(1000 * time.Millisecond)) // start+timeout is not yet past
	if d := e.describe(t, "tx"); d.State != Ongoing {
		t.Fatalf("aborted at the timeout: %v", d.State)
	}
	e.c.Tick(start.Add(1001 * time.Millisecond))
	if d := e.describe(t, "tx"); d.State != CompleteAbort || d.ProducerEpoch != epoch+1 {
		t.Fatalf("after timeout: %+v", d)
	}
	if got := e.markers.at(tp("t", 0)); !reflect.DeepEqual(got, []marker{{"tx", pid, epoch + 1, 5, false}}) {
		t.Fatalf("markers %+v", got)
	}
	// The timed-out producer is fenced.
	errIs(t, "add", wait(t, e.c.AddPartitions("tx", pid, epoch, []TopicPartition{tp("t", 1)}))[tp("t", 1)], kerr.ProducerFenced)
	errIs(t, "commit", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.ProducerFenced)
}

func TestInitValidation(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name string
		req  InitRequest
		want error
	}{
		{"empty id", InitRequest{TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1}, kerr.InvalidRequest},
		{"zero timeout", InitRequest{TransactionalID: "tx", ProducerID: -1, ProducerEpoch: -1}, kerr.InvalidTransactionTimeout},
		{"negative timeout", InitRequest{TransactionalID: "tx", TimeoutMs: -5, ProducerID: -1, ProducerEpoch: -1}, kerr.InvalidTransactionTimeout},
		{"above max", InitRequest{TransactionalID: "tx", TimeoutMs: 15*60*1000 + 1, ProducerID: -1, ProducerEpoch: -1}, kerr.InvalidTransactionTimeout},
		{"half a producer", InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: 7, ProducerEpoch: -1}, kerr.InvalidRequest},
	} {
		r := wait(t, e.c.InitProducerID(tt.req))
		errIs(t, tt.name, r.Err, tt.want)
	}
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 15 * 60 * 1000, ProducerID: -1, ProducerEpoch: -1}))
	errIs(t, "max timeout", r.Err, nil)
	if d := e.describe(t, "tx"); d.TimeoutMs != 15*60*1000 {
		t.Fatalf("timeout %d", d.TimeoutMs)
	}
	e.pids.fail = kerr.CoordinatorNotAvailable
	errIs(t, "allocator", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "other", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.CoordinatorNotAvailable)
	e.pids.fail = errTest
	errIs(t, "allocator", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "other", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.CoordinatorLoadInProgress)
}

// KIP-360: a producer bumps its own epoch; retries of the bump get the same
// epoch; other ids and epochs are fenced.
func TestKIP360(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	bump := func(p int64, ep int16) InitResponse {
		return wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: p, ProducerEpoch: ep}))
	}
	if r := bump(pid, epoch); r.Err != nil || r.ProducerID != pid || r.ProducerEpoch != epoch+1 {
		t.Fatalf("bump: %+v", r)
	}
	if r := bump(pid, epoch); r.Err != nil || r.ProducerEpoch != epoch+1 {
		t.Fatalf("retried bump: %+v (want the same epoch again)", r)
	}
	errIs(t, "stale epoch", bump(pid, epoch+5).Err, kerr.ProducerFenced)
	errIs(t, "other pid", bump(pid+7, epoch+1).Err, kerr.ProducerFenced)
	if r := bump(pid, epoch+1); r.Err != nil || r.ProducerEpoch != epoch+2 {
		t.Fatalf("second bump: %+v", r)
	}
	// An unknown id with a producer id (a producer recovering from
	// UNKNOWN_PRODUCER_ID after its id expired) gets a fresh id.
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "fresh", TimeoutMs: 1000, ProducerID: 55, ProducerEpoch: 3}))
	if r.Err != nil || r.ProducerID == 55 || r.ProducerEpoch != 0 {
		t.Fatalf("fresh id with a producer: %+v", r)
	}
}

// At epoch MaxInt16-1 InitProducerId rotates to a new producer id; a KIP-360
// retry with the old id and exhausted epoch gets the new one.
func TestEpochExhaustion(t *testing.T) {
	e := newEnv(t)
	e.log.records = append(e.log.records, MetadataRecord("tx", Metadata{ProducerID: 77, ProducerEpoch: 32765,
		TimeoutMs: 1000, State: CompleteCommit, LastUpdateMs: start.UnixMilli(), StartMs: start.UnixMilli()}))
	e.failover(t, 6)
	pid, epoch := e.init(t, "tx")
	if pid != 77 || epoch != 32766 {
		t.Fatalf("init %d/%d", pid, epoch)
	}
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: 77, ProducerEpoch: 32766}))
	if r.Err != nil || r.ProducerID == 77 || r.ProducerEpoch != 0 {
		t.Fatalf("rotation: %+v", r)
	}
	again := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: 77, ProducerEpoch: 32766}))
	if again != r {
		t.Fatalf("retried rotation %+v, want %+v", again, r)
	}
	// The old producer id is fenced.
	errIs(t, "old id", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: 77, ProducerEpoch: 32766})), kerr.InvalidProducerIDMapping)

	// Fencing an open transaction at the last epoch still bumps once,
	// and the next init rotates.
	e.log.records = append(e.log.records, MetadataRecord("ty", Metadata{ProducerID: 88, ProducerEpoch: 32766,
		TimeoutMs: 1000, State: Ongoing, Partitions: []TopicPartition{tp("t", 0)}, LastUpdateMs: start.UnixMilli(), StartMs: start.UnixMilli()}))
	e.failover(t, 7)
	errIs(t, "fence", wait(t, e.c.InitProducerID(InitRequest{TransactionalID: "ty", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, kerr.ConcurrentTransactions)
	if got := e.markers.at(tp("t", 0)); len(got) != 1 || got[0].producerEpoch != 32767 {
		t.Fatalf("fence markers %+v", got)
	}
	if pid, epoch := e.init(t, "ty"); pid == 88 || epoch != 0 {
		t.Fatalf("after fence at the last epoch: %d/%d", pid, epoch)
	}
}

func TestNotLoaded(t *testing.T) {
	e := &env{clock: &fakeClock{t: start}, log: &fakeLog{}, markers: newFakeMarkers(), pids: &pidAllocator{}}
	c := New(e.config())
	check := func(want error) {
		t.Helper()
		errIs(t, "init", wait(t, c.InitProducerID(InitRequest{TransactionalID: "tx", TimeoutMs: 1000, ProducerID: -1, ProducerEpoch: -1})).Err, want)
		errIs(t, "add", wait(t, c.AddPartitions("tx", 1, 0, []TopicPartition{tp("t", 0)}))[tp("t", 0)], want)
		errIs(t, "offsets", wait(t, c.AddOffsets("tx", 1, 0, "g")), want)
		errIs(t, "end", wait(t, c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: 1})), want)
		errIs(t, "abort", wait(t, c.Abort("tx")), want)
		errIs(t, "describe", c.Describe([]string{"tx"})[0].Err, want)
		errIs(t, "err", c.Err(), want)
		if l := c.List(nil, nil); l != nil {
			t.Fatalf("listed %v", l)
		}
	}
	check(kerr.NotCoordinator)
	tok := c.BeginLoad(1)
	check(kerr.CoordinatorLoadInProgress)
	if !c.Loading(tok) {
		t.Fatal("not loading")
	}
	tok2 := c.BeginLoad(2)
	if err := c.LoadFrom(tok, nil); err != ErrLoadSuperseded {
		t.Fatalf("stale load: %v", err)
	}
	c.Unload()
	if err := c.LoadFrom(tok2, nil); err != ErrLoadSuperseded {
		t.Fatalf("load after unload: %v", err)
	}
	check(kerr.NotCoordinator)
	// A load that cannot decode its records leaves the coordinator unloaded.
	tok3 := c.BeginLoad(3)
	if err := c.LoadFrom(tok3, []Record{{Key: EncodeKey("tx"), Value: []byte{0}}}); err == nil {
		t.Fatal("loaded a corrupt record")
	}
	check(kerr.NotCoordinator)
}

func TestDescribeAndList(t *testing.T) {
	e := newEnv(t)
	pa, ea := e.init(t, "a")
	pb, eb := e.init(t, "b")
	e.init(t, "c")
	e.add(t, "a", pa, ea, tp("t", 1), tp("s", 0))
	e.add(t, "b", pb, eb, tp("t", 0))
	errIs(t, "commit b", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "b", ProducerID: pb, ProducerEpoch: eb, Commit: true})), nil)

	got := e.c.Describe([]string{"a", "zz"})
	want := []Description{
		{TransactionalID: "a", State: Ongoing, ProducerID: pa, ProducerEpoch: ea, TimeoutMs: 60000,
			StartMs: start.UnixMilli(), Partitions: []TopicPartition{tp("s", 0), tp("t", 1)}},
		{TransactionalID: "zz", Err: kerr.TransactionalIDNotFound, ProducerID: -1, ProducerEpoch: -1, StartMs: -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("describe\n got %+v\nwant %+v", got, want)
	}
	ids := func(l []Listing) []string {
		var out []string
		for _, x := range l {
			out = append(out, x.TransactionalID+"/"+x.State.String())
		}
		return out
	}
	for _, tt := range []struct {
		states []string
		pids   []int64
		want   []string
	}{
		{nil, nil, []string{"a/Ongoing", "b/CompleteCommit", "c/Empty"}},
		{[]string{"Ongoing", "Empty"}, nil, []string{"a/Ongoing", "c/Empty"}},
		{[]string{"Bogus"}, nil, nil},
		{nil, []int64{pb}, []string{"b/CompleteCommit"}},
		{[]string{"Ongoing"}, []int64{pb}, nil},
	} {
		if got := ids(e.c.List(tt.states, tt.pids)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("List(%v, %v) = %v, want %v", tt.states, tt.pids, got, tt.want)
		}
	}
	if s, ok := ParseState("PrepareEpochFence"); !ok || s != PrepareEpochFence {
		t.Fatal("ParseState")
	}
}

func TestOperatorAbort(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.init(t, "tx")
	errIs(t, "unknown", wait(t, e.c.Abort("nope")), kerr.TransactionalIDNotFound)
	errIs(t, "nothing open", wait(t, e.c.Abort("tx")), kerr.InvalidTxnState)
	e.add(t, "tx", pid, epoch, tp("t", 0))
	e.markers.setHold(true)
	ch := e.c.Abort("tx")
	pending(t, ch)
	errIs(t, "second abort", wait(t, e.c.Abort("tx")), kerr.ConcurrentTransactions)
	e.markers.release()
	errIs(t, "abort", wait(t, ch), nil)
	if got := e.markers.at(tp("t", 0)); !reflect.DeepEqual(got, []marker{{"tx", pid, epoch + 1, 5, false}}) {
		t.Fatalf("markers %+v", got)
	}
	errIs(t, "hung producer", wait(t, e.c.EndTxn(EndRequest{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: epoch, Commit: true})), kerr.ProducerFenced)
}
