package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Transactional offset commits (TxnOffsetCommit, KIP-98).
//
// A producer's offsets are appended as transactional records and stay
// pending, invisible to OffsetFetch, until the broker reports its commit or
// abort marker (CompleteTxn, or a Marker record on load). On commit, a
// pending offset becomes the committed one unless the partition's committed
// offset comes from a record written later in the log (Kafka keeps the most
// recent commit when ordinary and transactional commits mix). A tombstone
// for a partition (OffsetDelete, DeleteGroups) drops its pending offsets
// too, as Kafka 4.x replays it.

// txnState is what became of a pending transactional offset.
type txnState int8

const (
	txnOpen      txnState = iota // waiting for the producer's marker
	txnCommitted                 // committed while its append was in flight
	txnDropped                   // aborted, superseded or tombstoned
)

// txnOffset is one pending transactional offset.
type txnOffset struct {
	off     Offset // logPos set
	durable bool   // its record's append completed
	state   txnState
}

// putTxn makes e producer pid's pending offset for tp, replacing (and
// dropping) the producer's earlier one.
func (g *Group) putTxn(pid int64, tp TopicPartition, e *txnOffset) {
	byTP := g.txn[pid]
	if byTP == nil {
		byTP = map[TopicPartition]*txnOffset{}
		g.txn[pid] = byTP
	}
	if old := byTP[tp]; old != nil {
		old.state = txnDropped
	} else {
		g.txnParts[tp]++
	}
	byTP[tp] = e
}

// removeTxn removes producer pid's pending offset for tp if it is still e.
func (g *Group) removeTxn(pid int64, tp TopicPartition, e *txnOffset) {
	byTP := g.txn[pid]
	if byTP == nil || byTP[tp] != e {
		return
	}
	delete(byTP, tp)
	if len(byTP) == 0 {
		delete(g.txn, pid)
	}
	g.uncountTxn(tp)
}

func (g *Group) uncountTxn(tp TopicPartition) {
	if g.txnParts[tp]--; g.txnParts[tp] <= 0 {
		delete(g.txnParts, tp)
	}
}

// takeTxn removes and returns producer pid's pending offsets.
func (g *Group) takeTxn(pid int64) map[TopicPartition]*txnOffset {
	byTP := g.txn[pid]
	delete(g.txn, pid)
	for tp := range byTP {
		g.uncountTxn(tp)
	}
	return byTP
}

// clearTxnPartition drops every producer's pending offset for tp (a
// tombstone for tp was written).
func (g *Group) clearTxnPartition(tp TopicPartition) {
	if g.txnParts[tp] == 0 {
		return
	}
	for pid, byTP := range g.txn {
		if e := byTP[tp]; e != nil {
			e.state = txnDropped
			delete(byTP, tp)
			if len(byTP) == 0 {
				delete(g.txn, pid)
			}
		}
	}
	delete(g.txnParts, tp)
}

// clearAllTxn drops every pending offset of the group.
func (g *Group) clearAllTxn() {
	for _, byTP := range g.txn {
		for _, e := range byTP {
			e.state = txnDropped
		}
	}
	g.txn = map[int64]map[TopicPartition]*txnOffset{}
	g.txnParts = map[TopicPartition]int{}
}

// hasTxn reports whether a producer has a pending offset for tp.
func (g *Group) hasTxn(tp TopicPartition) bool { return g.txnParts[tp] > 0 }

// offsetsAndPending are the partitions with a committed or a pending
// offset, sorted.
func (g *Group) offsetsAndPending() []TopicPartition {
	all := make(map[TopicPartition]Offset, len(g.offsets)+len(g.txnParts))
	for tp := range g.offsets {
		all[tp] = Offset{}
	}
	for tp := range g.txnParts {
		all[tp] = Offset{}
	}
	return sortedOffsets(all)
}

// applyCommitted makes o tp's committed offset unless the committed one
// was written later in the log (Kafka's rule when a transaction commits
// offsets; ordinary commits completing out of order obey it too).
func (g *Group) applyCommitted(tp TopicPartition, o Offset) bool {
	if cur, ok := g.offsets[tp]; ok && cur.logPos > o.logPos {
		return false
	}
	if pos, ok := g.tombstoned[tp]; ok && pos > o.logPos {
		return false
	}
	g.offsets[tp] = o
	return true
}

