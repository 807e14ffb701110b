package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Conn is one client connection. A reader goroutine reads, decodes and
// dispatches requests in arrival order; a writer goroutine, started with the
// first request, writes responses strictly in request order. Handlers may
// call its methods from any goroutine.
type Conn struct {
	s  *Server
	id uint64
	nc net.Conn
	ip string

	// ctx is cancelled when the connection closes or the server stops.
	ctx    context.Context
	cancel context.CancelFunc

	// slots holds one token per outstanding request (read, not yet
	// finished by the writer); its capacity is MaxInflightPerConn.
	slots chan struct{}
	// queue carries dispatched requests from the reader to the writer in
	// request order. Only the reader sends and closes it; with slots
	// bounding what is outstanding, sends never block.
	queue chan *pending
	// writerDone is closed when the writer exits; nil until the reader
	// starts the writer.
	writerDone chan struct{}

	// dead is closed (once) when the socket is closed.
	dead     chan struct{}
	deadOnce sync.Once

	// lastActive is the UnixNano time of the last byte read or written.
	lastActive atomic.Int64
	software   atomic.Pointer[ClientSoftware]
}

// ClientSoftware is what a client reported in ApiVersions v3+.
type ClientSoftware struct {
	Name, Version string
}

// pending is a dispatched request awaiting its response.
type pending struct {
	hdr   RequestHeader
	resp  kmsg.Response
	wait  chan kmsg.Response // non-nil when Reply.Wait was set; capacity 1
	close bool
	// keepVersion leaves resp's version alone (ApiVersions' v0 fallback).
	keepVersion bool
	// size is the frame's share of the global budget, released when refs
	// drops to zero: one ref for the writer, one for a running Wait.
	size int64
	refs atomic.Int32
}

