package cluster

// Raft is the Store on a hashicorp/raft metadata quorum (see
// docs/architecture.md, "Cluster metadata"). Every broker runs one: voters
// (a configured set of 1, 3 or 5) elect the controller, which is the raft
// leader; other brokers join as non-voters and hold the same state, so every
// broker answers Metadata from local memory. Writes go to the controller
// (directly when this node is it, else over the controller port) and return
// once this node's state machine has applied them.
//
// Brokers register (getting a broker epoch), then heartbeat; the
// controller unfences a registered broker on its first heartbeat and fences
// one whose heartbeats stop for the session timeout (or sooner when it can
// tell the broker is gone, liveness.go), which moves its partition
// leadership to other in-sync replicas (control.go).

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// RaftConfig configures a broker's member of the metadata quorum.
type RaftConfig struct {
	// Dir holds the raft log (raft.db) and snapshots.
	Dir string
	// Self is this broker's registration.
	Self Broker
	// ControllerAddr is the address the quorum transport listens on (host:port;
	// port 0 picks one). Empty runs a single voter on an in-memory transport:
	// a one-node cluster, which no other broker can join.
	ControllerAddr string
	// Voters maps voter ids to their controller addresses. Empty makes
	// this broker the only voter. A broker not listed joins as a non-voter.
	Voters map[int32]string
	// Import returns the state of an older single-node broker (its
	// metadata file and producer id allocator); it seeds the quorum once,
	// when the controller finds the state empty.
	Import func() (Imported, error)
	// MirrorPath, if set, is a metadata file in Local's format rewritten
	// after every change of topics: offline tools (strata tier ls) read it,
	// and Import can read it back if the quorum's own state is lost.
	MirrorPath string
	// HeartbeatInterval is broker.heartbeat.interval.ms (2s);
	// SessionTimeout is broker.session.timeout.ms (9s).
	HeartbeatInterval time.Duration
	SessionTimeout    time.Duration
	// StartTimeout bounds OpenRaft's wait for a controller (60s).
	StartTimeout time.Duration
	// LeaderRebalanceInterval is leader.imbalance.check.interval.seconds
	// (5m): how often the controller moves leadership back to preferred
	// replicas that are in sync (auto.leader.rebalance.enable); negative
	// turns it off.
	LeaderRebalanceInterval time.Duration
	// RequestTimeout bounds one write, retries at a new controller included
	// (15s).
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Dial, if set, makes this broker's connections to other controller
	// ports (raft and requests); tests cut links with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// trailingLogs overrides the log entries kept after a snapshot (tests).
	trailingLogs uint64
}

func (c *RaftConfig) defaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 9 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = time.Minute
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.LeaderRebalanceInterval == 0 {
		c.LeaderRebalanceInterval = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.Voters) == 0 {
		c.Voters = map[int32]string{c.Self.ID: c.ControllerAddr}
	}
}

// Imported is the state of an older single-node broker.
type Imported struct {
	ClusterID      string
	Topics         []Topic
	NextProducerID int64
}

// ReadImport reads a Local metadata file (absent: nothing to import) for
// RaftConfig.Import, as broker self.
func ReadImport(path string, self int32) (Imported, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Imported{}, nil
	}
	if err != nil {
		return Imported{}, fmt.Errorf("read %s: %w", path, err)
	}
	id, topics, err := decodeLocalFile(raw, self)
	if err != nil {
		return Imported{}, fmt.Errorf("%s: %w", path, err)
	}
	return Imported{ClusterID: id, Topics: topics}, nil
}

// Raft is a Store backed by the metadata quorum.
type Raft struct {
	cfg   RaftConfig
	log   *slog.Logger
	r     *raft.Raft
	fsm   *fsm
	dm    *demux // nil on the in-memory transport
	trans raft.Transport
	db    *raftboltdb.BoltStore
	addr  string // this node's transport address
	cc    ctlClient
	// hc carries only heartbeats, so that they never wait behind a slow
	// write, and its connection's end tells the controller this broker
	// may be gone.
	hc ctlClient

	epoch atomic.Int64 // this broker's epoch, 0 until registered
	// caughtUpTerm is the latest raft term in which this node, as the
	// controller, applied everything committed before it (confirm.go).
	caughtUpTerm atomic.Uint64
	// stopping is set by ControlledShutdown: no more heartbeats, so the
	// controller does not unfence this broker again.
	stopping atomic.Bool
	// leaderObs is told when another node becomes the controller.
	leaderObs chan raft.Observation
	// running is set once r is; controller requests that arrive before
	// are answered "not the controller".
	running atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	ctl struct {
		sync.Mutex
		leading bool
		// sessions is what this node observed of brokers' liveness since
		// it became the controller (zero while it is not).
		sessions sessions
		// lastController is the last other controller this node followed.
		lastController int32
		// lastRebalance is when preferred leaders were last checked.
		lastRebalance time.Time
	}
}

