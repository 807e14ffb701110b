package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
)

func fetchReq(topic string, offset int64, maxWait, minBytes, maxBytes, partMax int32, parts ...int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.ReplicaID = -1
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWait, minBytes, maxBytes
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	if len(parts) == 0 {
		parts = []int32{0}
	}
	for _, p := range parts {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.FetchOffset = offset
		rp.PartitionMaxBytes = partMax
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// countBatches walks the record batches of a fetch response partition.
func countBatches(t testing.TB, data []byte) (batches int, firstOffset int64) {
	t.Helper()
	firstOffset = -1
	for len(data) > 0 {
		h, err := batch.ParseHeader(data)
		if err != nil {
			t.Fatalf("fetched data: %v", err)
		}
		if firstOffset < 0 {
			firstOffset = h.BaseOffset
		}
		batches++
		data = data[h.Size():]
	}
	return batches, firstOffset
}

func TestFetchLongPollAndLimits(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "poll"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr)

	// A fetch at the end of the log with min.bytes waits for new data and
	// returns it as soon as it is durable.
	type result struct {
		resp *kmsg.FetchResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := fetchReq("poll", 0, 20000, 1, 1<<20, 1<<20).RequestWith(ctx, cl)
		done <- result{resp, err}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("fetch on an empty partition returned before max.wait.ms: %+v %v", r.resp, r.err)
	default:
	}
	if code := produceRaw(t, ctx, cl, "poll", 3); code != 0 {
		t.Fatal(kerr.ErrorForCode(code))
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n, off := countBatches(t, r.resp.Topics[0].Partitions[0].RecordBatches); n != 1 || off != 0 {
		t.Fatalf("long poll woke with %d batches from %d, want the new batch", n, off)
	}

	// With no new data the fetch answers empty after max.wait.ms.
	resp, err := fetchReq("poll", 3, 100, 1, 1<<20, 1<<20).RequestWith(ctx, cl)
	if err != nil || len(resp.Topics[0].Partitions[0].RecordBatches) != 0 || resp.Topics[0].Partitions[0].HighWatermark != 3 {
		t.Fatalf("empty long poll: %+v %v", resp, err)
	}

	// Five ~10 KiB batches on each partition.
	for p := int32(0); p < 2; p++ {
		for i := 0; i < 5; i++ {
			req := produceReq("poll", batchOfSize(10_000))
			req.Topics[0].Partitions[0].Partition = p
			resp, err := req.RequestWith(ctx, cl)
			if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("produce: %v %+v", err, resp)
			}
		}
	}
	// Partition max bytes below one batch: the first partition still gets
	// one whole batch, the second none.
	resp, err = fetchReq("poll", 3, 0, 0, 1<<20, 100, 0, 1).RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if n, off := countBatches(t, resp.Topics[0].Partitions[0].RecordBatches); n != 1 || off != 3 {
		t.Fatalf("partition 0 with tiny partition max: %d batches from %d", n, off)
	}
	// Response max bytes of ~2.5 batches: batches stop at the limit.
	resp, err = fetchReq("poll", 3, 0, 0, 25_000, 1<<20, 0, 1).RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range resp.Topics[0].Partitions {
		total += len(p.RecordBatches)
	}
	if total > 25_000 || total < 10_000 {
		t.Fatalf("max.bytes 25000 returned %d bytes", total)
	}
	// Fetching from the middle of a batch returns the whole batch.
	resp, err = fetchReq("poll", 1, 0, 0, 1<<20, 1<<20).RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if _, off := countBatches(t, resp.Topics[0].Partitions[0].RecordBatches); off != 0 {
		t.Fatalf("fetch from offset 1 starts at batch %d, want 0", off)
	}
	// Out of range and fenced epochs.
	resp, _ = fetchReq("poll", 1000, 0, 0, 1<<20, 1<<20).RequestWith(ctx, cl)
	if c := resp.Topics[0].Partitions[0].ErrorCode; c != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch beyond the end: %v", kerr.ErrorForCode(c))
	}
	req := fetchReq("poll", 0, 0, 0, 1<<20, 1<<20)
	req.Topics[0].Partitions[0].CurrentLeaderEpoch = 5
	resp, _ = req.RequestWith(ctx, cl)
	if c := resp.Topics[0].Partitions[0].ErrorCode; c != kerr.UnknownLeaderEpoch.Code {
		t.Fatalf("fetch with a future epoch: %v", kerr.ErrorForCode(c))
	}
	// Fetch sessions are declined: a new session gets id 0, an unknown
	// session id is refused.
	req = fetchReq("poll", 0, 0, 0, 1<<20, 1<<20)
	req.SessionEpoch = 0
	resp, _ = req.RequestWith(ctx, cl)
	if resp.SessionID != 0 || resp.ErrorCode != 0 {
		t.Fatalf("new fetch session: id %d error %d", resp.SessionID, resp.ErrorCode)
	}
	req.SessionID, req.SessionEpoch = 1234, 1
	resp, _ = req.RequestWith(ctx, cl)
	if resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("unknown fetch session: %v", kerr.ErrorForCode(resp.ErrorCode))
	}

	// OffsetForLeaderEpoch: epoch 0 ends at the log end.
	eo, err := adm.OffsetForLeaderEpoch(ctx, kadm.OffsetForLeaderEpochRequest{"poll": {0: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := eo["poll"][0]; !ok || o.Err != nil || o.EndOffset != 8 || o.LeaderEpoch != 0 {
		t.Fatalf("offset for leader epoch 0: %+v", o)
	}
}

func TestIdempotentRetryAndGap(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, time.Minute)
	cl := newClient(t, ip.addr)
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctx, 1, 1, nil, "idem"); err != nil {
		t.Fatal(err)
	}
	pid, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx, cl)
	if err != nil || pid.ErrorCode != 0 {
		t.Fatalf("init producer id: %v %+v", err, pid)
	}
	pid2, _ := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx, cl)
	if pid2.ProducerID == pid.ProducerID {
		t.Fatal("two InitProducerId calls returned the same id")
	}
	send := func(seq int32) *kmsg.ProduceResponseTopicPartition {
		b := batch.Build(batch.BuildOptions{BaseTimestamp: time.Now().UnixMilli(), Idempotent: true, ProducerID: pid.ProducerID, ProducerEpoch: pid.ProducerEpoch, BaseSequence: seq},
			batch.Record{Value: []byte("a")}, batch.Record{Value: []byte("b")})
		resp, err := produceReq("idem", b).RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return &resp.Topics[0].Partitions[0]
	}
	if r := send(0); r.ErrorCode != 0 || r.BaseOffset != 0 {
		t.Fatalf("first batch: %+v", r)
	}
	if r := send(2); r.ErrorCode != 0 || r.BaseOffset != 2 {
		t.Fatalf("second batch: %+v", r)
	}
	// A retry of the first batch gets its original offset and is not
	// appended again.
	if r := send(0); r.ErrorCode != 0 || r.BaseOffset != 0 {
		t.Fatalf("retried batch: %+v", r)
	}
	// A gap is refused.
	if r := send(10); r.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	end, _ := newAdmin(t, ip.addr).ListEndOffsets(ctx, "idem")
	if o, _ := end.Lookup("idem", 0); o.Offset != 4 {
		t.Fatalf("end offset %d, want 4", o.Offset)
	}
}

