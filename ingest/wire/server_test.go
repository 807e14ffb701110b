package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The test handlers live under API keys no Strata file serves (Envelope and
// ControlledShutdown are broker-internal in Kafka).
const (
	testKey       = 58 // Envelope v0, flexible: the scriptable test handler
	testHeaderKey = 7  // ControlledShutdown v1-3: header v1 and v2
)

func init() {
	register(testKey, 0, 0, handleTest)
	register(testHeaderKey, 1, 3, handleTestHeader)
}

var (
	// testGate blocks "gate" requests until closed; tests set it.
	testGate atomic.Pointer[chan struct{}]
	// testCalls counts test handler invocations.
	testCalls atomic.Int64
	// testActive and testMaxActive track concurrently running Waits.
	testActive, testMaxActive atomic.Int64
)

func setGate() chan struct{} {
	g := make(chan struct{})
	testGate.Store(&g)
	return g
}

// handleTest runs the command in RequestPrincipal and answers with
// ResponseData = ClientHostAddress (a tag chosen by the test):
//
//	echo (or empty)  answer at once
//	sleep:N          answer from a Wait after N ms
//	gate             answer from a Wait once testGate closes
//	ctx              answer from a Wait once the request context ends
//	none             answer nothing (like acks=0)
//	close            answer, then close the connection
//	closenone        close the connection without answering
//	panic            panic in the handler
//	waitpanic        panic in the Wait
//	software         answer with the recorded client software name
func handleTest(_ *Server, r *Request) Reply {
	testCalls.Add(1)
	req := r.Body.(*kmsg.EnvelopeRequest)
	resp := req.ResponseKind().(*kmsg.EnvelopeResponse)
	resp.ResponseData = req.ClientHostAddress
	cmd, arg, _ := strings.Cut(string(req.RequestPrincipal), ":")
	waitFor := func(ch <-chan struct{}) func() kmsg.Response {
		return func() kmsg.Response {
			n := testActive.Add(1)
			for m := testMaxActive.Load(); n > m && !testMaxActive.CompareAndSwap(m, n); m = testMaxActive.Load() {
			}
			defer testActive.Add(-1)
			select {
			case <-ch:
			case <-r.Ctx.Done():
			}
			return resp
		}
	}
	switch cmd {
	case "sleep":
		ms, _ := strconv.Atoi(arg)
		done := make(chan struct{})
		time.AfterFunc(time.Duration(ms)*time.Millisecond, func() { close(done) })
		return Reply{Wait: waitFor(done)}
	case "gate":
		return Reply{Wait: waitFor(*testGate.Load())}
	case "ctx":
		return Reply{Wait: func() kmsg.Response {
			<-r.Ctx.Done()
			return resp
		}}
	case "none":
		return Reply{}
	case "close":
		return Reply{Resp: resp, Close: true}
	case "closenone":
		return Reply{Close: true}
	case "panic":
		panic("test handler panic")
	case "waitpanic":
		return Reply{Wait: func() kmsg.Response { panic("test wait panic") }}
	case "software":
		resp.ResponseData = []byte(r.Conn.ClientSoftware().Name)
	}
	return Reply{Resp: resp}
}

// handleTestHeader echoes BrokerID into ErrorCode and the client id into
// nothing: it checks header decoding across header versions.
func handleTestHeader(_ *Server, r *Request) Reply {
	req := r.Body.(*kmsg.ControlledShutdownRequest)
	resp := req.ResponseKind().(*kmsg.ControlledShutdownResponse)
	resp.ErrorCode = int16(req.BrokerID)
	if r.Header.ClientID != "test-client" {
		resp.ErrorCode = -1
	}
	return Reply{Resp: resp}
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestServer starts a server on 127.0.0.1:0, closed at cleanup.
func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient speaks the Kafka framing directly, encoding with franz-go's
// kmsg request formatter. Not safe for concurrent use.
type rawClient struct {
	t    *testing.T
	nc   net.Conn
	corr int32
	fmtr *kmsg.RequestFormatter
}

func dial(t *testing.T, s *Server) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("test-client"))}
}

// frame encodes req (with the next correlation id) as a full frame.
func (c *rawClient) frame(req kmsg.Request) ([]byte, int32) {
	c.corr++
	return c.fmtr.AppendRequest(nil, req, c.corr), c.corr
}

func (c *rawClient) send(req kmsg.Request) int32 {
	c.t.Helper()
	b, corr := c.frame(req)
	c.write(b)
	return corr
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads one response frame, failing the test after 10 s.
func (c *rawClient) readFrame() ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(c.nc, b)
	return b, err
}

// recv reads one response into resp (whose version must be set) and
// returns its correlation id.
func (c *rawClient) recv(resp kmsg.Response) int32 {
	c.t.Helper()
	b, err := c.readFrame()
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	if len(b) < 4 {
		c.t.Fatalf("response of %d bytes", len(b))
	}
	corr := int32(binary.BigEndian.Uint32(b))
	b = b[4:]
	if resp.IsFlexible() && resp.Key() != apiVersionsKey {
		if len(b) == 0 || b[0] != 0 {
			c.t.Fatalf("response header v1: want empty tagged fields, got % x", b[:min(len(b), 1)])
		}
		b = b[1:]
	}
	if err := resp.ReadFrom(b); err != nil {
		c.t.Fatalf("decode %s: %v", kmsg.NameForKey(resp.Key()), err)
	}
	return corr
}

// expectClosed asserts the server closes the connection (possibly after
// responses still in flight, which are discarded).
func (c *rawClient) expectClosed() {
	c.t.Helper()
	for range 1000 {
		if _, err := c.readFrame(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("connection still open after 10 s")
			}
			return
		}
	}
	c.t.Fatal("connection still answering")
}

