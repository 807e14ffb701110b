package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDurStats(t *testing.T) {
	s := time.Second
	if m, w := durStats([]time.Duration{3 * s, s, 2 * s}); m != 2*s || w != 3*s {
		t.Errorf("odd: median %v, worst %v", m, w)
	}
	in := []time.Duration{4 * s, s, 2 * s, 3 * s}
	if m, w := durStats(in); m != 2500*time.Millisecond || w != 4*s {
		t.Errorf("even: median %v, worst %v", m, w)
	}
	if in[0] != 4*s {
		t.Error("durStats sorted its input")
	}
	if m, w := durStats(nil); m != 0 || w != 0 {
		t.Errorf("empty: %v %v", m, w)
	}
}

func TestInEveryISR(t *testing.T) {
	v := topicView{node: 0, brokers: []int32{0, 2}, parts: map[int32]partState{
		0: {leader: 0, isr: []int32{0, 2}},
		1: {leader: 2, isr: []int32{2, 0}},
	}}
	if ok, why := inEveryISR(2, 1, false)(v); !ok {
		t.Errorf("broker 1 not out of every ISR: %s", why)
	}
	if ok, _ := inEveryISR(3, 1, false)(v); ok {
		t.Error("out of every ISR with a partition missing")
	}
	if ok, _ := inEveryISR(2, 1, true)(v); ok {
		t.Error("broker 1 in every ISR")
	}
	back := topicView{node: 2, brokers: []int32{0, 1, 2}, parts: map[int32]partState{
		0: {leader: 0, isr: []int32{0, 2, 1}},
		1: {leader: 2, isr: []int32{2, 0}},
	}}
	if ok, why := inEveryISR(2, 1, true)(back); ok || !strings.Contains(why, "1 of 2") {
		t.Errorf("half back counted as back: %v %q", ok, why)
	}
	back.parts[1] = partState{leader: 2, isr: []int32{2, 0, 1}}
	if ok, why := inEveryISR(2, 1, true)(back); !ok {
		t.Errorf("not back: %s", why)
	}
	// Every view must agree: the lagging one is named.
	ok, why := all([]topicView{back, v}, inEveryISR(2, 1, true))
	if ok || !strings.HasPrefix(why, "broker 0:") {
		t.Errorf("all = %v, %q", ok, why)
	}
}

func TestAckWatch(t *testing.T) {
	w := &ackWatch{}
	w.OnProduceBatchWritten(kgo.BrokerMetadata{NodeID: 1}, "t", 0, kgo.ProduceBatchMetrics{})
	if _, ok := w.seen(); ok || w.count() != 1 {
		t.Fatal("an acknowledgement counted before arming")
	}
	w.arm(1, time.Now())
	w.OnProduceBatchWritten(kgo.BrokerMetadata{NodeID: 1}, "t", 0, kgo.ProduceBatchMetrics{})
	if _, ok := w.seen(); ok {
		t.Fatal("the victim's own acknowledgement counted")
	}
	time.Sleep(time.Millisecond)
	w.OnProduceBatchWritten(kgo.BrokerMetadata{NodeID: 2}, "t", 0, kgo.ProduceBatchMetrics{})
	d, ok := w.seen()
	if !ok || d <= 0 || w.by != 2 {
		t.Fatalf("seen %v %v by %d", d, ok, w.by)
	}
	w.OnProduceBatchWritten(kgo.BrokerMetadata{NodeID: 0}, "t", 0, kgo.ProduceBatchMetrics{})
	if d2, _ := w.seen(); d2 != d || w.by != 2 {
		t.Error("a later acknowledgement replaced the first")
	}
}

func TestParseFlagsCluster(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil || !cfg.cluster || cfg.clusterPartitions != 6 || cfg.clusterFailovers != 5 ||
		cfg.clusterFastSession != 2*time.Second || cfg.clusterCatchupMB != 256 {
		t.Errorf("-all config = %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{
		{"-cluster", "-strata", ""},
		{"-cluster", "-strata", "/bin/true", "-cluster-partitions", "0"},
		{"-cluster", "-strata", "/bin/true", "-cluster-failovers", "-1"},
		{"-cluster", "-strata", "/bin/true", "-cluster-catchup-mb", "-1"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestClusterPhase runs the whole phase, small, against $STRATA_BIN: three
// brokers, short produce runs, one failover with the broker defaults, and
// the catch-up of 8 MB.
func TestClusterPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three brokers for about 40 s")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN not set")
	}
	cfg := config{strataBin: bin, duration: time.Second, recordSize: 1024, clusterPartitions: 2,
		clusterFailovers: 1, clusterCatchupMB: 8, clusterRejoinTimeout: 20 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := runCluster(ctx, cfg, t.TempDir())
	if errs := res.errs(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(res.tput) != 4 {
		t.Fatalf("%d throughput rows, want 4", len(res.tput))
	}
	for _, r := range res.tput {
		if r.st.records <= 0 || r.st.mbps() <= 0 {
			t.Errorf("%s: %+v", r.name(), r.st)
		}
		if r.rate > 0 && (r.lat == nil || r.lat.n == 0 || r.lat.p99 <= 0) {
			t.Errorf("%s: no latencies", r.name())
		}
	}
	cu := res.catchup
	if cu == nil || cu.st.records < 8000000/1024 || cu.fenced <= 0 || cu.unfenced <= 0 || cu.inISR < cu.unfenced || cu.mbps() <= 0 {
		t.Errorf("catch-up: %+v", cu)
	}
	if len(res.failovers) != 1 || len(res.failovers[0].rounds) != 1 {
		t.Fatalf("failovers: %+v", res.failovers)
	}
	f := res.failovers[0]
	rd := f.rounds[0]
	if rd.victim < 0 || rd.newLeader < 0 || rd.newLeader == rd.victim || rd.leaderMoved <= 0 || rd.rejoin <= 0 {
		t.Errorf("round: %+v", rd)
	}
	if len(rd.firstAcks) != len(failoverClients) {
		t.Fatalf("first acks %v", rd.firstAcks)
	}
	for i, d := range rd.firstAcks {
		if d <= 0 || d >= time.Minute {
			t.Errorf("%s: kill → first ack %v", failoverClients[i].name, d)
		}
	}
	for i, n := range f.produced {
		if n <= 0 || f.failed[i] != 0 {
			t.Errorf("%s: %d acknowledged, %d failed", f.clients[i], n, f.failed[i])
		}
	}
	md := (&report{cfg: cfg, cluster: &res}).markdown()
	for _, want := range []string{"### Replication (3-broker cluster)", "| RF=3, min.insync.replicas=2, max rate |",
		"Max-rate throughput RF=3 / RF=1", "(defaults) | kgo defaults | 1 |", "catch-up MB/s"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
