package cluster

// The metadata state machine: the state every voter and follower of the
// quorum holds, the commands that change it and their application. Apply is
// deterministic (no clock, no randomness, no I/O): what needs either is
// decided by the controller before it proposes a command.
//
// Commands and snapshots are JSON objects carrying a format version "v".
// This binary writes FormatVersion and applies versions up to it; a command
// of a newer version is refused (changes nothing, logged as an error)
// rather than misread. A controller must not write versions that older
// voters cannot read, the rule Kafka's metadata.version enforces; mixed
// versions are not supported yet (see docs/architecture.md).

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/strata-io/strata/ingest/topicconfig"
)

// FormatVersion is the version of metadata commands and snapshots written
// by this binary.
const FormatVersion = 1

// maxProducerIDBlock bounds one producer id reservation.
const maxProducerIDBlock = 1 << 20

// maxRemembered is how many request results the state keeps for
// retries (Command.ReqID): a retry comes within a request timeout, long
// before this many later writes.
const maxRemembered = 4096

// Errors of metadata changes beyond the topic ones in cluster.go; the wire
// layer maps them to Kafka codes.
var (
	ErrUnknownBroker         = errors.New("unknown broker")
	ErrStaleBrokerEpoch      = errors.New("stale broker epoch")
	ErrFencedLeaderEpoch     = errors.New("fenced leader epoch")
	ErrInvalidUpdateVersion  = errors.New("stale partition epoch")
	ErrNotLeader             = errors.New("not the partition's leader")
	ErrIneligibleReplica     = errors.New("replica not eligible for the ISR")
	ErrInvalidReplication    = errors.New("invalid replication factor")
	ErrUnsupportedCommand    = errors.New("unsupported metadata command")
	ErrUnknownTopicPartition = errors.New("unknown topic partition")
	// ErrNotConfirmed is why the quorum did not confirm a broker's
	// leadership of a partition (ConfirmLeader).
	ErrNotConfirmed = errors.New("leadership not confirmed by the metadata quorum")
	// ErrShuttingDown refuses to unfence a broker in controlled shutdown.
	ErrShuttingDown = errors.New("broker is shutting down")
)

// Registration is a broker as the quorum knows it.
type Registration struct {
	Broker
	// ControllerAddr is where the broker's quorum transport listens.
	ControllerAddr string
	// Epoch is the broker epoch: the log index of its latest registration.
	// Heartbeats and fencing name it, so a restarted broker's old
	// incarnation cannot act for the new one.
	Epoch int64
	// Fenced brokers lead nothing and are not in ISRs (unless they were a
	// partition's last in-sync replica).
	Fenced bool
	// ShuttingDown is set by a controlled shutdown's fencing: the broker
	// stays fenced until it registers again, whatever heartbeats of the
	// old process still arrive.
	ShuttingDown bool `json:"shutting_down,omitempty"`
}

// Command is one change to the metadata state.
type Command struct {
	V    int    `json:"v"`
	Type string `json:"type"`

	ClusterID string            `json:"cluster_id,omitempty"`
	Broker    *Registration     `json:"broker,omitempty"`
	BrokerID  int32             `json:"broker_id,omitempty"`
	Epoch     int64             `json:"epoch,omitempty"`
	Topic     *TopicRecord      `json:"topic,omitempty"`
	Topics    []TopicRecord     `json:"topics,omitempty"`
	Name      string            `json:"name,omitempty"`
	Adds      []PartitionRec    `json:"adds,omitempty"`
	Configs   map[string]string `json:"configs,omitempty"`
	Alter     *AlterPartition   `json:"alter,omitempty"`
	Count     int64             `json:"count,omitempty"`
	// Shutdown marks a fence_broker as a controlled shutdown's.
	Shutdown bool `json:"shutdown,omitempty"`
	// ReqID names the broker request the command came from; a command
	// whose ReqID was applied before (a retry after a lost answer) changes
	// nothing and gets the first result again.
	ReqID string `json:"req_id,omitempty"`
}

