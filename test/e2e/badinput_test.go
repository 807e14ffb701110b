package e2e

import (
	"encoding/binary"
	"io"
	"math/rand"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
)

// rawConn speaks the Kafka protocol by hand so tests can send bad input.
type rawConn struct {
	t    testing.TB
	c    net.Conn
	corr int32
}

func dialRaw(t testing.TB, addr string) *rawConn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c}
}

func (rc *rawConn) send(req kmsg.Request) int32 {
	rc.corr++
	buf := kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw")).AppendRequest(nil, req, rc.corr)
	if _, err := rc.c.Write(buf); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
	return rc.corr
}

// recv reads one response into resp (whose version must be set).
func (rc *rawConn) recv(resp kmsg.Response) error {
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(rc.c, size[:]); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(rc.c, body); err != nil {
		return err
	}
	body = body[4:] // correlation id
	if resp.IsFlexible() && resp.Key() != 18 {
		body = body[1:] // empty tagged fields
	}
	return resp.ReadFrom(body)
}

// closedByServer reports whether the server closes the connection.
func (rc *rawConn) closedByServer() bool {
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, rc.c)
	ne, ok := err.(net.Error)
	return err == nil || !(ok && ne.Timeout())
}

func produceReq(topic string, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func validBatch(n int) []byte {
	recs := make([]batch.Record, n)
	for i := range recs {
		recs[i] = batch.Record{TimestampDelta: int64(i), Value: []byte("v" + strconv.Itoa(i))}
	}
	return batch.Build(batch.BuildOptions{BaseTimestamp: time.Now().UnixMilli()}, recs...)
}

// TestBadInput sends malformed requests while a well-behaved producer
// writes to another topic; every bad request gets an error code or a closed
// connection, and the good producer loses nothing.
func TestBadInput(t *testing.T) {
	ip := startInproc(t, "", func(_ *brokerCfg, w *wireCfg) { w.MaxRequestBytes = 4 << 20 })
	ctx := ctxT(t, 2*time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "victim"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "good"); err != nil {
		t.Fatal(err)
	}

	// A good producer runs throughout.
	good := newClient(t, ip.addr, kgo.DefaultProduceTopic("good"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	const goodN = 2000
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < goodN; i++ {
			produceSync(t, ctx, good, []*kgo.Record{{Value: []byte(strconv.Itoa(i))}})
			select {
			case <-stop:
			default:
			}
		}
	}()

	t.Run("garbage", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 20; i++ {
			rc := dialRaw(t, ip.addr)
			junk := make([]byte, 64+rng.Intn(512))
			rng.Read(junk)
			binary.BigEndian.PutUint32(junk, uint32(len(junk)-4))
			rc.c.Write(junk)
			if !rc.closedByServer() {
				t.Fatalf("garbage request %d: connection left open", i)
			}
		}
	})
	t.Run("oversized-frame", func(t *testing.T) {
		rc := dialRaw(t, ip.addr)
		rc.c.Write([]byte{0x7f, 0xff, 0xff, 0xff, 0, 0})
		if !rc.closedByServer() {
			t.Fatal("2 GiB frame: connection left open")
		}
		rc = dialRaw(t, ip.addr)
		rc.c.Write([]byte{0xff, 0xff, 0xff, 0xf0})
		if !rc.closedByServer() {
			t.Fatal("negative frame size: connection left open")
		}
	})
	t.Run("unknown-api-version", func(t *testing.T) {
		rc := dialRaw(t, ip.addr)
		req := produceReq("victim", validBatch(1))
		req.Version = 99
		rc.corr++
		buf := kmsg.NewRequestFormatter().AppendRequest(nil, req, rc.corr)
		rc.c.Write(buf)
		if !rc.closedByServer() {
			t.Fatal("produce v99: connection left open")
		}
	})
	badBatches := map[string]struct {
		records []byte
		want    *kerr.Error
	}{
		"truncated": {validBatch(5)[:70], kerr.CorruptMessage},
		"bad-crc": {func() []byte {
			b := validBatch(5)
			b[len(b)-1] ^= 0xff
			return b
		}(), kerr.CorruptMessage},
		"too-large": {func() []byte {
			return batch.Build(batch.BuildOptions{BaseTimestamp: time.Now().UnixMilli()}, batch.Record{Value: make([]byte, 1100000)})
		}(), kerr.MessageTooLarge},
		"bad-timestamp": {batch.Build(batch.BuildOptions{BaseTimestamp: time.Now().Add(48 * time.Hour).UnixMilli()}, batch.Record{Value: []byte("x")}), kerr.InvalidTimestamp},
		"empty":         {[]byte{}, kerr.InvalidRecord},
	}
	for name, bb := range badBatches {
		t.Run(name, func(t *testing.T) {
			rc := dialRaw(t, ip.addr)
			rc.send(produceReq("victim", bb.records))
			resp := kmsg.NewPtrProduceResponse()
			resp.Version = 9
			if err := rc.recv(resp); err != nil {
				t.Fatalf("no response: %v", err)
			}
			code := resp.Topics[0].Partitions[0].ErrorCode
			if code != bb.want.Code {
				t.Fatalf("error code %d (%v), want %s", code, kerr.ErrorForCode(code), bb.want.Message)
			}
			// The connection stays usable.
			rc.send(produceReq("victim", validBatch(2)))
			resp = kmsg.NewPtrProduceResponse()
			resp.Version = 9
			if err := rc.recv(resp); err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("good produce after bad one: %v %+v", err, resp)
			}
		})
	}
	close(stop)
	wg.Wait()

	// The victim topic holds only the good batches (2 records per subtest),
	// and the good producer's records are all there.
	end, err := adm.ListEndOffsets(ctx, "victim", "good")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := end.Lookup("victim", 0); o.Offset != int64(2*len(badBatches)) {
		t.Fatalf("victim end offset %d, want %d", o.Offset, 2*len(badBatches))
	}
	got := consumeAll(t, ip.addr, "good", goodN, kgo.NewOffset().AtStart())
	for i, r := range got {
		if string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("good record %d = %q", i, r.Value)
		}
	}
}

func batchWith(value []byte) []byte {
	return batch.Build(batch.BuildOptions{BaseTimestamp: time.Now().UnixMilli()}, batch.Record{Value: value})
}
