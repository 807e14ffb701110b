package main

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// idleResult is the outcome of the idle-partitions phase.
type idleResult struct {
	partitions  int
	topics      int
	baseRSS     int64 // VmRSS right after start
	baseFDs     int
	createdRSS  int64 // VmRSS after the topics were created, before any record
	createdFDs  int
	rss         int64 // VmRSS after every partition has a record
	hwm         int64 // VmHWM at the end
	fds         int
	createTime  time.Duration
	produceTime time.Duration
	err         error
	logProblems int
}

// runIdle starts a fresh broker, creates cfg.idlePartitions partitions in
// topics of at most 100 partitions, writes one small record to each, and
// reads the broker's RSS and descriptor count.
func runIdle(ctx context.Context, cfg config, base string) (res idleResult) {
	res.partitions = cfg.idlePartitions
	b, err := startBroker(ctx, cfg.strataBin, base, "idle")
	if err != nil {
		res.err = fmt.Errorf("start broker: %w", err)
		return res
	}
	defer func() {
		if err := b.Stop(); err != nil && res.err == nil {
			res.err = err
		}
		res.logProblems, _, _ = b.logProblems(0)
		b.reportLog("strata idle")
	}()
	res.baseRSS, _ = procStatusBytes(b.Pid(), "VmRSS")
	res.baseFDs, _ = openFDs(b.Pid())

	layout := idleLayout(cfg.idlePartitions, 100)
	res.topics = len(layout)
	start := time.Now()
	if err := createIdleTopics(ctx, []string{b.addr}, layout); err != nil {
		res.err = err
		return res
	}
	res.createTime = time.Since(start)
	res.createdRSS, _ = procStatusBytes(b.Pid(), "VmRSS")
	res.createdFDs, _ = openFDs(b.Pid())
	start = time.Now()
	if err := produceOnePerPartition(ctx, []string{b.addr}, layout); err != nil {
		res.err = withAlive(err, target{alive: b.alive})
		return res
	}
	res.produceTime = time.Since(start)
	time.Sleep(time.Second) // let the client's connections close and the broker settle
	pid := b.Pid()
	if res.rss, err = procStatusBytes(pid, "VmRSS"); err == nil {
		res.hwm, err = procStatusBytes(pid, "VmHWM")
	}
	if err == nil {
		res.fds, err = openFDs(pid)
	}
	res.err = err
	return res
}

// idleTopic is one topic of the idle phase.
type idleTopic struct {
	name       string
	partitions int32
}

// idleLayout splits n partitions into topics of at most per partitions.
func idleLayout(n, per int) []idleTopic {
	var out []idleTopic
	for i := 0; n > 0; i++ {
		p := min(n, per)
		out = append(out, idleTopic{name: fmt.Sprintf("idle-%04d", i), partitions: int32(p)})
		n -= p
	}
	return out
}

// createIdleTopics creates the layout's topics, grouped by partition count.
func createIdleTopics(ctx context.Context, seeds []string, layout []idleTopic) error {
	byCount := map[int32][]string{}
	for _, t := range layout {
		byCount[t.partitions] = append(byCount[t.partitions], t.name)
	}
	for n, names := range byCount {
		if err := createTopics(ctx, seeds, n, names...); err != nil {
			return err
		}
	}
	return nil
}

// produceOnePerPartition writes one small record to every partition of the
// layout (acks=-1, idempotent) so that every partition's log is open.
func produceOnePerPartition(ctx context.Context, seeds []string, layout []idleTopic) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	)
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c := &collector{}
	for _, t := range layout {
		for p := range t.partitions {
			cl.Produce(ctx, &kgo.Record{Topic: t.name, Partition: p, Value: []byte("idle")}, c.done)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush after %d records: %w", c.records.Load(), err)
	}
	if err := c.err(); err != nil {
		return fmt.Errorf("%d of %d records failed, first: %w", c.failed.Load(), c.failed.Load()+c.records.Load(), err)
	}
	return nil
}
