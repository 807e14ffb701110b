package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTxnCompactedReadCommitted: the log cleaner compacts a topic that
// holds committed and aborted transactions among plain updates; afterwards
// a read_committed consumer still sees no aborted value, and the last value
// of every key is its last committed one.
func TestTxnCompactedReadCommitted(t *testing.T) {
	ip := startInproc(t, "", withCleaner(20*time.Millisecond))
	ctx := ctxT(t, 2*time.Minute)
	adm := newAdmin(t, ip.addr)
	const topic = "txn-compacted"
	cfg := map[string]*string{
		"cleanup.policy": ptr("compact"), "segment.bytes": ptr("8192"),
		"min.cleanable.dirty.ratio": ptr("0.01"), "delete.retention.ms": ptr("86400000"),
	}
	if r, err := adm.CreateTopic(ctx, 1, 1, cfg, topic); err != nil || r.Err != nil {
		t.Fatalf("create: %v %v", err, r.Err)
	}
	plain := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic))
	tx := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.TransactionalID("compacted"))
	const keys = 40
	latest := map[string]string{}
	written := 200 // the filler below
	put := func(cl *kgo.Client, k int, v string) {
		t.Helper()
		key := fmt.Sprintf("k%02d", k)
		val := v + strings.Repeat(".", 60)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: []byte(val)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		written++
		if !strings.HasPrefix(v, "a-") {
			latest[key] = val
		}
	}
	for round := range 6 {
		for k := range keys {
			put(plain, k, fmt.Sprintf("p-%d", round))
		}
		for i, commit := range []bool{true, false} {
			if err := tx.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			tag := "c"
			if !commit {
				tag = "a"
			}
			for k := i; k < keys; k += 3 {
				put(tx, k, fmt.Sprintf("%s-%d", tag, round))
			}
			if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Filler keys push everything above into sealed, cleanable segments.
	for i := range 200 {
		if err := plain.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("f%03d", i)), Value: bytes.Repeat([]byte{'f'}, 60)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p, err := ip.b.Partition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	end := p.LogEndOffset()
	waitFor(t, "a cleaner pass over the transactions", time.Minute, func() bool {
		return p.Log().CleanerPoint() > end/2
	})

	cl := newClient(t, ip.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	last := map[string]string{}
	n := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if strings.HasPrefix(string(r.Value), "a-") {
				t.Fatalf("read_committed returned aborted value %.6s of %s at %d after compaction", r.Value, r.Key, r.Offset)
			}
			if r.Key[0] == 'k' {
				last[string(r.Key)] = string(r.Value)
			}
			done = done || r.Offset >= end-1
		})
		if done {
			break
		}
	}
	for k, v := range latest {
		if last[k] != v {
			t.Errorf("key %s: last value %.6s, want %.6s", k, last[k], v)
		}
	}
	if n >= written-keys {
		t.Errorf("read %d records of %d written: the cleaner removed almost nothing", n, written)
	}
	t.Logf("%d records written, %d read back read_committed after compaction", written, n)
}
