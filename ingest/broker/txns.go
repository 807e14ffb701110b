package broker

// Transactions: the __transaction_state topic and one txn.Coordinator per
// partition of it (see docs/transactions.md), and the writing of
// transaction markers to the partitions of a transaction.
//
// The topic is created on first use (a transactional FindCoordinator or
// InitProducerId), as Kafka does: brokers that never see a transactional
// client carry no extra partitions. Coordinators follow the leadership of
// their partition exactly as group coordinators follow __consumer_offsets
// (elect: load in the background; resign: unload). Markers go to each
// partition's leader: appended here when this broker leads it, else sent
// as WriteTxnMarkers; either way a marker counts as written once it is
// below the partition's high watermark.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/cluster"
	"github.com/strata-io/strata/ingest/group"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/txn"
)

// TxnStateTopic is the internal topic holding transaction state.
const TxnStateTopic = "__transaction_state"

// DefaultTxnTopicPartitions is transaction.state.log.num.partitions, as
// Kafka.
const DefaultTxnTopicPartitions = 50

// markerTimeout bounds one WriteTxnMarkers exchange with another broker;
// the coordinator retries what fails.
const markerTimeout = 30 * time.Second

// txnState is the broker's transaction coordinators, one per
// __transaction_state partition, and which of them this broker leads. It
// exists once the topic does.
type txnState struct {
	coords  []*txn.Coordinator
	leading []atomic.Bool
	// mu orders Elect and Resign of one partition against each other and
	// guards epochs: the leader epoch each led partition was loaded at
	// (its coordinator epoch).
	mu     sync.Mutex
	epochs []int32
}

// txnShared is what the broker keeps for transactions whether or not the
// topic exists yet.
type txnShared struct {
	state    atomic.Pointer[txnState]
	creating atomic.Bool
	initMu   sync.Mutex // serializes initTxns
	peers    peerClients
}

// startTxns starts the coordinators when __transaction_state exists, and
// the loop that ticks them. Called from Open.
func (b *Broker) startTxns() {
	if t, ok := b.meta.Topic(TxnStateTopic); ok {
		b.syncTxnCoordinators(t)
	}
	b.wg.Add(1)
	go b.every(groupTickInterval, func() {
		if ts := b.txns.state.Load(); ts != nil {
			now := time.Now()
			for _, c := range ts.coords {
				c.Tick(now)
			}
		}
	})
}

// stopTxns unloads the coordinators and closes the connections to other
// brokers. Called from Close.
func (b *Broker) stopTxns() {
	if ts := b.txns.state.Load(); ts != nil {
		for _, c := range ts.coords {
			c.Unload()
		}
	}
	b.txns.peers.close()
}

// ensureTxnTopic starts creating __transaction_state in the background
// unless it exists or is being created. Requests meanwhile get
// COORDINATOR_NOT_AVAILABLE, which clients retry.
func (b *Broker) ensureTxnTopic() {
	if _, ok := b.meta.Topic(TxnStateTopic); ok || !b.txns.creating.CompareAndSwap(false, true) {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer b.txns.creating.Store(false)
		n := b.cfg.TxnTopicPartitions
		if n <= 0 {
			n = DefaultTxnTopicPartitions
		}
		// As Kafka: never with fewer replicas than wanted (the state of
		// every transaction lives here); until the brokers are there,
		// clients get COORDINATOR_NOT_AVAILABLE and retry.
		rf := min(3, max(1, len(b.cfg.ControllerVoters)))
		if n := len(b.meta.Brokers()); n < rf {
			b.log.Warn("not creating the transaction state topic yet: too few brokers", "topic", TxnStateTopic, "brokers", n, "replicas", rf)
			return
		}
		_, err := b.meta.CreateTopic(cluster.Topic{
			Name: TxnStateTopic, Internal: true, Partitions: make([]cluster.Partition, n),
			Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": "104857600", "min.insync.replicas": strconv.Itoa(min(2, rf))},
		}, rf)
		if err != nil && !errors.Is(err, cluster.ErrTopicExists) {
			b.log.Error("create the transaction state topic", "topic", TxnStateTopic, "err", err)
			return
		}
		b.log.Info("created the transaction state topic", "topic", TxnStateTopic, "partitions", n, "replicas", rf)
	}()
}

