package group

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Appender makes records durable in the coordinator's __consumer_offsets
// partition.
//
// Append is called serially, in the order the coordinator produced the
// records, and never with the coordinator's lock held; the records of
// successive calls must land in the log in call order (the coordinator
// orders ordinary and transactional commits by it). The records of one call
// are either all ordinary or all Transactional with one ProducerID and
// ProducerEpoch: those are appended as one transactional batch of that
// producer (Kafka writes it with base sequence 0 and skips the sequence
// check for the coordinator's appends; a fenced epoch fails the append with
// kerr.InvalidProducerEpoch or kerr.ProducerFenced, which the committer
// gets). It must not block on
// the append itself: it queues the records and calls done exactly once, with
// nil once they are durable or with the append's error (kerr values are
// mapped to the codes Kafka returns). done may be called from any goroutine,
// including synchronously from Append.
type Appender interface {
	Append(records []Record, done func(err error))
}

// Config holds the coordinator's settings; zero fields get Kafka's defaults.
type Config struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Appender receives the records to persist. Required.
	Appender Appender
	// NewMemberID makes a member id for a joining member from a prefix
	// (its group.instance.id if static, else its client id); by default
	// the prefix, a dash and a random UUID, as Kafka does.
	NewMemberID func(prefix string) string
	// MinSessionTimeout and MaxSessionTimeout bound a member's session
	// timeout (group.min.session.timeout.ms 6s, group.max.session.timeout.ms 30m).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// MaxGroupSize is group.max.size (unbounded by default).
	MaxGroupSize int
	// MaxMetadataBytes is offset.metadata.max.bytes (4096).
	MaxMetadataBytes int
	// OffsetsRetention is offsets.retention.minutes (7 days).
	OffsetsRetention time.Duration
	// Logger receives the coordinator's few logs; slog.Default() when nil.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewMemberID == nil {
		c.NewMemberID = randomMemberID
	}
	if c.MinSessionTimeout == 0 {
		c.MinSessionTimeout = 6 * time.Second
	}
	if c.MaxSessionTimeout == 0 {
		c.MaxSessionTimeout = 30 * time.Minute
	}
	if c.MaxGroupSize == 0 {
		c.MaxGroupSize = int(^uint32(0) >> 1)
	}
	if c.MaxMetadataBytes == 0 {
		c.MaxMetadataBytes = 4096
	}
	if c.OffsetsRetention == 0 {
		c.OffsetsRetention = 7 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func randomMemberID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	h := hex.EncodeToString(b[:])
	return prefix + "-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type loadState int8

const (
	notLoaded loadState = iota // NOT_COORDINATOR
	loading                    // COORDINATOR_LOAD_IN_PROGRESS
	active
)

type pendingAppend struct {
	records []Record
	done    func(error)
}

// Coordinator owns the groups of one __consumer_offsets partition. All
// methods are safe for concurrent use; none blocks on I/O. Responses that
// depend on a join phase or on durable records arrive on the returned
// channels (buffered: the coordinator never waits for a reader).
//
// Lock order: mu, then nothing. Appender.Append runs without mu.
type Coordinator struct {
	cfg Config

	mu          sync.Mutex
	state       loadState
	epoch       uint64 // bumped by BeginLoad/Load/Unload; stale completions are ignored
	groups      map[string]*Group
	outbox      []pendingAppend
	dispatching bool

	// logPos is the log position the next appended record gets (see
	// Offset.logPos).
	logPos uint64
	// txnGroups are, per producer id, the groups that may hold pending
	// transactional offsets of it (a superset: entries go at CompleteTxn).
	txnGroups map[int64]map[string]struct{}
}

// New returns a coordinator that owns no partition yet: it answers
// NOT_COORDINATOR until Load.
func New(cfg Config) *Coordinator {
	cfg.defaults()
	return &Coordinator{cfg: cfg, groups: map[string]*Group{}, txnGroups: map[int64]map[string]struct{}{}}
}

func (c *Coordinator) activeErrLocked() error {
	switch c.state {
	case notLoaded:
		return kerr.NotCoordinator
	case loading:
		return kerr.CoordinatorLoadInProgress
	}
	return nil
}

// appendLocked queues records; done runs under mu once they are durable or
// failed, unless the coordinator was reloaded or unloaded meanwhile, in
// which case done runs with live=false. It returns the log position of the
// first record; the others follow it.
func (c *Coordinator) appendLocked(records []Record, done func(live bool, err error)) uint64 {
	epoch := c.epoch
	pos := c.logPos
	c.logPos += uint64(len(records))
	c.outbox = append(c.outbox, pendingAppend{records: records, done: func(err error) {
		c.mu.Lock()
		done(c.epoch == epoch && c.state == active, err)
		c.mu.Unlock()
		c.flush()
	}})
	return pos
}

// flush hands queued records to the Appender in order, without mu held.
func (c *Coordinator) flush() {
	c.mu.Lock()
	if c.dispatching {
		c.mu.Unlock()
		return
	}
	c.dispatching = true
	for len(c.outbox) > 0 {
		batch := c.outbox
		c.outbox = nil
		c.mu.Unlock()
		for _, a := range batch {
			c.cfg.Appender.Append(a.records, a.done)
		}
		c.mu.Lock()
	}
	c.dispatching = false
	c.mu.Unlock()
}

// appendError maps an append failure to the code Kafka answers with.
func appendError(err error, commit bool) error {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return kerr.CoordinatorNotAvailable
	}
	switch ke {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend:
		return kerr.CoordinatorNotAvailable
	case kerr.NotLeaderForPartition, kerr.KafkaStorageError:
		return kerr.NotCoordinator
	case kerr.RequestTimedOut:
		if commit {
			return kerr.CoordinatorNotAvailable
		}
		return kerr.RebalanceInProgress
	case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidFetchSize:
		if commit {
			return kerr.InvalidCommitOffsetSize
		}
		return kerr.UnknownServerError
	}
	return ke
}

