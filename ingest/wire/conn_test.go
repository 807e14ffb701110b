package wire

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestPipelinedResponsesInRequestOrder(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s)
	testMaxActive.Store(0)

	// Later requests complete first; "none" answers nothing and must not
	// hold up the others.
	cmds := []string{"sleep:80", "sleep:60", "none", "sleep:40", "echo", "sleep:20", "none", "sleep:0", "echo"}
	var want []int32
	for i, cmd := range cmds {
		corr := c.send(testReq(cmd, fmt.Sprint(i), nil))
		if cmd != "none" {
			want = append(want, corr)
		}
	}
	for _, corr := range want {
		resp := kmsg.NewPtrEnvelopeResponse()
		if got := c.recv(resp); got != corr {
			t.Fatalf("response for correlation id %d, want %d", got, corr)
		}
	}
	if m := testMaxActive.Load(); m < 2 {
		t.Errorf("at most %d Waits ran at once, want them concurrent", m)
	}
	c.roundTrip("after")
	if st := s.Stats(); st.Requests[testKey] != uint64(len(cmds)+1) || st.BytesIn == 0 || st.BytesOut == 0 {
		t.Errorf("stats %+v", st)
	}
	eventually(t, "budget released", func() bool { return s.Stats().InflightBytes == 0 })
}

func TestRequestHeaderVersions(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s)
	for v := int16(1); v <= 3; v++ {
		req := kmsg.NewPtrControlledShutdownRequest()
		req.Version = v
		req.BrokerID = int32(100 + v)
		corr := c.send(req)
		resp := req.ResponseKind().(*kmsg.ControlledShutdownResponse)
		if got := c.recv(resp); got != corr || resp.ErrorCode != 100+v {
			t.Fatalf("v%d: corr %d (want %d) echo %d (want %d)", v, got, corr, resp.ErrorCode, 100+v)
		}
	}
	// Header v2 with a tagged field the server does not know.
	req := kmsg.NewPtrControlledShutdownRequest()
	req.Version, req.BrokerID = 3, 7
	frame := []byte{0, 0, 0, 0, 0, 7, 0, 3, 0, 0, 0, 99, 0, 11}
	frame = append(frame, "test-client"...)
	frame = append(frame, 1, 5, 2, 0xAA, 0xBB) // one tag (5) of 2 bytes
	frame = req.AppendTo(frame)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	c.write(frame)
	resp := kmsg.NewPtrControlledShutdownResponse()
	resp.Version = 3
	if got := c.recv(resp); got != 99 || resp.ErrorCode != 7 {
		t.Fatalf("tagged header: corr %d echo %d", got, resp.ErrorCode)
	}
}

func TestHandlerReplies(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, tc := range []struct {
		cmd        string
		wantAnswer bool
	}{
		{"close", true},      // answer, then close
		{"closenone", false}, // close without an answer (acks=0 failure)
		{"panic", false},     // handler panic closes the connection only
		{"waitpanic", false}, // so does a panicking Wait
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			other := dial(t, s)
			other.roundTrip("before")
			c := dial(t, s)
			c.roundTrip("before")
			corr := c.send(testReq(tc.cmd, "x", nil))
			if tc.wantAnswer {
				if got := c.recv(kmsg.NewPtrEnvelopeResponse()); got != corr {
					t.Fatalf("corr %d want %d", got, corr)
				}
			}
			c.expectClosed()
			other.roundTrip("after")
			eventually(t, "budget released", func() bool { return s.Stats().InflightBytes == 0 })
		})
	}
}

func TestBadFramesCloseOnlyThatConnection(t *testing.T) {
	const maxReq = 1 << 20
	s := newTestServer(t, Config{MaxRequestBytes: maxReq})
	sizeOnly := func(size uint32) []byte { return binary.BigEndian.AppendUint32(nil, size) }
	frame := func(body ...byte) []byte { return append(sizeOnly(uint32(len(body))), body...) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"2 GiB size", sizeOnly(1<<31 - 1)},
		{"negative size", sizeOnly(0xFFFFFFFF)},
		{"over MaxRequestBytes", sizeOnly(maxReq + 1)},
		{"size below header", frame(0, 18, 0, 0)},
		{"empty frame", frame()},
		{"unknown api key", frame(0x30, 0x39, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF)},
		{"unregistered api key", frame(0, 4, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF)},
		{"version below range", frame(0, testHeaderKey, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0, 0, 0, 1)},
		{"version above range", frame(0, testHeaderKey, 0, 4, 0, 0, 0, 1, 0xFF, 0xFF, 0, 0, 0, 1)},
		{"client id past end", frame(0, testHeaderKey, 0, 1, 0, 0, 0, 1, 0, 50, 'a')},
		{"client id length negative", frame(0, testHeaderKey, 0, 1, 0, 0, 0, 1, 0x80, 0)},
		{"truncated body", frame(0, testHeaderKey, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0, 0)},
		{"bad header tags", frame(0, testKey, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 3, 1, 9)},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
	}
	good := dial(t, s)
	good.roundTrip("start")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			c := dial(t, s)
			c.write(tc.b)
			c.expectClosed()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Errorf("allocated %d MiB for a rejected frame", grew>>20)
			}
			good.roundTrip(tc.name)
		})
	}
	if st := s.Stats(); st.ProtocolErrors == 0 {
		t.Errorf("no protocol errors counted: %+v", st)
	}
	// The good connection's last answer reaches the client just before its
	// budget is released.
	eventually(t, "budget released", func() bool { return s.Stats().InflightBytes == 0 })
}

