package cluster

// Broker liveness as the controller judges it: which registered brokers to
// fence because their sessions expired. The decision is a pure function
// over what the controller observed (sessions); controllerLoop (raft.go)
// feeds it the clock and proposes the fencing.
//
// A broker's session expires:
//   - SessionTimeout after its last heartbeat (broker.session.timeout.ms);
//   - sooner, quickGrace after the connection that carried its heartbeats
//     ended (EOF or reset: the kernel closes a killed process's sockets at
//     once), unless a heartbeat of the same incarnation arrived after that.
//     A live broker whose connection broke dials again on its next
//     heartbeat, one interval later at most, so it is not fenced; a broker
//     whose host died without closing its sockets still waits for the
//     session timeout.
//   - for a controller that has just taken over, which has no heartbeat
//     times: newControllerGrace after it took over for the brokers it has
//     not heard from, and prevControllerGrace for the previous controller
//     (the election happened because that one stopped answering). Brokers
//     heartbeat as soon as they learn of a new controller (heartbeatLoop),
//     which a live previous controller does with the election itself.

import "time"

// sessions is what a controller observed of brokers' liveness since it
// took over. Times come from the controller's clock.
type sessions struct {
	// since is when this node became the controller.
	since time.Time
	// prev is the controller before it (-1 when unknown).
	prev int32
	// seen is the last heartbeat per broker.
	seen map[int32]time.Time
	// lost is, per broker, the latest end of a connection that carried
	// its heartbeats.
	lost map[int32]connLoss
}

// connLoss is the end of a heartbeat connection of a broker incarnation.
type connLoss struct {
	epoch int64
	at    time.Time
}

// timing is the heartbeat interval and the session timeout.
type timing struct {
	heartbeat, session time.Duration
}

// quickGrace is how long a broker whose heartbeat connection ended, or the
// previous controller, has to heartbeat before it is fenced: one interval
// and a half (the next heartbeat comes within one).
func (t timing) quickGrace() time.Duration {
	return min(t.session, t.heartbeat+t.heartbeat/2)
}

// prevControllerGrace is how long a new controller waits for the previous
// one, which, if alive, heartbeats as soon as it learns of the election
// (within milliseconds when it is connected and scheduled): half an
// interval, but at least minPrevControllerGrace, so that a live previous
// controller on a busy host (learning of the election, dialing and
// sending take a few scheduler rounds) is not fenced.
func (t timing) prevControllerGrace() time.Duration {
	return min(t.session, max(t.heartbeat/2, minPrevControllerGrace))
}

// minPrevControllerGrace is the floor of prevControllerGrace.
const minPrevControllerGrace = 500 * time.Millisecond

// newControllerGrace is how long a new controller waits for a broker it
// has not heard from: a few heartbeat intervals for live brokers to find
// it, not a whole session, which would add one to the failover of a
// broker that was also the controller.
func (t timing) newControllerGrace() time.Duration {
	return min(t.session, 3*t.heartbeat)
}

// expiredSessions returns the registered, unfenced brokers other than self
// whose sessions expired at now, in the order of regs. The controller's own
// broker is alive by running this (a stalled process must not fence itself
// on resuming).
func expiredSessions(regs []Registration, self int32, s sessions, t timing, now time.Time) []Registration {
	var out []Registration
	for _, r := range regs {
		if r.Fenced || r.ID == self {
			continue
		}
		seen, heard := s.seen[r.ID]
		if !heard {
			grace := t.newControllerGrace()
			if r.ID == s.prev {
				grace = t.prevControllerGrace()
			}
			// As if last heard so that the session ends at since+grace.
			seen = s.since.Add(grace - t.session)
		}
		expired := now.Sub(seen) > t.session
		if l, ok := s.lost[r.ID]; ok && l.epoch == r.Epoch && !seen.After(l.at) && now.Sub(l.at) > t.quickGrace() {
			expired = true
		}
		if expired {
			out = append(out, r)
		}
	}
	return out
}