// LoadToken names one BeginLoad; LoadFrom with an older token is refused.
type LoadToken uint64

// ErrLoadSuperseded is returned by LoadFrom when Unload or another
// BeginLoad came after the BeginLoad that made the token: leadership moved
// while the records were being read.
var ErrLoadSuperseded = errors.New("group coordinator load superseded")

// BeginLoad starts taking over the partition: until LoadFrom (or Load),
// requests get COORDINATOR_LOAD_IN_PROGRESS.
func (c *Coordinator) BeginLoad() LoadToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(kerr.CoordinatorLoadInProgress)
	c.state = loading
	return LoadToken(c.epoch)
}

// Unload gives the partition up (leadership moved): waiting joins and syncs
// get NOT_COORDINATOR, and so does every later request until Load.
func (c *Coordinator) Unload() {
	c.mu.Lock()
	c.dropLocked(kerr.NotCoordinator)
	c.state = notLoaded
	c.mu.Unlock()
}

func (c *Coordinator) dropLocked(err error) {
	c.epoch++
	for _, g := range c.groups {
		for _, m := range g.members {
			if m.joinWait != nil {
				m.joinWait <- JoinResponse{Err: err, MemberID: m.id, Generation: -1}
				m.joinWait = nil
			}
			if m.syncWait != nil {
				m.syncWait <- SyncResponse{Err: err}
				m.syncWait = nil
			}
		}
	}
	c.groups = map[string]*Group{}
	c.txnGroups = map[int64]map[string]struct{}{}
}