// Command types.
const (
	CmdInit                = "init"
	CmdImport              = "import"
	CmdRegisterBroker      = "register_broker"
	CmdUnfenceBroker       = "unfence_broker"
	CmdFenceBroker         = "fence_broker"
	CmdCreateTopic         = "create_topic"
	CmdDeleteTopic         = "delete_topic"
	CmdCreatePartitions    = "create_partitions"
	CmdSetConfigs          = "set_configs"
	CmdAlterPartition      = "alter_partition"
	CmdPreferredLeaders    = "preferred_leaders"
	CmdAllocateProducerIDs = "allocate_producer_ids"
)

// AlterPartition is a leader's request to change its partition's ISR
// (Kafka's AlterPartition): it names the leader epoch and partition epoch it
// saw.
type AlterPartition struct {
	TopicID        TopicID `json:"topic_id"`
	Partition      int32   `json:"partition"`
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	PartitionEpoch int32   `json:"partition_epoch"`
	ISR            []int32 `json:"isr"`
}

// TopicRecord is a topic in commands and snapshots.
type TopicRecord struct {
	Name       string            `json:"name"`
	ID         TopicID           `json:"id"`
	Internal   bool              `json:"internal,omitempty"`
	Partitions []PartitionRec    `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// PartitionRec is a partition in commands and snapshots.
type PartitionRec struct {
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	PartitionEpoch int32   `json:"partition_epoch"`
	Replicas       []int32 `json:"replicas"`
	ISR            []int32 `json:"isr"`
}

// MarshalText writes the id as hex.
func (id TopicID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads a hex id.
func (id *TopicID) UnmarshalText(b []byte) error {
	v, err := parseTopicID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func recordOf(t Topic) TopicRecord {
	r := TopicRecord{Name: t.Name, ID: t.ID, Internal: t.Internal, Configs: maps.Clone(t.Configs)}
	for _, p := range t.Partitions {
		r.Partitions = append(r.Partitions, PartitionRec(p.clone()))
	}
	return r
}

func (r TopicRecord) topic() Topic {
	t := Topic{Name: r.Name, ID: r.ID, Internal: r.Internal, Configs: maps.Clone(r.Configs)}
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	for _, p := range r.Partitions {
		t.Partitions = append(t.Partitions, Partition(p).clone())
	}
	return t
}

// State is the metadata: what every broker answers Metadata from. Topics
// held in it are never changed in place (a change stores a new value), so a
// Topic handed out stays valid.
type State struct {
	ClusterID string
	Brokers   map[int32]Registration
	Topics    map[string]Topic
	ByID      map[TopicID]string
	// NextProducerID is the first producer id not yet handed to a broker.
	NextProducerID int64
	// Applied is the raft index of the last command applied.
	Applied uint64
	// Recent are the results of the latest commands that carried a ReqID,
	// oldest first, at most maxRemembered; recent indexes them.
	Recent []Remembered
	recent map[string]Remembered
}

// Remembered is the result of a command with a ReqID, kept for retries.
type Remembered struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
	Value int64  `json:"value,omitempty"`
	Err   string `json:"err,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Brokers: map[int32]Registration{}, Topics: map[string]Topic{}, ByID: map[TopicID]string{}, recent: map[string]Remembered{}}
}

// Remembered returns the result of the command with request id id, if it
// was applied and is still remembered.
func (s *State) Remembered(id string) (Remembered, bool) {
	if id == "" {
		return Remembered{}, false
	}
	r, ok := s.recent[id]
	return r, ok
}

func (s *State) remember(idx uint64, id string, res Result) {
	msg, kind := encodeErr(res.Err)
	r := Remembered{ID: id, Index: idx, Value: res.Value, Err: msg, Kind: kind}
	if s.recent == nil {
		s.recent = map[string]Remembered{}
	}
	if len(s.Recent) >= maxRemembered {
		delete(s.recent, s.Recent[0].ID)
		s.Recent = slices.Delete(s.Recent, 0, 1)
	}
	s.Recent = append(s.Recent, r)
	s.recent[id] = r
}