func (q *Raft) timing() timing {
	return timing{heartbeat: q.cfg.HeartbeatInterval, session: q.cfg.SessionTimeout}
}

// heartbeatConnEnded is told by the controller listener that a connection
// that carried heartbeats of broker id at epoch ended: unless the broker
// heartbeats again soon (on a new connection), its session ends early
// (liveness.go).
func (q *Raft) heartbeatConnEnded(id int32, epoch int64) {
	q.ctl.Lock()
	defer q.ctl.Unlock()
	if q.ctl.sessions.lost != nil {
		q.ctl.sessions.lost[id] = connLoss{epoch: epoch, at: time.Now()}
		q.log.Debug("a broker's heartbeat connection ended", "broker", id, "broker_epoch", epoch)
	}
}

var _ Store = (*Raft)(nil)

// OpenRaft starts this broker's member of the quorum and returns once a
// controller is known, this node has caught up with it, and this broker is
// registered and unfenced.
func OpenRaft(cfg RaftConfig) (*Raft, error) {
	cfg.defaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("metadata dir: %w", err)
	}
	q := &Raft{cfg: cfg, log: cfg.Logger.With("component", "metadata")}
	q.cc.dial = cfg.Dial
	q.hc.dial = cfg.Dial
	q.ctl.lastController = -1
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.fsm = &fsm{st: NewState(), log: q.log, mirror: cfg.MirrorPath}
	if err := q.start(); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func (q *Raft) start() error {
	cfg := q.cfg
	hl := hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Warn, Output: &slogWriter{log: q.log}, DisableTime: true,
	})
	if q.log.Enabled(context.Background(), slog.LevelDebug) {
		hl.SetLevel(hclog.Debug)
	}
	var err error
	if q.db, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")}); err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl)
	if err != nil {
		return fmt.Errorf("open raft snapshots: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = serverID(cfg.Self.ID)
	rc.Logger = hl
	rc.SnapshotThreshold = 4096
	rc.SnapshotInterval = 30 * time.Second
	rc.TrailingLogs = 4096
	if cfg.trailingLogs > 0 {
		rc.TrailingLogs = cfg.trailingLogs
	}
	if cfg.ControllerAddr == "" {
		// A lone voter: elect itself quickly, nobody to wait for.
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		var tr *raft.InmemTransport
		_, tr = raft.NewInmemTransport(raft.ServerAddress("local"))
		q.trans, q.addr = tr, "local"
		cfg.Voters = map[int32]string{cfg.Self.ID: "local"}
	} else {
		ln, err := net.Listen("tcp", cfg.ControllerAddr)
		if err != nil {
			return fmt.Errorf("controller listener: %w", err)
		}
		q.dm = newDemux(ln, q.log, q.handle, q.heartbeatConnEnded, cfg.Dial)
		q.addr = ln.Addr().String()
		if v, ok := cfg.Voters[cfg.Self.ID]; ok && strings.HasSuffix(v, ":0") {
			cfg.Voters[cfg.Self.ID] = q.addr
		}
		q.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: q.dm, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl,
		})
	}
	q.cfg = cfg
	_, voter := cfg.Voters[cfg.Self.ID]
	existing, err := raft.HasExistingState(q.db, q.db, snaps)
	if err != nil {
		return fmt.Errorf("raft state: %w", err)
	}
	if !existing && voter {
		var servers []raft.Server
		for _, id := range slices.Sorted(maps.Keys(cfg.Voters)) {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: serverID(id), Address: raft.ServerAddress(cfg.Voters[id])})
		}
		if err := raft.BootstrapCluster(rc, q.db, q.db, snaps, q.trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("bootstrap metadata quorum: %w", err)
		}
		q.log.Info("formed the metadata quorum", "voters", len(servers))
	}
	if q.r, err = raft.NewRaft(rc, q.fsm, q.db, q.db, snaps, q.trans); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	q.running.Store(true)
	// Told of every new controller, the heartbeat loop greets it at once
	// (liveness.go counts on it).
	q.leaderObs = make(chan raft.Observation, 1)
	q.r.RegisterObserver(raft.NewObserver(q.leaderObs, false, func(o *raft.Observation) bool {
		lo, ok := o.Data.(raft.LeaderObservation)
		return ok && lo.LeaderID != "" && lo.LeaderID != serverID(cfg.Self.ID)
	}))
	deadline := time.Now().Add(cfg.StartTimeout)
	if !voter && !existing {
		if err := q.join(deadline); err != nil {
			return err
		}
	}
	if err := q.catchUp(deadline); err != nil {
		return err
	}
	q.wg.Add(2)
	go q.controllerLoop()
	go q.heartbeatLoop()
	if err := q.initialize(deadline); err != nil {
		return err
	}
	if err := q.register(deadline); err != nil {
		return err
	}
	for !q.unfenced() {
		if time.Now().After(deadline) {
			return errors.New("metadata quorum: this broker was not unfenced in time")
		}
		q.heartbeat()
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func serverID(id int32) raft.ServerID { return raft.ServerID(strconv.Itoa(int(id))) }

// join asks the voters, in turn, to add this broker as a non-voter.
func (q *Raft) join(deadline time.Time) error {
	req := ctlRequest{Op: opJoin, BrokerID: q.cfg.Self.ID, Addr: q.addr}
	for time.Now().Before(deadline) {
		for _, id := range slices.Sorted(maps.Keys(q.cfg.Voters)) {
			resp, err := q.cc.call(q.cfg.Voters[id], req, 5*time.Second)
			if err == nil && resp.Err == "" {
				q.log.Info("joined the metadata quorum as a non-voter", "via", id)
				return nil
			}
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-q.ctx.Done():
			return q.ctx.Err()
		}
	}
	return errors.New("metadata quorum: no voter accepted this broker in time")
}

// catchUp waits for a leader and for this node to apply what it had
// committed.
func (q *Raft) catchUp(deadline time.Time) error {
	for {
		if time.Now().After(deadline) {
			return errors.New("metadata quorum: no controller elected in time (are a majority of the voters up?)")
		}
		if q.r.State() == raft.Leader {
			if err := q.r.Barrier(time.Until(deadline)).Error(); err == nil {
				return nil
			}
		} else if addr, _ := q.r.LeaderWithID(); addr != "" {
			resp, err := q.cc.call(string(addr), ctlRequest{Op: opIndex}, 5*time.Second)
			if err == nil && resp.Err == "" {
				return q.waitAppliedUntil(resp.Index, deadline)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// initialize sets the cluster id (and imports an older single-node state)
// when the quorum is new; every node waits until the id is there.
func (q *Raft) initialize(deadline time.Time) error {
	for q.ClusterID() == "" {
		if time.Now().After(deadline) {
			return errors.New("metadata quorum: cluster not initialized in time")
		}
		if q.r.State() == raft.Leader {
			var imp Imported
			if q.cfg.Import != nil {
				var err error
				if imp, err = q.cfg.Import(); err != nil {
					return fmt.Errorf("import metadata: %w", err)
				}
			}
			if imp.ClusterID == "" {
				imp.ClusterID = newClusterID()
			}
			if len(imp.Topics) > 0 || imp.NextProducerID > 0 {
				cmd := Command{Type: CmdImport, Count: imp.NextProducerID}
				for _, t := range imp.Topics {
					cmd.Topics = append(cmd.Topics, recordOf(t))
				}
				if resp := q.propose(cmd); resp.Err != "" {
					return fmt.Errorf("import metadata: %s", resp.Err)
				}
				q.log.Info("imported the single-node metadata", "topics", len(imp.Topics), "next_producer_id", imp.NextProducerID)
			}
			if resp := q.propose(Command{Type: CmdInit, ClusterID: imp.ClusterID}); resp.Err != "" {
				return fmt.Errorf("initialize metadata: %s", resp.Err)
			}
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// register records this broker (a new broker epoch) with the controller.
func (q *Raft) register(deadline time.Time) error {
	reg := Registration{Broker: q.cfg.Self, ControllerAddr: q.addr}
	resp, err := q.do(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdRegisterBroker, Broker: &reg}}, deadline)
	if err != nil {
		return fmt.Errorf("register broker %d: %w", q.cfg.Self.ID, err)
	}
	q.epoch.Store(resp.Value)
	q.log.Info("registered with the metadata quorum", "broker", q.cfg.Self.ID, "broker_epoch", resp.Value)
	return nil
}

func (q *Raft) unfenced() bool {
	r, ok := q.Registration(q.cfg.Self.ID)
	return ok && r.Epoch == q.epoch.Load() && !r.Fenced
}

// heartbeatLoop keeps this broker's session with the controller: a
// heartbeat every interval, and one as soon as another node becomes the
// controller, so that a new controller hears from live brokers at once.
func (q *Raft) heartbeatLoop() {
	defer q.wg.Done()
	t := time.NewTicker(q.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-q.ctx.Done():
			return
		case <-t.C:
		case <-q.leaderObs:
		}
		q.heartbeat()
	}
}

func (q *Raft) heartbeat() {
	epoch := q.epoch.Load()
	if epoch == 0 || q.stopping.Load() {
		return
	}
	_, err := q.do(ctlRequest{Op: opHeartbeat, BrokerID: q.cfg.Self.ID, Epoch: epoch}, time.Now().Add(q.cfg.HeartbeatInterval))
	switch {
	case err == nil:
	case errors.Is(err, ErrStaleBrokerEpoch), errors.Is(err, ErrUnknownBroker):
		q.log.Warn("the controller no longer knows this broker's epoch; registering again", "err", err)
		if err := q.register(time.Now().Add(q.cfg.RequestTimeout)); err != nil {
			q.log.Error("registering again failed", "err", err)
		}
	default:
		q.log.Debug("heartbeat failed", "err", err)
	}
}

// controllerLoop fences brokers whose heartbeats stopped, while this node
// is the controller.
func (q *Raft) controllerLoop() {
	defer q.wg.Done()
	// Often: the graces of liveness.go are counted from this loop's ticks.
	t := time.NewTicker(min(q.cfg.HeartbeatInterval/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-q.ctx.Done():
			return
		case <-t.C:
		}
		leading := q.r.State() == raft.Leader
		now := time.Now()
		q.ctl.Lock()
		rebalance := false
		if leading && q.cfg.LeaderRebalanceInterval > 0 && now.Sub(q.ctl.lastRebalance) > q.cfg.LeaderRebalanceInterval {
			q.ctl.lastRebalance = now
			rebalance = q.ctl.leading // not in the first tick of a new controller
		}
		if leading && !q.ctl.leading {
			q.ctl.sessions = sessions{since: now, prev: q.ctl.lastController, seen: map[int32]time.Time{}, lost: map[int32]connLoss{}}
		}
		if !leading {
			// Remembered for the shorter grace of the previous controller
			// should this node take over (the leader is unknown during an
			// election: the last one seen is kept).
			if c := q.ControllerID(); c != -1 && c != q.cfg.Self.ID {
				q.ctl.lastController = c
			}
			q.ctl.sessions = sessions{}
		}
		q.ctl.leading = leading
		var stale []Registration
		if leading {
			stale = expiredSessions(q.registrations(), q.cfg.Self.ID, q.ctl.sessions, q.timing(), now)
		}
		q.ctl.Unlock()
		for _, r := range stale {
			resp := q.propose(Command{Type: CmdFenceBroker, BrokerID: r.ID, Epoch: r.Epoch})
			q.log.Warn("fenced a broker whose session expired", "broker", r.ID, "broker_epoch", r.Epoch, "err", resp.Err)
		}
		if rebalance && q.imbalanced() {
			resp := q.propose(Command{Type: CmdPreferredLeaders})
			q.log.Info("moved leadership back to preferred replicas", "err", resp.Err)
		}
	}
}

// forwardable are the commands brokers may send as they are; the others
// are made by the controller itself (init, import, unfencing) or from
// requests it plans (topic and partition creation).
var forwardable = map[string]bool{
	CmdRegisterBroker: true, CmdFenceBroker: true, CmdDeleteTopic: true, CmdSetConfigs: true,
	CmdAlterPartition: true, CmdPreferredLeaders: true, CmdAllocateProducerIDs: true,
}

// imbalanced reports whether some partition is not led by its preferred
// replica although that one could lead.
func (q *Raft) imbalanced() bool {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	for _, t := range q.fsm.st.Topics {
		for _, p := range t.Partitions {
			if PreferredLeader(p, q.fsm.st.usable).Leader != p.Leader {
				return true
			}
		}
	}
	return false
}

// ControlledShutdown hands this broker's work to others before it stops
// (SIGTERM): it stops heartbeating and asks the controller to fence it,
// which moves leadership of its partitions to other in-sync replicas, and
// if this node is the controller it hands the quorum's leadership to
// another voter. A broker that is alone has no one to hand over to and
// returns at once.
func (q *Raft) ControlledShutdown(timeout time.Duration) error {
	if len(q.usableBrokers()) <= 1 {
		return nil
	}
	q.stopping.Store(true)
	deadline := time.Now().Add(timeout)
	// Shutdown keeps it fenced whatever heartbeat is still on its way.
	_, err := q.do(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdFenceBroker, BrokerID: q.cfg.Self.ID, Epoch: q.epoch.Load(), Shutdown: true}}, deadline)
	if err != nil {
		return fmt.Errorf("controlled shutdown: %w", err)
	}
	if q.r.State() == raft.Leader && len(q.cfg.Voters) > 1 {
		if err := q.r.LeadershipTransfer().Error(); err != nil {
			q.log.Warn("could not hand over the controller role", "err", err)
		}
	}
	q.log.Info("controlled shutdown: leadership moved to other replicas", "broker", q.cfg.Self.ID)
	return nil
}

// handle serves a controller request; only the controller does. Every
// answer, failures included, carries an index the requester waits for, so
// that what it reads next is at least as new as what the controller
// decided from (a "topic exists" answer finds the topic there).
func (q *Raft) handle(req ctlRequest) ctlResponse { return q.handleCtx(q.ctx, req) }

// handleCtx is handle bounded by ctx too (a request from this broker).
func (q *Raft) handleCtx(ctx context.Context, req ctlRequest) ctlResponse {
	resp := q.handleOp(ctx, req)
	if resp.Index == 0 && q.running.Load() && resp.Kind != "not_controller" {
		resp.Index = q.fsm.appliedIndex()
	}
	return resp
}

func (q *Raft) handleOp(ctx context.Context, req ctlRequest) ctlResponse {
	if !q.running.Load() {
		return errResponse(ErrNotController)
	}
	if q.r.State() != raft.Leader {
		return notController(q.r)
	}
	if isWrite(req.Op) {
		// A retry of a write applied already (its answer was lost) gets
		// the first answer; one not applied yet, or still in flight, is
		// caught when applied (State.Apply).
		if r, ok := q.remembered(req.ID); ok {
			return ctlResponse{Index: r.Index, Value: r.Value, Err: r.Err, Kind: r.Kind}
		}
	}
	switch req.Op {
	case opConfirmLeader:
		return q.confirmLeader(ctx, req)
	case opIndex:
		if err := q.r.Barrier(q.cfg.RequestTimeout).Error(); err != nil {
			return errResponse(err)
		}
		return ctlResponse{Index: q.fsm.appliedIndex()}
	case opApply:
		if req.Cmd == nil || !forwardable[req.Cmd.Type] {
			return errResponse(fmt.Errorf("%w: command not accepted from a broker", ErrUnsupportedCommand))
		}
		cmd := *req.Cmd
		cmd.ReqID = req.ID
		return q.propose(cmd)
	case opCreateTopic:
		return q.createTopic(req)
	case opCreatePartitions:
		return q.createPartitions(req)
	case opHeartbeat:
		r, ok := q.Registration(req.BrokerID)
		switch {
		case !ok:
			return errResponse(ErrUnknownBroker)
		case r.Epoch != req.Epoch:
			return errResponse(fmt.Errorf("%w: broker %d is at epoch %d, not %d", ErrStaleBrokerEpoch, r.ID, r.Epoch, req.Epoch))
		}
		q.ctl.Lock()
		if q.ctl.sessions.seen != nil {
			q.ctl.sessions.seen[req.BrokerID] = time.Now()
		}
		q.ctl.Unlock()
		if r.Fenced && !r.ShuttingDown {
			resp := q.propose(Command{Type: CmdUnfenceBroker, BrokerID: r.ID, Epoch: r.Epoch})
			if resp.Err == "" {
				q.log.Info("unfenced a broker", "broker", r.ID, "broker_epoch", r.Epoch)
			}
			return resp
		}
		return ctlResponse{}
	case opJoin:
		if _, voter := q.cfg.Voters[req.BrokerID]; voter {
			// AddNonvoter would demote (or move) a voter.
			return errResponse(fmt.Errorf("%w: broker %d is a voter; check its --node-id", ErrUnsupportedCommand, req.BrokerID))
		}
		f := q.r.AddNonvoter(serverID(req.BrokerID), raft.ServerAddress(req.Addr), 0, q.cfg.RequestTimeout)
		if err := f.Error(); err != nil {
			return errResponse(err)
		}
		q.log.Info("added a non-voter to the metadata quorum", "broker", req.BrokerID, "addr", req.Addr)
		return ctlResponse{Index: f.Index()}
	}
	return errResponse(fmt.Errorf("%w: op %q", ErrUnsupportedCommand, req.Op))
}

func notController(r *raft.Raft) ctlResponse {
	resp := errResponse(ErrNotController)
	if addr, _ := r.LeaderWithID(); addr != "" {
		resp.Err = fmt.Sprintf("%s: the controller is at %s", ErrNotController, addr)
	}
	return resp
}

func errResponse(err error) ctlResponse {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		err = fmt.Errorf("%w: %v", ErrNotController, err)
	}
	msg, kind := encodeErr(err)
	return ctlResponse{Err: msg, Kind: kind}
}

// propose appends a command to the quorum's log and returns its result.
func (q *Raft) propose(c Command) ctlResponse {
	c.V = FormatVersion
	raw, err := json.Marshal(c)
	if err != nil {
		return errResponse(err)
	}
	f := q.r.Apply(raw, q.cfg.RequestTimeout)
	if err := f.Error(); err != nil {
		return errResponse(err)
	}
	res, _ := f.Response().(Result)
	resp := errResponse(res.Err)
	resp.Index, resp.Value = f.Index(), res.Value
	return resp
}

// remembered returns the result of an applied write by request id.
func (q *Raft) remembered(id string) (Remembered, bool) {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	return q.fsm.st.Remembered(id)
}

func (q *Raft) usableBrokers() []Broker {
	var out []Broker
	for _, r := range q.registrations() {
		if !r.Fenced {
			out = append(out, r.Broker)
		}
	}
	return out
}

func newPartitions(assign [][]int32) []PartitionRec {
	out := make([]PartitionRec, len(assign))
	for i, reps := range assign {
		out[i] = PartitionRec{Leader: reps[0], Replicas: reps, ISR: slices.Sorted(slices.Values(reps))}
	}
	return out
}

func (q *Raft) createTopic(req ctlRequest) ctlResponse {
	if req.Topic == nil || len(req.Topic.Partitions) == 0 || len(req.Topic.Partitions) > maxPartitions {
		return errResponse(fmt.Errorf("%w: create without a topic or with too many partitions", ErrInvalidPartition))
	}
	t := *req.Topic
	if _, ok := q.Topic(t.Name); ok {
		return errResponse(ErrTopicExists)
	}
	brokers := q.usableBrokers()
	assign, err := AssignReplicas(brokers, len(t.Partitions), req.RF, rand.IntN(max(len(brokers), 1)))
	if err != nil {
		return errResponse(fmt.Errorf("%w: %v", ErrInvalidReplication, err))
	}
	if t.ID == (TopicID{}) {
		t.ID = NewTopicID()
	}
	t.Partitions = newPartitions(assign)
	return q.propose(Command{Type: CmdCreateTopic, Topic: &t, ReqID: req.ID})
}

func (q *Raft) createPartitions(req ctlRequest) ctlResponse {
	t, ok := q.Topic(req.Name)
	if !ok {
		return errResponse(ErrUnknownTopic)
	}
	if req.Total > maxPartitions {
		return errResponse(fmt.Errorf("%w: %d partitions", ErrInvalidPartition, req.Total))
	}
	if int(req.Total) <= len(t.Partitions) {
		return errResponse(fmt.Errorf("%w: topic %s has %d partitions, asked for %d", ErrInvalidPartition, req.Name, len(t.Partitions), req.Total))
	}
	brokers := q.usableBrokers()
	assign, err := AssignReplicas(brokers, int(req.Total)-len(t.Partitions), len(t.Partitions[0].Replicas), rand.IntN(max(len(brokers), 1)))
	if err != nil {
		return errResponse(fmt.Errorf("%w: %v", ErrInvalidReplication, err))
	}
	return q.propose(Command{Type: CmdCreatePartitions, Name: req.Name, Adds: newPartitions(assign), Count: int64(len(t.Partitions)), ReqID: req.ID})
}

// do runs a request at the controller (here or over the controller port),
// retrying while the controller moves, and waits until this node has
// applied the resulting command.
func (q *Raft) do(req ctlRequest, deadline time.Time) (ctlResponse, error) {
	ctx, cancel := context.WithDeadline(q.ctx, deadline)
	defer cancel()
	return q.doCtx(ctx, req)
}

// doCtx is do bounded by ctx (which must have a deadline). A write gets an
// id first: a retry after a lost answer (the controller may have applied
// it) then gets the first result instead of being applied again.
func (q *Raft) doCtx(ctx context.Context, req ctlRequest) (ctlResponse, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(q.cfg.RequestTimeout)
	}
	if isWrite(req.Op) && req.ID == "" {
		req.ID = newRequestID()
	}
	cc := &q.cc
	if req.Op == opHeartbeat {
		cc = &q.hc
	}
	var last error = ErrNotController
	for {
		var resp ctlResponse
		var err error
		switch addr, _ := q.r.LeaderWithID(); {
		case q.r.State() == raft.Leader:
			resp = q.handleCtx(ctx, req)
		case addr != "":
			resp, err = cc.call(string(addr), req, max(time.Until(deadline), time.Second))
		default:
			err = ErrNotController
		}
		if err == nil {
			err = decodeErr(resp.Err, resp.Kind)
		}
		if !errors.Is(err, ErrNotController) && !isConnErr(err) {
			// A heartbeat's caller reads nothing from the state: it must
			// not wait behind the state machine (whose watchers may
			// fsync), or the next heartbeat, the one a new controller
			// waits for, goes out late.
			if resp.Index > 0 && req.Op != opHeartbeat {
				if werr := q.waitApplied(ctx, resp.Index); werr != nil && err == nil {
					err = werr
				}
			}
			return resp, err
		}
		if time.Now().After(deadline) {
			return resp, fmt.Errorf("metadata request %s: %w", req.Op, err)
		}
		// A connection found broken (the controller's end closed while
		// it was idle) is dialed again at once; the rest wait a little
		// for the controller to move.
		connErr := isConnErr(err)
		if connErr && !isConnErr(last) {
			last = err
			continue
		}
		last = err
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			if q.ctx.Err() != nil {
				return resp, fmt.Errorf("metadata request %s: %w", req.Op, raft.ErrRaftShutdown)
			}
			return resp, fmt.Errorf("metadata request %s: %w (last: %v)", req.Op, ctx.Err(), last)
		}
	}
}

