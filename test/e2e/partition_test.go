package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/wire"
)

// netsim connects in-process brokers and can cut a broker off from the
// others: every broker-to-broker connection (replica fetches, raft, requests
// to the controller) is made by its dialer, which refuses links to or from
// an isolated broker, and isolating closes the links that exist. Clients of
// the test connect directly, like clients on the isolated broker's side.
type netsim struct {
	mu    sync.Mutex
	owner map[string]int32 // listener address → broker
	cut   map[int32]bool
	conns map[[2]int32][]net.Conn
}

func newNetsim() *netsim {
	return &netsim{owner: map[string]int32{}, cut: map[int32]bool{}, conns: map[[2]int32][]net.Conn{}}
}

var errPartitioned = errors.New("netsim: network partition")

func (n *netsim) dialer(from int32) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		to, known := n.owner[addr]
		blocked := known && (n.cut[from] || n.cut[to])
		n.mu.Unlock()
		if blocked {
			return nil, errPartitioned
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || !known {
			return c, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.cut[from] || n.cut[to] {
			c.Close()
			return nil, errPartitioned
		}
		k := [2]int32{from, to}
		n.conns[k] = append(n.conns[k], c)
		return c, nil
	}
}

func (n *netsim) isolate(id int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[id] = true
	for k, cs := range n.conns {
		if k[0] == id || k[1] == id {
			for _, c := range cs {
				c.Close()
			}
			delete(n.conns, k)
		}
	}
}

func (n *netsim) heal() {
	n.mu.Lock()
	n.cut = map[int32]bool{}
	n.mu.Unlock()
}

type inprocNode struct {
	id   int32
	addr string
	b    *broker.Broker
	srv  *wire.Server
}

// startInprocCluster starts n voters in this process, linked through net.
func startInprocCluster(t *testing.T, n int, net_ *netsim) []*inprocNode {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("STRATA_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	kafkaLns := make([]net.Listener, n)
	ctlAddrs := freeAddrList(t, n)
	voters := map[int32]string{}
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		kafkaLns[i] = ln
		voters[int32(i)] = ctlAddrs[i]
		net_.owner[ln.Addr().String()] = int32(i)
		net_.owner[ctlAddrs[i]] = int32(i)
	}
	nodes := make([]*inprocNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			port := kafkaLns[i].Addr().(*net.TCPAddr).Port
			b, err := broker.Open(broker.Config{
				NodeID: int32(i), Host: "127.0.0.1", Port: int32(port), DataDir: t.TempDir(),
				AutoCreateTopics: false, NumPartitions: 1, MinFreeBytes: 1 << 20,
				Logger:           logger.With("broker", i),
				ControllerListen: ctlAddrs[i], ControllerVoters: voters,
				BrokerHeartbeatInterval: 200 * time.Millisecond, BrokerSessionTimeout: 2 * time.Second,
				ReplicaLagTime: 3 * time.Second, Dial: net_.dialer(int32(i)),
			})
			if err != nil {
				errs[i] = err
				return
			}
			nodes[i] = &inprocNode{id: int32(i), addr: kafkaLns[i].Addr().String(), b: b}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("broker %d: %v", i, err)
		}
	}
	for i, nd := range nodes {
		srv, err := wire.NewServer(wire.Config{Broker: nd.b, Logger: logger.With("broker", i)})
		if err != nil {
			t.Fatal(err)
		}
		nd.srv = srv
		go srv.Serve(kafkaLns[i])
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, nd := range nodes {
			nd.srv.Shutdown(ctx)
		}
		for _, nd := range nodes {
			nd.b.Close()
		}
	})
	return nodes
}

func freeAddrList(t *testing.T, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	return out
}

