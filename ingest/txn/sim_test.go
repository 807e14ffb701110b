package txn

import (
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// simLog is a __transaction_state partition: appends complete on their own
// goroutine, some fail, and appends of a deposed leader (an older
// generation) fail with NOT_LEADER, as a real partition's would.
type simLog struct {
	mu       sync.Mutex
	records  []Record
	leader   int
	failRate float64
	rng      *rand.Rand
	q        chan func()
}

type simAppender struct {
	l      *simLog
	leader int
}

func (a simAppender) Append(records []Record, done func(error)) {
	a.l.q <- func() {
		a.l.mu.Lock()
		var err error
		switch {
		case a.l.leader != a.leader:
			err = kerr.NotLeaderForPartition
		case a.l.rng.Float64() < a.l.failRate:
			err = kerr.NotEnoughReplicas
		default:
			a.l.records = append(a.l.records, records...)
		}
		a.l.mu.Unlock()
		done(err)
	}
}

func (l *simLog) all() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), l.records...)
}

// simMarkers are the data partitions: marker writes complete on their own
// goroutine, some partitions fail retriably, and markers with a coordinator
// epoch older than one already seen for the producer are refused, as
// Kafka's partition leaders do.
type simMarkers struct {
	mu       sync.Mutex
	seq      int
	written  map[TopicPartition][]simMarker
	coord    map[TopicPartition]map[int64]int32
	failRate float64
	rng      *rand.Rand
	q        chan func()
}

type simMarker struct {
	seq int
	marker
}

func (s *simMarkers) WriteMarkers(m Markers, done func(map[TopicPartition]error)) {
	s.q <- func() {
		s.mu.Lock()
		res := map[TopicPartition]error{}
		for _, tp := range m.Partitions {
			if s.coord[tp] == nil {
				s.coord[tp] = map[int64]int32{}
			}
			switch {
			case s.coord[tp][m.ProducerID] > m.CoordinatorEpoch:
				res[tp] = kerr.TransactionCoordinatorFenced
			case s.rng.Float64() < s.failRate:
				res[tp] = kerr.NotLeaderForPartition
			default:
				s.coord[tp][m.ProducerID] = m.CoordinatorEpoch
				res[tp] = nil
				s.seq++
				s.written[tp] = append(s.written[tp], simMarker{s.seq, marker{m.TransactionalID, m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch, m.Commit}})
			}
		}
		s.mu.Unlock()
		done(res)
	}
}

func (s *simMarkers) now() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

func (s *simMarkers) after(tp TopicPartition, seq int) []simMarker {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []simMarker
	for _, m := range s.written[tp] {
		if m.seq > seq {
			out = append(out, m)
		}
	}
	return out
}

func runQueue(q chan func()) {
	for f := range q {
		f()
	}
}

// outcome is what a producer heard from EndTxn.
type outcome struct {
	txnID  string
	pid    int64
	epoch  int16
	commit bool
	parts  []TopicPartition
	before int // marker sequence when EndTxn was sent
	err    error
}

// TestSimulation drives producers (two instances per transactional id, so
// that they fence each other) against an asynchronous, failing log and
// marker writer, with timeouts firing and coordinator failovers, and checks:
// every request is answered; a commit (abort) answered with success wrote
// commit (abort) markers at every partition of the transaction and no
// opposite marker of that transaction; a fenced commit wrote no commit
// marker; the epochs of an id never go back in the log; and after the dust
// settles a coordinator loaded from the log describes what the live one does.
func TestSimulation(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { simulate(t, seed) })
	}
}

