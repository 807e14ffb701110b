// Package wire is the Kafka protocol server: it owns the listener, the
// per-connection framing, request decoding (with franz-go's kmsg), dispatch to
// one handler per API key, ordered pipelined responses, and the limits that
// keep a broker alive under hostile or excessive load (frame size, a global
// in-flight byte budget, in-flight requests per connection, connections per
// IP, idle timeout).
//
// Each API key lives in its own file (00_produce.go, 18_api_versions.go, …)
// that registers its handler and version range from init; ApiVersions answers
// from that registry, so only what is registered is advertised.
//
// wire must not hold partition, group or cluster state and must not touch
// disks: handlers translate requests into calls on the broker
// (ingest/broker) and its answers into responses. Bad input closes the
// offending connection or gets a Kafka error code; it never panics the
// process or affects other connections.
package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-io/strata/ingest/broker"
)

// Defaults for zero Config fields.
const (
	// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default.
	DefaultMaxRequestBytes = 100 << 20
	// DefaultMaxInflightBytes is the global budget for request frames
	// being read, processed or answered.
	DefaultMaxInflightBytes = 256 << 20
	// DefaultMaxInflightPerConn caps pipelined requests per connection.
	DefaultMaxInflightPerConn = 64
	// DefaultMaxConnsPerIP caps open connections from one remote IP.
	DefaultMaxConnsPerIP = 1000
	// DefaultIdleTimeout is Kafka's connections.max.idle.ms default.
	DefaultIdleTimeout = 10 * time.Minute
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("wire: server closed")

// Config configures a Server. Zero fields take the Default* values.
type Config struct {
	// Addr is the TCP address Listen binds, e.g. "127.0.0.1:9092".
	Addr string
	// Broker serves the requests; handlers reach it as Server.Broker.
	Broker *broker.Broker
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxRequestBytes is the largest request frame accepted
	// (socket.request.max.bytes). A larger or negative size prefix closes
	// the connection before anything is allocated.
	MaxRequestBytes int32
	// MaxInflightBytes is the global budget for request frames being read,
	// processed or answered, across all connections. When it is used up,
	// connections stop reading their sockets until bytes are released. A
	// request larger than the whole budget closes its connection.
	MaxInflightBytes int64
	// MaxInflightPerConn is how many requests one connection may have
	// outstanding (read but not yet answered); at the cap the connection
	// stops reading its socket.
	MaxInflightPerConn int
	// MaxConnsPerIP caps open connections from one remote IP; connections
	// over it are closed at accept.
	MaxConnsPerIP int
	// IdleTimeout closes a connection that has had no traffic and no
	// request outstanding for this long (connections.max.idle.ms); it is
	// also the longest a response write may stall. Negative disables it.
	IdleTimeout time.Duration
}

// withDefaults fills zero fields and rejects negative ones.
func (c Config) withDefaults() (Config, error) {
	if c.MaxRequestBytes < 0 || c.MaxInflightBytes < 0 || c.MaxInflightPerConn < 0 || c.MaxConnsPerIP < 0 {
		return c, fmt.Errorf("wire: negative limit in config %+v", c)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.MaxInflightPerConn == 0 {
		c.MaxInflightPerConn = DefaultMaxInflightPerConn
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c, nil
}

// Server accepts Kafka protocol connections and dispatches their requests to
// the registered handlers. Its methods are safe for concurrent use.
type Server struct {
	// Broker is Config.Broker, for handlers.
	Broker *broker.Broker
	// Logger is Config.Logger (or slog.Default()), for handlers.
	Logger *slog.Logger

	cfg    Config
	budget *budget
	perIP  *ipLimiter
	nextID atomic.Uint64

	// stopCtx is the parent of every connection's context; cancelled when
	// shutdown starts.
	stopCtx    context.Context
	cancelStop context.CancelFunc

	// wg counts Serve loops and connection goroutines. Add is only called
	// with mu held and stopping false, so Wait after stopping is final.
	wg sync.WaitGroup

	mu struct {
		sync.Mutex
		stopping  bool
		listeners map[net.Listener]struct{}
		first     net.Listener // the first listener, for Addr
		conns     map[*Conn]struct{}
	}

	stats serverStats
	// lastWarn is the UnixNano time of the last rate-limited warning.
	lastWarn atomic.Int64
}

// NewServer validates cfg and returns a server that is not yet listening.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Broker: cfg.Broker,
		Logger: cfg.Logger,
		cfg:    cfg,
		budget: newBudget(cfg.MaxInflightBytes),
		perIP:  newIPLimiter(cfg.MaxConnsPerIP),
	}
	s.stopCtx, s.cancelStop = context.WithCancel(context.Background())
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.conns = make(map[*Conn]struct{})
	return s, nil
}

// Listen binds Config.Addr and serves it on a background goroutine until
// Shutdown or Close. Addr reports the bound address once Listen returns.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("wire: listen %s: %w", s.cfg.Addr, err)
	}
	if err := s.track(ln); err != nil {
		return err
	}
	go func() {
		defer s.wg.Done()
		if err := s.acceptLoop(ln); err != nil && !errors.Is(err, ErrServerClosed) {
			s.Logger.Error("kafka listener stopped", "addr", ln.Addr(), "err", err)
		}
	}()
	return nil
}

// Serve accepts connections on ln until Shutdown or Close, when it returns
// ErrServerClosed, or until ln fails. The server closes ln.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.track(ln); err != nil {
		return err
	}
	defer s.wg.Done()
	return s.acceptLoop(ln)
}