// Result is what applying a command produced.
type Result struct {
	// Topic is the topic created or changed, if any.
	Topic Topic
	// Events are the topics changed, for watchers.
	Events []Event
	// Value is a command's number (the first producer id allocated, a
	// broker's epoch).
	Value int64
	// Err is why the command changed nothing.
	Err error
}

// usable reports whether a broker is registered and not fenced.
func (s *State) usable(id int32) bool {
	r, ok := s.Brokers[id]
	return ok && !r.Fenced
}

// Apply applies one command at log index idx.
func (s *State) Apply(idx uint64, c Command) Result {
	s.Applied = max(s.Applied, idx)
	if c.V < 1 || c.V > FormatVersion {
		return Result{Err: fmt.Errorf("%w: version %d (this binary reads up to %d)", ErrUnsupportedCommand, c.V, FormatVersion)}
	}
	if c.ReqID == "" {
		return s.apply(idx, c)
	}
	if r, ok := s.recent[c.ReqID]; ok {
		return Result{Value: r.Value, Err: decodeErr(r.Err, r.Kind)}
	}
	res := s.apply(idx, c)
	s.remember(idx, c.ReqID, res)
	return res
}

func (s *State) apply(idx uint64, c Command) Result {
	switch c.Type {
	case CmdInit:
		if s.ClusterID == "" {
			s.ClusterID = c.ClusterID
		}
		return Result{}
	case CmdImport:
		return s.applyImport(c)
	case CmdRegisterBroker:
		return s.applyRegister(idx, c)
	case CmdFenceBroker, CmdUnfenceBroker:
		return s.applyFencing(c)
	case CmdCreateTopic:
		return s.applyCreateTopic(c)
	case CmdDeleteTopic:
		t, ok := s.Topics[c.Name]
		if !ok {
			return Result{Err: ErrUnknownTopic}
		}
		delete(s.Topics, c.Name)
		delete(s.ByID, t.ID)
		return Result{Topic: t, Events: []Event{{Topic: t.Name, ID: t.ID, Deleted: true}}}
	case CmdCreatePartitions:
		t, ok := s.Topics[c.Name]
		if !ok {
			return Result{Err: ErrUnknownTopic}
		}
		if len(c.Adds) == 0 || len(t.Partitions)+len(c.Adds) > maxPartitions {
			return Result{Err: fmt.Errorf("%w: %d partitions to add to %d", ErrInvalidPartition, len(c.Adds), len(t.Partitions))}
		}
		if c.Count > 0 && int64(len(t.Partitions)) != c.Count {
			// Planned against another partition count (a concurrent
			// CreatePartitions got there first).
			return Result{Err: fmt.Errorf("%w: topic %s has %d partitions, the request was planned for %d", ErrInvalidPartition, c.Name, len(t.Partitions), c.Count)}
		}
		t = t.Clone()
		for _, p := range c.Adds {
			t.Partitions = append(t.Partitions, Partition(p).clone())
		}
		return s.store(t)
	case CmdSetConfigs:
		t, ok := s.Topics[c.Name]
		if !ok {
			return Result{Err: ErrUnknownTopic}
		}
		t = t.Clone()
		t.Configs = maps.Clone(c.Configs)
		if t.Configs == nil {
			t.Configs = map[string]string{}
		}
		// Turning unclean.leader.election.enable on elects leaderless
		// partitions at once, as Kafka does.
		unclean := s.unclean(t)
		for i, p := range t.Partitions {
			t.Partitions[i] = ElectIfLeaderless(p, s.usable, unclean)
		}
		return s.store(t)
	case CmdAlterPartition:
		return s.applyAlter(c)
	case CmdPreferredLeaders:
		return s.eachPartition(func(p Partition, _ bool) Partition { return PreferredLeader(p, s.usable) })
	case CmdAllocateProducerIDs:
		if c.Count <= 0 || c.Count > maxProducerIDBlock || s.NextProducerID > 1<<62 {
			return Result{Err: fmt.Errorf("%w: allocate %d producer ids", ErrUnsupportedCommand, c.Count)}
		}
		first := s.NextProducerID
		s.NextProducerID += c.Count
		return Result{Value: first}
	}
	return Result{Err: fmt.Errorf("%w: type %q", ErrUnsupportedCommand, c.Type)}
}