// initTxns makes the coordinators for a topic of n partitions, once.
func (b *Broker) initTxns(n int) *txnState {
	b.txns.initMu.Lock()
	defer b.txns.initMu.Unlock()
	if ts := b.txns.state.Load(); ts != nil {
		return ts
	}
	ts := &txnState{coords: make([]*txn.Coordinator, n), leading: make([]atomic.Bool, n), epochs: make([]int32, n)}
	for i := range ts.coords {
		ts.coords[i] = txn.New(txn.Config{
			Appender:    &txnAppender{b: b, idx: int32(i)},
			Markers:     b,
			ProducerIDs: b.txnProducerID,
			// A partition answering UNKNOWN_TOPIC_OR_PARTITION while its
			// topic exists here (metadata still moving on its leader) is
			// retried for as long as it takes; only a topic gone from this
			// broker's metadata is dropped (ErrPartitionDeleted).
			UnknownPartitionRetries: math.MaxInt32,
			OffsetsPartition:        b.offsetsPartitionOf,
			MaxTimeout:              b.cfg.TxnMaxTimeout,
			Logger:                  b.log.With("component", "txn-coordinator", "partition", i),
		})
	}
	b.txns.state.Store(ts)
	return ts
}

// txnProducerID is the coordinators' producer id source: it runs under a
// coordinator's lock, so it never waits for a block of ids to be reserved
// (a durable write or a metadata quorum round trip, whose apply runs the
// metadata watchers that take the same lock); the client retries the
// COORDINATOR_LOAD_IN_PROGRESS meanwhile.
func (b *Broker) txnProducerID() (int64, error) {
	id, ok, err := b.pids.TryNext()
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, kerr.CoordinatorLoadInProgress
	}
	return id, nil
}

// offsetsPartitionOf is the __consumer_offsets partition of a group.
func (b *Broker) offsetsPartitionOf(groupID string) txn.TopicPartition {
	n := int32(DefaultOffsetsTopicPartitions)
	if gs := b.groups; gs != nil && len(gs.coords) > 0 {
		n = int32(len(gs.coords))
	}
	return txn.TopicPartition{Topic: OffsetsTopic, Partition: group.PartitionFor(groupID, n)}
}

// syncTxnCoordinators elects or resigns this broker as coordinator of each
// __transaction_state partition as its leadership says. Called on metadata
// changes of the topic.
func (b *Broker) syncTxnCoordinators(t cluster.Topic) {
	ts := b.initTxns(len(t.Partitions))
	for i, mp := range t.Partitions {
		if i >= len(ts.coords) {
			break
		}
		lead := mp.Leader == b.cfg.NodeID
		ts.mu.Lock()
		was := ts.leading[i].Load()
		switch {
		case lead && (!was || ts.epochs[i] != mp.LeaderEpoch):
			tok := ts.coords[i].BeginLoad(mp.LeaderEpoch)
			ts.leading[i].Store(true)
			ts.epochs[i] = mp.LeaderEpoch
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.loadTxnCoordinator(int32(i), ts.coords[i], tok)
			}()
			b.log.Info("elected transaction coordinator", "partition", i, "leader_epoch", mp.LeaderEpoch)
		case !lead && was:
			ts.leading[i].Store(false)
			ts.coords[i].Unload()
			b.log.Info("resigned transaction coordinator", "partition", i)
		}
		ts.mu.Unlock()
	}
}

// loadTxnCoordinator reads partition idx back into its coordinator,
// retrying failed reads with backoff until the load succeeds, is
// superseded or the broker closes.
func (b *Broker) loadTxnCoordinator(idx int32, c *txn.Coordinator, tok txn.LoadToken) {
	backoff := groupLoadBackoff
	for {
		start := time.Now()
		var recs []txn.Record
		err := b.readInternal(TxnStateTopic, idx, func(h *batch.Header, r batch.Record) {
			if h.IsControl() {
				return
			}
			rec := txn.Record{Key: append([]byte(nil), r.Key...)}
			if r.Value != nil {
				rec.Value = append([]byte(nil), r.Value...)
			}
			recs = append(recs, rec)
		})
		if err == nil {
			err = c.LoadFrom(tok, recs)
		}
		switch {
		case err == nil:
			b.log.Info("loaded transaction coordinator", "partition", idx, "records", len(recs),
				"took", time.Since(start).Round(time.Millisecond))
			return
		case errors.Is(err, txn.ErrLoadSuperseded), b.ctx.Err() != nil:
			return
		}
		b.log.Error("loading transaction coordinator failed; retrying", "partition", idx, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-b.ctx.Done():
			return
		}
		backoff = min(2*backoff, groupLoadMaxBackoff)
	}
}

