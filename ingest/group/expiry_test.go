package group

import (
	"reflect"
	"testing"
	"time"
)

func TestPlanOffsetExpiry(t *testing.T) {
	t0 := time.UnixMilli(1_000_000_000)
	day := 24 * time.Hour
	ret := 7 * day
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	offs := func(kv ...any) map[TopicPartition]Offset {
		m := map[TopicPartition]Offset{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(TopicPartition)] = kv[i+1].(Offset)
		}
		return m
	}
	a0, a1, b0 := tp("a", 0), tp("a", 1), tp("b", 0)
	for _, tt := range []struct {
		name string
		in   ExpiryInput
		now  time.Time
		want ExpiryPlan
	}{
		{"empty group, within retention of becoming empty",
			ExpiryInput{State: Empty, StateTime: at(5 * day), Offsets: offs(a0, Offset{CommitTime: t0})},
			at(11 * day), ExpiryPlan{}},
		{"empty group, retention after becoming empty",
			ExpiryInput{State: Empty, StateTime: at(5 * day), Offsets: offs(a0, Offset{CommitTime: t0})},
			at(12 * day), ExpiryPlan{Offsets: []TopicPartition{a0}, DeleteGroup: true}},
		{"simple consumer keeps recent commits",
			ExpiryInput{State: Empty, StateTime: t0, Offsets: offs(a0, Offset{CommitTime: at(10 * day)}, a1, Offset{CommitTime: at(1 * day)})},
			at(12 * day), ExpiryPlan{Offsets: []TopicPartition{a1}}},
		{"explicit expire time",
			ExpiryInput{State: Empty, StateTime: t0, Offsets: offs(a0, Offset{CommitTime: t0, ExpireTime: at(time.Hour)})},
			at(2 * time.Hour), ExpiryPlan{Offsets: []TopicPartition{a0}, DeleteGroup: true}},
		{"stable consumer group: unsubscribed topics by commit time",
			ExpiryInput{State: Stable, StateTime: t0, Subscribed: map[string]bool{"a": true},
				Offsets: offs(a0, Offset{CommitTime: t0}, b0, Offset{CommitTime: t0})},
			at(8 * day), ExpiryPlan{Offsets: []TopicPartition{b0}}},
		{"stable group with unknown subscriptions keeps all",
			ExpiryInput{State: Stable, StateTime: t0, Subscribed: map[string]bool{"": true}, Offsets: offs(b0, Offset{CommitTime: t0})},
			at(80 * day), ExpiryPlan{}},
		{"rebalancing group keeps all",
			ExpiryInput{State: PreparingRebalance, StateTime: t0, Offsets: offs(b0, Offset{CommitTime: t0})},
			at(80 * day), ExpiryPlan{}},
		{"busy group keeps all",
			ExpiryInput{State: Empty, StateTime: t0, Busy: true, Offsets: offs(b0, Offset{CommitTime: t0})},
			at(80 * day), ExpiryPlan{}},
		{"empty group without offsets is deleted",
			ExpiryInput{State: Empty, StateTime: t0}, at(time.Second), ExpiryPlan{DeleteGroup: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := PlanOffsetExpiry(tt.in, tt.now, ret); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExpireOffsets(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.OffsetsRetention = time.Hour })
	ids, gen := e.stable("g", "a")
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "g", MemberID: ids[0], Generation: gen, Offsets: []CommitOffset{{TopicPartition: tp("t", 0), Offset: 1}}}))
	ready(t, e.c.CommitOffsets(CommitRequest{Group: "s", Generation: -1, Offsets: []CommitOffset{{TopicPartition: tp("t", 0), Offset: 1}}}))
	now := e.clock.Advance(2 * time.Hour)
	e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ids[0], Generation: gen})
	if n, g := e.c.ExpireOffsets(now); n != 1 || g != 1 {
		t.Fatalf("expired %d offsets %d groups", n, g)
	}
	if s := e.state("s"); s != Dead {
		t.Fatalf("simple group %v", s)
	}
	if got, _ := e.c.FetchOffsets("g", nil); len(got) != 1 {
		t.Fatalf("stable group's offsets expired: %+v", got)
	}
	recs := e.log.all()
	if !reflect.DeepEqual(recs[len(recs)-2:], []Record{OffsetTombstone("s", "t", 0), GroupTombstone("s")}) {
		t.Fatalf("tombstones")
	}
	// Once g empties, its offsets go an hour later.
	e.c.Leave("g", []LeaveMember{{MemberID: ids[0]}})
	if n, _ := e.c.ExpireOffsets(e.clock.Advance(59 * time.Minute)); n != 0 {
		t.Fatalf("expired %d early", n)
	}
	if n, g := e.c.ExpireOffsets(e.clock.Advance(time.Minute)); n != 1 || g != 1 {
		t.Fatalf("expired %d offsets %d groups", n, g)
	}
}