// newRequestID returns a random id for a write (ctlRequest.ID).
func newRequestID() string {
	var b [12]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

func isConnErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// waitApplied waits until this node's state machine has applied index.
// raft.AppliedIndex will not do: it counts entries handed to the state
// machine, which applies them later (a write's answer would then be read
// from the state before the write).
func (q *Raft) waitApplied(ctx context.Context, index uint64) error {
	for q.fsm.appliedIndex() < index {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-q.ctx.Done():
			return raft.ErrRaftShutdown
		case <-ctx.Done():
			return fmt.Errorf("metadata: index %d not applied here in time (at %d): %w", index, q.fsm.appliedIndex(), ctx.Err())
		}
	}
	return nil
}

func (q *Raft) waitAppliedUntil(index uint64, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(q.ctx, deadline)
	defer cancel()
	return q.waitApplied(ctx, index)
}

func (q *Raft) write(req ctlRequest) (ctlResponse, error) {
	return q.do(req, time.Now().Add(q.cfg.RequestTimeout))
}

// ClusterID implements Store.
func (q *Raft) ClusterID() string {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	return q.fsm.st.ClusterID
}

// ControllerID implements Store: the raft leader, -1 while there is none.
func (q *Raft) ControllerID() int32 {
	_, id := q.r.LeaderWithID()
	n, err := strconv.Atoi(string(id))
	if err != nil || id == "" {
		return -1
	}
	return int32(n)
}

