package cluster

import (
	"slices"
	"testing"
	"time"
)

// TestExpiredSessions: the controller's fencing decisions with the default
// timing (2 s heartbeats, 9 s sessions) on a made-up clock.
func TestExpiredSessions(t *testing.T) {
	tm := timing{heartbeat: 2 * time.Second, session: 9 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := time.Second
	regs := []Registration{{Broker: Broker{ID: 1}, Epoch: 10}, {Broker: Broker{ID: 2}, Epoch: 20}, {Broker: Broker{ID: 3}, Epoch: 30}, {Broker: Broker{ID: 4}, Epoch: 40, Fenced: true}}
	for _, tc := range []struct {
		name string
		ses  sessions
		now  time.Duration
		want []int32
	}{
		{"all heard recently", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(20 * s), 3: at(21 * s)}}, 22 * s, nil},
		{"silent for a session", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(20 * s), 3: at(12 * s)}}, 22 * s, []int32{3}},
		{"new controller, before its grace", sessions{since: t0, prev: -1}, 5900 * time.Millisecond, nil},
		{"new controller, after its grace", sessions{since: t0, prev: -1}, 6100 * time.Millisecond, []int32{2, 3}},
		{"previous controller, quicker", sessions{since: t0, prev: 3}, 1100 * time.Millisecond, []int32{3}},
		{"previous controller, not yet", sessions{since: t0, prev: 3}, 900 * time.Millisecond, nil},
		{"previous controller heard", sessions{since: t0, prev: 3, seen: map[int32]time.Time{3: at(2 * s)}}, 6100 * time.Millisecond, []int32{2}},
		{"connection lost, no heartbeat since", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(20 * s), 3: at(20 * s)},
			lost: map[int32]connLoss{3: {epoch: 30, at: at(20500 * time.Millisecond)}}}, 23600 * time.Millisecond, []int32{3}},
		{"connection lost, within the grace", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(20 * s), 3: at(20 * s)},
			lost: map[int32]connLoss{3: {epoch: 30, at: at(20500 * time.Millisecond)}}}, 23400 * time.Millisecond, nil},
		{"connection lost, heartbeat on a new one", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(22 * s), 3: at(22 * s)},
			lost: map[int32]connLoss{3: {epoch: 30, at: at(20500 * time.Millisecond)}}}, 25 * s, nil},
		{"connection of an older incarnation lost", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(20 * s), 3: at(20 * s)},
			lost: map[int32]connLoss{3: {epoch: 29, at: at(20500 * time.Millisecond)}}}, 25 * s, nil},
		{"self is never fenced", sessions{since: t0, prev: -1, seen: map[int32]time.Time{2: at(30 * s), 3: at(30 * s)},
			lost: map[int32]connLoss{1: {epoch: 10, at: at(s)}}}, 31 * s, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int32
			for _, r := range expiredSessions(regs, 1, tc.ses, tm, at(tc.now)) {
				got = append(got, r.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("fenced %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExpiredSessionsLiveBroker: a broker heartbeating every interval
// (with jitter up to a fifth of it) whose connection breaks every few
// heartbeats, reconnecting on the next one, is never found expired over
// many sessions; one that stops when its connection ends is found
// expired before a session has passed.
func TestExpiredSessionsLiveBroker(t *testing.T) {
	tm := timing{heartbeat: 2 * time.Second, session: 9 * time.Second}
	t0 := time.Unix(1000, 0)
	regs := []Registration{{Broker: Broker{ID: 1}, Epoch: 1}, {Broker: Broker{ID: 2}, Epoch: 2}}
	s := sessions{since: t0, prev: -1, seen: map[int32]time.Time{}, lost: map[int32]connLoss{}}
	step := 100 * time.Millisecond
	next := t0.Add(tm.heartbeat)
	beat := 0
	for now := t0; now.Before(t0.Add(10 * tm.session)); now = now.Add(step) {
		if !now.Before(next) {
			s.seen[2] = now
			beat++
			if beat%3 == 0 {
				// The connection breaks right after this heartbeat; the
				// next one, an interval (+ jitter) later, dials again.
				s.lost[2] = connLoss{epoch: 2, at: now.Add(step / 2)}
			}
			next = now.Add(tm.heartbeat + time.Duration(beat%5)*tm.heartbeat/20)
		}
		if got := expiredSessions(regs, 1, s, tm, now); len(got) != 0 {
			t.Fatalf("live broker fenced at %v", now.Sub(t0))
		}
	}
	dead := t0.Add(20 * time.Second)
	s.seen[2] = dead.Add(-time.Second)
	s.lost[2] = connLoss{epoch: 2, at: dead}
	var fencedAt time.Duration
	for now := dead; fencedAt == 0; now = now.Add(step) {
		if len(expiredSessions(regs, 1, s, tm, now)) == 1 {
			fencedAt = now.Sub(dead)
		}
	}
	if fencedAt > tm.quickGrace()+step || fencedAt >= tm.session {
		t.Fatalf("killed broker fenced %v after its connection ended", fencedAt)
	}
}
