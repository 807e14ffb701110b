package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceSync produces records with the client and fails the test on any
// error; it returns the records with their assigned offsets.
func produceSync(t testing.TB, ctx context.Context, cl *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads n records from topic starting at the given offset for
// every partition.
func consumeAll(t testing.TB, addr, topic string, n int, start kgo.Offset) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start), kgo.FetchMaxWait(200*time.Millisecond))
	ctx := ctxT(t, 60*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	cl.Close()
	return out
}

func TestProduceConsumeAllCodecs(t *testing.T) {
	ip := startInproc(t, "")
	adm := newAdmin(t, ip.addr)
	ctx := ctxT(t, 2*time.Minute)
	codecs := map[string]kgo.CompressionCodec{
		"none":   kgo.NoCompression(),
		"gzip":   kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(),
		"lz4":    kgo.Lz4Compression(),
		"zstd":   kgo.ZstdCompression(),
	}
	const partitions, perPartition = 8, 250
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "codec-" + name
			if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			// Idempotent (the default) with acks=all (the default).
			cl := newClient(t, ip.addr, kgo.ProducerBatchCompression(codec), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			var recs []*kgo.Record
			for p := 0; p < partitions; p++ {
				for i := 0; i < perPartition; i++ {
					recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Key: []byte(strconv.Itoa(i)), Value: []byte(fmt.Sprintf("%s-%d-%d", name, p, i))})
				}
			}
			produceSync(t, ctx, cl, recs)
			got := consumeAll(t, ip.addr, topic, partitions*perPartition, kgo.NewOffset().AtStart())
			next := map[int32]int64{}
			for _, r := range got {
				if r.Offset != next[r.Partition] {
					t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
				}
				want := fmt.Sprintf("%s-%d-%d", name, r.Partition, r.Offset)
				if string(r.Value) != want {
					t.Fatalf("partition %d offset %d: value %q, want %q", r.Partition, r.Offset, r.Value, want)
				}
				next[r.Partition]++
			}
			for p := int32(0); p < partitions; p++ {
				if next[p] != perPartition {
					t.Fatalf("partition %d: read %d records, want %d", p, next[p], perPartition)
				}
			}
		})
	}
}

func TestConsumeFromOffsetAndTimestamp(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, time.Minute)
	topic := "seek"
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	// Several produce calls so that the records span several batches.
	for i := 0; i < len(recs); i += 10 {
		produceSync(t, ctx, cl, recs[i:i+10])
	}

	got := consumeAll(t, ip.addr, topic, 60, kgo.NewOffset().At(40))
	if got[0].Offset != 40 || string(got[0].Value) != "40" {
		t.Fatalf("from offset 40: first record offset %d value %q", got[0].Offset, got[0].Value)
	}

	ts := base.Add(55*time.Second + 500*time.Millisecond)
	got = consumeAll(t, ip.addr, topic, 44, kgo.NewOffset().AfterMilli(ts.UnixMilli()))
	if got[0].Offset != 56 {
		t.Fatalf("from timestamp: first offset %d, want 56", got[0].Offset)
	}

	adm := newAdmin(t, ip.addr)
	lo, err := adm.ListOffsetsAfterMilli(ctx, ts.UnixMilli(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lo.Lookup(topic, 0); o.Offset != 56 || o.Timestamp != base.Add(56*time.Second).UnixMilli() {
		t.Fatalf("ListOffsets by time: %+v, want offset 56", o)
	}
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := end.Lookup(topic, 0); o.Offset != 100 {
		t.Fatalf("end offset %d, want 100", o.Offset)
	}
	// Max timestamp (-3): the last record has the largest timestamp.
	mt, err := adm.ListMaxTimestampOffsets(ctx, topic)
	if err == nil {
		if o, _ := mt.Lookup(topic, 0); o.Offset != 99 {
			t.Fatalf("max timestamp offset %d, want 99", o.Offset)
		}
	}
	_ = kadm.ListedOffsets{}
}