func simulate(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	clock := &fakeClock{t: start}
	log := &simLog{failRate: 0.1, rng: rand.New(rand.NewSource(seed + 100)), q: make(chan func(), 256)}
	marks := &simMarkers{written: map[TopicPartition][]simMarker{}, coord: map[TopicPartition]map[int64]int32{},
		failRate: 0.2, rng: rand.New(rand.NewSource(seed + 200)), q: make(chan func(), 256)}
	go runQueue(log.q)
	go runQueue(marks.q)
	pids := &pidAllocator{}

	var cur atomic.Pointer[Coordinator]
	var coordEpoch int32
	newCoord := func() {
		log.mu.Lock()
		log.leader++
		leader := log.leader
		log.mu.Unlock()
		coordEpoch++
		c := New(Config{Now: clock.Now, Appender: simAppender{log, leader}, Markers: marks, ProducerIDs: pids.alloc,
			OffsetsPartition: offsetsPartition, RetryBackoff: time.Millisecond, MaxRetryBackoff: 10 * time.Millisecond})
		if old := cur.Load(); old != nil {
			old.Unload()
		}
		tok := c.BeginLoad(coordEpoch)
		if err := c.LoadFrom(tok, log.all()); err != nil {
			t.Fatal(err)
		}
		cur.Store(c)
	}
	newCoord()

	stop := make(chan struct{})
	var bg sync.WaitGroup
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			bg.Wait()
		}
	}
	defer func() {
		halt()
		cur.Load().Unload()
		close(log.q)
		close(marks.q)
	}()
	bg.Add(1)
	go func() { // the broker's ticker, with a clock that runs fast
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
				cur.Load().Tick(clock.Advance(5 * time.Millisecond))
			}
		}
	}()

	var mu sync.Mutex
	var outcomes []outcome
	var workers sync.WaitGroup
	for w := 0; w < 6; w++ {
		workers.Add(1)
		wrng := rand.New(rand.NewSource(rng.Int63()))
		go func(w int) {
			defer workers.Done()
			// Each worker ends 12 transactions (fenced, failed or not); the
			// iteration cap only stops a livelock from hanging the test.
			id := fmt.Sprintf("tx%d", w/2) // two instances per id
			pid, epoch := int64(-1), int16(-1)
			for i, ends := 0, 0; ends < 12 && i < 5000; i++ {
				c := cur.Load()
				if epoch < 0 {
					r := wait(t, c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: int32(50 + wrng.Intn(400)), ProducerID: -1, ProducerEpoch: -1}))
					if r.Err == nil {
						pid, epoch = r.ProducerID, r.ProducerEpoch
					}
					if r.Err != nil {
						time.Sleep(200 * time.Microsecond) // the client's retry backoff
					}
					continue
				}
				var parts []TopicPartition
				for n := 1 + wrng.Intn(3); n > 0; n-- {
					parts = append(parts, tp(fmt.Sprintf("t%d", wrng.Intn(3)), int32(wrng.Intn(3))))
				}
				res := wait(t, c.AddPartitions(id, pid, epoch, parts))
				if err := res[parts[0]]; err != nil {
					time.Sleep(200 * time.Microsecond)
					if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerIDMapping) {
						epoch = -1
					}
					continue
				}
				if wrng.Intn(4) == 0 {
					_ = wait(t, c.AddOffsets(id, pid, epoch, "g"+id)) // Describe below tells if it was added
				}
				// The transaction's partitions are those of this and earlier
				// successful adds since the last end; track them via Describe.
				d := c.Describe([]string{id})[0]
				if d.Err != nil || d.ProducerEpoch != epoch || d.State != Ongoing {
					continue
				}
				time.Sleep(time.Duration(wrng.Intn(400)) * time.Microsecond) // let timeouts and the twin strike
				if wrng.Intn(20) == 0 {
					_ = wait(t, c.Abort(id)) // an operator aborts it
				}
				o := outcome{txnID: id, pid: pid, epoch: epoch, commit: wrng.Intn(3) > 0, parts: d.Partitions, before: marks.now()}
				o.err = wait(t, c.EndTxn(EndRequest{TransactionalID: id, ProducerID: pid, ProducerEpoch: epoch, Commit: o.commit}))
				ends++
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if errors.Is(o.err, kerr.ProducerFenced) {
					epoch = -1
				}
			}
		}(w)
	}
	failovers := make(chan struct{})
	workersDone := make(chan struct{})
	go func() {
		defer close(failovers)
		for i := 1; i <= 3; i++ { // fail over as the work progresses
			for {
				mu.Lock()
				n := len(outcomes)
				mu.Unlock()
				if n >= i*15 {
					break
				}
				select {
				case <-workersDone:
					return
				case <-time.After(100 * time.Microsecond):
				}
			}
			newCoord()
		}
	}()
	workers.Wait()
	close(workersDone)
	<-failovers
	if len(outcomes) != 6*12 {
		t.Fatalf("only %d of %d EndTxn were sent: producers livelocked", len(outcomes), 6*12)
	}

	// Let every decided transaction complete: no more failures.
	log.mu.Lock()
	log.failRate = 0
	log.mu.Unlock()
	marks.mu.Lock()
	marks.failRate = 0
	marks.mu.Unlock()
	newCoord() // a fresh leader finishes whatever a fenced one left
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := cur.Load().List([]string{"Ongoing", "PrepareCommit", "PrepareAbort"}, nil)
		if len(busy) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("transactions never completed: %+v", busy)
		}
		time.Sleep(time.Millisecond)
	}
	halt()

	checkOutcomes(t, marks, outcomes)
	checkEpochs(t, log.all())

	// Replay: a coordinator loaded from the log describes the same state.
	live := cur.Load()
	var ids []string
	for _, l := range live.List(nil, nil) {
		ids = append(ids, l.TransactionalID)
	}
	if len(ids) == 0 {
		t.Fatal("no transactional ids")
	}
	replay := New(Config{Now: clock.Now, Appender: simAppender{log, -1}, Markers: marks, ProducerIDs: pids.alloc, OffsetsPartition: offsetsPartition})
	if err := replay.LoadFrom(replay.BeginLoad(99), log.all()); err != nil {
		t.Fatal(err)
	}
	if got, want := replay.Describe(ids), live.Describe(ids); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed\n %+v\nlive\n %+v", got, want)
	}
}