// commitStarted and commitDone bracket a commit's append.
func (g *Group) commitStarted() { g.pendingCommits++ }

func (g *Group) commitDone() {
	if g.pendingCommits--; g.pendingCommits == 0 {
		g.tombstoned = nil
	}
}

// tombstoneWritten notes an offset tombstone for tp at log position pos.
func (g *Group) tombstoneWritten(tp TopicPartition, pos uint64) {
	if g.pendingCommits == 0 {
		return
	}
	if g.tombstoned == nil {
		g.tombstoned = map[TopicPartition]uint64{}
	}
	g.tombstoned[tp] = pos
}

// completeTxn resolves producer pid's pending offsets in g: durable ones
// now, ones whose append is in flight when it completes. It returns how
// many offsets were committed and how many were skipped because a later
// commit of the partition exists.
func (g *Group) completeTxn(pid int64, commit bool) (applied, skipped int) {
	for tp, e := range g.takeTxn(pid) {
		switch {
		case !commit:
			e.state = txnDropped
		case !e.durable:
			e.state = txnCommitted
		case g.applyCommitted(tp, e.off):
			applied++
		default:
			skipped++
		}
	}
	return applied, skipped
}

// indexTxnGroup notes that group holds pending offsets of producer pid.
func indexTxnGroup(txnGroups map[int64]map[string]struct{}, pid int64, group string) {
	gs := txnGroups[pid]
	if gs == nil {
		gs = map[string]struct{}{}
		txnGroups[pid] = gs
	}
	gs[group] = struct{}{}
}

// TxnCommitRequest is a TxnOffsetCommit. GenerationID -1, MemberID "" and
// GroupInstanceID "" mean not given (versions 0-2, or a producer that is
// not a group member); the group checks only run on what is given.
type TxnCommitRequest struct {
	Group           string
	TransactionalID string // for logs; the producer id identifies the transaction
	ProducerID      int64
	ProducerEpoch   int16
	GenerationID    int32
	MemberID        string
	GroupInstanceID string
	Offsets         []CommitOffset
}

// CommitTxnOffsets appends offsets as part of producer ProducerID's
// transaction. The answer (one result per requested partition, in request
// order) arrives once the records are durable; the offsets are then
// pending: FetchOffsets does not see them, FetchStableOffsets answers
// UNSTABLE_OFFSET_COMMIT for their partitions, until CompleteTxn. The
// producer's epoch is checked by the log the Appender writes to, not here.
// Topic and partition existence is the caller's to check.
func (c *Coordinator) CommitTxnOffsets(req TxnCommitRequest) <-chan []PartitionResult {
	ch := make(chan []PartitionResult, 1)
	c.mu.Lock()
	c.commitTxnLocked(c.cfg.Now(), req, ch)
	c.mu.Unlock()
	c.flush()
	return ch
}