// TxnCoordinator returns the coordinator of a transactional id when this
// broker leads its __transaction_state partition. Before the topic exists
// it starts creating it and answers COORDINATOR_NOT_AVAILABLE; for an id
// another broker coordinates, NOT_COORDINATOR.
func (b *Broker) TxnCoordinator(txnID string) (*txn.Coordinator, error) {
	ts := b.txns.state.Load()
	if ts == nil {
		b.ensureTxnTopic()
		return nil, kerr.CoordinatorNotAvailable
	}
	i := txn.PartitionFor(txnID, int32(len(ts.coords)))
	if !ts.leading[i].Load() {
		return nil, kerr.NotCoordinator
	}
	return ts.coords[i], nil
}

// TxnCoordinators returns every coordinator this broker leads
// (ListTransactions asks them all).
func (b *Broker) TxnCoordinators() []*txn.Coordinator {
	ts := b.txns.state.Load()
	if ts == nil {
		return nil
	}
	var out []*txn.Coordinator
	for i, c := range ts.coords {
		if ts.leading[i].Load() {
			out = append(out, c)
		}
	}
	return out
}

// CoordinatorLeader names the broker leading the partition that holds a
// group (key type 0) or a transactional id (key type 1): the coordinator
// FindCoordinator answers with. ok is false while there is none (or the
// transaction topic is still being created).
func (b *Broker) CoordinatorLeader(keyType int8, key string) (cluster.Broker, bool) {
	var topic string
	var idx int32
	switch keyType {
	case 0:
		gs := b.groups
		if gs == nil || len(gs.coords) == 0 {
			return cluster.Broker{}, false
		}
		topic, idx = OffsetsTopic, group.PartitionFor(key, int32(len(gs.coords)))
	case 1:
		ts := b.txns.state.Load()
		if ts == nil {
			b.ensureTxnTopic()
			return cluster.Broker{}, false
		}
		topic, idx = TxnStateTopic, txn.PartitionFor(key, int32(len(ts.coords)))
	default:
		return cluster.Broker{}, false
	}
	t, ok := b.meta.Topic(topic)
	if !ok || int(idx) >= len(t.Partitions) {
		return cluster.Broker{}, false
	}
	leader := t.Partitions[idx].Leader
	if leader == b.cfg.NodeID && !b.leadsCoordinatorAt(keyType, idx) {
		// Elected but resigned (or not yet elected): none for now.
		return cluster.Broker{}, false
	}
	for _, br := range b.meta.Brokers() {
		if br.ID == leader {
			return br, true
		}
	}
	return cluster.Broker{}, false
}

// leadsCoordinatorAt reports whether this broker runs (loaded or loading)
// the coordinator of partition idx of the group (0) or transaction (1)
// topic.
func (b *Broker) leadsCoordinatorAt(keyType int8, idx int32) bool {
	switch keyType {
	case 0:
		gs := b.groups
		return gs != nil && int(idx) < len(gs.leading) && gs.leading[idx].Load()
	case 1:
		ts := b.txns.state.Load()
		return ts != nil && int(idx) < len(ts.leading) && ts.leading[idx].Load()
	}
	return false
}

// txnAppender appends a coordinator's records to its __transaction_state
// partition.
type txnAppender struct {
	b   *Broker
	idx int32
}

// Append implements txn.Appender.
func (a *txnAppender) Append(records []txn.Record, done func(error)) {
	recs := make([]batch.Record, len(records))
	for i, r := range records {
		recs[i] = batch.Record{Key: r.Key, Value: r.Value}
	}
	a.b.appendInternal(TxnStateTopic, a.idx, recs, batch.BuildOptions{}, done)
}

