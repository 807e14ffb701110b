package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinRequest is a JoinGroup request. For JoinGroup v0, which has no
// rebalance timeout, the caller passes the session timeout as both.
type JoinRequest struct {
	Group            string
	MemberID         string // "" on a member's first join
	InstanceID       string // group.instance.id (KIP-345), "" for dynamic members
	ClientID         string
	ClientHost       string
	ProtocolType     string
	Protocols        []Protocol // in the member's order of preference
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	// RequireKnownMemberID is set for JoinGroup v4+: a dynamic member's
	// first join gets MEMBER_ID_REQUIRED with its member id (KIP-394).
	RequireKnownMemberID bool
}

// JoinMember is a member as the leader sees it in its JoinGroup response.
type JoinMember struct {
	MemberID   string
	InstanceID string
	Metadata   []byte
}

// JoinResponse is a JoinGroup response. Members is set for the leader only.
// Err is nil or a *kerr.Error.
type JoinResponse struct {
	Err            error
	Generation     int32
	ProtocolType   string
	Protocol       string
	Leader         string
	MemberID       string
	SkipAssignment bool // KIP-814: a static leader rejoined without a rebalance
	Members        []JoinMember
}

// Join handles a JoinGroup. The response arrives on the returned channel:
// at once for errors, MEMBER_ID_REQUIRED and members whose metadata did not
// change, otherwise when the join phase ends (every member rejoined, or the
// rebalance timeout passed, see Tick). The channel receives exactly one value.
func (c *Coordinator) Join(req JoinRequest) <-chan JoinResponse {
	ch := make(chan JoinResponse, 1)
	c.mu.Lock()
	now := c.cfg.Now()
	_, existed := c.groups[req.Group]
	if err := c.joinLocked(now, req, ch); err != nil {
		ch <- JoinResponse{Err: err, MemberID: req.MemberID, Generation: -1}
		if g := c.groups[req.Group]; !existed && g != nil && len(g.members) == 0 && len(g.pending) == 0 {
			delete(c.groups, req.Group)
		}
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

func (c *Coordinator) joinLocked(now time.Time, req JoinRequest, ch chan JoinResponse) error {
	if err := c.activeErrLocked(); err != nil {
		return err
	}
	if req.Group == "" {
		return kerr.InvalidGroupID
	}
	if req.SessionTimeout < c.cfg.MinSessionTimeout || req.SessionTimeout > c.cfg.MaxSessionTimeout {
		return kerr.InvalidSessionTimeout
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return kerr.InconsistentGroupProtocol
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.MemberID != "" {
			return kerr.UnknownMemberID
		}
		g = newGroup(req.Group, now)
		c.groups[req.Group] = g
	}
	if g.state == Dead {
		return kerr.CoordinatorNotAvailable
	}
	g.deleted = false
	if req.MemberID == "" {
		return c.joinNewLocked(now, g, req, ch)
	}
	return c.joinKnownLocked(now, g, req, ch)
}

// memberIDPrefix is what a new member id starts with: the static instance
// id when there is one, else the client id, as Kafka makes them (clients
// such as franz-go recognise a static leader by it at JoinGroup v8 and
// below).
func memberIDPrefix(req JoinRequest) string {
	if req.InstanceID != "" {
		return req.InstanceID
	}
	return req.ClientID
}

func (c *Coordinator) joinNewLocked(now time.Time, g *Group, req JoinRequest, ch chan JoinResponse) error {
	if req.InstanceID != "" {
		if old, ok := g.static[req.InstanceID]; ok {
			if !g.supports(req.ProtocolType, req.Protocols, old) {
				return kerr.InconsistentGroupProtocol
			}
			c.replaceStaticLocked(now, g, g.members[old], c.cfg.NewMemberID(memberIDPrefix(req)), req, ch)
			return nil
		}
	}
	if !g.supports(req.ProtocolType, req.Protocols, "") {
		return kerr.InconsistentGroupProtocol
	}
	if len(g.members)+len(g.pending) >= c.cfg.MaxGroupSize {
		return kerr.GroupMaxSizeReached
	}
	id := c.cfg.NewMemberID(memberIDPrefix(req))
	if req.InstanceID == "" && req.RequireKnownMemberID {
		g.pending[id] = now.Add(req.SessionTimeout)
		ch <- JoinResponse{Err: kerr.MemberIDRequired, MemberID: id, Generation: -1}
		return nil
	}
	c.addMemberLocked(now, g, id, req, ch)
	return nil
}

func (c *Coordinator) joinKnownLocked(now time.Time, g *Group, req JoinRequest, ch chan JoinResponse) error {
	if _, ok := g.pending[req.MemberID]; ok {
		if !g.supports(req.ProtocolType, req.Protocols, "") {
			return kerr.InconsistentGroupProtocol
		}
		delete(g.pending, req.MemberID)
		c.addMemberLocked(now, g, req.MemberID, req, ch)
		return nil
	}
	m, err := g.validateMember(req.MemberID, req.InstanceID)
	if err != nil {
		return err
	}
	if !g.supports(req.ProtocolType, req.Protocols, m.id) {
		return kerr.InconsistentGroupProtocol
	}
	switch g.state {
	case PreparingRebalance:
		c.updateMemberLocked(now, m, req, ch)
		c.tryCompleteJoinLocked(now, g)
	case CompletingRebalance:
		if sameProtocols(m.protocols, req.Protocols) {
			// The member lost the response: send it again.
			m.deadline = now.Add(m.sessionTimeout)
			ch <- g.joinResponse(m)
			return nil
		}
		c.updateMemberLocked(now, m, req, ch)
		c.rebalanceLocked(now, g)
	case Stable:
		if m.id != g.leader && sameProtocols(m.protocols, req.Protocols) {
			m.deadline = now.Add(m.sessionTimeout)
			ch <- g.joinResponse(m)
			return nil
		}
		c.updateMemberLocked(now, m, req, ch)
		c.rebalanceLocked(now, g)
	default: // Empty
		return kerr.UnknownMemberID
	}
	return nil
}

// validateMember is Kafka's check of a request's member: a static
// instance now owned by another member id is fenced, an unknown member id
// is unknown.
func (g *Group) validateMember(memberID, instanceID string) (*member, error) {
	if instanceID != "" {
		if id, ok := g.static[instanceID]; ok && id != memberID {
			return nil, kerr.FencedInstanceID
		}
	}
	m := g.members[memberID]
	if m == nil {
		return nil, kerr.UnknownMemberID
	}
	return m, nil
}

func (c *Coordinator) addMemberLocked(now time.Time, g *Group, id string, req JoinRequest, ch chan JoinResponse) {
	m := &member{id: id, instanceID: req.InstanceID}
	g.addMember(m)
	if len(g.members) == 1 {
		g.protocolType = req.ProtocolType
	}
	c.updateMemberLocked(now, m, req, ch)
	c.rebalanceLocked(now, g)
}

func (c *Coordinator) updateMemberLocked(now time.Time, m *member, req JoinRequest, ch chan JoinResponse) {
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	m.protocolType, m.protocols = req.ProtocolType, req.Protocols
	m.sessionTimeout, m.rebalanceTimeout = req.SessionTimeout, req.RebalanceTimeout
	m.deadline = now.Add(req.SessionTimeout)
	if m.joinWait != nil {
		// A second JoinGroup while the first waits: the first is superseded.
		m.joinWait <- JoinResponse{Err: kerr.RebalanceInProgress, MemberID: m.id, Generation: -1}
	}
	m.joinWait = ch
}

// replaceStaticLocked gives a static member's instance to a new member id
// (KIP-345): the old id is fenced. In a stable group whose selected
// protocol would not change, the new id takes the old one's place and
// assignment without a rebalance, answered once that is persisted.
func (c *Coordinator) replaceStaticLocked(now time.Time, g *Group, old *member, newID string, req JoinRequest, ch chan JoinResponse) {
	oldID := old.id
	if old.joinWait != nil {
		old.joinWait <- JoinResponse{Err: kerr.FencedInstanceID, MemberID: oldID, Generation: -1}
		old.joinWait = nil
	}
	if old.syncWait != nil {
		old.syncWait <- SyncResponse{Err: kerr.FencedInstanceID}
		old.syncWait = nil
	}
	g.renameMember(oldID, newID)
	m := old
	if g.state != Stable {
		c.updateMemberLocked(now, m, req, ch)
		c.rebalanceLocked(now, g)
		return
	}
	oldProtocols := m.protocols
	m.protocols = req.Protocols
	if g.selectProtocol() != g.protocol {
		c.updateMemberLocked(now, m, req, ch)
		c.rebalanceLocked(now, g)
		return
	}
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	m.sessionTimeout, m.rebalanceTimeout = req.SessionTimeout, req.RebalanceTimeout
	m.deadline = now.Add(req.SessionTimeout)
	gen := g.generation
	c.appendLocked([]Record{g.metadataRecord(nil)}, func(live bool, err error) {
		switch {
		case !live || c.groups[g.id] != g:
			ch <- JoinResponse{Err: kerr.NotCoordinator, MemberID: newID, Generation: -1}
		case err != nil:
			if g.members[newID] == m && g.generation == gen {
				g.renameMember(newID, oldID)
				m.protocols = oldProtocols
			}
			ch <- JoinResponse{Err: appendError(err, false), MemberID: newID, Generation: -1}
		default:
			resp := g.joinResponse(m)
			resp.SkipAssignment = m.id == g.leader
			ch <- resp
		}
	})
}

func (g *Group) renameMember(oldID, newID string) {
	m := g.members[oldID]
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	if m.instanceID != "" {
		g.static[m.instanceID] = newID
	}
	if g.leader == oldID {
		g.leader = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
}

// rebalanceLocked starts a join phase if none runs, and ends it at once if
// every member has already joined.
func (c *Coordinator) rebalanceLocked(now time.Time, g *Group) {
	if g.state != PreparingRebalance {
		if g.state == CompletingRebalance {
			for _, m := range g.members {
				m.assignment = nil
				if m.syncWait != nil {
					m.syncWait <- SyncResponse{Err: kerr.RebalanceInProgress}
					m.syncWait = nil
				}
			}
		}
		g.storing = false
		clear(g.pendingSync)
		g.transition(PreparingRebalance, now)
		g.joinDeadline = now.Add(g.maxRebalanceTimeout())
	}
	c.tryCompleteJoinLocked(now, g)
}

func (c *Coordinator) tryCompleteJoinLocked(now time.Time, g *Group) {
	if g.state == PreparingRebalance && g.allJoined() {
		c.completeJoinLocked(now, g)
	}
}

// completeJoinLocked ends the join phase: members that did not rejoin are
// removed, the generation advances, and every joined member is answered
// (the leader with the members' metadata). A group left without members
// becomes Empty, which is persisted.
func (c *Coordinator) completeJoinLocked(now time.Time, g *Group) {
	for _, m := range g.ordered() {
		if m.joinWait == nil {
			if m.syncWait != nil {
				m.syncWait <- SyncResponse{Err: kerr.RebalanceInProgress}
				m.syncWait = nil
			}
			g.removeMember(m.id)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.protocol, g.leader = "", ""
		g.transition(Empty, now)
		c.appendLocked([]Record{g.metadataRecord(nil)}, func(bool, error) {
			// Nothing waits for it; a failed write leaves the previous
			// generation in the log, which loads as Stable and expires.
		})
		return
	}
	g.protocol = g.selectProtocol()
	g.transition(CompletingRebalance, now)
	g.syncDeadline = now.Add(g.maxRebalanceTimeout())
	for _, m := range g.ordered() {
		m.joinWait <- g.joinResponse(m)
		m.joinWait = nil
		m.deadline = now.Add(m.sessionTimeout)
		g.pendingSync[m.id] = true
	}
}

func (g *Group) joinResponse(m *member) JoinResponse {
	r := JoinResponse{
		Generation:   g.generation,
		ProtocolType: g.protocolType,
		Protocol:     g.protocol,
		Leader:       g.leader,
		MemberID:     m.id,
	}
	if m.id == g.leader {
		for _, o := range g.ordered() {
			r.Members = append(r.Members, JoinMember{MemberID: o.id, InstanceID: o.instanceID, Metadata: o.metadataFor(g.protocol)})
		}
	}
	return r
}

// metadataRecord is the group's metadata record; assignments replace the
// members' current assignments when not nil.
func (g *Group) metadataRecord(assignments map[string][]byte) Record {
	v := kmsg.NewGroupMetadataValue()
	v.Version = groupValueVersion
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	if g.protocol != "" {
		p := g.protocol
		v.Protocol = &p
	}
	if g.leader != "" {
		l := g.leader
		v.Leader = &l
	}
	v.CurrentStateTimestamp = g.stateTime.UnixMilli()
	for _, m := range g.ordered() {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.id
		if m.instanceID != "" {
			inst := m.instanceID
			vm.InstanceID = &inst
		}
		vm.ClientID, vm.ClientHost = m.clientID, m.clientHost
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout.Milliseconds())
		vm.SessionTimeoutMillis = int32(m.sessionTimeout.Milliseconds())
		vm.Subscription = m.metadataFor(g.protocol)
		vm.Assignment = m.assignment
		if assignments != nil {
			vm.Assignment = assignments[m.id]
		}
		if vm.Subscription == nil {
			vm.Subscription = []byte{}
		}
		if vm.Assignment == nil {
			vm.Assignment = []byte{}
		}
		v.Members = append(v.Members, vm)
	}
	return Record{Key: EncodeGroupKey(g.id), Value: v.AppendTo(nil)}
}

// SyncRequest is a SyncGroup request. ProtocolType and Protocol are those
// of SyncGroup v5+, "" when not sent.
type SyncRequest struct {
	Group        string
	MemberID     string
	InstanceID   string
	Generation   int32
	ProtocolType string
	Protocol     string
	Assignments  map[string][]byte // the leader's; ignored from followers
}

// SyncResponse is a SyncGroup response.
type SyncResponse struct {
	Err          error
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// Sync handles a SyncGroup. In a stable group the member's assignment comes
// back at once; while the rebalance completes, every member waits until the
// leader's assignments are durable.
func (c *Coordinator) Sync(req SyncRequest) <-chan SyncResponse {
	ch := make(chan SyncResponse, 1)
	c.mu.Lock()
	if err := c.syncLocked(c.cfg.Now(), req, ch); err != nil {
		ch <- SyncResponse{Err: err}
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

func (c *Coordinator) syncLocked(now time.Time, req SyncRequest, ch chan SyncResponse) error {
	if err := c.activeErrLocked(); err != nil {
		return err
	}
	g := c.groups[req.Group]
	if g == nil {
		return kerr.UnknownMemberID
	}
	m, err := g.validateMember(req.MemberID, req.InstanceID)
	if err != nil {
		return err
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration
	}
	if (req.ProtocolType != "" && req.ProtocolType != g.protocolType) || (req.Protocol != "" && req.Protocol != g.protocol) {
		return kerr.InconsistentGroupProtocol
	}
	switch g.state {
	case PreparingRebalance:
		return kerr.RebalanceInProgress
	case Stable:
		delete(g.pendingSync, m.id)
		m.deadline = now.Add(m.sessionTimeout)
		ch <- SyncResponse{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}
		return nil
	case CompletingRebalance:
	default:
		return kerr.UnknownMemberID
	}
	delete(g.pendingSync, m.id)
	m.deadline = now.Add(m.sessionTimeout)
	if m.syncWait != nil {
		m.syncWait <- SyncResponse{Err: kerr.RebalanceInProgress}
	}
	m.syncWait = ch
	if m.id != g.leader || g.storing {
		return nil
	}
	assign := make(map[string][]byte, len(g.members))
	for id := range g.members {
		assign[id] = req.Assignments[id]
		if assign[id] == nil {
			assign[id] = []byte{}
		}
	}
	g.storing = true
	gen := g.generation
	c.appendLocked([]Record{g.metadataRecord(assign)}, func(live bool, err error) {
		if !live || c.groups[g.id] != g || g.state != CompletingRebalance || g.generation != gen {
			return // a rebalance or unload already answered the waiters
		}
		g.storing = false
		if err != nil {
			err = appendError(err, false)
			for _, m := range g.members {
				if m.syncWait != nil {
					m.syncWait <- SyncResponse{Err: err}
					m.syncWait = nil
				}
			}
			c.rebalanceLocked(c.cfg.Now(), g)
			return
		}
		for id, m := range g.members {
			m.assignment = assign[id]
			if m.syncWait != nil {
				m.syncWait <- SyncResponse{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}
				m.syncWait = nil
			}
		}
		g.transition(Stable, c.cfg.Now())
	})
	return nil
}

// HeartbeatRequest is a Heartbeat request.
type HeartbeatRequest struct {
	Group      string
	MemberID   string
	InstanceID string
	Generation int32
}

// Heartbeat keeps a member's session alive. It returns nil or a *kerr.Error:
// REBALANCE_IN_PROGRESS during a join phase tells the member to rejoin.
func (c *Coordinator) Heartbeat(req HeartbeatRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.activeErrLocked(); err != nil {
		return err
	}
	g := c.groups[req.Group]
	if g == nil || g.state == Empty {
		return kerr.UnknownMemberID
	}
	m, err := g.validateMember(req.MemberID, req.InstanceID)
	if err != nil {
		return err
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration
	}
	m.deadline = c.cfg.Now().Add(m.sessionTimeout)
	if g.state == PreparingRebalance {
		return kerr.RebalanceInProgress
	}
	return nil
}

// LeaveMember is one member of a LeaveGroup (v3+ batches them; v0-v2 send
// one member id).
type LeaveMember struct {
	MemberID   string
	InstanceID string
}

// LeaveResult is the answer for one LeaveMember.
type LeaveResult struct {
	MemberID   string
	InstanceID string
	Err        error
}

// Leave removes members from a group; the group rebalances. Err is a
// group-level error; otherwise each member has its own result.
func (c *Coordinator) Leave(group string, members []LeaveMember) (results []LeaveResult, err error) {
	c.mu.Lock()
	defer c.flush()
	defer c.mu.Unlock()
	if err := c.activeErrLocked(); err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	g := c.groups[group]
	for _, lm := range members {
		r := LeaveResult{MemberID: lm.MemberID, InstanceID: lm.InstanceID}
		r.Err = c.leaveOneLocked(now, g, lm)
		results = append(results, r)
	}
	return results, nil
}

func (c *Coordinator) leaveOneLocked(now time.Time, g *Group, lm LeaveMember) error {
	if g == nil {
		return kerr.UnknownMemberID
	}
	id := lm.MemberID
	if lm.InstanceID != "" {
		sid, ok := g.static[lm.InstanceID]
		if !ok {
			return kerr.UnknownMemberID
		}
		if id != "" && id != sid {
			return kerr.FencedInstanceID
		}
		id = sid
	} else if _, ok := g.pending[id]; ok {
		delete(g.pending, id)
		c.tryCompleteJoinLocked(now, g)
		return nil
	}
	m := g.members[id]
	if m == nil {
		return kerr.UnknownMemberID
	}
	c.removeMemberLocked(now, g, m, kerr.UnknownMemberID)
	return nil
}