// Brokers implements Store: the registered brokers that are not fenced,
// by id.
func (q *Raft) Brokers() []Broker { return q.usableBrokers() }

func (q *Raft) registrations() []Registration {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	out := make([]Registration, 0, len(q.fsm.st.Brokers))
	for _, id := range slices.Sorted(maps.Keys(q.fsm.st.Brokers)) {
		out = append(out, q.fsm.st.Brokers[id])
	}
	return out
}

// Registration returns a broker's registration.
func (q *Raft) Registration(id int32) (Registration, bool) {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	r, ok := q.fsm.st.Brokers[id]
	return r, ok
}

// BrokerEpoch is this broker's epoch (its latest registration).
func (q *Raft) BrokerEpoch() int64 { return q.epoch.Load() }

// IsController reports whether this node is the controller.
func (q *Raft) IsController() bool { return q.r.State() == raft.Leader }

// Topics implements Store, by name.
func (q *Raft) Topics() []Topic {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	out := make([]Topic, 0, len(q.fsm.st.Topics))
	for _, t := range q.fsm.st.Topics {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Topic implements Store.
func (q *Raft) Topic(name string) (Topic, bool) {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	t, ok := q.fsm.st.Topics[name]
	return t, ok
}

// TopicByID implements Store.
func (q *Raft) TopicByID(id TopicID) (Topic, bool) {
	q.fsm.mu.RLock()
	defer q.fsm.mu.RUnlock()
	name, ok := q.fsm.st.ByID[id]
	if !ok {
		return Topic{}, false
	}
	return q.fsm.st.Topics[name], true
}

// CreateTopic implements Store: the controller assigns replicationFactor
// replicas to each partition over the unfenced brokers.
func (q *Raft) CreateTopic(t Topic, replicationFactor int) (Topic, error) {
	rec := recordOf(t)
	if _, err := q.write(ctlRequest{Op: opCreateTopic, Topic: &rec, RF: replicationFactor}); err != nil {
		return Topic{}, err
	}
	return q.topicAfterWrite(t.Name)
}

func (q *Raft) topicAfterWrite(name string) (Topic, error) {
	t, ok := q.Topic(name)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %s changed again before it could be read", ErrUnknownTopic, name)
	}
	return t, nil
}

// DeleteTopic implements Store.
func (q *Raft) DeleteTopic(name string) (Topic, error) {
	t, ok := q.Topic(name)
	if !ok {
		return Topic{}, ErrUnknownTopic
	}
	_, err := q.write(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdDeleteTopic, Name: name}})
	return t, err
}

