package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func withCleaner(backoff time.Duration) inprocOpt {
	return func(b *brokerCfg, _ *wireCfg) { b.CleanerBackoff = backoff }
}

// compactWorkload produces updates and deletes over a key space with an
// idempotent kgo producer, then distinct filler keys until the updates sit
// in sealed segments, and returns the latest record of each update key
// (value nil for a delete) by key.
func compactWorkload(t *testing.T, ctx context.Context, cl *kgo.Client, keys, updates int, seed uint64) map[string]*kgo.Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	latest := map[string]*kgo.Record{}
	var batch []*kgo.Record
	flush := func() {
		res := cl.ProduceSync(ctx, batch...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		for _, r := range res {
			if k := string(r.Record.Key); k[0] == 'k' {
				if old, ok := latest[k]; !ok || r.Record.Offset > old.Offset {
					latest[k] = r.Record
				}
			}
		}
		batch = batch[:0]
	}
	for i := range updates {
		k := fmt.Sprintf("k%05d", rng.IntN(keys))
		var v []byte
		if rng.IntN(10) > 0 { // one in ten is a delete (tombstone)
			v = fmt.Appendf(nil, "%s=%d", k, i)
		}
		batch = append(batch, &kgo.Record{Key: []byte(k), Value: v})
		if len(batch) == 500 {
			flush()
		}
	}
	flush()
	// Fillers with unique keys push the updates out of the active segment,
	// which is never compacted.
	for i := range 2000 {
		v := make([]byte, 100) // random: producer compression must not shrink it
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		batch = append(batch, &kgo.Record{Key: fmt.Appendf(nil, "f%05d", i), Value: v})
	}
	flush()
	return latest
}

// readCompacted consumes the topic from offset 0 to its end and returns the
// records of update keys.
func readCompacted(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	admCl.Close()
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for done := false; !done; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume: %v", ctx.Err())
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Key[0] == 'k' {
				out = append(out, r)
			}
			done = done || r.Offset >= end.Offset-1
		})
	}
	return out
}

// compactedView checks what a consumer from 0 sees against the latest
// records: it reports whether the log is fully compacted (exactly the latest
// record of each key, tombstones included when keepTombstones, at their
// original offsets, in order) and fails on anything no compaction can
// produce (a value that was never the key's, offsets out of order).
func compactedView(t *testing.T, got []*kgo.Record, latest map[string]*kgo.Record, keepTombstones bool) bool {
	t.Helper()
	want := 0
	for _, r := range latest {
		if r.Value != nil || keepTombstones {
			want++
		}
	}
	last := int64(-1)
	done := len(got) == want
	for _, r := range got {
		if r.Offset <= last {
			t.Fatalf("offset %d after %d", r.Offset, last)
		}
		last = r.Offset
		l := latest[string(r.Key)]
		if l == nil {
			t.Fatalf("record of unknown key %q", r.Key)
		}
		if r.Offset > l.Offset {
			t.Fatalf("key %s at offset %d, beyond its latest %d", r.Key, r.Offset, l.Offset)
		}
		if r.Offset == l.Offset && string(r.Value) != string(l.Value) {
			t.Fatalf("key %s at offset %d: value %q, produced %q", r.Key, r.Offset, r.Value, l.Value)
		}
		if r.Offset != l.Offset || (r.Value == nil && !keepTombstones) {
			done = false
		}
	}
	return done
}

// TestCompactedTopic: many updates and deletes over a key space on a
// compacted topic with small segments; the broker's cleaner compacts it, and
// a consumer from offset 0 then sees exactly the latest record of each key
// at its original offset — tombstones while delete.retention.ms has not
// passed, none after. The idempotent producer keeps working across
// compaction and a restart.
func TestCompactedTopic(t *testing.T) {
	dir := t.TempDir()
	ip := startInproc(t, dir, withCleaner(20*time.Millisecond))
	ctx := ctxT(t, 2*time.Minute)
	adm := newAdmin(t, ip.addr)
	const topic = "changelog"
	cfg := map[string]*string{
		"cleanup.policy": ptr("compact"), "segment.bytes": ptr("65536"),
		"min.cleanable.dirty.ratio": ptr("0.01"), "delete.retention.ms": ptr("86400000"),
	}
	if r, err := adm.CreateTopic(ctx, 1, 1, cfg, topic); err != nil || r.Err != nil {
		t.Fatalf("create: %v %v", err, r.Err)
	}
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	latest := compactWorkload(t, ctx, cl, 500, 20000, 1)

	// waitCompacted waits until a consumer from 0 sees exactly the latest
	// record of each key, with its tombstones (keep), without them (drop),
	// or with any of them (either: old tombstones may be going meanwhile).
	type tombs int
	const (
		keep tombs = iota
		drop
		either
	)
	waitCompacted := func(mode tombs) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			got := readCompacted(t, ip.addr, topic)
			done := false
			switch mode {
			case keep, drop:
				done = compactedView(t, got, latest, mode == keep)
			case either:
				// Only latest records, and every live key's among them.
				done = compactedView(t, got, latest, true) || compactedView(t, got, latest, false)
				if !done {
					live, atLatest := 0, true
					for _, r := range latest {
						if r.Value != nil {
							live++
						}
					}
					values := 0
					for _, r := range got {
						atLatest = atLatest && r.Offset == latest[string(r.Key)].Offset
						if r.Value != nil {
							values++
						}
					}
					done = atLatest && values == live
				}
			}
			if done {
				return
			}
			if time.Now().After(deadline) {
				if p, err := ip.b.Partition(topic, 0); err == nil {
					plan, _ := p.CompactionPlan(time.Now())
					t.Logf("plan: %s\nsegments: %+v cleaner point %d", plan, p.Log().Segments(), p.Log().CleanerPoint())
				}
				t.Fatalf("not compacted after 60 s (tombstones: %v, 0 kept, 1 gone, 2 either)", mode)
			}
		}
	}
	waitCompacted(keep)

	// More updates through the same idempotent producer, then a restart:
	// compaction continues and state survives.
	more := compactWorkload(t, ctx, cl, 500, 5000, 2)
	for k, r := range more {
		latest[k] = r
	}
	waitCompacted(keep)
	ip.stop()
	ip = startInproc(t, dir, withCleaner(20*time.Millisecond))
	adm = newAdmin(t, ip.addr)
	cl = newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))

	// Tombstones go once delete.retention.ms has passed for them.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "delete.retention.ms", Value: ptr("1")}}, topic); err != nil {
		t.Fatal(err)
	}
	more = compactWorkload(t, ctx, cl, 500, 2000, 3)
	for k, r := range more {
		latest[k] = r
	}
	// As in Kafka, a tombstone survives the pass that first cleans it (a
	// consumer that read the old value still sees the delete) and goes on a
	// later pass over the clean part: compact these updates first (that
	// pass may already drop the older tombstones), then make the log dirty
	// again.
	waitCompacted(either)
	compactWorkload(t, ctx, cl, 500, 0, 4)
	waitCompacted(drop)
}
