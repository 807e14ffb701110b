package txn

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

type heldAppend struct {
	records []Record
	done    func(error)
}

// fakeLog is an Appender that stores records for real. By default it
// completes every append at once; with hold set it queues them until
// release; with fail set appends fail (nothing stored).
type fakeLog struct {
	mu      sync.Mutex
	records []Record
	hold    bool
	held    []heldAppend
	fail    error
}

func (l *fakeLog) Append(records []Record, done func(error)) {
	l.mu.Lock()
	if l.hold {
		l.held = append(l.held, heldAppend{records, done})
		l.mu.Unlock()
		return
	}
	err := l.fail
	if err == nil {
		l.records = append(l.records, records...)
	}
	l.mu.Unlock()
	done(err)
}

func (l *fakeLog) setHold(h bool) {
	l.mu.Lock()
	l.hold = h
	l.mu.Unlock()
}

func (l *fakeLog) setFail(err error) {
	l.mu.Lock()
	l.fail = err
	l.mu.Unlock()
}

// release completes the held appends with err and stops holding.
func (l *fakeLog) release(err error) {
	l.mu.Lock()
	held := l.held
	l.held, l.hold = nil, false
	if err == nil {
		for _, h := range held {
			l.records = append(l.records, h.records...)
		}
	}
	l.mu.Unlock()
	for _, h := range held {
		h.done(err)
	}
}

func (l *fakeLog) all() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), l.records...)
}

// states decodes the log into the states written for txnID, "tombstone"
// for a tombstone.
func (l *fakeLog) states(t *testing.T, txnID string) []string {
	t.Helper()
	var out []string
	for _, r := range l.all() {
		d, err := DecodeRecord(r.Key, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d.Key.TransactionalID != txnID {
			continue
		}
		if d.Value == nil {
			out = append(out, "tombstone")
		} else {
			out = append(out, State(d.Value.State).String())
		}
	}
	return out
}

// marker is one durable transaction marker at a partition.
type marker struct {
	txnID            string
	producerID       int64
	producerEpoch    int16
	coordinatorEpoch int32
	commit           bool
}

type heldMarkers struct {
	m    Markers
	done func(map[TopicPartition]error)
}

// fakeMarkers is a MarkerWriter that stores the markers written at each
// partition. failures[tp] are errors returned, one per attempt, before the
// partition accepts markers; with hold set writes wait for release.
type fakeMarkers struct {
	mu       sync.Mutex
	written  map[TopicPartition][]marker
	calls    []Markers
	failures map[TopicPartition][]error
	hold     bool
	held     []heldMarkers
}

func newFakeMarkers() *fakeMarkers {
	return &fakeMarkers{written: map[TopicPartition][]marker{}, failures: map[TopicPartition][]error{}}
}

func (f *fakeMarkers) WriteMarkers(m Markers, done func(map[TopicPartition]error)) {
	f.mu.Lock()
	f.calls = append(f.calls, m)
	if f.hold {
		f.held = append(f.held, heldMarkers{m, done})
		f.mu.Unlock()
		return
	}
	res := f.writeLocked(m)
	f.mu.Unlock()
	done(res)
}

func (f *fakeMarkers) writeLocked(m Markers) map[TopicPartition]error {
	res := map[TopicPartition]error{}
	for _, tp := range m.Partitions {
		if errs := f.failures[tp]; len(errs) > 0 {
			res[tp] = errs[0]
			f.failures[tp] = errs[1:]
			continue
		}
		f.written[tp] = append(f.written[tp], marker{m.TransactionalID, m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch, m.Commit})
		res[tp] = nil
	}
	return res
}

func (f *fakeMarkers) setHold(h bool) {
	f.mu.Lock()
	f.hold = h
	f.mu.Unlock()
}

// release writes the held marker batches and stops holding.
func (f *fakeMarkers) release() {
	f.mu.Lock()
	held := f.held
	f.held, f.hold = nil, false
	res := make([]map[TopicPartition]error, len(held))
	for i, h := range held {
		res[i] = f.writeLocked(h.m)
	}
	f.mu.Unlock()
	for i, h := range held {
		h.done(res[i])
	}
}

func (f *fakeMarkers) fail(tp TopicPartition, errs ...error) {
	f.mu.Lock()
	f.failures[tp] = append(f.failures[tp], errs...)
	f.mu.Unlock()
}

func (f *fakeMarkers) at(tp TopicPartition) []marker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]marker(nil), f.written[tp]...)
}

func (f *fakeMarkers) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeMarkers) lastCall() Markers {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

// pidAllocator hands out producer ids from 1000 up.
type pidAllocator struct {
	mu   sync.Mutex
	next int64
	fail error
}

func (p *pidAllocator) alloc() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return 0, p.fail
	}
	p.next++
	return 999 + p.next, nil
}

var offsetsTopic = "__consumer_offsets"

func offsetsPartition(group string) TopicPartition {
	return TopicPartition{Topic: offsetsTopic, Partition: int32(len(group) % 50)}
}

type env struct {
	clock   *fakeClock
	log     *fakeLog
	markers *fakeMarkers
	pids    *pidAllocator
	c       *Coordinator
}

var start = time.UnixMilli(1_700_000_000_000)

func (e *env) config() Config {
	return Config{Now: e.clock.Now, Appender: e.log, Markers: e.markers, ProducerIDs: e.pids.alloc,
		OffsetsPartition: offsetsPartition}
}

// newEnv is a coordinator loaded (coordinator epoch 5) from an empty log.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clock: &fakeClock{t: start}, log: &fakeLog{}, markers: newFakeMarkers(), pids: &pidAllocator{}}
	e.c = New(e.config())
	if err := e.c.LoadFrom(e.c.BeginLoad(5), nil); err != nil {
		t.Fatal(err)
	}
	return e
}

// failover unloads the coordinator and loads a new one, with coordinator
// epoch epoch, from the records stored so far.
func (e *env) failover(t *testing.T, epoch int32) {
	t.Helper()
	e.c.Unload()
	e.c = New(e.config())
	if err := e.c.LoadFrom(e.c.BeginLoad(epoch), e.log.all()); err != nil {
		t.Fatal(err)
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

// pending fails if ch already has an answer.
func pending[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("answered early with %v", v)
	default:
	}
}

func (e *env) init(t *testing.T, id string) (int64, int16) {
	t.Helper()
	r := wait(t, e.c.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: 60000, ProducerID: -1, ProducerEpoch: -1}))
	if r.Err != nil {
		t.Fatalf("init %s: %v", id, r.Err)
	}
	return r.ProducerID, r.ProducerEpoch
}

func (e *env) add(t *testing.T, id string, pid int64, epoch int16, parts ...TopicPartition) {
	t.Helper()
	res := wait(t, e.c.AddPartitions(id, pid, epoch, parts))
	for tp, err := range res {
		if err != nil {
			t.Fatalf("add %v to %s: %v", tp, id, err)
		}
	}
}

func (e *env) describe(t *testing.T, id string) Description {
	t.Helper()
	d := e.c.Describe([]string{id})[0]
	if d.Err != nil {
		t.Fatalf("describe %s: %v", id, d.Err)
	}
	return d
}

func tp(topic string, p int32) TopicPartition { return TopicPartition{Topic: topic, Partition: p} }

func errIs(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) && got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// errTest is a failure that is not a Kafka error.
var errTest = errors.New("test failure")
