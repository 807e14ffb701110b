package e2e

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
	"github.com/strata-io/strata/tier/objstore/s3"
)

// withTierStore gives the broker a tier over st and a fast tier loop.
func withTierStore(t testing.TB, st objstore.Store) inprocOpt {
	return func(b *brokerCfg, _ *wireCfg) {
		tm, err := tier.NewManager(context.Background(), tier.Config{
			Store: st, TempDir: filepath.Join(b.DataDir, "tier-tmp"), Logger: b.Logger,
			ChunkTarget: 16 << 10,
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

// pausedConsumer reads a topic from offset 0 with small fetches, and stops
// at offset pauseAt until resume is closed; then it reads to end. It checks
// that fetches never fail and offsets only ever increase.
type pausedConsumer struct {
	paused chan struct{} // closed when it reached pauseAt
	resume chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	recs   []*kgo.Record
	err    string
}

func startPausedConsumer(t *testing.T, addr, topic string, pauseAt, end int64) *pausedConsumer {
	c := &pausedConsumer{paused: make(chan struct{}), resume: make(chan struct{}), done: make(chan struct{})}
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.FetchMaxBytes(4096), kgo.FetchMaxPartitionBytes(4096))
	ctx := ctxT(t, 2*time.Minute)
	go func() {
		defer close(c.done)
		last, paused := int64(-1), false
		for last < end-1 {
			if !paused && last >= pauseAt {
				paused = true
				close(c.paused)
				<-c.resume
			}
			fs := cl.PollRecords(ctx, 50)
			if ctx.Err() != nil {
				c.fail("consume: " + ctx.Err().Error())
				return
			}
			fs.EachError(func(_ string, _ int32, err error) { c.fail("fetch: " + err.Error()) })
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset <= last {
					c.fail("offsets went backwards")
				}
				last = r.Offset
				c.mu.Lock()
				c.recs = append(c.recs, r)
				c.mu.Unlock()
			})
			if c.failed() {
				return
			}
		}
	}()
	return c
}

func (c *pausedConsumer) fail(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == "" {
		c.err = msg
	}
}

func (c *pausedConsumer) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != ""
}

