package group

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// asyncLog completes appends on its own goroutine, like the broker's log.
type asyncLog struct {
	mu      sync.Mutex
	records []Record
	q       chan heldAppend
}

func (l *asyncLog) Append(records []Record, done func(error)) {
	l.q <- heldAppend{records, done}
}

func (l *asyncLog) run() {
	for a := range l.q {
		l.mu.Lock()
		l.records = append(l.records, a.records...)
		l.mu.Unlock()
		a.done(nil)
	}
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("a response never arrived")
		panic("unreachable")
	}
}

// TestConcurrentMembers drives members from goroutines against an
// asynchronous log and a clock that jumps ahead, checking that every
// request is answered, nothing races, and the persisted records replay
// into the same offsets.
func TestConcurrentMembers(t *testing.T) {
	clock := &fakeClock{t: time.UnixMilli(1_700_000_000_000)}
	log := &asyncLog{q: make(chan heldAppend, 16)}
	go log.run()
	c := New(Config{Now: clock.Now, Appender: log})
	if err := c.Load(nil); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var ticker sync.WaitGroup
	ticker.Add(1)
	go func() {
		defer ticker.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				c.Tick(clock.Advance(100 * time.Millisecond))
			}
		}
	}()

	var wg sync.WaitGroup
	for w := 0; w < 5; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := fmt.Sprintf("c%d", w)
			id := ""
			for i := 0; i < 40; i++ {
				req := joinReq("g", id, client)
				req.RequireKnownMemberID = true
				r := wait(t, c.Join(req))
				if r.Err == kerr.MemberIDRequired || r.Err == kerr.UnknownMemberID {
					id = r.MemberID
					if r.Err == kerr.UnknownMemberID {
						id = ""
					}
					continue
				}
				if r.Err != nil {
					continue
				}
				id = r.MemberID
				assign := map[string][]byte{}
				for _, m := range r.Members {
					assign[m.MemberID] = []byte("x")
				}
				s := wait(t, c.Sync(SyncRequest{Group: "g", MemberID: id, Generation: r.Generation, Assignments: assign}))
				if s.Err != nil {
					continue
				}
				_ = c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: id, Generation: r.Generation})
				res := wait(t, c.CommitOffsets(CommitRequest{Group: "g", MemberID: id, Generation: r.Generation,
					Offsets: []CommitOffset{{TopicPartition: tp("t", int32(w)), Offset: int64(i), LeaderEpoch: -1}}}))
				_ = res
				if i%7 == 6 {
					_, _ = c.Leave("g", []LeaveMember{{MemberID: id}})
					id = ""
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	ticker.Wait()
	live := snapshot(c)["g"].Offsets
	c.Unload() // answers anything still waiting

	log.mu.Lock()
	records := append([]Record(nil), log.records...)
	log.mu.Unlock()
	c2 := New(Config{Appender: log})
	if err := c2.Load(records); err != nil {
		t.Fatal(err)
	}
	if len(live) == 0 {
		t.Fatal("no offsets were committed")
	}
	if got := snapshot(c2)["g"].Offsets; !reflect.DeepEqual(got, live) {
		t.Fatalf("replayed offsets %v, live %v", got, live)
	}
}

// TestConcurrentTransactions runs transactional producers (each waits for
// its TxnOffsetCommit before ending the transaction, as clients do) and
// ordinary committers against an asynchronous log, and checks the
// persisted records replay into the same committed and pending offsets.
func TestConcurrentTransactions(t *testing.T) {
	log := &asyncLog{q: make(chan heldAppend, 16)}
	go log.run()
	clock := &fakeClock{t: time.UnixMilli(1_700_000_000_000)} // whole milliseconds, as records keep
	c := New(Config{Now: clock.Now, Appender: log})
	if err := c.Load(nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func(pid int64) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				res := wait(t, c.CommitTxnOffsets(TxnCommitRequest{Group: "g", ProducerID: pid, GenerationID: -1,
					Offsets: []CommitOffset{{TopicPartition: tp("t", int32(i%3)), Offset: pid*1000 + int64(i)}}}))
				if res[0].Err != nil {
					t.Errorf("txn commit: %v", res[0].Err)
					return
				}
				commit := i%4 != 3
				if i == 49 && pid == 1 {
					break // stays pending
				}
				log.mu.Lock()
				log.records = append(log.records, Record{ProducerID: pid, Marker: &TxnMarker{Commit: commit}})
				log.mu.Unlock()
				if err := c.CompleteTxn(pid, commit); err != nil {
					t.Errorf("complete: %v", err)
					return
				}
			}
		}(int64(w + 1))
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				wait(t, c.CommitOffsets(CommitRequest{Group: "g", Generation: -1,
					Offsets: []CommitOffset{{TopicPartition: tp("t", int32(i%3)), Offset: int64(i)}}}))
				if _, err := c.FetchStableOffsets("g", nil); err != nil {
					t.Errorf("fetch: %v", err)
				}
			}
		}(w)
	}
	wg.Wait()
	// Every append has been answered: the log holds them all.
	live := snapshot(c)
	c.Unload()
	log.mu.Lock()
	records := append([]Record(nil), log.records...)
	log.mu.Unlock()
	c2 := New(Config{Appender: log})
	if err := c2.Load(records); err != nil {
		t.Fatal(err)
	}
	if len(live["g"].Pending[1]) == 0 {
		t.Fatal("producer 1's last transaction is not pending")
	}
	if got := snapshot(c2); !reflect.DeepEqual(got, live) {
		t.Fatalf("replayed %+v\nlive %+v", got, live)
	}
}