// TestNetworkPartition: the leader of a partition is cut off from the
// other brokers. Clients that still reach it get no acks=all
// acknowledgement (its followers cannot fetch, and it cannot shrink its
// ISR without the controller), while the majority fences it, elects a new
// leader and acknowledges writes. acks=1 writes the isolated leader took
// form a divergent tail; after the partition heals it becomes a follower,
// truncates that tail and copies the new leader's log, so every replica
// holds the same records and every acks=all acknowledgement survives.
func TestNetworkPartition(t *testing.T) {
	const topic = "split"
	ns := newNetsim()
	nodes := startInprocCluster(t, 3, ns)
	var all []string
	for _, nd := range nodes {
		all = append(all, nd.addr)
	}
	ctx := ctxT(t, 2*time.Minute)
	adm := kadm.NewClient(newClient(t, all[0], kgo.SeedBrokers(all...)))
	resp, err := adm.CreateTopic(ctx, 1, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	produceTo := func(addrs []string, acks kgo.Acks, n int, tag string, timeout time.Duration) (int, error) {
		// The client reaches only addrs: it sits on their side of the
		// partition.
		reach := map[string]bool{}
		for _, a := range addrs {
			reach[a] = true
		}
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !reach[addr] {
				return nil, errPartitioned
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		opts := []kgo.Opt{kgo.SeedBrokers(addrs...), kgo.RequiredAcks(acks), kgo.ProduceRequestTimeout(timeout),
			kgo.RecordDeliveryTimeout(timeout), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.Dialer(dial)}
		// Not idempotent: an isolated broker cannot reserve producer ids
		// (they come from the quorum), and the point here is acks.
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.RecordRetries(3),
			kgo.ProducerBatchCompression(kgo.NoCompression())) // values readable in the log bytes
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprintf("%s-%d", tag, i))})
		}
		pctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
		defer cancel()
		ok := 0
		var first error
		for _, r := range cl.ProduceSync(pctx, recs...) {
			if r.Err == nil {
				ok++
			} else if first == nil {
				first = r.Err
			}
		}
		return ok, first
	}
	if n, err := produceTo(all, kgo.AllISRAcks(), 50, "before", 10*time.Second); n != 50 {
		t.Fatalf("before the partition: %d of 50 acknowledged (%v)", n, err)
	}
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	old := md.Topics[topic].Partitions[0].Leader
	oldAddr := nodes[old].addr
	var others []string
	for _, nd := range nodes {
		if nd.id != old {
			others = append(others, nd.addr)
		}
	}
	t.Logf("isolating broker %d, the leader", old)
	ns.isolate(old)

	// acks=1 to the isolated leader: it still believes it leads, and
	// takes the records (they will be truncated); acks=all: never
	// acknowledged.
	n1, err1 := produceTo([]string{oldAddr}, kgo.LeaderAck(), 20, "divergent", 3*time.Second)
	nAll, errAll := produceTo([]string{oldAddr}, kgo.AllISRAcks(), 5, "isolated-all", 4*time.Second)
	t.Logf("isolated leader: acks=1 %d of 20 (%v); acks=all %d of 5 (%v)", n1, err1, nAll, errAll)
	if nAll != 0 {
		t.Fatalf("the isolated leader acknowledged %d acks=all writes", nAll)
	}
	// The majority side moves on.
	var newLeader int32 = -1
	majority := kadm.NewClient(newClient(t, others[0], kgo.SeedBrokers(others...)))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		md, err := majority.Metadata(ctx, topic)
		if err == nil {
			if l := md.Topics[topic].Partitions[0].Leader; l >= 0 && l != old {
				newLeader = l
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if newLeader < 0 {
		t.Fatal("no new leader on the majority side")
	}
	if n, err := produceTo(others, kgo.AllISRAcks(), 50, "after", 20*time.Second); n != 50 {
		t.Fatalf("majority side: %d of 50 acknowledged (%v)", n, err)
	}

	ns.heal()
	t.Log("healed")
	// The old leader rejoins: byte for byte the new leader's log (a
	// follower stores the leader's batches verbatim), without its
	// divergent tail.
	lp, err := nodes[newLeader].b.Replica(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	op, err := nodes[old].b.Replica(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitGroupState(t, 60*time.Second, "the old leader to copy the new leader's log", func() (bool, string) {
		le, oe := lp.Log().EndOffset(), op.Log().EndOffset()
		if le != oe {
			return false, fmt.Sprintf("new leader ends at %d, old leader at %d", le, oe)
		}
		a, err1 := lp.Log().Read(0, 16<<20, le)
		b, err2 := op.Log().Read(0, 16<<20, oe)
		if err1 != nil || err2 != nil {
			return false, fmt.Sprint(err1, err2)
		}
		return bytes.Equal(a, b), "logs differ"
	})
	data, err := op.Log().Read(0, 16<<20, op.Log().EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("divergent-")) {
		t.Fatal("the old leader kept records only it had taken while isolated")
	}
	for _, want := range []string{"before-49", "after-49"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Fatalf("acknowledged record %s missing", want)
		}
	}
	// And it is back in the ISR.
	waitGroupState(t, 30*time.Second, "the old leader back in the ISR", func() (bool, string) {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		isr := md.Topics[topic].Partitions[0].ISR
		return len(isr) == 3, fmt.Sprint(isr)
	})
}
