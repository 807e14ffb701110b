package wire

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// checkAPIKeys asserts keys is exactly the registry, sorted by key.
func checkAPIKeys(t *testing.T, keys []kmsg.ApiVersionsResponseApiKey) {
	t.Helper()
	if len(keys) != len(handlers) {
		t.Fatalf("%d api keys advertised, %d registered", len(keys), len(handlers))
	}
	if !slices.IsSortedFunc(keys, func(a, b kmsg.ApiVersionsResponseApiKey) int { return int(a.ApiKey) - int(b.ApiKey) }) {
		t.Fatalf("api keys not sorted: %+v", keys)
	}
	for _, k := range keys {
		e, ok := handlers[k.ApiKey]
		if !ok || k.MinVersion != e.min || k.MaxVersion != e.max {
			t.Fatalf("advertised %s %d-%d, registered %v %d-%d", kmsg.NameForKey(k.ApiKey), k.MinVersion, k.MaxVersion, ok, e.min, e.max)
		}
	}
	for _, want := range []int16{apiVersionsKey, testKey, testHeaderKey} {
		if !slices.ContainsFunc(keys, func(k kmsg.ApiVersionsResponseApiKey) bool { return k.ApiKey == want }) {
			t.Fatalf("key %d not advertised", want)
		}
	}
}

func TestAPIVersions(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s)
	for v := int16(0); v <= 4; v++ {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = v
		req.ClientSoftwareName, req.ClientSoftwareVersion = "strata-test", "1.0.0"
		corr := c.send(req)
		resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
		if got := c.recv(resp); got != corr {
			t.Fatalf("v%d: corr %d want %d", v, got, corr)
		}
		if resp.ErrorCode != 0 || resp.ThrottleMillis != 0 || len(resp.FinalizedFeatures) != 0 {
			t.Fatalf("v%d: %+v", v, resp)
		}
		checkAPIKeys(t, resp.ApiKeys)
	}
	resp := kmsg.NewPtrEnvelopeResponse()
	c.send(testReq("software", "", nil))
	if c.recv(resp); string(resp.ResponseData) != "strata-test" {
		t.Fatalf("client software %q recorded", resp.ResponseData)
	}
}

func TestAPIVersionsInvalidSoftware(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s)
	for _, sw := range [][2]string{{"", "1"}, {"kgo", "-1"}, {"a b", "1"}, {"ok", "1."}} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		req.ClientSoftwareName, req.ClientSoftwareVersion = sw[0], sw[1]
		c.send(req)
		resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
		if c.recv(resp); resp.ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("software %q: error %d, want INVALID_REQUEST", sw, resp.ErrorCode)
		}
	}
}

func TestValidSoftware(t *testing.T) {
	for s, want := range map[string]bool{
		"kgo": true, "librdkafka": true, "v1.22.3": true, "a": true, "1-2.3": true, "A.b-C": true,
		"": false, "-a": false, "a-": false, ".a": false, "a.": false, "a b": false, "a_b": false, "(devel)": false,
	} {
		if got := validSoftware(s); got != want {
			t.Errorf("validSoftware(%q) = %v", s, got)
		}
	}
}

// TestAPIVersionsUnsupportedVersion sends versions we do not serve with
// bodies we cannot decode: the answer is v0 with UNSUPPORTED_VERSION and
// every range, and the connection stays open.
func TestAPIVersionsUnsupportedVersion(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s)
	for _, v := range []int16{5, 99, -1} {
		frame := []byte{0, 0, 0, 0, 0, apiVersionsKey}
		frame = binary.BigEndian.AppendUint16(frame, uint16(v))
		frame = append(frame, 0, 0, 0, 42, 0xde, 0xad, 0xbe, 0xef, 0xff)
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		c.write(frame)
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		if corr := c.recv(resp); corr != 42 {
			t.Fatalf("v%d: corr %d", v, corr)
		}
		if resp.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("v%d: error %d, want 35", v, resp.ErrorCode)
		}
		checkAPIKeys(t, resp.ApiKeys)
	}
	c.roundTrip("still open")
}

func TestKgoClient(t *testing.T) {
	s := newTestServer(t, Config{})
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kresp, err := cl.Request(ctx, kmsg.NewPtrApiVersionsRequest())
	if err != nil {
		t.Fatalf("ApiVersions through kgo: %v", err)
	}
	resp := kresp.(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("error %d", resp.ErrorCode)
	}
	checkAPIKeys(t, resp.ApiKeys)
	// kgo's handshake used v5 (answered in v0 with error 35) or v4, then
	// the request itself.
	if n := s.Stats().Requests[apiVersionsKey]; n < 2 {
		t.Fatalf("%d ApiVersions requests seen, want the handshake and the request", n)
	}
}