func (c *Coordinator) commitTxnLocked(now time.Time, req TxnCommitRequest, ch chan []PartitionResult) {
	out := make([]PartitionResult, len(req.Offsets))
	for i := range req.Offsets {
		out[i].TopicPartition = req.Offsets[i].TopicPartition
	}
	fail := func(err error) {
		for i := range out {
			out[i].Err = err
		}
		ch <- out
	}
	if err := c.activeErrLocked(); err != nil {
		fail(err)
		return
	}
	if req.Group == "" {
		fail(kerr.InvalidGroupID)
		return
	}
	if req.ProducerID < 0 {
		fail(kerr.InvalidProducerIDMapping)
		return
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.GenerationID >= 0 {
			fail(kerr.IllegalGeneration)
			return
		}
		g = newGroup(req.Group, now) // a simple group, as Kafka creates
		c.groups[req.Group] = g
	}
	if err := g.validateTxnCommit(req); err != nil {
		fail(err)
		return
	}
	g.deleted = false
	var records []Record
	var idx []int
	for i, o := range req.Offsets {
		if len(o.Metadata) > c.cfg.MaxMetadataBytes {
			out[i].Err = kerr.OffsetMetadataTooLarge
			continue
		}
		off := Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: now}
		records = append(records, TxnOffsetCommitRecord(g.id, o.Topic, o.Partition, off, req.ProducerID, req.ProducerEpoch))
		idx = append(idx, i)
	}
	if len(records) == 0 {
		ch <- out
		return
	}
	entries := make([]*txnOffset, len(records))
	g.commitStarted()
	pos := c.appendLocked(records, func(live bool, err error) {
		defer g.commitDone()
		current := live && c.groups[g.id] == g
		for k, i := range idx {
			e, tp := entries[k], req.Offsets[i].TopicPartition
			switch {
			case err != nil:
				e.state = txnDropped
				g.removeTxn(req.ProducerID, tp, e)
			case !current, e.state == txnDropped:
			case e.state == txnCommitted:
				// CompleteTxn came first: the marker follows the record.
				g.applyCommitted(tp, e.off)
			default:
				e.durable = true
			}
		}
		switch {
		case err != nil:
			err = appendError(err, true)
		case !current:
			err = kerr.NotCoordinator
		}
		for _, i := range idx {
			out[i].Err = err
		}
		ch <- out
	})
	for k, i := range idx {
		off := Offset{Offset: req.Offsets[i].Offset, LeaderEpoch: req.Offsets[i].LeaderEpoch,
			Metadata: req.Offsets[i].Metadata, CommitTime: now, logPos: pos + uint64(k)}
		entries[k] = &txnOffset{off: off}
		g.putTxn(req.ProducerID, req.Offsets[i].TopicPartition, entries[k])
	}
	indexTxnGroup(c.txnGroups, req.ProducerID, g.id)
}

// validateTxnCommit is Kafka's check of a classic group's TxnOffsetCommit:
// that of OffsetCommit, except that a commit without member and generation
// is accepted in any state (TxnOffsetCommit v0-v2 carry neither) and a
// rebalance in progress does not refuse it.
func (g *Group) validateTxnCommit(req TxnCommitRequest) error {
	if g.state == Dead {
		return kerr.CoordinatorNotAvailable
	}
	if req.GenerationID < 0 && g.state == Empty {
		return nil
	}
	if req.GenerationID >= 0 || req.MemberID != "" || req.GroupInstanceID != "" {
		if _, err := g.validateMember(req.MemberID, req.GroupInstanceID); err != nil {
			return err
		}
		if req.GenerationID != g.generation {
			return kerr.IllegalGeneration
		}
	}
	return nil
}

// CompleteTxn ends producer producerID's transaction in this coordinator:
// commit makes its pending offsets the committed ones (each unless its
// partition's committed offset was written later in the log), abort drops
// them. The broker calls it once the producer's commit or abort marker is
// durable in this coordinator's __consumer_offsets partition; an offset
// whose append is still in flight then is taken to precede the marker (the
// producer's epoch fencing in the log ensures it, or fails the append). It
// is idempotent, and unknown producer ids are a no-op.
//
// It fails with NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS, changing
// nothing, when the coordinator is not loaded: a load may have read the
// partition before the marker, so the broker answers WriteTxnMarkers with
// that error and the transaction coordinator writes the marker again, as
// Kafka does.
func (c *Coordinator) CompleteTxn(producerID int64, commit bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.activeErrLocked(); err != nil {
		return err
	}
	c.completeTxnLocked(c.groups, c.txnGroups, producerID, commit)
	return nil
}

// completeTxnLocked resolves producer pid's pending offsets in groups (the
// live groups, or those of a load in progress) using the index txnGroups.
func (c *Coordinator) completeTxnLocked(groups map[string]*Group, txnGroups map[int64]map[string]struct{}, pid int64, commit bool) {
	ids := txnGroups[pid]
	delete(txnGroups, pid)
	for id := range ids {
		g := groups[id]
		if g == nil {
			continue
		}
		if applied, skipped := g.completeTxn(pid, commit); skipped > 0 {
			c.cfg.Logger.Debug("transactional offsets not materialized: later commits exist",
				"group", id, "producer_id", pid, "applied", applied, "skipped", skipped)
		}
		if g.deleted && len(g.offsets) == 0 && len(g.txn) == 0 {
			g.transition(Dead, c.cfg.Now())
			delete(groups, id)
		}
	}
}
