package group

import (
	"github.com/twmb/franz-go/pkg/kmsg"
	"time"
)

// State is a classic group's state, named as Kafka names it in
// DescribeGroups and ListGroups.
type State int8

const (
	// Empty: no members; the group may hold committed offsets.
	Empty State = iota
	// PreparingRebalance: the join phase; members are (re)joining.
	PreparingRebalance
	// CompletingRebalance: the join phase ended; waiting for the leader's
	// SyncGroup with the assignments.
	CompletingRebalance
	// Stable: every member has its assignment for the generation.
	Stable
	// Dead: the group was deleted or unloaded.
	Dead
)

func (s State) String() string {
	switch s {
	case Empty:
		return "Empty"
	case PreparingRebalance:
		return "PreparingRebalance"
	case CompletingRebalance:
		return "CompletingRebalance"
	case Stable:
		return "Stable"
	case Dead:
		return "Dead"
	}
	return "Unknown"
}

// ParseState is the inverse of State.String, for ListGroups filters.
func ParseState(s string) (State, bool) {
	for st := Empty; st <= Dead; st++ {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// Protocol is one assignment protocol a member supports, with its metadata
// (for the "consumer" protocol type, the subscription).
type Protocol struct {
	Name     string
	Metadata []byte
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Offset is a committed offset.
type Offset struct {
	Offset      int64
	LeaderEpoch int32 // -1 when unknown
	Metadata    string
	CommitTime  time.Time
	ExpireTime  time.Time // zero unless the commit set a retention time (OffsetCommit v2-v4)

	// logPos orders the offset's commit record in the partition's log:
	// the record's index on load, a counter continuing from it for records
	// appended since. Only the order matters (Kafka compares record offsets
	// when a transaction commits offsets, see applyCommitted).
	logPos uint64
}

type member struct {
	id               string
	instanceID       string // "" for dynamic members
	clientID         string
	clientHost       string
	rebalanceTimeout time.Duration
	sessionTimeout   time.Duration
	protocolType     string
	protocols        []Protocol
	assignment       []byte

	seq      uint64    // order of joining the group: the leader is the earliest
	deadline time.Time // session expiry
	joinWait chan JoinResponse
	syncWait chan SyncResponse
}

func (m *member) metadataFor(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// vote is the member's most preferred protocol among candidates.
func (m *member) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.Name] {
			return p.Name
		}
	}
	return ""
}

func sameProtocols(a, b []Protocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || string(a[i].Metadata) != string(b[i].Metadata) {
			return false
		}
	}
	return true
}

// Group is one classic group. Its fields are read and written only under
// the Coordinator's lock.
type Group struct {
	id           string
	state        State
	stateTime    time.Time // when state last changed (Kafka's currentStateTimestamp)
	protocolType string
	protocol     string
	leader       string
	generation   int32

	members     map[string]*member
	static      map[string]string    // instance id -> member id
	pending     map[string]time.Time // KIP-394 member ids handed out, not yet joined -> expiry
	pendingSync map[string]bool      // members of this generation that have not synced
	nextSeq     uint64

	joinDeadline time.Time // end of the join phase (PreparingRebalance)
	syncDeadline time.Time // members still in pendingSync after this are removed
	storing      bool      // the leader's assignment is being persisted

	offsets        map[TopicPartition]Offset
	pendingCommits int // commits appended but not yet durable
	// tombstoned are the log positions of offset tombstones written while
	// commits were in flight: a commit from an earlier record that
	// completes after must not bring the offset back. Cleared when no
	// commit is in flight.
	tombstoned map[TopicPartition]uint64

	// txn holds the pending transactional offsets (TxnOffsetCommit), by
	// producer id, until the producer's commit or abort marker; txnParts
	// counts, per partition, the producers with a pending offset for it.
	txn      map[int64]map[TopicPartition]*txnOffset
	txnParts map[TopicPartition]int
	// deleted: the log's last record of the group is its tombstone; it
	// lives on only for pending transactional offsets written before it
	// (logs of Kafka versions that did not tombstone them) and goes when
	// they end without leaving an offset. Cleared by a commit or a join.
	deleted bool
}

