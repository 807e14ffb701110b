package cluster

// The controller port carries two protocols: hashicorp/raft's network
// transport between voters and followers, and the brokers' requests to the
// controller (writes, registration, heartbeats, joining as a non-voter).
// A connection's first byte tells them apart: raft's RPC types are 0–3, a
// controller request connection starts with ctlMagic. Requests are
// length-prefixed JSON frames, answered in order on the same connection.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ctlMagic starts a controller request connection.
const ctlMagic = 'S'

// maxCtlFrame bounds one controller request or answer.
const maxCtlFrame = 16 << 20

// ctlIdleTimeout closes controller request connections idle this long.
const ctlIdleTimeout = 5 * time.Minute

// ctlRequest is a broker's request to the controller.
type ctlRequest struct {
	Op string `json:"op"`
	// Cmd is a command to propose as is (apply).
	Cmd *Command `json:"cmd,omitempty"`
	// Topic and RF ask for a topic to be created with replicas assigned by
	// the controller (create_topic); Name and Total grow one
	// (create_partitions).
	Topic *TopicRecord `json:"topic,omitempty"`
	RF    int          `json:"rf,omitempty"`
	Name  string       `json:"name,omitempty"`
	Total int32        `json:"total,omitempty"`
	// BrokerID, Epoch and Addr identify a broker (heartbeat, join,
	// confirm_leader).
	BrokerID int32  `json:"broker_id,omitempty"`
	Epoch    int64  `json:"epoch,omitempty"`
	Addr     string `json:"addr,omitempty"`
	// TopicID, Partition and LeaderEpoch name the leadership to confirm
	// (confirm_leader).
	TopicID     *TopicID `json:"topic_id,omitempty"`
	Partition   int32    `json:"partition,omitempty"`
	LeaderEpoch int32    `json:"leader_epoch,omitempty"`
	// ID names a write across its retries (Command.ReqID): the controller
	// answers a retry of a write it applied with the first result.
	ID string `json:"id,omitempty"`
}

// Controller request ops.
const (
	opApply            = "apply"
	opCreateTopic      = "create_topic"
	opCreatePartitions = "create_partitions"
	opHeartbeat        = "heartbeat"
	opJoin             = "join"
	opIndex            = "index"
	opConfirmLeader    = "confirm_leader"
)

// isWrite reports whether an op changes the metadata: do gives it an id,
// so that a retry after a lost answer is not applied twice.
func isWrite(op string) bool {
	return op == opApply || op == opCreateTopic || op == opCreatePartitions
}

// ctlResponse answers a ctlRequest.
type ctlResponse struct {
	// Index is the log index of the applied command (or, for opIndex, the
	// controller's last index): the requester waits until its own state
	// machine has applied it before returning, so it reads its own write.
	Index  uint64 `json:"index,omitempty"`
	Value  int64  `json:"value,omitempty"`
	Fenced bool   `json:"fenced,omitempty"`
	// Err and Kind describe a failure; Kind names the sentinel error.
	Err  string `json:"err,omitempty"`
	Kind string `json:"kind,omitempty"`
}

// errKinds are the errors that keep their identity across the controller
// connection.
var errKinds = map[string]error{
	"topic_exists":         ErrTopicExists,
	"unknown_topic":        ErrUnknownTopic,
	"invalid_partition":    ErrInvalidPartition,
	"unknown_broker":       ErrUnknownBroker,
	"stale_broker_epoch":   ErrStaleBrokerEpoch,
	"fenced_leader_epoch":  ErrFencedLeaderEpoch,
	"invalid_update":       ErrInvalidUpdateVersion,
	"not_leader":           ErrNotLeader,
	"ineligible_replica":   ErrIneligibleReplica,
	"invalid_replication":  ErrInvalidReplication,
	"unsupported":          ErrUnsupportedCommand,
	"unknown_partition":    ErrUnknownTopicPartition,
	"not_controller":       ErrNotController,
	"controller_shut_down": raft.ErrRaftShutdown,
	"not_confirmed":        ErrNotConfirmed,
	"shutting_down":        ErrShuttingDown,
}

// kindNames are errKinds' names in order, so that an error's kinds are
// written the same way on every node (they are kept in the state, see
// Remembered).
var kindNames = slices.Sorted(maps.Keys(errKinds))

