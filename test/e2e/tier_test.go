package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/faulty"
	"github.com/strata-io/strata/tier/objstore/fs"
)

// withTier gives the broker an fs object store in storeDir and a fast tier
// loop.
func withTier(t testing.TB, storeDir string) inprocOpt {
	return func(b *brokerCfg, _ *wireCfg) {
		st, err := fs.New(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		tm, err := tier.NewManager(context.Background(), tier.Config{
			Store: st, TempDir: filepath.Join(b.DataDir, "tier-tmp"), Logger: b.Logger,
			ChunkTarget: 64 << 10,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tm.Close() })
		b.Tier = tm
		b.TierCheckInterval = 50 * time.Millisecond
		b.TierGCEvery = 5
	}
}

func listObjects(t testing.TB, storeDir string) []string {
	st, err := fs.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var keys []string
	err = st.List(context.Background(), "", func(o objstore.ObjectInfo) error {
		if !strings.HasPrefix(o.Key, "_strata/") {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tieredPartition(t testing.TB, b *broker.Broker, topic string) *broker.Partition {
	p, err := b.Partition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTieredTopicRoundTrip produces to a tiered topic with small segments
// and no local retention to speak of, waits until the history lives only in
// the bucket, reads it all back from offset 0 and by timestamp, then wipes
// the partition directory and checks that the broker continues from the
// bucket. Deleting the topic empties its objects.
func TestTieredTopicRoundTrip(t *testing.T) {
	dataDir, storeDir := t.TempDir(), t.TempDir()
	ip := startInproc(t, dataDir, withTier(t, storeDir))
	ctx := ctxT(t, 2*time.Minute)
	adm := newAdmin(t, ip.addr)
	const topic = "tiered"
	cfgs := map[string]*string{
		"remote.storage.enable": ptr("true"),
		"segment.bytes":         ptr("16384"),
		"local.retention.bytes": ptr("1"),
		"retention.bytes":       ptr("-1"),
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, cfgs, topic); err != nil {
		t.Fatal(err)
	}
	// Local retention must fit inside a finite total when tiering is on.
	r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"remote.storage.enable": ptr("true"), "retention.ms": ptr("1000"), "local.retention.ms": ptr("2000")}, "bad-local")
	if err == nil {
		err = r.Err
	}
	if !errors.Is(err, kerr.InvalidConfig) || !strings.Contains(r.ErrMessage, "local.retention.ms") {
		t.Fatalf("local retention above the total: %v %q", err, r.ErrMessage)
	}
	// Tiering cannot be turned off again.
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "remote.storage.enable", Value: ptr("false")}}, topic)
	if err == nil && (len(ar) == 0 || ar[0].Err == nil) {
		t.Fatal("turning remote.storage.enable off was accepted")
	}
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	const n = 2000
	var want []*kgo.Record
	for i := 0; i < n; i++ {
		want = append(want, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{byte(i)}, 300), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	for i := 0; i < n; i += 50 {
		produceSync(t, ctx, cl, want[i:i+50])
	}

	p := tieredPartition(t, ip.b, topic)
	waitFor(t, "history to move to the bucket", time.Minute, func() bool {
		return p.Tier().RemoteEndOffset() > n/2 && p.LocalStartOffset() > n/2
	})
	if p.LogStartOffset() != 0 {
		t.Fatalf("log start offset %d after local retention, want 0", p.LogStartOffset())
	}
	check := func(got []*kgo.Record, from int) {
		t.Helper()
		for i, r := range got {
			w := want[from+i]
			if r.Offset != int64(from+i) || !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || !r.Timestamp.Equal(w.Timestamp) {
				t.Fatalf("record %d: offset %d key %q, want offset %d key %q", from+i, r.Offset, r.Key, from+i, w.Key)
			}
		}
	}
	check(consumeAll(t, ip.addr, topic, n, kgo.NewOffset().AtStart()), 0)
	ts := base.Add(123*time.Second + 500*time.Millisecond)
	check(consumeAll(t, ip.addr, topic, n-124, kgo.NewOffset().AfterMilli(ts.UnixMilli())), 124)

	// Wipe the partition's local directory (not the metadata) and restart:
	// the partition continues at the remote end, history still reads.
	ip.stop()
	// The bucket is the truth: a publish cut short by the shutdown may have
	// landed without the broker knowing.
	remoteEnd := bucketEnd(t, storeDir, p)
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "logs", topic+"-0.*"))
	if len(dirs) != 1 {
		t.Fatalf("partition dirs: %v", dirs)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	ip = startInproc(t, dataDir, withTier(t, storeDir))
	p = tieredPartition(t, ip.b, topic)
	if p.LogEndOffset() != remoteEnd || p.LogStartOffset() != 0 {
		t.Fatalf("after wipe: log [%d, %d), want [0, %d)", p.LogStartOffset(), p.LogEndOffset(), remoteEnd)
	}
	cl = newClient(t, ip.addr, kgo.DefaultProduceTopic(topic))
	produceSync(t, ctx, cl, []*kgo.Record{{Value: []byte("after-wipe")}})
	got := consumeAll(t, ip.addr, topic, int(remoteEnd)+1, kgo.NewOffset().AtStart())
	check(got[:remoteEnd], 0)
	if last := got[remoteEnd]; last.Offset != remoteEnd || string(last.Value) != "after-wipe" {
		t.Fatalf("first record after the wipe: offset %d value %q, want offset %d", last.Offset, last.Value, remoteEnd)
	}

	// Deleting the topic deletes its objects.
	if len(listObjects(t, storeDir)) == 0 {
		t.Fatal("no objects in the bucket")
	}
	if _, err := newAdmin(t, ip.addr).DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the topic's objects and descriptor to be deleted", time.Minute, func() bool {
		return len(listObjects(t, storeDir)) == 0 && !slicesContainPrefix(listAllObjects(t, storeDir), "_strata/topics/")
	})
}