func newGroup(id string, now time.Time) *Group {
	return &Group{
		id:          id,
		state:       Empty,
		stateTime:   now,
		members:     map[string]*member{},
		static:      map[string]string{},
		pending:     map[string]time.Time{},
		pendingSync: map[string]bool{},
		offsets:     map[TopicPartition]Offset{},
		txn:         map[int64]map[TopicPartition]*txnOffset{},
		txnParts:    map[TopicPartition]int{},
	}
}

func (g *Group) transition(s State, now time.Time) {
	g.state = s
	g.stateTime = now
}

// candidates are the protocols every member supports.
func (g *Group) candidates() map[string]bool {
	var c map[string]bool
	for _, m := range g.members {
		next := map[string]bool{}
		for _, p := range m.protocols {
			if c == nil || c[p.Name] {
				next[p.Name] = true
			}
		}
		c = next
	}
	return c
}

// supports reports whether a member with these protocols may join: the
// protocol type matches and it shares a protocol with every member (Kafka's
// supportsProtocols). A joining member that is already in the group is
// checked against the others, as its own old protocols are replaced.
func (g *Group) supports(protocolType string, protocols []Protocol, self string) bool {
	others := 0
	for id := range g.members {
		if id != self {
			others++
		}
	}
	if others == 0 {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	var c map[string]bool
	for id, m := range g.members {
		if id == self {
			continue
		}
		next := map[string]bool{}
		for _, p := range m.protocols {
			if c == nil || c[p.Name] {
				next[p.Name] = true
			}
		}
		c = next
	}
	for _, p := range protocols {
		if c[p.Name] {
			return true
		}
	}
	return false
}

// selectProtocol is Kafka's rule: among the protocols every member
// supports, each member votes for the first one in its own preference
// order, and the most voted protocol wins. Ties go to the protocol the
// earliest member (the leader) prefers.
func (g *Group) selectProtocol() string {
	cands := g.candidates()
	votes := map[string]int{}
	for _, m := range g.members {
		if v := m.vote(cands); v != "" {
			votes[v]++
		}
	}
	best, bestVotes := "", -1
	for _, m := range g.ordered() {
		for _, p := range m.protocols {
			if n, ok := votes[p.Name]; ok && n > bestVotes {
				best, bestVotes = p.Name, n
			}
		}
	}
	return best
}

// ordered returns the members in joining order.
func (g *Group) ordered() []*member {
	out := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].seq < out[j-1].seq; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (g *Group) addMember(m *member) {
	g.nextSeq++
	m.seq = g.nextSeq
	g.members[m.id] = m
	if m.instanceID != "" {
		g.static[m.instanceID] = m.id
	}
	if g.leader == "" {
		g.leader = m.id
	}
}

func (g *Group) removeMember(id string) {
	m, ok := g.members[id]
	if !ok {
		return
	}
	delete(g.members, id)
	delete(g.pendingSync, id)
	if m.instanceID != "" && g.static[m.instanceID] == id {
		delete(g.static, m.instanceID)
	}
	if g.leader == id {
		g.leader = ""
		if o := g.ordered(); len(o) > 0 {
			g.leader = o[0].id
		}
	}
}

func (g *Group) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

func (g *Group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if m.joinWait == nil {
			return false
		}
	}
	return true
}

// applyMetadata sets the group from a loaded metadata record.
func (g *Group) applyMetadata(v *kmsg.GroupMetadataValue, now time.Time) {
	g.protocolType = v.ProtocolType
	g.generation = v.Generation
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.Leader != nil {
		g.leader = *v.Leader
	}
	if v.CurrentStateTimestamp >= 0 {
		g.stateTime = time.UnixMilli(v.CurrentStateTimestamp)
	}
	for _, vm := range v.Members {
		m := &member{
			id:               vm.MemberID,
			clientID:         vm.ClientID,
			clientHost:       vm.ClientHost,
			sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
			rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
			protocolType:     v.ProtocolType,
			protocols:        []Protocol{{Name: g.protocol, Metadata: vm.Subscription}},
			assignment:       vm.Assignment,
		}
		if vm.RebalanceTimeoutMillis < 0 { // v0 records carry none
			m.rebalanceTimeout = m.sessionTimeout
		}
		if vm.InstanceID != nil {
			m.instanceID = *vm.InstanceID
		}
		m.deadline = now.Add(m.sessionTimeout)
		leader := g.leader
		g.addMember(m)
		g.leader = leader
	}
	if len(g.members) > 0 {
		g.state = Stable
	} else {
		g.state = Empty
	}
}
