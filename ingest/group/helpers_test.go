package group

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
// release.
type fakeLog struct {
	mu      sync.Mutex
	records []Record
	hold    bool
	held    []heldAppend
	fail    error // the next appends fail with this
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

// release completes the held appends with err.
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

type env struct {
	t     *testing.T
	c     *Coordinator
	clock *fakeClock
	log   *fakeLog
	ids   int
}

func newEnv(t *testing.T, mod ...func(*Config)) *env {
	e := &env{t: t, clock: &fakeClock{t: time.UnixMilli(1_700_000_000_000)}, log: &fakeLog{}}
	cfg := Config{Now: e.clock.Now, Appender: e.log}
	var mu sync.Mutex
	cfg.NewMemberID = func(prefix string) string {
		mu.Lock()
		defer mu.Unlock()
		e.ids++
		return fmt.Sprintf("%s-%d", prefix, e.ids)
	}
	for _, m := range mod {
		m(&cfg)
	}
	e.c = New(cfg)
	if err := e.c.Load(nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func ready[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	default:
		t.Fatalf("response not ready")
		panic("unreachable")
	}
}

func notReady[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected response %+v", v)
	default:
	}
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: err = %v, want %v", what, got, want)
	}
}

const (
	session   = 10 * time.Second
	rebalance = 30 * time.Second
)

func joinReq(group, member, client string, protos ...string) JoinRequest {
	r := JoinRequest{Group: group, MemberID: member, ClientID: client, ClientHost: "/127.0.0.1",
		ProtocolType: "consumer", SessionTimeout: session, RebalanceTimeout: rebalance}
	if len(protos) == 0 {
		protos = []string{"range"}
	}
	for _, p := range protos {
		r.Protocols = append(r.Protocols, Protocol{Name: p, Metadata: []byte("meta-" + client + "-" + p)})
	}
	return r
}

// joinNew joins a new dynamic member the v4+ way (MEMBER_ID_REQUIRED, then
// again with the id) and returns the channel of the second join.
func (e *env) joinNew(group, client string, protos ...string) (string, <-chan JoinResponse) {
	e.t.Helper()
	req := joinReq(group, "", client, protos...)
	req.RequireKnownMemberID = true
	r := ready(e.t, e.c.Join(req))
	wantErr(e.t, "first join", r.Err, kerr.MemberIDRequired)
	req.MemberID = r.MemberID
	return r.MemberID, e.c.Join(req)
}

// stable builds a stable group of the given clients (new group); the
// first is leader. Each member is assigned "assign-<id>".
func (e *env) stable(group string, clients ...string) (ids []string, gen int32) {
	e.t.Helper()
	for _, cl := range clients {
		req := joinReq(group, "", cl)
		req.RequireKnownMemberID = true
		r := ready(e.t, e.c.Join(req))
		wantErr(e.t, "first join", r.Err, kerr.MemberIDRequired)
		ids = append(ids, r.MemberID)
	}
	var chans []<-chan JoinResponse
	for i, id := range ids {
		chans = append(chans, e.c.Join(joinReq(group, id, clients[i])))
	}
	for i, ch := range chans {
		r := ready(e.t, ch)
		if r.Err != nil || r.Leader != ids[0] || r.MemberID != ids[i] {
			e.t.Fatalf("join %d: %+v", i, r)
		}
		gen = r.Generation
	}
	return ids, e.syncAll(group, ids, gen)
}

// syncAll syncs every member of a CompletingRebalance group, the leader
// (ids[0]) last, and checks the assignments.
func (e *env) syncAll(group string, ids []string, gen int32) int32 {
	e.t.Helper()
	assign := map[string][]byte{}
	for _, id := range ids {
		assign[id] = []byte("assign-" + id)
	}
	var chans []<-chan SyncResponse
	for _, id := range ids[1:] {
		chans = append(chans, e.c.Sync(SyncRequest{Group: group, MemberID: id, Generation: gen}))
	}
	chans = append(chans, e.c.Sync(SyncRequest{Group: group, MemberID: ids[0], Generation: gen, Assignments: assign}))
	for i, ch := range chans {
		r := ready(e.t, ch)
		id := append(ids[1:len(ids):len(ids)], ids[0])[i]
		if r.Err != nil || string(r.Assignment) != "assign-"+id {
			e.t.Fatalf("sync %s: %+v", id, r)
		}
	}
	return gen
}

func (e *env) state(group string) State {
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	g := e.c.groups[group]
	if g == nil {
		return Dead
	}
	return g.state
}