// CreatePartitions implements Store: new partitions get as many replicas
// as the topic's first one.
func (q *Raft) CreatePartitions(name string, total int32) (Topic, error) {
	if _, err := q.write(ctlRequest{Op: opCreatePartitions, Name: name, Total: total}); err != nil {
		return Topic{}, err
	}
	return q.topicAfterWrite(name)
}

// SetConfigs implements Store.
func (q *Raft) SetConfigs(name string, configs map[string]string) (Topic, error) {
	if _, err := q.write(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdSetConfigs, Name: name, Configs: configs}}); err != nil {
		return Topic{}, err
	}
	return q.topicAfterWrite(name)
}

// AlterPartition asks the controller to change a partition's ISR; the
// request names the leader epoch and partition epoch the leader saw.
func (q *Raft) AlterPartition(a AlterPartition) (Partition, error) {
	if _, err := q.write(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdAlterPartition, Alter: &a}}); err != nil {
		return Partition{}, err
	}
	t, ok := q.TopicByID(a.TopicID)
	if !ok || int(a.Partition) >= len(t.Partitions) {
		return Partition{}, ErrUnknownTopicPartition
	}
	return t.Partitions[a.Partition], nil
}

// ElectPreferredLeaders moves leadership of every partition to its first
// replica where that one is in sync and unfenced.
func (q *Raft) ElectPreferredLeaders() error {
	_, err := q.write(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdPreferredLeaders}})
	return err
}

