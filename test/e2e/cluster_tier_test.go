package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
	"github.com/strata-io/strata/tier/objstore/s3"
)

// TestClusterTiered: a tiered topic with replication.factor=3 on three
// brokers sharing one bucket (versitygw). While an idempotent acks=all
// producer runs, partition leaders are SIGKILLed and restarted; uploads
// continue under every new leader epoch (each new leader continues from the
// newest manifest, in the middle of its own segments), a checker polling
// the bucket never finds a manifest naming a missing object, followers
// delete uploaded local segments, and a broker whose partition data was
// wiped rejoins by fetching only the hot tail (history stays in the
// bucket). Every acknowledged record reads back exactly once, in order,
// through cold reads from the bucket.
func TestClusterTiered(t *testing.T) {
	const (
		topic      = "tiered-replicated"
		partitions = 2
	)
	gw := objstoretest.StartVersityGW(t)
	st := gw.NewStore(t, s3.Options{})
	c := newCluster(t, 3,
		"--object-store", "s3", "--s3-endpoint", gw.Endpoint, "--s3-bucket", st.Bucket(), "--s3-path-style",
		"--s3-access-key", gw.AccessKey, "--s3-secret-key", gw.SecretKey, "--s3-region", gw.Region,
		"--tier-check-interval", "100ms", "--tier-grace-period", "5s", "--tier-gc-every", "10")
	ctx := ctxT(t, 4*time.Minute)
	adm := kadm.NewClient(newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...)))
	resp, err := adm.CreateTopic(ctx, partitions, 3, map[string]*string{
		"min.insync.replicas":   ptr("2"),
		"remote.storage.enable": ptr("true"),
		"segment.bytes":         ptr("16384"),
		"local.retention.bytes": ptr("32768"),
	}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	topicID := resp.ID

	mc := manifestClient(st)
	var (
		bmu      sync.Mutex
		badNames []string
		epochs   = map[int32][]int32{} // partition → manifest epochs seen, in order
		ends     = map[int32]int64{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the bucket checker
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for p := int32(0); p < partitions; p++ {
				m, _, err := mc.Load(ctx, manifest.TopicID(topicID), p)
				if err != nil {
					continue // none yet, or a manifest collected under the listing
				}
				for _, e := range m.Entries {
					if _, err := st.Stat(ctx, e.Key); err != nil {
						bmu.Lock()
						badNames = append(badNames, fmt.Sprintf("partition %d manifest %v names %s: %v", p, m.ID(), e.Key, err))
						bmu.Unlock()
					}
				}
				bmu.Lock()
				if es := epochs[p]; len(es) == 0 || es[len(es)-1] != m.Epoch {
					epochs[p] = append(es, m.Epoch)
				}
				ends[p] = max(ends[p], m.EndOffset())
				bmu.Unlock()
			}
		}
	}()

	pcl := newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond), kgo.RecordRetries(1<<30),
		kgo.RetryTimeout(time.Minute), kgo.ProduceRequestTimeout(10*time.Second), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var (
		mu    sync.Mutex
		acked = map[int32][]int{}
		errs  = map[string]int{}
	)
	pad := strings.Repeat("x", 300)
	for p := int32(0); p < partitions; p++ {
		wg.Add(1)
		go func(p int32) {
			defer wg.Done()
			for seq := 0; ; seq += 20 {
				select {
				case <-stop:
					return
				default:
				}
				recs := make([]*kgo.Record, 20)
				for i := range recs {
					recs[i] = &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(seq+i) + " " + pad)}
				}
				res := pcl.ProduceSync(ctx, recs...)
				time.Sleep(5 * time.Millisecond) // about 3,000 records/s: enough to roll a segment every few hundred ms
				mu.Lock()
				for i, r := range res {
					if r.Err == nil {
						acked[p] = append(acked[p], seq+i)
					} else {
						errs[r.Err.Error()]++
					}
				}
				mu.Unlock()
			}
		}(p)
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked[0]) + len(acked[1])
	}
	logTails := func() {
		for i, p := range c.procs {
			t.Logf("broker %d log tail:\n%s", i, tail(p.logs(), 50))
		}
	}
	wait := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				logTails()
				mu.Lock()
				t.Logf("produce errors so far: %v", errs)
				mu.Unlock()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	state := func(p int32) (leader int32, epoch int32, isr []int32) {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return -1, -1, nil
		}
		pd := md.Topics[topic].Partitions[p]
		return pd.Leader, pd.LeaderEpoch, pd.ISR
	}
	// uploadedAt waits until partition p's newest manifest carries the
	// leader epoch epoch and ends past from.
	uploadedAt := func(p, epoch int32, from int64) {
		t.Helper()
		wait(fmt.Sprintf("partition %d to upload past %d at leader epoch %d", p, from, epoch), 60*time.Second, func() bool {
			m, _, err := mc.Load(ctx, manifest.TopicID(topicID), p)
			return err == nil && m.Epoch == epoch && m.EndOffset() > from
		})
	}
	fullISR := func() bool {
		for p := int32(0); p < partitions; p++ {
			if l, _, isr := state(p); l < 0 || len(isr) != 3 {
				return false
			}
		}
		return true
	}
	wait("records and first uploads", 60*time.Second, func() bool {
		bmu.Lock()
		defer bmu.Unlock()
		return count() > 2000 && ends[0] > 0 && ends[1] > 0
	})

	for round := 0; round < 3; round++ {
		p := int32(round % partitions)
		leader, epoch, _ := state(p)
		if leader < 0 {
			t.Fatalf("round %d: partition %d has no leader", round, p)
		}
		bmu.Lock()
		from := ends[p]
		bmu.Unlock()
		c.procs[leader].kill()
		var newLeader, newEpoch int32
		wait("a new leader", 30*time.Second, func() bool {
			newLeader, newEpoch, _ = state(p)
			return newLeader >= 0 && newLeader != leader && newEpoch > epoch
		})
		uploadedAt(p, newEpoch, from)
		t.Logf("round %d: killed leader %d of partition %d (epoch %d); broker %d uploads at epoch %d past %d",
			round, leader, p, epoch, newLeader, newEpoch, from)
		c.restart(int(leader))
		wait("every ISR full again", 60*time.Second, fullISR)
	}

	// A wiped follower: its partition data goes, its metadata stays.
	leader, _, _ := state(0)
	victim := (int(leader) + 1) % 3
	c.procs[victim].kill()
	dirs, _ := filepath.Glob(filepath.Join(c.dirs[victim], "logs", topic+"-*"))
	if len(dirs) != partitions {
		t.Fatalf("broker %d partition directories: %v", victim, dirs)
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	// Out of every ISR first, so that back in every ISR below means it
	// caught up.
	wait("the wiped broker to leave every ISR", 60*time.Second, func() bool {
		for p := int32(0); p < partitions; p++ {
			if _, _, isr := state(p); isr == nil || slices.Contains(isr, int32(victim)) {
				return false
			}
		}
		return true
	})
	before := count()
	wait("more acknowledgements without the wiped broker", 30*time.Second, func() bool { return count() > before+500 })
	c.restart(victim)
	wait("the wiped broker back in every ISR", 60*time.Second, fullISR)
	for _, d := range dirs {
		base := lowestSegment(t, d)
		if base <= 0 {
			names, err := os.ReadDir(d)
			var ls []string
			for _, n := range names {
				ls = append(ls, n.Name())
			}
			t.Logf("%s: %v %v; broker log:\n%s", d, ls, err, tail(c.procs[victim].logs(), 40))
			t.Errorf("wiped broker %d copied the history of %s from offset %d; want it to start at the bucket's end", victim, filepath.Base(d), base)
		} else {
			t.Logf("wiped broker %d: %s starts at %d", victim, filepath.Base(d), base)
		}
	}
	before = count()
	wait("more acknowledgements", 30*time.Second, func() bool { return count() > before+500 })
	// Followers delete uploaded segments too: on every broker, the lowest
	// local segment of each partition rises above 0.
	wait("local retention on every replica", 60*time.Second, func() bool {
		for i := range c.procs {
			for p := 0; p < partitions; p++ {
				ds, _ := filepath.Glob(filepath.Join(c.dirs[i], "logs", fmt.Sprintf("%s-%d.*", topic, p)))
				if len(ds) != 1 || lowestSegment(t, ds[0]) <= 0 {
					return false
				}
			}
		}
		return true
	})
	close(stop)
	wg.Wait()

	for i, p := range c.procs {
		l := p.logs()
		t.Logf("broker %d: %d tier reopens at a new leader epoch, %d start-overs at the leader's log, %d logs continued from the bucket (since its last start)",
			i, strings.Count(l, "tier continues at a new leader epoch"), strings.Count(l, "replica started over"), strings.Count(l, "local log continues from the bucket"))
	}
	bmu.Lock()
	if len(badNames) > 0 {
		t.Errorf("manifests named missing objects: %v", badNames)
	}
	t.Logf("manifest epochs seen: %v; remote ends %v", epochs, ends)
	bmu.Unlock()

	// Read everything back from the start: history from the bucket.
	mu.Lock()
	defer mu.Unlock()
	total := len(acked[0]) + len(acked[1])
	rcl := newClient(t, c.seeds()[0], kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	got := map[int32][]int{}
	n := 0
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	fetchErrs := map[string]int{}
	for n < total && rctx.Err() == nil {
		fs := rcl.PollFetches(rctx)
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				fetchErrs[fe.Err.Error()]++
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			v, err := strconv.Atoi(strings.Fields(string(r.Value))[0])
			if err != nil {
				t.Errorf("record %d/%d: %q", r.Partition, r.Offset, r.Value)
				return
			}
			got[r.Partition] = append(got[r.Partition], v)
			n++
		})
	}
	if n < total {
		logTails()
		t.Fatalf("read back %d of %d acknowledged records; fetch errors %v", n, total, fetchErrs)
	}
	for p := int32(0); p < partitions; p++ {
		if !slices.IsSorted(got[p]) {
			t.Errorf("partition %d: out of order", p)
		}
		have := map[int]int{}
		for _, v := range got[p] {
			have[v]++
		}
		for _, v := range acked[p] {
			if have[v] != 1 {
				t.Errorf("partition %d: acknowledged record %d present %d times", p, v, have[v])
			}
		}
		t.Logf("partition %d: %d acknowledged, %d read back", p, len(acked[p]), len(got[p]))
	}
	if len(errs) > 0 {
		t.Errorf("produce errors reached the application: %v", errs)
	}
}

// lowestSegment returns the base offset of the lowest segment file in a
// partition directory, -1 if none.
func lowestSegment(t testing.TB, dir string) int64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(names) == 0 {
		return -1
	}
	slices.Sort(names)
	base, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(names[0]), ".log"), 10, 64)
	if err != nil {
		t.Fatalf("segment file %s: %v", names[0], err)
	}
	return base
}