// Tick expires sessions, KIP-394 pending member ids, join phases
// (rebalance timeout: members that did not rejoin are removed) and sync
// phases (members that did not sync within the rebalance timeout are
// removed). It returns the next time Tick has work, zero if none.
func (c *Coordinator) Tick(now time.Time) time.Time {
	c.mu.Lock()
	var next time.Time
	if c.state == active {
		for _, g := range c.groups {
			if t := c.tickGroupLocked(now, g); !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	c.mu.Unlock()
	c.flush()
	return next
}

func (c *Coordinator) tickGroupLocked(now time.Time, g *Group) time.Time {
	for id, exp := range g.pending {
		if !exp.After(now) {
			delete(g.pending, id)
			c.tryCompleteJoinLocked(now, g)
		}
	}
	for _, m := range g.ordered() {
		if g.members[m.id] == m && m.joinWait == nil && m.syncWait == nil && !m.deadline.After(now) {
			c.removeMemberLocked(now, g, m, kerr.UnknownMemberID)
		}
	}
	if g.state == PreparingRebalance && !g.joinDeadline.After(now) {
		c.completeJoinLocked(now, g)
	}
	if (g.state == CompletingRebalance || g.state == Stable) && len(g.pendingSync) > 0 && !g.syncDeadline.After(now) {
		for _, m := range g.ordered() {
			if g.members[m.id] == m && g.pendingSync[m.id] {
				c.removeMemberLocked(now, g, m, kerr.UnknownMemberID)
			}
		}
	}

	var next time.Time
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, exp := range g.pending {
		at(exp)
	}
	for _, m := range g.members {
		if m.joinWait == nil && m.syncWait == nil {
			at(m.deadline)
		}
	}
	if g.state == PreparingRebalance {
		at(g.joinDeadline)
	}
	if len(g.pendingSync) > 0 {
		at(g.syncDeadline)
	}
	return next
}

// removeMemberLocked removes m (left, expired or fenced) and moves the group
// on: a stable or completing group rebalances, a join phase may end.
func (c *Coordinator) removeMemberLocked(now time.Time, g *Group, m *member, waitErr error) {
	if m.joinWait != nil {
		m.joinWait <- JoinResponse{Err: waitErr, MemberID: m.id, Generation: -1}
		m.joinWait = nil
	}
	if m.syncWait != nil {
		m.syncWait <- SyncResponse{Err: waitErr}
		m.syncWait = nil
	}
	g.removeMember(m.id)
	switch g.state {
	case Stable, CompletingRebalance:
		c.rebalanceLocked(now, g)
	case PreparingRebalance:
		c.tryCompleteJoinLocked(now, g)
	}
}

// List returns the groups, optionally filtered by state and protocol type
// (ListGroups v4+ and v5 filters; empty filters match everything).
func (c *Coordinator) List(states []State, protocolTypes []string) ([]GroupListing, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.activeErrLocked(); err != nil {
		return nil, err
	}
	var out []GroupListing
	for _, g := range c.groups {
		if len(states) > 0 && !contains(states, g.state) {
			continue
		}
		if len(protocolTypes) > 0 && !contains(protocolTypes, g.protocolType) {
			continue
		}
		out = append(out, GroupListing{Group: g.id, ProtocolType: g.protocolType, State: g.state})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// GroupListing is one entry of ListGroups.
type GroupListing struct {
	Group        string
	ProtocolType string
	State        State
}

// GroupDescription is one entry of DescribeGroups. An unknown group is
// described as Dead with no error, as Kafka does up to DescribeGroups v5.
type GroupDescription struct {
	Group        string
	Err          error
	State        State
	ProtocolType string
	Protocol     string // only while Stable, as Kafka
	Members      []MemberDescription
}

// MemberDescription is a member in DescribeGroups; Metadata and Assignment
// are only set while the group is Stable.
type MemberDescription struct {
	MemberID   string
	InstanceID string
	ClientID   string
	ClientHost string
	Metadata   []byte
	Assignment []byte
}

// Describe describes groups.
func (c *Coordinator) Describe(groups []string) []GroupDescription {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]GroupDescription, 0, len(groups))
	for _, id := range groups {
		d := GroupDescription{Group: id, State: Dead}
		if err := c.activeErrLocked(); err != nil {
			d.Err = err
		} else if g := c.groups[id]; g != nil {
			d.State, d.ProtocolType = g.state, g.protocolType
			stable := g.state == Stable
			if stable {
				d.Protocol = g.protocol
			}
			for _, m := range g.ordered() {
				md := MemberDescription{MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
				if stable {
					md.Metadata, md.Assignment = m.metadataFor(g.protocol), m.assignment
				}
				d.Members = append(d.Members, md)
			}
		}
		out = append(out, d)
	}
	return out
}

// DeleteResult is one entry of DeleteGroups.
type DeleteResult struct {
	Group string
	Err   error
}

// Delete deletes empty groups and their offsets (DeleteGroups): unknown
// groups get GROUP_ID_NOT_FOUND, groups with members NON_EMPTY_GROUP. An
// empty group's pending transactional offsets go with it, as in Kafka: a
// later commit of their transaction materializes none of them. The answer
// arrives once the tombstones are durable.
func (c *Coordinator) Delete(groups []string) <-chan []DeleteResult {
	ch := make(chan []DeleteResult, 1)
	c.mu.Lock()
	out := make([]DeleteResult, len(groups))
	var records []Record
	var deleted []int
	now := c.cfg.Now()
	for i, id := range groups {
		out[i].Group = id
		if err := c.activeErrLocked(); err != nil {
			out[i].Err = err
			continue
		}
		g := c.groups[id]
		switch {
		case g == nil || g.state == Dead:
			out[i].Err = kerr.GroupIDNotFound
		case g.state != Empty:
			out[i].Err = kerr.NonEmptyGroup
		default:
			// Kafka (4.x) deletes an empty group even with transactions
			// open: the tombstones also drop its pending transactional
			// offsets, here and on replay, so a later commit marker
			// materializes none of them.
			for _, tp := range g.offsetsAndPending() {
				records = append(records, OffsetTombstone(id, tp.Topic, tp.Partition))
			}
			g.clearAllTxn()
			records = append(records, GroupTombstone(id))
			g.transition(Dead, now)
			delete(c.groups, id)
			deleted = append(deleted, i)
		}
	}
	if len(records) == 0 {
		ch <- out
	} else {
		c.appendLocked(records, func(_ bool, err error) {
			if err != nil {
				for _, i := range deleted {
					out[i].Err = appendError(err, false)
				}
			}
			ch <- out
		})
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

func sortedOffsets(m map[TopicPartition]Offset) []TopicPartition {
	out := make([]TopicPartition, 0, len(m))
	for tp := range m {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}