// AllocateProducerIDs reserves count producer ids for this broker and
// returns the first.
func (q *Raft) AllocateProducerIDs(count int64) (int64, error) {
	resp, err := q.write(ctlRequest{Op: opApply, Cmd: &Command{Type: CmdAllocateProducerIDs, Count: count}})
	return resp.Value, err
}

// Watch implements Store: fn runs on the state machine's goroutine after
// each change, before the write that caused it returns; it must not write
// metadata itself.
func (q *Raft) Watch(fn func(Event)) {
	q.fsm.watchMu.Lock()
	q.fsm.watchers = append(q.fsm.watchers, fn)
	q.fsm.watchMu.Unlock()
}

// Close implements Store: it leaves the quorum's work to the others (a
// voter stays a voter) and closes the log.
func (q *Raft) Close() error {
	q.cancel()
	var errs []error
	if q.running.Load() {
		if err := q.r.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	q.wg.Wait()
	if c, ok := q.trans.(io.Closer); ok {
		_ = c.Close()
	}
	if q.dm != nil {
		q.dm.Close()
		q.dm.wait()
	}
	q.cc.close()
	q.hc.close()
	if q.db != nil {
		if err := q.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
	}
	return errors.Join(errs...)
}

// fsm is the raft state machine over State.
type fsm struct {
	mu sync.RWMutex
	st *State
	// applied is the index of the last entry (or snapshot) the state
	// reflects, set once its watchers have run.
	applied atomic.Uint64
	log     *slog.Logger
	mirror  string
	// mirrored is the content last written to mirror.
	mirrored []byte

	watchMu  sync.Mutex
	watchers []func(Event)
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		f.log.Error("undecodable metadata command", "index", l.Index, "err", err)
		return Result{Err: fmt.Errorf("%w: %v", ErrUnsupportedCommand, err)}
	}
	f.mu.Lock()
	res := f.st.Apply(l.Index, c)
	f.mu.Unlock()
	if errors.Is(res.Err, ErrUnsupportedCommand) {
		f.log.Error("metadata command not applied", "index", l.Index, "type", c.Type, "err", res.Err)
	}
	f.notify(res.Events)
	f.noteApplied(l.Index)
	return res
}