func checkOutcomes(t *testing.T, marks *simMarkers, outcomes []outcome) {
	t.Helper()
	var committed, aborted, fenced, other int
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			if o.commit {
				committed++
			} else {
				aborted++
			}
			for _, p := range o.parts {
				found := false
				for _, m := range marks.after(p, o.before) {
					if m.txnID != o.txnID {
						continue
					}
					if m.commit == o.commit && m.producerID == o.pid && m.producerEpoch == o.epoch {
						found = true
						break
					}
					t.Fatalf("%+v: before its marker at %v came %+v", o, p, m)
				}
				if !found {
					t.Fatalf("%+v answered success without a marker at %v", o, p)
				}
			}
		case !errors.Is(o.err, kerr.ProducerFenced):
			other++
		case o.commit:
			fenced++
			for _, p := range o.parts {
				for _, m := range marks.after(p, o.before) {
					if m.txnID == o.txnID && m.commit && m.producerID == o.pid && m.producerEpoch == o.epoch {
						t.Fatalf("fenced %+v committed at %v: %+v", o, p, m)
					}
				}
			}
		}
	}
	if committed == 0 || aborted == 0 {
		t.Fatalf("simulation too quiet: %d commits, %d aborts, %d fenced of %d", committed, aborted, fenced, len(outcomes))
	}
	t.Logf("%d commits, %d aborts, %d fenced commits, %d other errors of %d EndTxn", committed, aborted, fenced, other, len(outcomes))
}

// checkEpochs checks that an id's producer epoch never goes back in the log.
func checkEpochs(t *testing.T, records []Record) {
	t.Helper()
	type pe struct {
		pid   int64
		epoch int16
	}
	last := map[string]pe{}
	for i, r := range records {
		d, err := DecodeRecord(r.Key, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		id := d.Key.TransactionalID
		if d.Value == nil {
			delete(last, id)
			continue
		}
		cur := pe{d.Value.ProducerID, d.Value.ProducerEpoch}
		if prev, ok := last[id]; ok && (prev.pid != cur.pid || cur.epoch < prev.epoch) {
			t.Fatalf("record %d of %s: %+v after %+v", i, id, cur, prev)
		}
		last[id] = cur
	}
}