// TestTieredCompactedTopic: a compacted, tiered topic on a real
// S3-compatible server (versitygw) with tiny segments and no local
// retention. Once its history lives only in the bucket, the broker
// compacts the bucket's history (CompactRemote) and merges the small
// objects that leaves (MergeRemote): a consumer from offset 0 then reads
// exactly the latest record of each key at its original offset
// (tombstones kept within delete.retention.ms); the bucket's manifest names
// fewer objects and records the cleaner point; and a consumer that started
// before the compaction and kept reading across both rewrites never failed
// and never saw offsets go backwards.
func TestTieredCompactedTopic(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	st := gw.NewStore(t, s3.Options{})
	ip := startInproc(t, "", withTierStore(t, st))
	ctx := ctxT(t, 3*time.Minute)
	adm := newAdmin(t, ip.addr)
	const topic = "tiered-changelog"
	cfg := map[string]*string{
		"cleanup.policy": ptr("compact"), "remote.storage.enable": ptr("true"),
		"segment.bytes": ptr("16384"), "local.retention.bytes": ptr("0"),
		"delete.retention.ms": ptr("86400000"),
	}
	if r, err := adm.CreateTopic(ctx, 1, 1, cfg, topic); err != nil || r.Err != nil {
		t.Fatalf("create: %v %v", err, r.Err)
	}
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	latest := compactWorkload(t, ctx, cl, 300, 6000, 7)
	var lastUpdate int64
	for _, r := range latest {
		lastUpdate = max(lastUpdate, r.Offset)
	}
	p := tieredPartition(t, ip.b, topic)
	// (The tier is reopened with the leader epoch by the first tier pass:
	// read it afresh.)
	waitFor(t, "the updates to live only in the bucket", time.Minute, func() bool {
		return p.Tier().RemoteEndOffset() > lastUpdate && p.LocalStartOffset() > lastUpdate
	})
	tp := p.Tier()
	end := p.HighWatermark()
	before := tp.Manifest()
	if got := readCompacted(t, ip.addr, topic); compactedView(t, got, latest, true) {
		t.Fatal("setup: the history was compacted before the bucket's compaction ran")
	}

	// A consumer reads the first third, then waits for the rewrites.
	reader := startPausedConsumer(t, ip.addr, topic, lastUpdate/3, end)
	select {
	case <-reader.paused:
	case <-reader.done:
		t.Fatalf("early consumer stopped: %s", reader.err)
	}

	if n := ip.b.CompactRemote(ctx); n != 1 {
		t.Fatalf("CompactRemote compacted %d partitions, want 1", n)
	}
	compacted := tp.Manifest()
	if compacted.CleanerPoint < lastUpdate || compacted.EndOffset() < before.EndOffset() {
		t.Fatalf("after compaction: cleaner point %d, remote end %d (before %d), last update %d",
			compacted.CleanerPoint, compacted.EndOffset(), before.EndOffset(), lastUpdate)
	}
	if got := readCompacted(t, ip.addr, topic); !compactedView(t, got, latest, true) {
		t.Fatalf("after the bucket's compaction a consumer from 0 reads %d update records, want the latest of %d keys", len(got), len(latest))
	}
	// The smallest target at which the planner merges something.
	target := int64(512)
	for ; target < 1<<30 && len(compactor.PlanMerge(manifest.RemoteSegments(compacted), target).Groups) == 0; target *= 2 {
	}
	plan := compactor.PlanMerge(manifest.RemoteSegments(compacted), target)
	merged := ip.b.MergeRemote(ctx, target)
	after := tp.Manifest()
	if want := plan.Objects() - len(plan.Groups); merged == 0 || merged != want || len(after.Entries) != len(compacted.Entries)-want {
		var sizes []int64
		for _, e := range compacted.Entries {
			sizes = append(sizes, e.StoredSize)
		}
		t.Fatalf("merge removed %d objects: %d before (sizes %v), %d after", merged, len(compacted.Entries), sizes, len(after.Entries))
	}
	if got := readCompacted(t, ip.addr, topic); !compactedView(t, got, latest, true) {
		t.Fatal("after merging, a consumer from 0 does not read the latest record of each key")
	}

	// The bucket, read with an independent manifest client, holds the
	// compacted history: fewer objects and records, same offsets.
	m, _, err := manifestClient(st).Load(ctx, before.Topic, before.Partition)
	if err != nil {
		t.Fatal(err)
	}
	var recsBefore, recsAfter int64
	for _, e := range before.Entries {
		recsBefore += e.RecordCount
	}
	for _, e := range m.Entries {
		recsAfter += e.RecordCount
	}
	if m.ID() != after.ID() || m.CleanerPoint != compacted.CleanerPoint || m.Entries[0].BaseOffset != before.Entries[0].BaseOffset ||
		len(m.Entries) >= len(before.Entries) || recsAfter >= recsBefore {
		t.Fatalf("bucket manifest %s: cleaner point %d, %d objects with %d records (before: %d with %d)",
			m.ID(), m.CleanerPoint, len(m.Entries), recsAfter, len(before.Entries), recsBefore)
	}
	t.Logf("bucket: %d objects with %d records -> %d objects with %d records", len(before.Entries), recsBefore, len(m.Entries), recsAfter)

	close(reader.resume)
	select {
	case <-reader.done:
	case <-ctx.Done():
		t.Fatal("the early consumer did not reach the end")
	}
	if reader.err != "" {
		t.Fatalf("early consumer: %s", reader.err)
	}
	reader.mu.Lock()
	defer reader.mu.Unlock()
	if n := len(reader.recs); n == 0 || reader.recs[n-1].Offset != end-1 {
		t.Fatalf("early consumer read %d records, not to the end %d", n, end)
	}
	if int64(len(reader.recs)) >= end {
		t.Fatalf("early consumer read all %d records: it never read the compacted history", end)
	}
}