// TestProduceThrottledWhenDiskNearlyFull checks the documented policy: while
// free space is between the headroom and twice it, produce responses carry a
// growing throttle time, and none once space is back.
func TestProduceThrottledWhenDiskNearlyFull(t *testing.T) {
	fs := vfs.NewCrashFS()
	fs.SetFreeSpace(1 << 40)
	dataDir := t.TempDir()
	ip := startInproc(t, dataDir, withFS(fs), withTier(t, t.TempDir()))
	ctx := ctxT(t, time.Minute)
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctx, 1, 1, nil, "throttled"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr)
	throttle := func() int32 {
		resp, err := produceReq("throttled", validBatch(1)).RequestWith(ctx, cl)
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("produce: %v %+v", err, resp)
		}
		return resp.ThrottleMillis
	}
	const headroom = 1 << 20 // the harness's MinFreeBytes
	if got := throttle(); got != 0 {
		t.Fatalf("throttle with plenty of space: %d", got)
	}
	fs.SetFreeSpace(headroom * 3 / 2)
	ip.b.TierPass(false)
	half := throttle()
	fs.SetFreeSpace(headroom * 11 / 10)
	ip.b.TierPass(false)
	near := throttle()
	if half <= 0 || near <= half {
		t.Fatalf("throttle at 1.5x headroom %d ms, at 1.1x %d ms: want 0 < first < second", half, near)
	}
	fs.SetFreeSpace(1 << 40)
	ip.b.TierPass(false)
	if got := throttle(); got != 0 {
		t.Fatalf("throttle after space came back: %d", got)
	}
}

// bucketEnd loads the partition's newest manifest from the fs bucket.
func bucketEnd(t testing.TB, storeDir string, p *broker.Partition) int64 {
	t.Helper()
	st, err := fs.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, _, err := tier.ManifestClient(st).Load(context.Background(), manifest.TopicID(p.TopicID), p.Index)
	if err != nil {
		t.Fatal(err)
	}
	return m.EndOffset()
}

// TestFetchServesSeveralColdPartitions sends one Fetch for three partitions
// whose history lives only in the bucket: every partition gets its batches
// from offset 0, and the response respects max.bytes on batch boundaries.
func TestFetchServesSeveralColdPartitions(t *testing.T) {
	ip := startInproc(t, "", withTier(t, t.TempDir()))
	ctx := ctxT(t, time.Minute)
	cfgs := map[string]*string{"remote.storage.enable": ptr("true"), "segment.bytes": ptr("8192"), "local.retention.bytes": ptr("1")}
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctx, 3, 1, cfgs, "cold"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr)
	for p := int32(0); p < 3; p++ {
		for i := 0; i < 40; i++ {
			req := produceReq("cold", batchOfSize(1000))
			req.Topics[0].Partitions[0].Partition = p
			if resp, err := req.RequestWith(ctx, cl); err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("produce: %v %+v", err, resp)
			}
		}
	}
	for p := int32(0); p < 3; p++ {
		part, err := ip.b.Partition("cold", p)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "partition history to leave local disk", time.Minute, func() bool { return part.LocalStartOffset() > 10 })
	}
	resp, err := fetchReq("cold", 0, 0, 0, 1<<20, 1<<20, 0, 1, 2).RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range resp.Topics[0].Partitions {
		if n, off := countBatches(t, sp.RecordBatches); sp.ErrorCode != 0 || n == 0 || off != 0 {
			t.Fatalf("partition %d: error %d, %d batches from %d", sp.Partition, sp.ErrorCode, n, off)
		}
	}
	resp, err = fetchReq("cold", 0, 0, 0, 2500, 1<<20, 0, 1, 2).RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, sp := range resp.Topics[0].Partitions {
		countBatches(t, sp.RecordBatches) // whole batches only
		total += len(sp.RecordBatches)
	}
	if total == 0 || total > 2500 {
		t.Fatalf("max.bytes 2500 over cold partitions returned %d bytes", total)
	}
}