func (s *State) store(t Topic) Result {
	s.Topics[t.Name] = t
	s.ByID[t.ID] = t.Name
	return Result{Topic: t, Events: []Event{{Topic: t.Name, ID: t.ID}}}
}

func (s *State) applyImport(c Command) Result {
	if len(s.Topics) > 0 {
		return Result{Err: fmt.Errorf("%w: import into a state that has topics", ErrTopicExists)}
	}
	var res Result
	for _, r := range c.Topics {
		t := r.topic()
		if _, ok := s.Topics[t.Name]; ok {
			return Result{Err: fmt.Errorf("%w: %s imported twice", ErrTopicExists, t.Name)}
		}
		s.Topics[t.Name] = t
		s.ByID[t.ID] = t.Name
		res.Events = append(res.Events, Event{Topic: t.Name, ID: t.ID})
	}
	s.NextProducerID = max(s.NextProducerID, c.Count)
	return res
}

func (s *State) applyRegister(idx uint64, c Command) Result {
	if c.Broker == nil {
		return Result{Err: fmt.Errorf("%w: registration without a broker", ErrUnsupportedCommand)}
	}
	r := *c.Broker
	r.Epoch = int64(idx)
	r.Fenced = true
	r.ShuttingDown = false
	_, known := s.Brokers[r.ID]
	s.Brokers[r.ID] = r
	res := Result{Value: r.Epoch}
	if known {
		// A new incarnation: the old one's leadership and ISR places go,
		// as if it had been fenced.
		res.Events = s.fenceLocked(r.ID)
	}
	return res
}

func (s *State) applyFencing(c Command) Result {
	r, ok := s.Brokers[c.BrokerID]
	if !ok {
		return Result{Err: ErrUnknownBroker}
	}
	if r.Epoch != c.Epoch {
		return Result{Err: fmt.Errorf("%w: broker %d is at epoch %d, not %d", ErrStaleBrokerEpoch, r.ID, r.Epoch, c.Epoch)}
	}
	fence := c.Type == CmdFenceBroker
	if fence && c.Shutdown && !r.ShuttingDown {
		r.ShuttingDown = true
		s.Brokers[r.ID] = r
	}
	if !fence && r.ShuttingDown {
		// A heartbeat the old process sent before its controlled
		// shutdown fenced it.
		return Result{Err: fmt.Errorf("%w: broker %d at epoch %d", ErrShuttingDown, r.ID, r.Epoch)}
	}
	if r.Fenced == fence {
		return Result{}
	}
	r.Fenced = fence
	s.Brokers[r.ID] = r
	if fence {
		return Result{Events: s.fenceLocked(r.ID)}
	}
	return s.eachPartition(func(p Partition, unclean bool) Partition {
		return UnfenceReplica(p, r.ID, s.usable, unclean)
	})
}

// fenceLocked moves leadership and ISR places away from broker id.
func (s *State) fenceLocked(id int32) []Event {
	return s.eachPartition(func(p Partition, unclean bool) Partition {
		return FenceReplica(p, id, s.usable, unclean)
	}).Events
}

// unclean reports whether t's partitions may elect a replica outside the
// ISR: unclean.leader.election.enable, and never on a tiered topic (its
// configs refuse the pair; this holds even if a state has it).
func (s *State) unclean(t Topic) bool {
	c := topicconfig.Resolve(t.Configs)
	return c.UncleanLeaderElection && !c.RemoteStorage
}

