package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTxnTieredReadCommitted: a tiered topic whose history (moved to the
// bucket, none of it left on local disk) holds committed and aborted
// transactions of two producers, interleaved and spanning segments, is read
// back read_committed without a single aborted record, and read_uncommitted
// with all of them. While a transaction is open, nothing at or past its
// first offset is uploaded (the last stable offset bounds the tier).
func TestTxnTieredReadCommitted(t *testing.T) {
	dataDir, storeDir := t.TempDir(), t.TempDir()
	ip := startInproc(t, dataDir, withTier(t, storeDir))
	ctx := ctxT(t, 2*time.Minute)
	adm := newAdmin(t, ip.addr)
	const topic = "tiered-txn"
	cfgs := map[string]*string{
		"remote.storage.enable": ptr("true"),
		"segment.bytes":         ptr("16384"),
		"local.retention.bytes": ptr("1"),
		"retention.bytes":       ptr("-1"),
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, cfgs, topic); err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression())}
	committer := newClient(t, ip.addr, append(opts, kgo.TransactionalID("tier-commit"))...)
	aborter := newClient(t, ip.addr, append(opts, kgo.TransactionalID("tier-abort"))...)
	value := func(tag string, i, j int) []byte {
		return append([]byte(fmt.Sprintf("%s-%d-%d-", tag, i, j)), bytes.Repeat([]byte{'x'}, 200)...)
	}
	var committed, all []string
	// Both producers keep a transaction open at once: their records
	// interleave in the log, and each transaction (about 40 KB) spans
	// segments of 16 KB.
	for i := range 12 {
		for _, cl := range []*kgo.Client{committer, aborter} {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
		}
		for j := range 200 {
			cl, tag := committer, "c"
			if j%2 == 1 {
				cl, tag = aborter, "a"
			}
			v := value(tag, i, j)
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			all = append(all, string(v))
			if tag == "c" {
				committed = append(committed, string(v))
			}
		}
		if err := committer.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		if err := aborter.EndTransaction(ctx, kgo.TryAbort); err != nil {
			t.Fatal(err)
		}
	}
	p := tieredPartition(t, ip.b, topic)
	end := p.LogEndOffset()
	// Plain records after them fill the active segment, so every
	// transaction lands in a sealed (uploadable) one.
	plain := newClient(t, ip.addr, opts...)
	for i := range 200 {
		v := value("plain", 0, i)
		if err := plain.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		all, committed = append(all, string(v)), append(committed, string(v))
	}
	waitFor(t, "the transactions to move to the bucket", time.Minute, func() bool {
		return p.Tier().RemoteEndOffset() >= end && p.LocalStartOffset() >= end
	})

	got := consumeIsolated(t, ip.addr, topic, true, len(committed), 3*time.Second)
	for _, v := range got {
		if strings.HasPrefix(v, "a-") {
			t.Fatalf("read_committed returned aborted record %.12s… from the bucket", v)
		}
	}
	if len(got) != len(committed) || !sameSet(got, committed) {
		t.Fatalf("read_committed from the bucket: %d records, want %d", len(got), len(committed))
	}
	got = consumeIsolated(t, ip.addr, topic, false, len(all), 3*time.Second)
	if len(got) != len(all) || !sameSet(got, all) {
		t.Fatalf("read_uncommitted from the bucket: %d records, want %d", len(got), len(all))
	}

	// An open transaction stops uploads at its first offset.
	if err := committer.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := committer.ProduceSync(ctx, &kgo.Record{Value: value("open", 0, 0)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	openAt := p.LogEndOffset() - 1
	for i := range 300 {
		if err := plain.ProduceSync(ctx, &kgo.Record{Value: value("plain", 1, i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if lso := p.LastStableOffset(); lso != openAt {
		t.Fatalf("LSO %d with a transaction open at %d", lso, openAt)
	}
	time.Sleep(500 * time.Millisecond) // ten tier passes
	if re := p.Tier().RemoteEndOffset(); re > openAt {
		t.Fatalf("uploaded up to %d past the open transaction at %d", re, openAt)
	}
	if err := committer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "uploads past the committed transaction", time.Minute, func() bool {
		return p.Tier().RemoteEndOffset() > openAt+1
	})
}