// TestFreshBrokerOnOldBucket stops a broker with a tiered topic, throws its
// whole data directory away (metadata included) and starts a new broker on
// the same bucket: the topic comes back under its name and id, its history
// reads from offset 0, and produce continues at the remote end.
func TestFreshBrokerOnOldBucket(t *testing.T) {
	storeDir := t.TempDir()
	ip := startInproc(t, t.TempDir(), withTier(t, storeDir))
	ctx := ctxT(t, time.Minute)
	cfgs := map[string]*string{"remote.storage.enable": ptr("true"), "segment.bytes": ptr("8192"), "local.retention.bytes": ptr("1"), "retention.ms": ptr("-1")}
	created, err := newAdmin(t, ip.addr).CreateTopic(ctx, 2, 1, cfgs, "history")
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic("history"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := 0; i < 400; i++ {
		produceSync(t, ctx, cl, []*kgo.Record{{Partition: int32(i % 2), Value: []byte(fmt.Sprintf("v%d", i))}})
	}
	p0 := tieredPartition(t, ip.b, "history")
	waitFor(t, "history in the bucket", time.Minute, func() bool {
		return p0.Tier().RemoteEndOffset() > 100 && slicesContainPrefix(listAllObjects(t, storeDir), "_strata/topics/")
	})
	p1, err := ip.b.Partition("history", 1)
	if err != nil {
		t.Fatal(err)
	}
	ip.stop()
	ends := map[int32]int64{0: bucketEnd(t, storeDir, p0), 1: bucketEnd(t, storeDir, p1)}

	ip = startInproc(t, t.TempDir(), withTier(t, storeDir)) // a new data directory
	td, err := newAdmin(t, ip.addr).ListTopics(ctx, "history")
	if err != nil || td["history"].Err != nil || td["history"].ID != created.ID || len(td["history"].Partitions) != 2 {
		t.Fatalf("imported topic: %+v %v", td["history"], err)
	}
	for part := int32(0); part < 2; part++ {
		p, err := ip.b.Partition("history", part)
		if err != nil || p.LogEndOffset() != ends[part] || p.LogStartOffset() != 0 {
			t.Fatalf("partition %d after import: log [%d, %d), want [0, %d) (%v)", part, p.LogStartOffset(), p.LogEndOffset(), ends[part], err)
		}
	}
	n := int(ends[0] + ends[1])
	got := consumeAll(t, ip.addr, "history", n, kgo.NewOffset().AtStart())
	for _, r := range got {
		if want := fmt.Sprintf("v%d", 2*int(r.Offset)+int(r.Partition)); string(r.Value) != want {
			t.Fatalf("partition %d offset %d: %q, want %q", r.Partition, r.Offset, r.Value, want)
		}
	}
	cl = newClient(t, ip.addr, kgo.DefaultProduceTopic("history"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := &kgo.Record{Partition: 0, Value: []byte("new")}
	produceSync(t, ctx, cl, []*kgo.Record{r})
	if r.Offset != ends[0] {
		t.Fatalf("first new record at offset %d, want %d", r.Offset, ends[0])
	}
}

func listAllObjects(t testing.TB, storeDir string) []string {
	st, err := fs.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var keys []string
	if err := st.List(context.Background(), "", func(o objstore.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

func slicesContainPrefix(keys []string, prefix string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// TestTieredPartitionWaitsForItsTier: when the object store cannot be
// reached as a tiered topic is created, its empty partition refuses writes
// (the bucket might hold history to continue from) with a retriable
// KAFKA_STORAGE_ERROR, and takes them once a later tier pass opens the tier.
func TestTieredPartitionWaitsForItsTier(t *testing.T) {
	inner, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := faulty.New(inner, 1)
	ip := startInproc(t, "", func(b *brokerCfg, _ *wireCfg) {
		tm, err := tier.NewManager(context.Background(), tier.Config{Store: st, TempDir: filepath.Join(b.DataDir, "tier-tmp"), Logger: b.Logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tm.Close() })
		b.Tier = tm
		b.TierCheckInterval = time.Hour // passes are run by the test
	})
	ctx := ctxT(t, time.Minute)
	st.SetRules(faulty.Rule{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpList}})
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctx, 1, 1, map[string]*string{"remote.storage.enable": ptr("true")}, "waits"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr)
	if code := produceRaw(t, ctx, cl, "waits", 1); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce before the tier opened: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code))
	}
	st.Clear()
	ip.b.TierPass(false)
	if code := produceRaw(t, ctx, cl, "waits", 1); code != 0 {
		t.Fatalf("produce after the tier opened: %v", kerr.ErrorForCode(code))
	}
	if p := tieredPartition(t, ip.b, "waits"); p.Tier() == nil {
		t.Fatal("tier not attached after a pass")
	}
}