// track registers ln and counts its accept loop in wg.
func (s *Server) track(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.stopping {
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	if s.mu.first == nil {
		s.mu.first = ln
	}
	s.wg.Add(1)
	return nil
}

// Addr is the address of the first listener, or nil before one exists.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.first == nil {
		return nil
	}
	return s.mu.first.Addr()
}

func (s *Server) acceptLoop(ln net.Listener) error {
	defer ln.Close()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isStopping() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("wire: accept on %s: %w", ln.Addr(), err)
			}
			// EMFILE and friends: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Logger.Warn("kafka accept failed", "addr", ln.Addr(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.stopCtx.Done():
			}
			continue
		}
		backoff = 0
		s.startConn(nc)
	}
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.stopping
}

// startConn applies the per-IP limit and starts the connection's reader.
func (s *Server) startConn(nc net.Conn) {
	ip := remoteIP(nc.RemoteAddr())
	if !s.perIP.add(ip) {
		s.stats.connsRejected.Add(1)
		s.Logger.Debug("kafka connection over per-IP limit closed", "remote", nc.RemoteAddr(), "limit", s.cfg.MaxConnsPerIP)
		nc.Close()
		return
	}
	c := newConn(s, nc, ip)
	s.mu.Lock()
	if s.mu.stopping {
		s.mu.Unlock()
		s.perIP.remove(ip)
		nc.Close()
		return
	}
	s.mu.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.connsAccepted.Add(1)
	s.stats.connsOpen.Add(1)
	go c.serve()
}

// connDone is called by a connection once its goroutines have finished.
func (s *Server) connDone(c *Conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	s.perIP.remove(c.ip)
	s.stats.connsOpen.Add(-1)
	s.wg.Done()
}

// warnLimited logs at Warn at most once per second and at Debug otherwise,
// so that a flood of bad clients cannot flood the log.
func (s *Server) warnLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last >= int64(time.Second) && s.lastWarn.CompareAndSwap(last, now) {
		s.Logger.Warn(msg, args...)
		return
	}
	s.Logger.Debug(msg, args...)
}

func remoteIP(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String() // not host:port (e.g. a pipe); count it as one address
	}
	return host
}

// Shutdown stops accepting, stops reading requests, cancels request
// contexts, and lets every connection write the responses it owes before
// closing. If ctx ends first, the remaining connections are closed at once
// and ctx.Err() is returned. It waits for connection goroutines but not for
// handlers' Wait functions that ignore their context. Safe to call more than
// once and from any goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.mu.stopping
	s.mu.stopping = true
	var lns []net.Listener
	for ln := range s.mu.listeners {
		lns = append(lns, ln)
	}
	conns := s.connsLocked()
	s.mu.Unlock()

	if first {
		s.cancelStop()
		for _, ln := range lns {
			ln.Close()
		}
		for _, c := range conns {
			c.stopReading()
		}
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	conns = s.connsLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
	<-done
	return ctx.Err()
}

// Close stops the server at once: like Shutdown, but open connections are
// closed without writing the responses they owe.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (s *Server) connsLocked() []*Conn {
	conns := make([]*Conn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		conns = append(conns, c)
	}
	return conns
}

// serverStats are plain counters; see Stats.
type serverStats struct {
	connsOpen      atomic.Int64
	connsAccepted  atomic.Uint64
	connsRejected  atomic.Uint64
	bytesIn        atomic.Uint64
	bytesOut       atomic.Uint64
	protocolErrors atomic.Uint64
	requests       [maxAPIKey + 1]atomic.Uint64
}

// maxAPIKey bounds the per-key request counters; kmsg knows keys below 100.
const maxAPIKey = 255

func (s *serverStats) countRequest(key int16) {
	if key >= 0 && key <= maxAPIKey {
		s.requests[key].Add(1)
	}
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	ConnsOpen      int64  // connections open now
	ConnsAccepted  uint64 // connections accepted, ever
	ConnsRejected  uint64 // connections closed at accept by the per-IP limit
	BytesIn        uint64 // request bytes read, including size prefixes
	BytesOut       uint64 // response bytes written
	ProtocolErrors uint64 // requests that closed their connection as undecodable or unsupported
	// InflightBytes is the global budget held now by request frames;
	// PeakInflightBytes is the most ever held at once.
	InflightBytes, PeakInflightBytes int64
	// Requests counts dispatched requests by API key.
	Requests map[int16]uint64
}

// Stats returns a snapshot of the server's counters. Counters are read one
// by one, so a snapshot taken under load is not atomic as a whole.
func (s *Server) Stats() Stats {
	st := Stats{
		ConnsOpen:      s.stats.connsOpen.Load(),
		ConnsAccepted:  s.stats.connsAccepted.Load(),
		ConnsRejected:  s.stats.connsRejected.Load(),
		BytesIn:        s.stats.bytesIn.Load(),
		BytesOut:       s.stats.bytesOut.Load(),
		ProtocolErrors: s.stats.protocolErrors.Load(),
		Requests:       make(map[int16]uint64),
	}
	st.InflightBytes, st.PeakInflightBytes = s.budget.usage()
	for key := range s.stats.requests {
		if n := s.stats.requests[key].Load(); n > 0 {
			st.Requests[int16(key)] = n
		}
	}
	return st
}
