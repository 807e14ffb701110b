package e2e

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCrashSIGKILLDuringIdempotentProduce kills the strata process several
// times while an idempotent acks=all producer keeps writing through the
// restarts, then checks that every acknowledged record is there, in order,
// exactly once, and that the log takes new writes.
func TestCrashSIGKILLDuringIdempotentProduce(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	p := startProc(t, dir, port, "--num-partitions", "4")
	addr := p.addr
	const partitions = 4
	rounds := 8
	if os.Getenv("STRATA_SOAK") != "" {
		rounds = 40
	}

	cl := newClient(t, addr,
		kgo.DefaultProduceTopic("crash"),
		kgo.AllowAutoTopicCreation(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(2*time.Minute),
		kgo.RetryTimeout(2*time.Minute),
		kgo.MaxBufferedRecords(2000),
	)

	var (
		mu    sync.Mutex
		acked = map[int]bool{}
		errs  []error
	)
	ctx, cancel := context.WithCancel(context.Background())
	produced := make(chan int, 1)
	go func() {
		i := 0
		defer func() { produced <- i }()
		for ctx.Err() == nil {
			v := i
			r := &kgo.Record{Partition: int32(v % partitions), Value: []byte(strconv.Itoa(v))}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if ctx.Err() == nil {
						errs = append(errs, err)
					}
					return
				}
				acked[v] = true
			})
			i++
		}
	}()

	waitAcked := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("producer made no progress: %d acked, want %d\n%s", len(acked), n, p.logs())
	}
	for round := 0; round < rounds; round++ {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		start := time.Now()
		waitAcked(n + 2000)
		p.kill()
		time.Sleep(100 * time.Millisecond)
		p = startProc(t, dir, port)
		t.Logf("round %d: %d acked before the kill, %v", round, n, time.Since(start))
	}
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	waitAcked(n + 1000)
	cancel()
	total := <-produced
	if err := cl.Flush(context.Background()); err != nil && err != context.Canceled {
		t.Logf("flush: %v", err)
	}
	cl.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d produce errors while the broker restarted, first: %v", len(errs), errs[0])
	}

	// Read everything back from a fresh client, up to the end offsets.
	rctx := ctxT(t, time.Minute)
	ends, err := newAdmin(t, addr).ListEndOffsets(rctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	var inLog int64
	ends.Each(func(o kadm.ListedOffset) { inLog += o.Offset })
	cons := newClient(t, addr, kgo.ConsumeTopics("crash"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	seen := map[int]bool{}
	last := map[int32]int{}
	for p := int32(0); p < partitions; p++ {
		last[p] = -1
	}
	for int64(len(seen)) < inLog {
		fs := cons.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read %d of %d records before timeout", len(seen), inLog)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		for _, r := range fs.Records() {
			v, err := strconv.Atoi(string(r.Value))
			if err != nil {
				t.Fatalf("partition %d offset %d: bad value %q", r.Partition, r.Offset, r.Value)
			}
			if seen[v] {
				t.Fatalf("value %d read twice (partition %d offset %d)", v, r.Partition, r.Offset)
			}
			seen[v] = true
			if v <= last[r.Partition] {
				t.Fatalf("partition %d: value %d after %d: out of order", r.Partition, v, last[r.Partition])
			}
			last[r.Partition] = v
		}
	}
	missing := 0
	for v := range acked {
		if !seen[v] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged records missing after %d SIGKILLs", missing, len(acked), rounds)
	}
	t.Logf("%d SIGKILLs: %d records produced, %d acknowledged, %d read back, none lost or duplicated", rounds, total, len(acked), len(seen))

	// The log still takes writes.
	cl2 := newClient(t, addr, kgo.DefaultProduceTopic("crash"))
	produceSync(t, ctxT(t, 30*time.Second), cl2, []*kgo.Record{{Value: []byte("after")}})
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
}