// eachPartition replaces every partition by fn's result (given whether the
// topic allows unclean elections) and reports the topics that changed, in
// name order.
func (s *State) eachPartition(fn func(p Partition, unclean bool) Partition) Result {
	names := slices.Sorted(maps.Keys(s.Topics))
	var res Result
	for _, name := range names {
		t := s.Topics[name]
		unclean := s.unclean(t)
		var nt *Topic
		for i, p := range t.Partitions {
			q := fn(p, unclean)
			if q.PartitionEpoch == p.PartitionEpoch {
				continue
			}
			if nt == nil {
				c := t.Clone()
				nt = &c
			}
			nt.Partitions[i] = q
		}
		if nt != nil {
			s.Topics[name] = *nt
			res.Events = append(res.Events, Event{Topic: name, ID: t.ID})
		}
	}
	return res
}

func (s *State) applyCreateTopic(c Command) Result {
	if c.Topic == nil {
		return Result{Err: fmt.Errorf("%w: create without a topic", ErrUnsupportedCommand)}
	}
	t := c.Topic.topic()
	if _, ok := s.Topics[t.Name]; ok {
		return Result{Err: ErrTopicExists}
	}
	if _, ok := s.ByID[t.ID]; ok || t.ID == (TopicID{}) {
		return Result{Err: fmt.Errorf("%w: topic id %s taken", ErrTopicExists, t.ID)}
	}
	if len(t.Partitions) == 0 || len(t.Partitions) > maxPartitions {
		return Result{Err: fmt.Errorf("%w: %d partitions", ErrInvalidPartition, len(t.Partitions))}
	}
	return s.store(t)
}

func (s *State) applyAlter(c Command) Result {
	a := c.Alter
	if a == nil {
		return Result{Err: fmt.Errorf("%w: alter without a partition", ErrUnsupportedCommand)}
	}
	name, ok := s.ByID[a.TopicID]
	if !ok {
		return Result{Err: ErrUnknownTopicPartition}
	}
	t := s.Topics[name]
	if a.Partition < 0 || int(a.Partition) >= len(t.Partitions) {
		return Result{Err: ErrUnknownTopicPartition}
	}
	p := t.Partitions[a.Partition]
	switch {
	case a.Leader != p.Leader:
		return Result{Err: fmt.Errorf("%w: broker %d, leader is %d", ErrNotLeader, a.Leader, p.Leader)}
	case a.LeaderEpoch != p.LeaderEpoch:
		return Result{Err: fmt.Errorf("%w: %d, current %d", ErrFencedLeaderEpoch, a.LeaderEpoch, p.LeaderEpoch)}
	case a.PartitionEpoch != p.PartitionEpoch:
		return Result{Err: fmt.Errorf("%w: %d, current %d", ErrInvalidUpdateVersion, a.PartitionEpoch, p.PartitionEpoch)}
	case !slices.Contains(a.ISR, p.Leader):
		return Result{Err: fmt.Errorf("%w: the ISR must include the leader %d", ErrIneligibleReplica, p.Leader)}
	}
	seen := map[int32]bool{}
	for _, r := range a.ISR {
		if seen[r] || !slices.Contains(p.Replicas, r) {
			return Result{Err: fmt.Errorf("%w: %d is not a replica (or listed twice)", ErrIneligibleReplica, r)}
		}
		seen[r] = true
		if !slices.Contains(p.ISR, r) && !s.usable(r) {
			return Result{Err: fmt.Errorf("%w: broker %d is fenced", ErrIneligibleReplica, r)}
		}
	}
	q := p.clone()
	q.ISR = slices.Clone(a.ISR)
	sort.Slice(q.ISR, func(i, j int) bool { return q.ISR[i] < q.ISR[j] })
	q.PartitionEpoch++
	nt := t.Clone()
	nt.Partitions[a.Partition] = q
	s.Topics[name] = nt
	return Result{Topic: nt, Events: []Event{{Topic: name, ID: t.ID}}}
}

// snapshot is the JSON form of a State.
type snapshot struct {
	V              int            `json:"v"`
	ClusterID      string         `json:"cluster_id"`
	Brokers        []Registration `json:"brokers"`
	Topics         []TopicRecord  `json:"topics"`
	NextProducerID int64          `json:"next_producer_id"`
	Recent         []Remembered   `json:"recent,omitempty"`
	Applied        uint64         `json:"applied,omitempty"`
}