// ErrNotController is returned when a request reached a node that is not
// the controller (it moved); requests are retried at the new one.
var ErrNotController = errors.New("not the controller")

// remoteError is an error from the controller with the controller's
// message and the sentinels it wrapped there, if any.
type remoteError struct {
	msg  string
	errs []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.errs }

// encodeErr returns an error's message and the names of the sentinels it
// wraps, comma-separated.
func encodeErr(err error) (msg, kind string) {
	if err == nil {
		return "", ""
	}
	var kinds []string
	for _, k := range kindNames {
		if errors.Is(err, errKinds[k]) {
			kinds = append(kinds, k)
		}
	}
	return err.Error(), strings.Join(kinds, ",")
}

// decodeErr rebuilds an error that wraps its sentinels, with the
// controller's message.
func decodeErr(msg, kind string) error {
	if msg == "" && kind == "" {
		return nil
	}
	var errs []error
	for _, k := range strings.Split(kind, ",") {
		if e, ok := errKinds[k]; ok {
			errs = append(errs, e)
		}
	}
	switch {
	case len(errs) == 0:
		return &remoteError{msg: msg}
	case len(errs) == 1 && msg == errs[0].Error():
		return errs[0]
	case len(errs) == 1:
		return fmt.Errorf("%w (%s)", errs[0], msg)
	}
	return &remoteError{msg: msg, errs: errs}
}

func writeFrame(w *bufio.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(raw)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxCtlFrame {
		return fmt.Errorf("controller frame of %d bytes (at most %d)", n, maxCtlFrame)
	}
	// Read as the bytes arrive: a length alone reserves no memory.
	raw, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return err
	}
	if len(raw) != int(n) {
		return io.ErrUnexpectedEOF
	}
	return json.Unmarshal(raw, v)
}

// demux is the controller listener: raft's StreamLayer for connections
// that start with a raft RPC type, and a controller request server for the
// others.
type demux struct {
	ln     net.Listener
	dial   dialFunc
	log    *slog.Logger
	handle func(ctlRequest) ctlResponse
	// ended is told when a connection that carried accepted heartbeats
	// ends other than by this side closing it or by idling: the broker
	// that sent them may be gone (see Raft.heartbeatConnEnded).
	ended   func(broker int32, epoch int64)
	raftCh  chan net.Conn
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	connsMu sync.Mutex
	conns   map[net.Conn]bool
}

// dialFunc makes an outgoing connection (net.Dialer's DialContext).
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func dialWith(d dialFunc, addr string, timeout time.Duration) (net.Conn, error) {
	if d == nil {
		return net.DialTimeout("tcp", addr, timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d(ctx, "tcp", addr)
}

func newDemux(ln net.Listener, log *slog.Logger, handle func(ctlRequest) ctlResponse, ended func(int32, int64), dial dialFunc) *demux {
	d := &demux{ln: ln, log: log, handle: handle, ended: ended, dial: dial, raftCh: make(chan net.Conn), closed: make(chan struct{}), conns: map[net.Conn]bool{}}
	d.wg.Add(1)
	go d.acceptLoop()
	return d
}

func (d *demux) acceptLoop() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			select {
			case <-d.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			d.log.Error("controller listener failed", "err", err)
			return
		}
		d.wg.Add(1)
		go d.route(c)
	}
}

// route reads a connection's first byte and hands it to raft or serves it.
func (d *demux) route(c net.Conn) {
	defer d.wg.Done()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if first[0] != ctlMagic {
		// Raft's handler closes the connection when it returns; wait
		// counts it until then, so that the raft log is not closed under
		// a request it is still serving.
		pc := &peekedConn{Conn: c, r: br}
		pc.done = func() { d.track(c, false); d.wg.Done() }
		if !d.track(c, true) {
			c.Close()
			return
		}
		d.wg.Add(1)
		select {
		case d.raftCh <- pc:
		case <-d.closed:
			pc.Close()
		}
		return
	}
	_, _ = br.ReadByte()
	if !d.track(c, true) {
		c.Close()
		return
	}
	defer d.track(c, false)
	defer c.Close()
	w := bufio.NewWriter(c)
	// The broker whose heartbeats this connection carried, if any.
	var hbBroker int32
	var hbEpoch int64
	for {
		var req ctlRequest
		_ = c.SetReadDeadline(time.Now().Add(ctlIdleTimeout))
		err := readFrame(br, &req)
		var resp ctlResponse
		ok := err == nil
		if ok {
			resp, ok = d.serve(req)
		}
		if ok {
			if req.Op == opHeartbeat && resp.Err == "" {
				hbBroker, hbEpoch = req.BrokerID, req.Epoch
			}
			err = writeFrame(w, resp)
		}
		if ok && err == nil {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			d.log.Debug("controller request connection ended", "remote", c.RemoteAddr().String(), "err", err)
		}
		var ne net.Error
		idle := errors.As(err, &ne) && ne.Timeout()
		if hbEpoch != 0 && !idle && !d.isClosed() && d.ended != nil {
			d.ended(hbBroker, hbEpoch)
		}
		return
	}
}

