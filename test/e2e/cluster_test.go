package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cluster is three strata processes on loopback forming one quorum.
type cluster struct {
	t      *testing.T
	n      int
	dirs   []string
	ports  []int
	ctl    []int
	procs  []*proc
	extra  []string
	voters string
}

func newCluster(t *testing.T, n int, extra ...string) *cluster {
	c := &cluster{t: t, n: n, extra: extra}
	base := t.TempDir()
	var vs []string
	for i := 0; i < n; i++ {
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("b%d", i)))
		c.ports = append(c.ports, freePort(t))
		c.ctl = append(c.ctl, freePort(t))
		vs = append(vs, fmt.Sprintf("%d@127.0.0.1:%d", i, c.ctl[i]))
	}
	c.voters = strings.Join(vs, ",")
	c.procs = make([]*proc, n)
	for i := 0; i < n; i++ {
		c.procs[i] = c.launch(i)
	}
	for _, p := range c.procs {
		p.waitReady()
	}
	return c
}

func (c *cluster) launch(i int) *proc {
	args := append([]string{
		"--node-id", strconv.Itoa(i),
		"--controller-listen", fmt.Sprintf("127.0.0.1:%d", c.ctl[i]),
		"--controller-voters", c.voters,
		"--broker-heartbeat-interval", "200ms", "--broker-session-timeout", "2s",
		"--replica-lag-time-max", "3s",
	}, c.extra...)
	return launchProc(c.t, c.dirs[i], c.ports[i], args...)
}

func (c *cluster) restart(i int) {
	c.procs[i] = c.launch(i)
	c.procs[i].waitReady()
}

func (c *cluster) seeds() []string {
	var out []string
	for _, p := range c.ports {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return out
}

// controllerOf returns the controller the cluster reports.
func controllerOf(ctx context.Context, adm *kadm.Client) (int32, error) {
	md, err := adm.Metadata(ctx)
	if err != nil {
		return -1, err
	}
	return md.Controller, nil
}

// leaderOf returns the leader of a partition as the cluster reports it.
func leaderOf(ctx context.Context, adm *kadm.Client, topic string, p int32) (int32, []int32, error) {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return -1, nil, err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return -1, nil, fmt.Errorf("topic %s: %v", topic, td.Err)
	}
	pd, ok := td.Partitions[p]
	if !ok {
		return -1, nil, fmt.Errorf("partition %d missing", p)
	}
	return pd.Leader, pd.ISR, pd.Err
}

// TestClusterFailover: three brokers on one quorum, a topic with
// replication.factor=3 and min.insync.replicas=2, idempotent acks=all
// producers running while the leader of a partition is SIGKILLed and later
// restarted, and then the controller. Every acknowledged record is read
// back exactly once and in order; a consumer reading all along never saw a
// record that is not in the final log at the same offset; the restarted
// broker rejoins every ISR.
func TestClusterFailover(t *testing.T) {
	// make soak (STRATA_SOAK=1) repeats it with new seeds for
	// STRATA_SOAK_MINUTES (default 20); make test runs seed 1.
	if os.Getenv("STRATA_SOAK") == "" {
		testClusterFailover(t, 1)
		return
	}
	minutes, _ := strconv.Atoi(os.Getenv("STRATA_SOAK_MINUTES"))
	if minutes <= 0 {
		minutes = 20
	}
	end := time.Now().Add(time.Duration(minutes) * time.Minute)
	for round := 0; time.Now().Before(end); round++ {
		seed := time.Now().UnixNano()
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) { testClusterFailover(t, seed) })
		if t.Failed() {
			return
		}
	}
}