func TestBudgetBlocksReading(t *testing.T) {
	payload := make([]byte, 16<<10)
	probe := &rawClient{t: t, fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("test-client"))}
	b, _ := probe.frame(testReq("gate", "000", payload))
	frameSize := int64(len(b) - 4)

	// Room for three frames, not four.
	s := newTestServer(t, Config{MaxInflightBytes: 3*frameSize + frameSize/2})
	gate := setGate()
	testCalls.Store(0)
	c := dial(t, s)
	const n = 10
	var want []int32
	for i := range n {
		want = append(want, c.send(testReq("gate", fmt.Sprintf("%03d", i), payload)))
	}
	eventually(t, "budget to fill", func() bool { return s.Stats().InflightBytes == 3*frameSize })
	time.Sleep(50 * time.Millisecond) // give a broken limit the chance to read more
	if calls, st := testCalls.Load(), s.Stats(); calls != 3 || st.InflightBytes != 3*frameSize {
		t.Fatalf("with the budget used up: %d requests dispatched, %d bytes held; want 3, %d", calls, st.InflightBytes, 3*frameSize)
	}
	close(gate)
	for _, corr := range want {
		if got := c.recv(kmsg.NewPtrEnvelopeResponse()); got != corr {
			t.Fatalf("corr %d want %d", got, corr)
		}
	}
	eventually(t, "budget released", func() bool { return s.Stats().InflightBytes == 0 })
	if st := s.Stats(); st.PeakInflightBytes != 3*frameSize {
		t.Fatalf("peak %d, want %d", st.PeakInflightBytes, 3*frameSize)
	}

	// A request larger than the whole budget can never be admitted.
	big := dial(t, s)
	big.send(testReq("echo", "big", make([]byte, 4*frameSize)))
	big.expectClosed()
	c.roundTrip("still here")
}

func TestBudgetFlood(t *testing.T) {
	const (
		budget  = 64 << 10
		conns   = 4
		perConn = 25
	)
	s := newTestServer(t, Config{MaxInflightBytes: budget})
	payload := make([]byte, 12<<10)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := dial(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var want []int32
			for j := range perConn {
				b, corr := c.frame(testReq(fmt.Sprintf("sleep:%d", j%3), "f", payload))
				if _, err := c.nc.Write(b); err != nil {
					errs <- err
					return
				}
				want = append(want, corr)
			}
			for _, corr := range want {
				b, err := c.readFrame()
				if err != nil {
					errs <- fmt.Errorf("conn %d: %w", i, err)
					return
				}
				if got := int32(binary.BigEndian.Uint32(b)); got != corr {
					errs <- fmt.Errorf("conn %d: corr %d want %d", i, got, corr)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.PeakInflightBytes > budget || st.PeakInflightBytes == 0 {
		t.Fatalf("peak in-flight %d bytes, budget %d", st.PeakInflightBytes, budget)
	}
	t.Logf("%d requests of %d KiB through a %d KiB budget, peak %d KiB held",
		conns*perConn, len(payload)>>10, budget>>10, st.PeakInflightBytes>>10)
}

func TestMaxInflightPerConn(t *testing.T) {
	s := newTestServer(t, Config{MaxInflightPerConn: 2})
	gate := setGate()
	testCalls.Store(0)
	c := dial(t, s)
	var want []int32
	for i := range 5 {
		want = append(want, c.send(testReq("gate", fmt.Sprint(i), nil)))
	}
	eventually(t, "two requests dispatched", func() bool { return testCalls.Load() == 2 })
	time.Sleep(50 * time.Millisecond) // give a broken limit the chance to read more
	if n := testCalls.Load(); n != 2 {
		t.Fatalf("%d requests dispatched, want 2", n)
	}
	close(gate)
	for _, corr := range want {
		if got := c.recv(kmsg.NewPtrEnvelopeResponse()); got != corr {
			t.Fatalf("corr %d want %d", got, corr)
		}
	}
}
