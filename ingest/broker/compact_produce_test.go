package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
)

// TestCompactProduceRequiresKeys: a topic whose cleanup.policy contains
// compact refuses a batch holding a record with a null key (INVALID_RECORD,
// nothing appended) and accepts keyed ones; other topics accept both.
func TestCompactProduceRequiresKeys(t *testing.T) {
	b, err := Open(Config{DataDir: t.TempDir(), MinFreeBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	now := time.Now().UnixMilli()
	build := func(codec int, keys ...[]byte) []byte {
		recs := make([]batch.Record, len(keys))
		for i, k := range keys {
			recs[i] = batch.Record{Key: k, Value: []byte("v")}
		}
		return batch.Build(batch.BuildOptions{Codec: codec, BaseTimestamp: now}, recs...)
	}
	for _, tp := range []struct{ topic, policy string }{{"t-c", "compact"}, {"t-dc", "delete,compact"}, {"t-d", "delete"}} {
		topic, policy := tp.topic, tp.policy
		if _, err := b.CreateTopic(topic, 1, 1, map[string]string{"cleanup.policy": policy}, false); err != nil {
			t.Fatal(err)
		}
		p, err := b.Partition(topic, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, codec := range []int{batch.CodecNone, batch.CodecZstd} {
			end := p.LogEndOffset()
			_, err := p.Produce(build(codec, []byte("a"), nil, []byte("c")), true)
			if policy == "delete" {
				if err != nil {
					t.Fatalf("%s: keyless record refused: %v", policy, err)
				}
				continue
			}
			if !errors.Is(err, batch.ErrInvalidRecord) || batch.CodeOf(err) != 87 {
				t.Fatalf("%s/%s: keyless record: %v", policy, batch.CodecName(codec), err)
			}
			if p.LogEndOffset() != end {
				t.Fatalf("%s: refused batch was appended", policy)
			}
			res, err := p.Produce(build(codec, []byte("a"), []byte{}), true)
			if err != nil || res.BaseOffset != end {
				t.Fatalf("%s: keyed batch: %+v %v", policy, res, err)
			}
		}
	}
	// Altering the policy takes effect for the next produce.
	if err := b.SetTopicConfigs("t-d", map[string]string{"cleanup.policy": "compact"}, false); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Partition("t-d", 0)
	if _, err := p.Produce(build(batch.CodecNone, nil), true); !errors.Is(err, batch.ErrInvalidRecord) {
		t.Fatalf("after altering to compact: %v", err)
	}
}

// TestCompactOnlyKeepsOldData: retention.ms and retention.bytes delete old
// segments only when cleanup.policy contains delete; a compact-only topic
// keeps them (the cleaner, not retention, removes superseded records).
func TestCompactOnlyKeepsOldData(t *testing.T) {
	b, err := Open(Config{DataDir: t.TempDir(), MinFreeBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	old := time.Now().Add(-time.Hour).UnixMilli()
	for _, policy := range []string{"compact", "compact,delete"} {
		topic := "t-" + strings.ReplaceAll(policy, ",", "-")
		cfg := map[string]string{"cleanup.policy": policy, "retention.ms": "1000", "retention.bytes": "1", "segment.bytes": "1024"}
		if _, err := b.CreateTopic(topic, 1, 1, cfg, false); err != nil {
			t.Fatal(err)
		}
		p, err := b.Partition(topic, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			rec := batch.Record{Key: []byte{byte(i)}, Value: make([]byte, 200)}
			if _, err := p.Produce(batch.Build(batch.BuildOptions{BaseTimestamp: old}, rec), true); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = p.WaitDurable(ctx, p.LogEndOffset()-1)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		b.ApplyRetention()
		start := p.log.StartOffset()
		if policy == "compact" && start != 0 {
			t.Fatalf("%s: retention moved the log start to %d", policy, start)
		}
		if policy == "compact,delete" && start == 0 {
			t.Fatalf("%s: retention deleted nothing", policy)
		}
	}
}