func testClusterFailover(t *testing.T, seed int64) {
	const (
		topic      = "replicated"
		partitions = 3
	)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	c := newCluster(t, 3)
	ctx := ctxT(t, 3*time.Minute)
	adm := kadm.NewClient(newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...)))
	resp, err := adm.CreateTopic(ctx, partitions, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, topic)
	if err != nil || resp.Err != nil {
		for i, p := range c.procs {
			t.Logf("broker %d log tail:\n%s", i, tail(p.logs(), 30))
		}
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}

	// Producer: values are per-partition sequence numbers.
	pcl := newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond), kgo.RecordRetries(1<<30),
		kgo.RetryTimeout(time.Minute), kgo.ProduceRequestTimeout(10*time.Second))
	var (
		mu     sync.Mutex
		acked  = map[int32][]int{} // partition → acknowledged sequence numbers
		lastOK time.Time
		errs   = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := int32(0); p < partitions; p++ {
		wg.Add(1)
		go func(p int32) {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				rec := &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(seq))}
				err := pcl.ProduceSync(ctx, rec).FirstErr()
				mu.Lock()
				if err == nil {
					acked[p] = append(acked[p], seq)
					lastOK = time.Now()
				} else {
					errs[err.Error()]++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(p)
	}
	// A consumer reading all along: what it saw must stay in the log.
	seen := map[int32]map[int64]string{}
	var seenMu sync.Mutex
	ccl := newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	cctx, ccancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for cctx.Err() == nil {
			fs := ccl.PollFetches(cctx)
			fs.EachRecord(func(r *kgo.Record) {
				seenMu.Lock()
				if seen[r.Partition] == nil {
					seen[r.Partition] = map[int64]string{}
				}
				seen[r.Partition][r.Offset] = string(r.Value)
				seenMu.Unlock()
			})
		}
	}()
	// A group member committing as it consumes; its committed offsets
	// must never go back, through coordinator moves.
	const groupID = "failover-group"
	gcl := newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic), kgo.ConsumerGroup(groupID),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitInterval(200*time.Millisecond),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.SessionTimeout(20*time.Second))
	wg.Add(2)
	go func() {
		defer wg.Done()
		for cctx.Err() == nil {
			gcl.PollFetches(cctx)
		}
	}()
	committed := map[int32]int64{}
	var backwards []string
	go func() {
		defer wg.Done()
		for cctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			offs, err := adm.FetchOffsets(cctx, groupID)
			if err != nil {
				continue // no coordinator for a moment
			}
			seenMu.Lock()
			for p := int32(0); p < partitions; p++ {
				if o, ok := offs.Lookup(topic, p); ok && o.Err == nil {
					if o.At < committed[p] {
						backwards = append(backwards, fmt.Sprintf("partition %d: %d after %d", p, o.At, committed[p]))
					}
					committed[p] = max(committed[p], o.At)
				}
			}
			seenMu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range acked {
			n += len(a)
		}
		return n
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				for i, p := range c.procs {
					t.Logf("broker %d log tail:\n%s", i, tail(p.logs(), 60))
				}
				mu.Lock()
				t.Logf("produce errors so far: %v", errs)
				mu.Unlock()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("records to be acknowledged", 30*time.Second, func() bool { return count() > 300 })
	// The group has committed before the first kill, so that the check of
	// its offsets below covers the coordinator moves (failovers take a few
	// seconds; the whole run could end before a first join otherwise).
	waitFor("the group's first commit", 60*time.Second, func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		return len(committed) > 0
	})

	kill := func(victim int, why string) {
		t.Helper()
		before := count()
		killedAt := time.Now()
		c.procs[victim].kill()
		// The survivors keep acknowledging acks=all writes.
		waitFor("produce to resume after killing broker "+strconv.Itoa(victim), 60*time.Second, func() bool {
			mu.Lock()
			ok := lastOK.After(killedAt)
			mu.Unlock()
			return ok && count() > before+50
		})
		mu.Lock()
		t.Logf("%s: SIGKILLed broker %d; acks resumed (first ack after the kill within %v)", why, victim, lastOK.Sub(killedAt).Round(time.Millisecond))
		mu.Unlock()
		c.restart(victim)
		// It catches up and rejoins the ISR of every partition.
		waitFor("broker "+strconv.Itoa(victim)+" to rejoin every ISR", 60*time.Second, func() bool {
			for p := int32(0); p < partitions; p++ {
				_, isr, err := leaderOf(ctx, adm, topic, p)
				if err != nil || len(isr) != 3 {
					return false
				}
			}
			return true
		})
		waitFor("more acknowledgements", 30*time.Second, func() bool { return count() > before+200 })
	}
	leader, _, err := leaderOf(ctx, adm, topic, int32(rng.Intn(partitions)))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(rng.Intn(500)) * time.Millisecond)
	kill(int(leader), "partition leader")
	ctl, err := controllerOf(ctx, adm)
	if err != nil || ctl < 0 {
		t.Fatalf("controller: %d %v", ctl, err)
	}
	kill(int(ctl), "controller")
	leader, _, _ = leaderOf(ctx, adm, topic, int32(rng.Intn(partitions)))
	time.Sleep(time.Duration(rng.Intn(500)) * time.Millisecond)
	kill(int(leader), "another partition leader")

	// Controlled shutdown: SIGTERM a leader; by the time it has exited,
	// its partitions have other leaders already (a crash would leave them
	// led by it until its session times out).
	leader, _, _ = leaderOf(ctx, adm, topic, int32(rng.Intn(partitions)))
	before := count()
	if err := c.procs[leader].term(); err != nil {
		t.Fatal(err)
	}
	// (Within a second: the brokers answering Metadata apply the change a
	// moment after the controller; fencing by the 2 s session timeout
	// would take longer.)
	stopped := time.Now()
	waitFor("new leaders right after the controlled shutdown", time.Second, func() bool {
		for p := int32(0); p < partitions; p++ {
			if l, _, err := leaderOf(ctx, adm, topic, p); err != nil || l == leader || l < 0 {
				return false
			}
		}
		return true
	})
	t.Logf("controlled shutdown of broker %d: every partition had another leader %v after it exited", leader, time.Since(stopped).Round(time.Millisecond))
	waitFor("acks after the controlled shutdown", 30*time.Second, func() bool { return count() > before+100 })
	c.restart(int(leader))

	close(stop)
	ccancel()
	wg.Wait()

	// Read everything back.
	rcl := newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	final := map[int32][]*kgo.Record{}
	total := count()
	got := 0
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	fetchErrs := map[string]int{}
	for got < total {
		fs := rcl.PollFetches(rctx)
		if rctx.Err() != nil {
			break
		}
		for _, fe := range fs.Errors() {
			fetchErrs[fmt.Sprintf("%s-%d: %v", fe.Topic, fe.Partition, fe.Err)]++
		}
		fs.EachRecord(func(r *kgo.Record) {
			final[r.Partition] = append(final[r.Partition], r)
			got++
		})
	}
	if got < total {
		t.Logf("read back %d of %d records; fetch errors: %v", got, total, fetchErrs)
		for i, p := range c.procs {
			t.Logf("broker %d log tail:\n%s", i, tail(p.logs(), 40))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for p := int32(0); p < partitions; p++ {
		var vals []int
		byOffset := map[int64]string{}
		for _, r := range final[p] {
			v, err := strconv.Atoi(string(r.Value))
			if err != nil {
				t.Fatal(err)
			}
			vals = append(vals, v)
			byOffset[r.Offset] = string(r.Value)
		}
		if !sort.IntsAreSorted(vals) {
			t.Errorf("partition %d: values out of order", p)
		}
		have := map[int]int{}
		for _, v := range vals {
			have[v]++
		}
		for v, n := range have {
			if n > 1 {
				t.Errorf("partition %d: value %d present %d times", p, v, n)
			}
		}
		for _, v := range acked[p] {
			if have[v] == 0 {
				t.Errorf("partition %d: acknowledged value %d lost", p, v)
			}
		}
		for off, v := range seen[p] {
			if byOffset[off] != v {
				t.Errorf("partition %d: a consumer saw %q at offset %d, the log now has %q", p, v, off, byOffset[off])
			}
		}
		t.Logf("partition %d: %d acknowledged, %d in the log", p, len(acked[p]), len(vals))
	}
	if len(errs) > 0 {
		t.Errorf("produce errors reached the application: %v", errs)
	}
	seenMu.Lock()
	defer seenMu.Unlock()
	if len(backwards) > 0 {
		t.Errorf("committed offsets went back: %v", backwards)
	}
	if len(committed) == 0 {
		t.Error("the group never committed")
	}
	t.Logf("group committed offsets at the end: %v", committed)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