// noteApplied records that the state reflects index (never moving back).
func (f *fsm) noteApplied(index uint64) {
	for {
		cur := f.applied.Load()
		if index <= cur || f.applied.CompareAndSwap(cur, index) {
			return
		}
	}
}

func (f *fsm) appliedIndex() uint64 { return f.applied.Load() }

func (f *fsm) notify(evs []Event) {
	if len(evs) == 0 {
		return
	}
	if f.mirror != "" {
		f.mu.RLock()
		raw, err := encodeLocalFile(f.st.ClusterID, f.st.Topics)
		f.mu.RUnlock()
		// ISR changes alone leave the file as it was: no rewrite.
		if err == nil && !bytes.Equal(raw, f.mirrored) {
			if err = WriteFileAtomic(f.mirror, raw); err == nil {
				f.mirrored = raw
			}
		}
		if err != nil {
			f.log.Warn("could not write the metadata mirror", "path", f.mirror, "err", err)
		}
	}
	f.watchMu.Lock()
	ws := slices.Clone(f.watchers)
	f.watchMu.Unlock()
	for _, ev := range evs {
		for _, w := range ws {
			w(ev)
		}
	}
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	raw, err := f.st.MarshalSnapshot()
	f.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return fsmSnapshot(raw), nil
}

// Restore implements raft.FSM: watchers hear of every topic that changed
// or went away.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read metadata snapshot: %w", err)
	}
	st, err := UnmarshalSnapshot(raw)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.st
	f.st = st
	f.mu.Unlock()
	var evs []Event
	for _, name := range slices.Sorted(maps.Keys(old.Topics)) {
		t := old.Topics[name]
		if nt, ok := st.Topics[name]; !ok || nt.ID != t.ID {
			evs = append(evs, Event{Topic: name, ID: t.ID, Deleted: true})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.Topics)) {
		evs = append(evs, Event{Topic: name, ID: st.Topics[name].ID})
	}
	f.notify(evs)
	f.noteApplied(st.Applied)
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write metadata snapshot: %w", err)
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// slogWriter turns raft's log lines into structured log records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "heartbeat timeout reached, starting election"):
		w.log.Info(line) // every start of a lone voter, and the start of any election
	case strings.Contains(line, "[ERROR]"):
		w.log.Error(line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn(line)
	default:
		w.log.Debug(line)
	}
	return len(p), nil
}