func TestTopicTimestampAndCompressionConfigs(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"message.timestamp.type": ptr("LogAppendTime"), "compression.type": ptr("zstd")}, "stamped"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic("stamped"), kgo.ProducerBatchCompression(kgo.GzipCompression()))
	old := time.Now().Add(-30 * time.Minute)
	before := time.Now()
	produceSync(t, ctx, cl, []*kgo.Record{{Value: []byte("x"), Timestamp: old}, {Value: []byte("y"), Timestamp: old}})
	got := consumeAll(t, ip.addr, "stamped", 2, kgo.NewOffset().AtStart())
	for _, r := range got {
		if r.Timestamp.Before(before.Add(-time.Second)) || r.Attrs.TimestampType() != 1 {
			t.Fatalf("record %d: timestamp %v type %d, want the broker's append time", r.Offset, r.Timestamp, r.Attrs.TimestampType())
		}
	}
	resp, err := fetchReq("stamped", 0, 0, 0, 1<<20, 1<<20).RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	h, err := batch.ParseHeader(resp.Topics[0].Partitions[0].RecordBatches)
	if err != nil || h.Codec() != batch.CodecZstd {
		t.Fatalf("stored batch codec %d (%v), want zstd (topic compression.type)", h.Codec(), err)
	}
}