func newConn(s *Server, nc net.Conn, ip string) *Conn {
	c := &Conn{
		s:     s,
		id:    s.nextID.Add(1),
		nc:    nc,
		ip:    ip,
		slots: make(chan struct{}, s.cfg.MaxInflightPerConn),
		queue: make(chan *pending, s.cfg.MaxInflightPerConn),
		dead:  make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(s.stopCtx)
	c.touch()
	return c
}

// ID is the connection's server-unique id, for logs.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is the server address the client connected to.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// ClientSoftware is what the client reported in ApiVersions v3+, or zero.
func (c *Conn) ClientSoftware() ClientSoftware {
	if p := c.software.Load(); p != nil {
		return *p
	}
	return ClientSoftware{}
}

func (c *Conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// kill closes the socket and cancels the context; safe to call repeatedly
// from any goroutine.
func (c *Conn) kill() {
	c.deadOnce.Do(func() {
		c.cancel()
		c.nc.Close()
		close(c.dead)
	})
}

// stopReading makes the reader stop at once (its context is already
// cancelled by the server) while the writer finishes what is owed.
func (c *Conn) stopReading() {
	// The reader checks its context after arming each deadline, so this
	// cannot be lost to a concurrent re-arm.
	_ = c.nc.SetReadDeadline(time.Now()) // error means closed: reader exits anyway
}

// serve runs the reader, then waits for the writer and closes the socket.
func (c *Conn) serve() {
	defer c.s.connDone(c)
	err := c.readLoop()
	c.cancel()
	close(c.queue)
	if c.writerDone != nil {
		<-c.writerDone
	}
	c.kill()
	if err != nil {
		c.s.Logger.Debug("kafka connection closed", "conn", c.id, "remote", c.RemoteAddr(), "reason", err)
	}
}

// errIdle closes a connection idle for longer than IdleTimeout.
var errIdle = errors.New("idle timeout")

// readLoop reads and dispatches requests until the connection ends, and
// returns why it ended (nil for a clean EOF between requests). It releases
// every budget byte it holds that it did not hand to the writer.
func (c *Conn) readLoop() (err error) {
	var (
		sizeBuf [4]byte
		held    int64 // budget held for the frame being read/dispatched
	)
	defer func() {
		if r := recover(); r != nil {
			c.s.Logger.Error("kafka connection panicked", "conn", c.id, "remote", c.RemoteAddr(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
		if held > 0 {
			c.s.budget.release(held)
		}
	}()
	for {
		select {
		case c.slots <- struct{}{}:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		if err := c.readFull(sizeBuf[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read size: %w", err)
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if size < 8 || size > c.s.cfg.MaxRequestBytes {
			c.s.stats.protocolErrors.Add(1)
			c.s.warnLimited("kafka request size out of range, closing connection", "conn", c.id, "remote", c.RemoteAddr(), "size", size, "max", c.s.cfg.MaxRequestBytes)
			return fmt.Errorf("request size %d out of range [8, %d]", size, c.s.cfg.MaxRequestBytes)
		}
		if err := c.s.budget.acquire(c.ctx, int64(size)); err != nil {
			if errors.Is(err, errOverBudget) {
				c.s.stats.protocolErrors.Add(1)
				c.s.warnLimited("kafka request larger than the whole in-flight budget, closing connection", "conn", c.id, "remote", c.RemoteAddr(), "size", size, "budget", c.s.cfg.MaxInflightBytes)
			}
			return fmt.Errorf("acquire %d bytes: %w", size, err)
		}
		held = int64(size)
		frame := make([]byte, size)
		if err := c.readFull(frame); err != nil {
			return fmt.Errorf("read %d-byte request: %w", size, err)
		}
		c.s.stats.bytesIn.Add(uint64(size) + 4)

		p, closeAfter, err := c.dispatch(frame)
		if err != nil {
			return err
		}
		p.size = held
		held = 0
		if c.writerDone == nil {
			c.writerDone = make(chan struct{})
			go c.writeLoop()
		}
		c.queue <- p
		if closeAfter {
			return errors.New("closed by handler")
		}
	}
}

// dispatch decodes frame and runs its handler. A request the server cannot
// serve returns an error, and the connection is closed.
func (c *Conn) dispatch(frame []byte) (*pending, bool, error) {
	hdr, body, h, err := parseRequest(frame)
	if err != nil {
		var verr *versionError
		if errors.As(err, &verr) && hdr.Key == apiVersionsKey {
			// Answer in v0 so the client can learn our range and retry.
			c.s.stats.countRequest(hdr.Key)
			p := &pending{hdr: hdr, resp: unsupportedAPIVersions(), keepVersion: true}
			p.refs.Store(1)
			return p, false, nil
		}
		c.s.stats.protocolErrors.Add(1)
		c.s.warnLimited("kafka request rejected, closing connection", "conn", c.id, "remote", c.RemoteAddr(), "api_key", hdr.Key, "version", hdr.Version, "err", err)
		return nil, false, err
	}
	c.s.stats.countRequest(hdr.Key)
	reply := h(c.s, &Request{Conn: c, Header: hdr, Body: body, Ctx: c.ctx})
	p := &pending{hdr: hdr, resp: reply.Resp, close: reply.Close}
	p.refs.Store(1)
	if reply.Wait != nil {
		p.resp = nil
		p.wait = make(chan kmsg.Response, 1)
		p.refs.Add(1)
		go c.runWait(p, reply.Wait)
	}
	return p, reply.Close, nil
}

// runWait runs a handler's Wait and hands its response to the writer. A
// panicking Wait closes the connection.
func (c *Conn) runWait(p *pending, wait func() kmsg.Response) {
	defer c.finish(p)
	defer func() {
		if r := recover(); r != nil {
			c.s.Logger.Error("kafka handler wait panicked", "conn", c.id, "remote", c.RemoteAddr(), "api_key", p.hdr.Key, "panic", r, "stack", string(debug.Stack()))
			c.kill()
		}
	}()
	p.wait <- wait()
}

// finish drops one reference to p, releasing its budget bytes with the last.
func (c *Conn) finish(p *pending) {
	if p.refs.Add(-1) == 0 {
		c.s.budget.release(p.size)
	}
}

// readFull fills p from the socket. Deadlines enforce IdleTimeout: when one
// fires while a request is outstanding or traffic was recent, reading goes
// on. It returns the context's error once the server stops.
func (c *Conn) readFull(p []byte) error {
	idle := c.s.cfg.IdleTimeout
	arm := func() error {
		var deadline time.Time
		if idle > 0 {
			deadline = time.Unix(0, c.lastActive.Load()).Add(idle)
		}
		if err := c.nc.SetReadDeadline(deadline); err != nil {
			return err
		}
		return c.ctx.Err() // checked after arming; see stopReading
	}
	if err := arm(); err != nil {
		return err
	}
	for n := 0; n < len(p); {
		m, err := c.nc.Read(p[n:])
		if m > 0 {
			n += m
			c.touch()
		}
		if err == nil {
			continue
		}
		if n == len(p) && errors.Is(err, io.EOF) {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			if n > 0 && errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		if len(c.slots) <= 1 && time.Since(time.Unix(0, c.lastActive.Load())) >= idle {
			// Only the slot taken for this read is held: nothing is
			// outstanding and nothing moved for IdleTimeout.
			return errIdle
		}
		if err := arm(); err != nil {
			return err
		}
	}
	return nil
}

// writeLoop writes responses in request order until the reader closes the
// queue. Consecutive ready responses are coalesced into one write. After a
// write error it keeps draining the queue so budget bytes are released.
func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	var (
		buf     []byte
		written []*pending // in buf, finished once buf is flushed
		alive   = true
	)
	flush := func() {
		if alive && len(buf) > 0 {
			if err := c.write(buf); err != nil {
				c.s.Logger.Debug("kafka response write failed", "conn", c.id, "remote", c.RemoteAddr(), "err", err)
				alive = false
				c.kill()
			}
		}
		for _, p := range written {
			c.finish(p)
			<-c.slots
		}
		written = written[:0]
		if cap(buf) > maxRetainedWriteBuf {
			buf = nil
		} else {
			buf = buf[:0]
		}
	}
	for {
		var (
			p  *pending
			ok bool
		)
		select {
		case p, ok = <-c.queue:
		default:
			flush()
			p, ok = <-c.queue
		}
		if !ok {
			flush()
			return
		}
		resp := p.resp
		if p.wait != nil && alive {
			select {
			case resp = <-p.wait:
			default:
				flush() // do not hold ready responses behind a slow one
				select {
				case resp = <-p.wait:
				case <-c.dead:
					alive = false
				}
			}
		}
		if alive && resp != nil && resp.Key() != p.hdr.Key {
			c.s.Logger.Error("kafka handler returned a response for the wrong api key, closing", "conn", c.id, "api_key", p.hdr.Key, "response_key", resp.Key())
			flush()
			alive = false
			c.kill()
		}
		if alive && resp != nil {
			if !p.keepVersion {
				resp.SetVersion(p.hdr.Version)
			}
			buf = appendResponse(buf, p.hdr.CorrelationID, resp)
		}
		written = append(written, p)
		if p.close {
			flush()
			alive = false
			c.kill()
			continue
		}
		if len(buf) >= flushThreshold {
			flush()
		}
	}
}

const (
	// flushThreshold is how many coalesced response bytes trigger a write.
	flushThreshold = 64 << 10
	// maxRetainedWriteBuf is the largest write buffer kept between writes.
	maxRetainedWriteBuf = 1 << 20
)

// write writes b, allowing a stalled client IdleTimeout to make progress.
func (c *Conn) write(b []byte) error {
	var deadline time.Time
	if idle := c.s.cfg.IdleTimeout; idle > 0 {
		deadline = time.Now().Add(idle)
	}
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	n, err := c.nc.Write(b)
	c.s.stats.bytesOut.Add(uint64(n))
	c.touch()
	return err
}

// apiVersionsKey is ApiVersions, whose response header is always v0.
const apiVersionsKey = 18

// appendResponse appends a response frame: size, correlation id, an empty
// tagged-field section for flexible versions (header v1; never for
// ApiVersions), then the body.
func appendResponse(dst []byte, corr int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	if resp.IsFlexible() && resp.Key() != apiVersionsKey {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