func (d *demux) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// serve runs one request; a panic is logged and ends the connection
// instead of the broker.
func (d *demux) serve(req ctlRequest) (resp ctlResponse, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("controller request panicked", "op", req.Op, "panic", p)
			ok = false
		}
	}()
	return d.handle(req), true
}

func (d *demux) track(c net.Conn, add bool) bool {
	d.connsMu.Lock()
	defer d.connsMu.Unlock()
	if !add {
		delete(d.conns, c)
		return true
	}
	select {
	case <-d.closed:
		return false
	default:
	}
	d.conns[c] = true
	return true
}

// Accept implements raft.StreamLayer.
func (d *demux) Accept() (net.Conn, error) {
	select {
	case c := <-d.raftCh:
		return c, nil
	case <-d.closed:
		return nil, net.ErrClosed
	}
}

// Close implements raft.StreamLayer: it stops accepting and closes the
// controller request connections and the raft connections it accepted
// (under raft's handlers: they return, and close them again).
func (d *demux) Close() error {
	d.once.Do(func() {
		close(d.closed)
		d.ln.Close()
		d.connsMu.Lock()
		for c := range d.conns {
			c.Close()
		}
		d.connsMu.Unlock()
	})
	return nil
}

// wait returns once every connection goroutine has ended.
func (d *demux) wait() { d.wg.Wait() }

// Addr implements raft.StreamLayer.
func (d *demux) Addr() net.Addr { return d.ln.Addr() }

// Dial implements raft.StreamLayer.
func (d *demux) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialWith(d.dial, string(address), timeout)
}

// peekedConn is a connection whose first bytes were buffered by route;
// done runs once, at its first Close.
type peekedConn struct {
	net.Conn
	r    *bufio.Reader
	once sync.Once
	done func()
}

func (c *peekedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ctlClient sends controller requests over one connection, to one address
// at a time, reused while it works. Calls are serial.
type ctlClient struct {
	dial dialFunc
	mu   sync.Mutex
	addr string
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// call sends req to addr and returns the answer, within timeout.
func (cc *ctlClient) call(addr string, req ctlRequest, timeout time.Duration) (ctlResponse, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.conn != nil && cc.addr != addr {
		cc.conn.Close()
		cc.conn = nil
	}
	if cc.conn == nil {
		c, err := dialWith(cc.dial, addr, timeout)
		if err != nil {
			return ctlResponse{}, fmt.Errorf("dial controller %s: %w", addr, err)
		}
		cc.conn, cc.addr = c, addr
		cc.r, cc.w = bufio.NewReader(c), bufio.NewWriter(c)
		if err := cc.w.WriteByte(ctlMagic); err != nil {
			cc.closeLocked()
			return ctlResponse{}, err
		}
	}
	_ = cc.conn.SetDeadline(time.Now().Add(timeout))
	var resp ctlResponse
	err := writeFrame(cc.w, req)
	if err == nil {
		err = readFrame(cc.r, &resp)
	}
	if err != nil {
		cc.closeLocked()
		return ctlResponse{}, fmt.Errorf("controller %s: %w", addr, err)
	}
	return resp, nil
}

func (cc *ctlClient) closeLocked() {
	if cc.conn != nil {
		cc.conn.Close()
		cc.conn = nil
	}
}

func (cc *ctlClient) close() {
	cc.mu.Lock()
	cc.closeLocked()
	cc.mu.Unlock()
}