// MarshalSnapshot encodes the state (brokers by id, topics by name).
func (s *State) MarshalSnapshot() ([]byte, error) {
	snap := snapshot{V: FormatVersion, ClusterID: s.ClusterID, NextProducerID: s.NextProducerID, Recent: s.Recent, Applied: s.Applied}
	for _, id := range slices.Sorted(maps.Keys(s.Brokers)) {
		snap.Brokers = append(snap.Brokers, s.Brokers[id])
	}
	for _, name := range slices.Sorted(maps.Keys(s.Topics)) {
		snap.Topics = append(snap.Topics, recordOf(s.Topics[name]))
	}
	return json.Marshal(snap)
}

// UnmarshalSnapshot decodes a state written by MarshalSnapshot.
func UnmarshalSnapshot(raw []byte) (*State, error) {
	var snap snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return nil, fmt.Errorf("decode metadata snapshot: %w", err)
	}
	if snap.V < 1 || snap.V > FormatVersion {
		return nil, fmt.Errorf("%w: snapshot version %d (this binary reads up to %d)", ErrUnsupportedCommand, snap.V, FormatVersion)
	}
	s := NewState()
	s.ClusterID = snap.ClusterID
	s.NextProducerID = snap.NextProducerID
	s.Applied = snap.Applied
	for _, b := range snap.Brokers {
		s.Brokers[b.ID] = b
	}
	for _, r := range snap.Recent {
		if _, dup := s.recent[r.ID]; dup || r.ID == "" || len(s.Recent) >= maxRemembered {
			return nil, fmt.Errorf("decode metadata snapshot: request result %q twice, unnamed or beyond %d", r.ID, maxRemembered)
		}
		s.Recent = append(s.Recent, r)
		s.recent[r.ID] = r
	}
	for _, r := range snap.Topics {
		if _, dup := s.Topics[r.Name]; dup {
			return nil, fmt.Errorf("decode metadata snapshot: topic %q twice", r.Name)
		}
		if len(r.Partitions) > maxPartitions {
			return nil, fmt.Errorf("decode metadata snapshot: topic %q has %d partitions", r.Name, len(r.Partitions))
		}
		t := r.topic()
		s.Topics[t.Name] = t
		s.ByID[t.ID] = t.Name
	}
	return s, nil
}

// ConfirmLeader checks that broker, at broker epoch brokerEpoch, is
// registered, not fenced and the leader of the partition at exactly
// leaderEpoch. Every refusal wraps ErrNotConfirmed; a topic or partition
// that does not exist (any more) wraps ErrUnknownTopicPartition too.
func (s *State) ConfirmLeader(broker int32, brokerEpoch int64, topic TopicID, partition, leaderEpoch int32) error {
	r, ok := s.Brokers[broker]
	switch {
	case !ok:
		return fmt.Errorf("%w: %w: broker %d", ErrNotConfirmed, ErrUnknownBroker, broker)
	case r.Epoch != brokerEpoch:
		return fmt.Errorf("%w: %w: broker %d is at epoch %d, not %d", ErrNotConfirmed, ErrStaleBrokerEpoch, broker, r.Epoch, brokerEpoch)
	case r.Fenced:
		return fmt.Errorf("%w: broker %d is fenced", ErrNotConfirmed, broker)
	}
	name, ok := s.ByID[topic]
	if !ok {
		return fmt.Errorf("%w: %w: topic %s", ErrNotConfirmed, ErrUnknownTopicPartition, topic)
	}
	t := s.Topics[name]
	if partition < 0 || int(partition) >= len(t.Partitions) {
		return fmt.Errorf("%w: %w: %s-%d", ErrNotConfirmed, ErrUnknownTopicPartition, name, partition)
	}
	p := t.Partitions[partition]
	if p.Leader != broker || p.LeaderEpoch != leaderEpoch {
		return fmt.Errorf("%w: %s-%d is led by %d at epoch %d, not by %d at epoch %d", ErrNotConfirmed, name, partition, p.Leader, p.LeaderEpoch, broker, leaderEpoch)
	}
	return nil
}