// WriteMarkers implements txn.MarkerWriter: the partitions this broker
// leads get their marker here, the others through their leader.
func (b *Broker) WriteMarkers(m txn.Markers, done func(map[txn.TopicPartition]error)) {
	byLeader := map[int32][]txn.TopicPartition{}
	out := make(map[txn.TopicPartition]error, len(m.Partitions))
	for _, tp := range m.Partitions {
		t, ok := b.meta.Topic(tp.Topic)
		switch {
		case !ok:
			// AddPartitionsToTxn checked that it existed: it was deleted.
			out[tp] = txn.ErrPartitionDeleted
		case tp.Partition < 0 || int(tp.Partition) >= len(t.Partitions):
			out[tp] = kerr.UnknownTopicOrPartition
		case t.Partitions[tp.Partition].Leader == cluster.NoLeader:
			out[tp] = kerr.LeaderNotAvailable
		default:
			l := t.Partitions[tp.Partition].Leader
			byLeader[l] = append(byLeader[l], tp)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for leader, parts := range byLeader {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(b.ctx, markerTimeout)
			defer cancel()
			var errs map[txn.TopicPartition]error
			if leader == b.cfg.NodeID {
				errs = b.writeMarkersHere(ctx, m, parts)
			} else {
				errs = b.sendMarkers(ctx, leader, m, parts)
			}
			mu.Lock()
			for tp, err := range errs {
				out[tp] = err
			}
			mu.Unlock()
		}()
	}
	go func() {
		wg.Wait()
		done(out)
	}()
}

// writeMarkersHere appends m's marker to partitions this broker leads, at
// once, and waits until each is durable.
func (b *Broker) writeMarkersHere(ctx context.Context, m txn.Markers, parts []txn.TopicPartition) map[txn.TopicPartition]error {
	out := make(map[txn.TopicPartition]error, len(parts))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tp := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.WriteTxnMarker(ctx, tp.Topic, tp.Partition, m.ProducerID, m.ProducerEpoch,
				batch.Marker{Commit: m.Commit, CoordinatorEpoch: m.CoordinatorEpoch})
			mu.Lock()
			out[tp] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// WriteTxnMarker appends a transaction marker to a partition this broker
// leads and returns once it is durable (below the high watermark), or
// failed. A marker in __consumer_offsets then completes the producer's
// transactional offset commits in that partition's group coordinator.
// Errors are kerr values or carry a Kafka code.
func (b *Broker) WriteTxnMarker(ctx context.Context, topic string, idx int32, pid int64, epoch int16, m batch.Marker) error {
	p, err := b.Partition(topic, idx)
	if err != nil {
		return markerErr(err)
	}
	if err := p.CheckMinISR(); err != nil {
		return markerErr(err)
	}
	off, err := p.WriteMarker(pid, epoch, m)
	if err != nil {
		return markerErr(err)
	}
	if err := p.WaitDurable(ctx, off); err != nil {
		return markerErr(err)
	}
	if topic == OffsetsTopic {
		c, err := b.coordinatorAt(idx)
		if err == nil {
			err = c.CompleteTxn(pid, m.Commit)
		}
		if err != nil {
			// The group coordinator is loading (it may have read the
			// partition before this marker): the marker is written again
			// (a repeat changes nothing) once it has loaded.
			return fmt.Errorf("%w: %s-%d: group coordinator: %v", kerr.NotLeaderForPartition, topic, idx, err)
		}
	}
	return nil
}

// markerErr gives a marker write's failure the Kafka error it carries (a
// producer-state refusal: INVALID_PRODUCER_EPOCH,
// TRANSACTION_COORDINATOR_FENCED) or the one a remote leader would answer,
// so that the coordinator treats partitions led here and elsewhere alike.
func markerErr(err error) error {
	if err == nil {
		return nil
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return err
	}
	var coded interface{ Code() int16 }
	if errors.As(err, &coded) {
		if k := kerr.ErrorForCode(coded.Code()); k != nil {
			return fmt.Errorf("%w: %v", k, err)
		}
	}
	var k *kerr.Error
	switch {
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrUnknownTopicOrPartition), errors.Is(err, plog.ErrClosed):
		// Led elsewhere now, or not open here yet (or closing).
		k = kerr.NotLeaderForPartition
	case errors.Is(err, ErrLeaderNotAvailable):
		k = kerr.LeaderNotAvailable
	case errors.Is(err, ErrNotEnoughReplicasAfterAppend):
		k = kerr.NotEnoughReplicasAfterAppend
	case errors.Is(err, ErrNotEnoughReplicas):
		k = kerr.NotEnoughReplicas
	case errors.Is(err, plog.ErrStorage), errors.Is(err, plog.ErrDiskFull):
		k = kerr.KafkaStorageError
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		k = kerr.RequestTimedOut
	default:
		return err
	}
	return fmt.Errorf("%w: %v", k, err)
}

// sendMarkers sends m's marker for parts to their leader as one
// WriteTxnMarkers request.
func (b *Broker) sendMarkers(ctx context.Context, leader int32, m txn.Markers, parts []txn.TopicPartition) map[txn.TopicPartition]error {
	out := make(map[txn.TopicPartition]error, len(parts))
	fail := func(err error) map[txn.TopicPartition]error {
		for _, tp := range parts {
			out[tp] = err
		}
		return out
	}
	br, err := b.txns.peers.broker(b, leader)
	if err != nil {
		return fail(err)
	}
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	mk := kmsg.NewWriteTxnMarkersRequestMarker()
	mk.ProducerID, mk.ProducerEpoch, mk.Committed, mk.CoordinatorEpoch = m.ProducerID, m.ProducerEpoch, m.Commit, m.CoordinatorEpoch
	byTopic := map[string]int{}
	for _, tp := range parts {
		i, ok := byTopic[tp.Topic]
		if !ok {
			i = len(mk.Topics)
			byTopic[tp.Topic] = i
			t := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			t.Topic = tp.Topic
			mk.Topics = append(mk.Topics, t)
		}
		mk.Topics[i].Partitions = append(mk.Topics[i].Partitions, tp.Partition)
	}
	req.Markers = append(req.Markers, mk)
	resp, err := req.RequestWith(ctx, br)
	if err != nil {
		return fail(fmt.Errorf("%w: write markers at broker %d: %v", kerr.NetworkException, leader, err))
	}
	for _, rm := range resp.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				out[txn.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}] = kerr.ErrorForCode(rp.ErrorCode)
			}
		}
	}
	for _, tp := range parts {
		if _, ok := out[tp]; !ok {
			out[tp] = fmt.Errorf("%w: broker %d did not answer for %s-%d", kerr.UnknownServerError, leader, tp.Topic, tp.Partition)
		}
	}
	return out
}