func testReq(cmd, tag string, payload []byte) *kmsg.EnvelopeRequest {
	req := kmsg.NewPtrEnvelopeRequest()
	req.RequestPrincipal = []byte(cmd)
	req.ClientHostAddress = []byte(tag)
	req.RequestData = payload
	return req
}

// roundTrip sends a test request and checks its answer.
func (c *rawClient) roundTrip(tag string) {
	c.t.Helper()
	corr := c.send(testReq("echo", tag, nil))
	resp := kmsg.NewPtrEnvelopeResponse()
	if got := c.recv(resp); got != corr || string(resp.ResponseData) != tag {
		c.t.Fatalf("got corr %d data %q, want %d %q", got, resp.ResponseData, corr, tag)
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestConfigDefaults(t *testing.T) {
	s, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		MaxRequestBytes:    DefaultMaxRequestBytes,
		MaxInflightBytes:   DefaultMaxInflightBytes,
		MaxInflightPerConn: DefaultMaxInflightPerConn,
		MaxConnsPerIP:      DefaultMaxConnsPerIP,
		IdleTimeout:        DefaultIdleTimeout,
	}
	got := s.cfg
	got.Logger = nil
	if got != want {
		t.Fatalf("defaults: got %+v want %+v", got, want)
	}
	if s.Logger == nil || s.Addr() != nil {
		t.Fatal("want default logger and no address before Listen")
	}
	for _, bad := range []Config{{MaxRequestBytes: -1}, {MaxInflightBytes: -1}, {MaxInflightPerConn: -1}, {MaxConnsPerIP: -1}} {
		if _, err := NewServer(bad); err == nil {
			t.Errorf("NewServer(%+v): want error", bad)
		}
	}
}

func TestPerIPLimit(t *testing.T) {
	s := newTestServer(t, Config{MaxConnsPerIP: 2})
	a, b := dial(t, s), dial(t, s)
	a.roundTrip("a")
	b.roundTrip("b")
	c := dial(t, s)
	c.expectClosed()
	if st := s.Stats(); st.ConnsRejected != 1 || st.ConnsOpen != 2 {
		t.Fatalf("stats %+v: want 1 rejected, 2 open", st)
	}
	a.nc.Close()
	eventually(t, "closed connection to be forgotten", func() bool { return s.Stats().ConnsOpen == 1 })
	dial(t, s).roundTrip("d")
	b.roundTrip("b2")
}

func TestIdleConnections(t *testing.T) {
	const n = 1000
	s := newTestServer(t, Config{})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	for range n {
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	eventually(t, "all connections accepted", func() bool { return s.Stats().ConnsOpen == n })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	goroutines := runtime.NumGoroutine() - g0
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stacks := int64(after.StackInuse) - int64(before.StackInuse)
	t.Logf("%d idle connections: +%d goroutines, +%d KiB heap in use (%d B/conn, both ends), +%d KiB stacks",
		n, goroutines, heap>>10, heap/n, stacks>>10)
	// An idle connection has only its reader goroutine; the writer starts
	// with the first request.
	if goroutines > n+10 {
		t.Errorf("%d goroutines for %d idle connections, want at most one each", goroutines, n)
	}

	// Still serving: a fresh client is over the per-IP limit, so use one
	// of the idle ones.
	c := &rawClient{t: t, nc: conns[0], fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("test-client"))}
	c.roundTrip("x")

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.ConnsOpen != 0 {
		t.Fatalf("after Close: %d connections open", st.ConnsOpen)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := newTestServer(t, Config{IdleTimeout: 100 * time.Millisecond})
	idle := dial(t, s)
	idle.expectClosed()

	// A connection waiting on a slow response is not idle.
	gate := setGate()
	busy := dial(t, s)
	corr := busy.send(testReq("gate", "g", nil))
	time.Sleep(300 * time.Millisecond)
	close(gate)
	if got := busy.recv(kmsg.NewPtrEnvelopeResponse()); got != corr {
		t.Fatalf("corr %d want %d", got, corr)
	}
}

func TestShutdownFinishesInflight(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s)
	c.roundTrip("warm")
	// "ctx" answers only once the request context ends, which Shutdown
	// causes; the answer must still be written.
	corr := c.send(testReq("ctx", "late", nil))
	eventually(t, "request dispatched", func() bool { return s.Stats().Requests[testKey] == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	resp := kmsg.NewPtrEnvelopeResponse()
	if got := c.recv(resp); got != corr || string(resp.ResponseData) != "late" {
		t.Fatalf("got %d %q", got, resp.ResponseData)
	}
	c.expectClosed()
	if _, err := net.Dial("tcp", s.Addr().String()); err == nil {
		t.Fatal("dial after Shutdown succeeded")
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := s.Listen(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Listen after Shutdown: %v", err)
	}
}

func TestCloseWithOpenConnections(t *testing.T) {
	s, err := NewServer(Config{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	eventually(t, "Serve to start", func() bool { return s.Addr() != nil })

	gate := setGate()
	defer close(gate)
	var clients []*rawClient
	for i := range 5 {
		c := dial(t, s)
		c.roundTrip("hello")
		if i%2 == 0 {
			c.send(testReq("gate", "stuck", nil))
		}
		clients = append(clients, c)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	for _, c := range clients {
		c.expectClosed()
	}
	if st := s.Stats(); st.ConnsOpen != 0 {
		t.Fatalf("%d connections open after Close", st.ConnsOpen)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