// peerClients keeps one Kafka client per other broker, for requests
// brokers send each other (WriteTxnMarkers).
type peerClients struct {
	mu      sync.Mutex
	clients map[int32]peerClient
	closed  bool
}

type peerClient struct {
	addr string
	cl   *kgo.Client
}

// broker returns a handle on broker id, (re)connecting when its address
// changed.
func (pc *peerClients) broker(b *Broker, id int32) (*kgo.Broker, error) {
	r, ok := b.meta.Registration(id)
	if !ok || r.Fenced {
		return nil, fmt.Errorf("%w: broker %d is not available", kerr.BrokerNotAvailable, id)
	}
	addr := net.JoinHostPort(r.Host, strconv.Itoa(int(r.Port)))
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return nil, fmt.Errorf("%w: broker closing", kerr.BrokerNotAvailable)
	}
	if c, ok := pc.clients[id]; ok && c.addr == addr {
		return c.cl.Broker(int(id)), nil
	} else if ok {
		c.cl.Close()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID(fmt.Sprintf("strata-broker-%d", b.cfg.NodeID)),
		kgo.RetryTimeout(5 * time.Second)}
	if b.cfg.Dial != nil {
		opts = append(opts, kgo.Dialer(b.cfg.Dial))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("client for broker %d: %w", id, err)
	}
	if pc.clients == nil {
		pc.clients = map[int32]peerClient{}
	}
	pc.clients[id] = peerClient{addr: addr, cl: cl}
	return cl.Broker(int(id)), nil
}

func (pc *peerClients) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.closed = true
	for _, c := range pc.clients {
		c.cl.Close()
	}
	pc.clients = nil
}
