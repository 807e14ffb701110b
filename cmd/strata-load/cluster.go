package main

// The replication phase (-cluster): three brokers on one metadata quorum on
// loopback. It measures produce throughput and latency to a topic with
// replication.factor=1 and to one with replication.factor=3 (acks=all,
// min.insync.replicas=2) in the same run, the failover time when a
// partition's leader is SIGKILLed under a running producer, and how fast a
// broker that was down catches up and rejoins the ISRs.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The replication phase's fixed settings.
const (
	clusterBrokers   = 3
	clusterMinISR    = "2"
	clusterRF1Max    = "cluster-rf1-max"
	clusterRF3Max    = "cluster-rf3-max"
	clusterRF1Lat    = "cluster-rf1-lat"
	clusterRF3Lat    = "cluster-rf3-lat"
	clusterFailTopic = "cluster-failover"
	clusterCatchup   = "cluster-catchup"
	// clusterFailoverRate is the records per second of the producer that
	// runs through the failovers (one partition).
	clusterFailoverRate = 1000
	// clusterFormTimeout bounds the wait for every broker to be registered
	// and every ISR of a new topic to be full.
	clusterFormTimeout = 2 * time.Minute
	// clusterFailTimeout bounds one failover (kill → acknowledged again).
	clusterFailTimeout = 2 * time.Minute
	// clusterRejoinTimeout is the default bound of one rejoin (restart →
	// back in the ISR).
	clusterRejoinTimeout = time.Minute
	// clusterPoll is the pause between metadata polls.
	clusterPoll = 20 * time.Millisecond
	// brokerDefaultSession and brokerDefaultHeartbeat are the broker's
	// --broker-session-timeout and --broker-heartbeat-interval defaults,
	// which the first failover run leaves in place.
	brokerDefaultSession   = 9 * time.Second
	brokerDefaultHeartbeat = 2 * time.Second
	// clusterMetaTimeout bounds one metadata request.
	clusterMetaTimeout = 2 * time.Second
)

// clusterResult is the outcome of the replication phase.
type clusterResult struct {
	partitions int
	cores      int
	tput       []clusterTputRow
	failovers  []*failoverRun
	catchup    *catchupResult
	notes      []string
	err        error // setup failure outside any part
}

// clusterTputRow is one produce run of the throughput table.
type clusterTputRow struct {
	rf    int
	topic string
	rate  float64 // records/s target; 0: max rate
	st    produceStats
	lat   *latencySummary
	cpu   string
	err   error
}

// failoverRun is the failover rounds of one cluster.
type failoverRun struct {
	session, heartbeat time.Duration // the brokers' settings
	defaults           bool          // the broker's default settings
	clients            []string      // the producers' names
	rounds             []failoverRound
	produced, failed   []int64 // per producer
	err                error
}

// failoverRound is one SIGKILL of the partition's leader.
type failoverRound struct {
	victim     int32
	controller bool  // the victim was also the metadata quorum's leader
	newLeader  int32 // -1 when none was seen
	// From the SIGKILL: a surviving broker's Metadata names another leader,
	// and each producer gets its first acknowledgement from another broker.
	leaderMoved time.Duration
	firstAcks   []time.Duration
	// From the restart of the victim: it is back in the partition's ISR.
	rejoin    time.Duration
	rejoinErr error // the victim did not rejoin; later rounds use a new topic
	err       error // the round failed before the restart
}

// catchupResult is the outcome of the follower catch-up measurement.
type catchupResult struct {
	victim     int32
	partitions int
	st         produceStats // what was produced while the victim was down
	fenced     time.Duration
	listening  time.Duration // restart → accepting connections
	unfenced   time.Duration // restart → listed in the other brokers' Metadata
	inISR      time.Duration // restart → in every ISR of the topic
	err        error
}

// mbps returns the catch-up rate: produced bytes over restart → in every ISR.
func (c *catchupResult) mbps() float64 { return rate(float64(c.st.bytes)/1e6, c.inISR) }

// errs returns every failure of the phase.
func (r *clusterResult) errs() []error {
	var errs []error
	if r.err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", r.err))
	}
	for _, t := range r.tput {
		if t.err != nil {
			errs = append(errs, fmt.Errorf("cluster: %s: %w", t.name(), t.err))
		}
	}
	for _, f := range r.failovers {
		if f.err != nil {
			errs = append(errs, fmt.Errorf("cluster: failover (%s): %w", f.settings(), f.err))
		}
		for i, rd := range f.rounds {
			if rd.err != nil {
				errs = append(errs, fmt.Errorf("cluster: failover (%s) round %d: %w", f.settings(), i+1, rd.err))
			}
			if rd.rejoinErr != nil {
				errs = append(errs, fmt.Errorf("cluster: failover (%s) round %d: %w", f.settings(), i+1, rd.rejoinErr))
			}
		}
	}
	if c := r.catchup; c != nil && c.err != nil {
		errs = append(errs, fmt.Errorf("cluster: catch-up: %w", c.err))
	}
	return errs
}

// name describes a throughput row.
func (t clusterTputRow) name() string {
	s := fmt.Sprintf("RF=%d", t.rf)
	if t.rf > 1 {
		s += ", min.insync.replicas=" + clusterMinISR
	}
	if t.rate > 0 {
		return s + ", 50% of max rate"
	}
	return s + ", max rate"
}

// settings describes a failover run's broker timings.
func (f *failoverRun) settings() string {
	s := fmt.Sprintf("session timeout %v, heartbeat %v", f.session, f.heartbeat)
	if f.defaults {
		s += " (defaults)"
	}
	return s
}

// clusterNode is one broker of the cluster; its addresses and data
// directory stay the same across restarts.
type clusterNode struct {
	id        int32
	addr, ctl string
	dir, log  string
	proc      *brokerProc // nil while the broker is down
	meta      *kgo.Client // talks to this broker only (Metadata)
}

// strataCluster is three brokers on one quorum.
type strataCluster struct {
	bin    string
	extra  []string
	voters string
	nodes  []*clusterNode
}

// startCluster starts the brokers with data and logs under dir and waits
// until every broker is registered and unfenced.
func startCluster(ctx context.Context, bin, dir string, extra []string) (*strataCluster, error) {
	c := &strataCluster{bin: bin, extra: extra}
	var voters []string
	for i := range clusterBrokers {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		ctl, err := freePort()
		if err != nil {
			return nil, err
		}
		n := &clusterNode{id: int32(i),
			addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			ctl:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ctl)),
			dir:  filepath.Join(dir, fmt.Sprintf("b%d", i)),
			log:  filepath.Join(dir, fmt.Sprintf("b%d.log", i)),
		}
		if n.meta, err = kgo.NewClient(kgo.SeedBrokers(n.addr)); err != nil {
			c.closeClients()
			return nil, fmt.Errorf("metadata client: %w", err)
		}
		c.nodes = append(c.nodes, n)
		voters = append(voters, fmt.Sprintf("%d@%s", i, n.ctl))
	}
	c.voters = strings.Join(voters, ",")
	// Start all three at once: the first cannot finish starting without a
	// quorum.
	errs := make([]error, clusterBrokers)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start(ctx, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.stop()
		return nil, err
	}
	err := waitUntil(ctx, clusterFormTimeout, func() (bool, error) {
		md, err := c.metadata(ctx, -1)
		return err == nil && len(md.Brokers) == clusterBrokers, nil
	})
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("waiting for %d registered brokers: %w", clusterBrokers, err)
	}
	return c, nil
}

// start starts broker i (again) and waits until it accepts connections.
// Its log is appended to, so it keeps every run of the broker.
func (c *strataCluster) start(ctx context.Context, i int) error {
	n := c.nodes[i]
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	b := &brokerProc{addr: n.addr, logPath: n.log, done: make(chan struct{})}
	var err error
	if b.logFile, err = os.OpenFile(n.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
		return fmt.Errorf("broker log: %w", err)
	}
	fmt.Fprintf(b.logFile, "--- strata-load: starting broker %d at %s\n", n.id, time.Now().UTC().Format(time.RFC3339Nano))
	args := append([]string{"serve", "--node-id", strconv.Itoa(int(n.id)), "--listen", n.addr,
		"--controller-listen", n.ctl, "--controller-voters", c.voters, "--data-dir", n.dir,
		"--log-level", "info"}, c.extra...)
	if port := pprofPort(); port > 0 {
		// Profiling the brokers: broker i serves /debug/pprof on port+i.
		args = append(args, "--admin-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+int(n.id))))
	}
	b.cmd = exec.Command(c.bin, args...)
	b.cmd.Stdout, b.cmd.Stderr = b.logFile, b.logFile
	// Its own process group, killed by the kernel if this tool dies, like
	// startBrokerIn's brokers.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		b.logFile.Close()
		return fmt.Errorf("start %s: %w", c.bin, err)
	}
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	if err := b.waitReady(ctx); err != nil {
		b.Stop()
		return fmt.Errorf("broker %d: %w", n.id, err)
	}
	n.proc = b
	return nil
}

// pprofPort is STRATA_LOAD_CLUSTER_PPROF, the first of three loopback
// ports on which the brokers serve their admin API and /debug/pprof (for
// `go tool pprof http://127.0.0.1:PORT/debug/pprof/profile?seconds=10`
// during a run); 0 (unset) starts them without one.
func pprofPort() int {
	port, err := strconv.Atoi(os.Getenv("STRATA_LOAD_CLUSTER_PPROF"))
	if err != nil || port <= 0 || port > 65535-clusterBrokers {
		return 0
	}
	return port
}

// kill SIGKILLs broker i and waits until it has exited.
func (c *strataCluster) kill(i int) {
	n := c.nodes[i]
	if n.proc == nil {
		return
	}
	_ = syscall.Kill(-n.proc.Pid(), syscall.SIGKILL)
	<-n.proc.done
	n.proc.logFile.Close()
	n.proc = nil
}

// stop stops every running broker (SIGTERM, all at once so none waits for
// a quorum the others already left) and closes the metadata clients.
func (c *strataCluster) stop() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		if n.proc == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.proc.Stop(); err != nil {
				errs[i] = fmt.Errorf("broker %d: %w", n.id, err)
			}
			n.proc = nil
		}()
	}
	wg.Wait()
	c.closeClients()
	return errors.Join(errs...)
}

// closeClients closes the per-broker metadata clients.
func (c *strataCluster) closeClients() {
	for _, n := range c.nodes {
		if n.meta != nil {
			n.meta.Close()
			n.meta = nil
		}
	}
}

// seeds returns the addresses of the running brokers.
func (c *strataCluster) seeds() []string {
	var s []string
	for _, n := range c.nodes {
		if n.proc != nil {
			s = append(s, n.addr)
		}
	}
	return s
}

// alive returns an error when a broker that should run has exited.
func (c *strataCluster) alive() error {
	var errs []error
	for _, n := range c.nodes {
		if n.proc != nil {
			if err := n.proc.alive(); err != nil {
				errs = append(errs, fmt.Errorf("broker %d: %w", n.id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cpu returns the CPU time of the running brokers so far.
func (c *strataCluster) cpu() (time.Duration, error) {
	var sum time.Duration
	for _, n := range c.nodes {
		if n.proc != nil {
			d, err := procCPU(n.proc.Pid())
			if err != nil {
				return 0, err
			}
			sum += d
		}
	}
	return sum, nil
}

// target describes the cluster for the load helpers.
func (c *strataCluster) target() target {
	return target{name: "cluster", seeds: c.seeds(), alive: c.alive, cpu: c.cpu}
}

// reportLogs prints every broker's warnings and errors to stderr.
func (c *strataCluster) reportLogs(name string) {
	for _, n := range c.nodes {
		(&brokerProc{logPath: n.log}).reportLog(fmt.Sprintf("%s broker %d", name, n.id))
	}
}

// metadata asks the first running broker other than skip (-1: none) for
// the brokers and the metadata of the topics.
func (c *strataCluster) metadata(ctx context.Context, skip int32, topics ...string) (*kmsg.MetadataResponse, error) {
	var errs []error
	for _, n := range c.nodes {
		if n.proc == nil || n.id == skip {
			continue
		}
		resp, err := n.metadata(ctx, topics...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return resp, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no broker to ask")
	}
	return nil, errors.Join(errs...)
}

// metadata sends a Metadata request for the topics to this broker only.
func (n *clusterNode) metadata(ctx context.Context, topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterMetaTimeout)
	defer cancel()
	resp, err := n.meta.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("broker %d: metadata: %w", n.id, err)
	}
	return resp.(*kmsg.MetadataResponse), nil
}

// partState is a partition's leader and ISR as Metadata reports them.
type partState struct {
	leader int32
	isr    []int32
	err    error
}

// topicView is one broker's answer to Metadata for a topic. Every broker
// answers from its own copy of the quorum's state, and the copies of the
// brokers that are not the controller can lag behind it for a moment, so
// the checks below ask every broker.
type topicView struct {
	node       int32
	controller int32
	brokers    []int32 // registered and unfenced
	parts      map[int32]partState
}

// views asks every running broker other than skip (-1: none) about the
// topic; a restarted broker's copy may still be catching up, so checks that
// concern it skip it.
func (c *strataCluster) views(ctx context.Context, skip int32, topic string) ([]topicView, error) {
	var vs []topicView
	for _, n := range c.nodes {
		if n.proc == nil || n.id == skip {
			continue
		}
		v, err := n.view(ctx, topic)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil, errors.New("no broker to ask")
	}
	return vs, nil
}

// view asks this broker about the topic.
func (n *clusterNode) view(ctx context.Context, topic string) (topicView, error) {
	md, err := n.metadata(ctx, topic)
	if err != nil {
		return topicView{}, err
	}
	v := topicView{node: n.id, controller: md.ControllerID, parts: map[int32]partState{}}
	for _, b := range md.Brokers {
		v.brokers = append(v.brokers, b.NodeID)
	}
	for _, t := range md.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return v, fmt.Errorf("broker %d: topic %s: %w", n.id, topic, err)
		}
		for _, p := range t.Partitions {
			v.parts[p.Partition] = partState{leader: p.Leader, isr: p.ISR, err: kerr.ErrorForCode(p.ErrorCode)}
		}
		return v, nil
	}
	return v, fmt.Errorf("broker %d: topic %s not in metadata", n.id, topic)
}

// all reports whether cond holds for every view, and describes the first
// view for which it does not.
func all(vs []topicView, cond func(topicView) (bool, string)) (bool, string) {
	for _, v := range vs {
		if ok, why := cond(v); !ok {
			return false, fmt.Sprintf("broker %d: %s", v.node, why)
		}
	}
	return true, ""
}

// inEveryISR returns a view condition: every one of want partitions has
// node in its ISR (in = true) or not (in = false), and node is listed among
// the unfenced brokers (in = true) or not.
func inEveryISR(want int, node int32, in bool) func(topicView) (bool, string) {
	return func(v topicView) (bool, string) {
		n := 0
		for _, p := range v.parts {
			if slices.Contains(p.isr, node) == in {
				n++
			}
		}
		listed := slices.Contains(v.brokers, node)
		return len(v.parts) == want && n == want && listed == in,
			fmt.Sprintf("%d of %d ISRs as wanted, broker %d listed: %v", n, want, node, listed)
	}
}

// createReplicated creates topics with the partition count, replication
// factor and min.insync.replicas, and waits until every ISR is full.
func (c *strataCluster) createReplicated(ctx context.Context, partitions int32, rf int16, topics ...string) error {
	var configs map[string]*string
	if rf > 1 {
		configs = map[string]*string{"min.insync.replicas": kadm.StringPtr(clusterMinISR)}
	}
	err := withAdmin(ctx, c.seeds(), func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.CreateTopics(ctx, partitions, rf, configs, topics...)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("create topics (RF=%d): %w", rf, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range topics {
		var last string
		err := waitUntil(ctx, clusterFormTimeout, func() (bool, error) {
			vs, err := c.views(ctx, -1, t)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			var ok bool
			ok, last = all(vs, func(v topicView) (bool, string) {
				full := 0
				for _, p := range v.parts {
					if p.err == nil && p.leader >= 0 && len(p.isr) == int(rf) {
						full++
					}
				}
				return full == int(partitions), fmt.Sprintf("%d of %d partitions with a leader and a full ISR", full, partitions)
			})
			return ok, nil
		})
		if err != nil {
			return fmt.Errorf("topic %s: %w (%s)", t, err, last)
		}
	}
	return nil
}

// waitUntil calls cond every clusterPoll until it returns true or an
// error, or d or ctx ends.
func waitUntil(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %w", d, ctx.Err())
		case <-time.After(clusterPoll):
		}
	}
}

// runCluster runs the replication phase.
func runCluster(ctx context.Context, cfg config, base string) (res clusterResult) {
	res.partitions = cfg.clusterPartitions
	res.cores = describeMachine(base, "").cores
	dir := filepath.Join(base, "cluster")
	logf("cluster: starting %d brokers (broker defaults)", clusterBrokers)
	c, err := startCluster(ctx, cfg.strataBin, filepath.Join(dir, "defaults"), nil)
	if err != nil {
		res.err = fmt.Errorf("start cluster: %w", err)
		return res
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if err := c.stop(); err != nil && res.err == nil {
			res.err = fmt.Errorf("stop: %w", err)
		}
		c.reportLogs("cluster")
	}
	defer stop()

	res.tput = clusterThroughput(ctx, cfg, c, &res)
	if ctx.Err() != nil {
		return res
	}
	if cfg.clusterCatchupMB > 0 {
		logf("cluster: catch-up of %d MB", cfg.clusterCatchupMB)
		cu := clusterCatchUp(ctx, cfg, c)
		res.catchup = &cu
		if err := deleteTopics(ctx, c.seeds(), clusterCatchup); err != nil {
			res.notes = append(res.notes, err.Error())
		}
	}
	if ctx.Err() != nil || cfg.clusterFailovers == 0 {
		return res
	}
	logf("cluster: %d failovers, broker defaults", cfg.clusterFailovers)
	res.failovers = append(res.failovers, clusterFailovers(ctx, cfg, c, brokerDefaultSession, brokerDefaultHeartbeat, true))
	stop()

	if cfg.clusterFastSession > 0 && ctx.Err() == nil {
		hb := cfg.clusterFastSession / 4
		logf("cluster: %d failovers, --broker-session-timeout %v --broker-heartbeat-interval %v",
			cfg.clusterFailovers, cfg.clusterFastSession, hb)
		fast, err := startCluster(ctx, cfg.strataBin, filepath.Join(dir, "fast"),
			[]string{"--broker-session-timeout", cfg.clusterFastSession.String(), "--broker-heartbeat-interval", hb.String()})
		if err != nil {
			res.failovers = append(res.failovers, &failoverRun{session: cfg.clusterFastSession, heartbeat: hb,
				err: fmt.Errorf("start cluster: %w", err)})
			return res
		}
		res.failovers = append(res.failovers, clusterFailovers(ctx, cfg, fast, cfg.clusterFastSession, hb, false))
		if err := fast.stop(); err != nil && res.err == nil {
			res.err = fmt.Errorf("stop (fast session cluster): %w", err)
		}
		fast.reportLogs("cluster (fast session)")
	}
	return res
}

// clusterThroughput produces at the maximum rate to an RF=1 and an RF=3
// topic, then at half of each rate to fresh topics for latency.
func clusterThroughput(ctx context.Context, cfg config, c *strataCluster, res *clusterResult) []clusterTputRow {
	parts := int32(cfg.clusterPartitions)
	if err := c.createReplicated(ctx, parts, 1, clusterRF1Max, clusterRF1Lat); err != nil {
		res.err = err
		return nil
	}
	if err := c.createReplicated(ctx, parts, clusterBrokers, clusterRF3Max, clusterRF3Lat); err != nil {
		res.err = err
		return nil
	}
	var rows []clusterTputRow
	run := func(rf int, topic string, rps float64) clusterTputRow {
		row := clusterTputRow{rf: rf, topic: topic, rate: rps}
		if err := c.alive(); err != nil {
			row.err = err
			return row
		}
		logf("cluster: produce %s", row.name())
		t := c.target()
		cpu := startCPU(t)
		st, err := produce(ctx, t.seeds, produceSpec{topic: topic, acks: acksAll, recordSize: cfg.recordSize,
			duration: cfg.duration, maxRecords: cfg.records, rate: rps})
		row.st = st
		row.cpu = strings.Replace(cpu.String(), "broker ", "3 brokers ", 1)
		if rps > 0 {
			s := summarize(st.latencies)
			row.lat = &s
			row.st.latencies = nil
		}
		if err != nil {
			row.err = withAlive(err, t)
		}
		return row
	}
	rf1 := run(1, clusterRF1Max, 0)
	rf3 := run(clusterBrokers, clusterRF3Max, 0)
	rows = append(rows, rf1, rf3)
	if err := deleteTopics(ctx, c.seeds(), clusterRF1Max, clusterRF3Max); err != nil {
		res.notes = append(res.notes, err.Error())
	}
	for _, m := range []clusterTputRow{rf1, rf3} {
		if ctx.Err() != nil {
			break
		}
		lat := clusterRF1Lat
		if m.rf > 1 {
			lat = clusterRF3Lat
		}
		if m.err != nil || m.st.recps() == 0 {
			rows = append(rows, clusterTputRow{rf: m.rf, topic: lat, rate: -1,
				err: errors.New("skipped: no max rate measured")})
			continue
		}
		rows = append(rows, run(m.rf, lat, m.st.recps()/2))
	}
	if err := deleteTopics(ctx, c.seeds(), clusterRF1Lat, clusterRF3Lat); err != nil {
		res.notes = append(res.notes, err.Error())
	}
	return rows
}

// clusterCatchUp SIGKILLs a broker that is not the controller, waits until
// it is out of every ISR of a fresh RF=3 topic, produces -cluster-catchup-mb
// to the topic, restarts the broker and times until it is back in every
// ISR.
func clusterCatchUp(ctx context.Context, cfg config, c *strataCluster) (res catchupResult) {
	res.partitions = cfg.clusterPartitions
	parts := int32(cfg.clusterPartitions)
	if err := c.createReplicated(ctx, parts, clusterBrokers, clusterCatchup); err != nil {
		res.err = err
		return res
	}
	md, err := c.metadata(ctx, -1)
	if err != nil {
		res.err = err
		return res
	}
	res.victim = (max(md.ControllerID, 0) + 1) % clusterBrokers
	killed := time.Now()
	c.kill(int(res.victim))
	var last string
	err = waitUntil(ctx, clusterFailTimeout, func() (bool, error) {
		vs, err := c.views(ctx, res.victim, clusterCatchup)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var out bool
		out, last = all(vs, inEveryISR(cfg.clusterPartitions, res.victim, false))
		return out, nil
	})
	if err != nil {
		res.err = fmt.Errorf("broker %d not fenced after SIGKILL: %w (%s)", res.victim, err, last)
		return res
	}
	res.fenced = time.Since(killed)

	records := int64(cfg.clusterCatchupMB) * 1e6 / int64(cfg.recordSize)
	res.st, err = produce(ctx, c.seeds(), produceSpec{topic: clusterCatchup, acks: acksAll, recordSize: cfg.recordSize,
		duration: 10*time.Minute + time.Duration(cfg.clusterCatchupMB)*time.Second, maxRecords: records})
	res.st.latencies = nil
	if err != nil {
		res.err = fmt.Errorf("produce with broker %d down: %w", res.victim, withAlive(err, c.target()))
		return res
	}
	if res.st.records < records {
		res.err = fmt.Errorf("produced %d of %d records", res.st.records, records)
		return res
	}

	logf("cluster: restarting broker %d to catch up %.0f MB", res.victim, float64(res.st.bytes)/1e6)
	restarted := time.Now()
	if err := c.start(ctx, int(res.victim)); err != nil {
		res.err = fmt.Errorf("restart: %w", err)
		return res
	}
	res.listening = time.Since(restarted)
	err = waitUntil(ctx, 5*time.Minute+time.Duration(cfg.clusterCatchupMB)*time.Second, func() (bool, error) {
		if err := c.alive(); err != nil {
			return false, err
		}
		vs, err := c.views(ctx, res.victim, clusterCatchup)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if res.unfenced == 0 {
			if listed, _ := all(vs, func(v topicView) (bool, string) {
				return slices.Contains(v.brokers, res.victim), ""
			}); listed {
				res.unfenced = time.Since(restarted)
			}
		}
		var in bool
		in, last = all(vs, inEveryISR(cfg.clusterPartitions, res.victim, true))
		return in, nil
	})
	if err != nil {
		res.err = fmt.Errorf("broker %d back in every ISR: %w (%s)", res.victim, err, last)
		return res
	}
	res.inISR = time.Since(restarted)
	return res
}

// ackWatch records the first produced batch that a broker other than the
// victim acknowledged after the kill (kgo's OnProduceBatchWritten hook).
type ackWatch struct {
	mu      sync.Mutex
	armed   bool
	victim  int32
	since   time.Time
	first   time.Time
	by      int32
	batches int64
}

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (w *ackWatch) OnProduceBatchWritten(meta kgo.BrokerMetadata, _ string, _ int32, _ kgo.ProduceBatchMetrics) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batches++
	if w.armed && w.first.IsZero() && meta.NodeID != w.victim && now.After(w.since) {
		w.first, w.by = now, meta.NodeID
	}
}

// arm starts watching for an acknowledgement from a broker other than
// victim.
func (w *ackWatch) arm(victim int32, since time.Time) {
	w.mu.Lock()
	w.armed, w.victim, w.since, w.first, w.by = true, victim, since, time.Time{}, -1
	w.mu.Unlock()
}

// seen returns the first acknowledgement's time since the arm, if any.
func (w *ackWatch) seen() (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() {
		return 0, false
	}
	return w.first.Sub(w.since), true
}

// count returns the batches acknowledged so far.
func (w *ackWatch) count() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.batches
}

// failoverProducer is one of the producers running through the failovers.
type failoverProducer struct {
	name  string
	cl    *kgo.Client
	watch *ackWatch
	col   *collector
}

// failoverClients are the failover producers: kgo's defaults, and kgo
// with a short MetadataMinAge, which bounds how soon kgo may ask for
// metadata again after an error (kgo's default is 5 s).
var failoverClients = []struct {
	name string
	opts []kgo.Opt
}{
	{"kgo defaults", nil},
	{"kgo MetadataMinAge 250ms", []kgo.Opt{kgo.MetadataMinAge(250 * time.Millisecond)}},
}

// clusterFailovers runs -cluster-failovers rounds on c: producers send
// clusterFailoverRate records/s each to a one-partition RF=3 topic, and
// each round SIGKILLs the partition's leader, times the failover, restarts
// the broker and waits until it is back in the ISR.
func clusterFailovers(ctx context.Context, cfg config, c *strataCluster, session, hb time.Duration, defaults bool) *failoverRun {
	run := &failoverRun{session: session, heartbeat: hb, defaults: defaults}
	// Every round has its own topic, so a replica that does not rejoin one
	// round's partition does not hold up the next round.
	var topic atomic.Pointer[string]
	newTopic := func(i int) error {
		t := fmt.Sprintf("%s-%d", clusterFailTopic, i)
		if err := c.createReplicated(ctx, 1, clusterBrokers, t); err != nil {
			return err
		}
		topic.Store(&t)
		return nil
	}
	if err := newTopic(1); err != nil {
		run.err = err
		return run
	}
	var producers []*failoverProducer
	for _, fc := range failoverClients {
		p := &failoverProducer{name: fc.name, watch: &ackWatch{}, col: &collector{}}
		opts := append([]kgo.Opt{
			kgo.SeedBrokers(c.seeds()...),
			kgo.ProducerBatchCompression(kgo.NoCompression()),
			// A failover takes about the session timeout: records must
			// survive it, yet a stuck partition must still end as an error.
			kgo.RecordDeliveryTimeout(clusterFailTimeout),
			kgo.WithHooks(p.watch),
		}, fc.opts...)
		var err error
		if p.cl, err = kgo.NewClient(opts...); err != nil {
			run.err = fmt.Errorf("new client: %w", err)
			break
		}
		defer p.cl.Close()
		producers = append(producers, p)
		run.clients = append(run.clients, fc.name)
	}
	if run.err != nil {
		return run
	}
	pctx, cancel := context.WithCancel(ctx)
	payload := make([]byte, cfg.recordSize)
	_, _ = rand.Read(payload)
	var wg sync.WaitGroup
	for _, p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			var sent int64
			for {
				select {
				case <-pctx.Done():
					return
				case now := <-tick.C:
					for due := int64(clusterFailoverRate * now.Sub(start).Seconds()); sent < due && pctx.Err() == nil; sent++ {
						// ctx, not pctx: stopping the loop must not cancel
						// buffered records.
						p.cl.Produce(ctx, &kgo.Record{Topic: *topic.Load(), Value: payload}, p.col.done)
					}
				}
			}
		}()
	}
	finish := func() {
		cancel()
		wg.Wait()
		for _, p := range producers {
			fctx, fcancel := context.WithTimeout(ctx, clusterFailTimeout)
			if err := p.cl.Flush(fctx); err != nil && run.err == nil && ctx.Err() == nil {
				run.err = fmt.Errorf("%s: flush: %w", p.name, err)
			}
			fcancel()
			run.produced = append(run.produced, p.col.records.Load())
			run.failed = append(run.failed, p.col.failed.Load())
			if err := p.col.err(); err != nil && run.err == nil {
				run.err = fmt.Errorf("%s: %d records failed, first: %w", p.name, p.col.failed.Load(), err)
			}
		}
	}
	defer func() {
		if pctx.Err() == nil {
			finish()
		}
	}()

	for i := range cfg.clusterFailovers {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			if err := newTopic(i + 1); err != nil {
				run.err = fmt.Errorf("round %d: %w", i+1, err)
				break
			}
		}
		rd := runFailoverRound(ctx, cfg, c, producers, *topic.Load())
		var acks []string
		for _, d := range rd.firstAcks {
			acks = append(acks, d.Round(time.Millisecond).String())
		}
		logf("cluster: failover %d/%d (%s): broker %d killed, leader moved %v, first acks %v, rejoined %v%s%s",
			i+1, cfg.clusterFailovers, run.settings(), rd.victim, rd.leaderMoved.Round(time.Millisecond),
			strings.Join(acks, " / "), rd.rejoin.Round(time.Millisecond), errSuffix(rd.err), errSuffix(rd.rejoinErr))
		run.rounds = append(run.rounds, rd)
		if rd.err != nil {
			break
		}
	}
	finish()
	return run
}

// errSuffix returns "; err" or "".
func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return "; " + err.Error()
}

// runFailoverRound runs one failover of the topic's partition 0.
func runFailoverRound(ctx context.Context, cfg config, c *strataCluster, producers []*failoverProducer, topic string) (rd failoverRound) {
	rd.victim, rd.newLeader = -1, -1
	// Every replica in sync, and records flowing, before the kill.
	var (
		leader int32
		ctrl   int32
		last   string
	)
	batches := func() int64 {
		n := int64(0)
		for _, p := range producers {
			n += p.watch.count()
		}
		return n
	}
	before := batches()
	err := waitUntil(ctx, clusterFailTimeout, func() (bool, error) {
		vs, err := c.views(ctx, -1, topic)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		leader, ctrl = vs[0].parts[0].leader, vs[0].controller
		ok, why := all(vs, func(v topicView) (bool, string) {
			p := v.parts[0]
			return p.leader == leader && p.leader >= 0 && len(p.isr) == clusterBrokers && v.controller == ctrl,
				fmt.Sprintf("leader %d, ISR %v, controller %d", p.leader, p.isr, v.controller)
		})
		n := batches() - before
		last = fmt.Sprintf("%s; %d batches acknowledged", why, n)
		return ok && n > 10, nil
	})
	if err != nil {
		rd.err = fmt.Errorf("before the kill: %w (%s)", err, last)
		return rd
	}
	rd.victim, rd.controller = leader, leader == ctrl

	killed := time.Now()
	for _, p := range producers {
		p.watch.arm(rd.victim, killed)
	}
	rd.firstAcks = make([]time.Duration, len(producers))
	c.kill(int(rd.victim))
	err = waitUntil(ctx, clusterFailTimeout, func() (bool, error) {
		if rd.leaderMoved == 0 {
			// The first survivor to name another leader.
			for _, n := range c.nodes {
				if n.proc == nil || rd.leaderMoved > 0 {
					continue
				}
				if v, err := n.view(ctx, topic); err == nil {
					if l := v.parts[0].leader; l >= 0 && l != rd.victim {
						rd.leaderMoved, rd.newLeader = time.Since(killed), l
					}
				}
			}
		}
		done := rd.leaderMoved > 0
		for i, p := range producers {
			if rd.firstAcks[i] == 0 {
				rd.firstAcks[i], _ = p.watch.seen()
			}
			done = done && rd.firstAcks[i] > 0
		}
		last = fmt.Sprintf("leader moved after %v, first acks after %v", rd.leaderMoved, rd.firstAcks)
		return done, nil
	})
	if err != nil {
		rd.err = fmt.Errorf("failover after killing broker %d: %w (%s)", rd.victim, err, last)
		// Bring it back anyway, so the cluster stays usable.
		_ = c.start(ctx, int(rd.victim))
		return rd
	}

	restarted := time.Now()
	if err := c.start(ctx, int(rd.victim)); err != nil {
		rd.err = fmt.Errorf("restart: %w", err)
		return rd
	}
	rejoinTimeout := cfg.clusterRejoinTimeout
	if rejoinTimeout <= 0 {
		rejoinTimeout = clusterRejoinTimeout
	}
	err = waitUntil(ctx, rejoinTimeout, func() (bool, error) {
		if err := c.alive(); err != nil {
			return false, err
		}
		vs, err := c.views(ctx, rd.victim, topic)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var in bool
		in, last = all(vs, func(v topicView) (bool, string) {
			return slices.Contains(v.parts[0].isr, rd.victim), fmt.Sprintf("ISR %v", v.parts[0].isr)
		})
		return in, nil
	})
	if err != nil {
		rd.rejoinErr = fmt.Errorf("broker %d back in the ISR of %s: %w (%s)", rd.victim, topic, err, last)
		if n, first := logLines(c.nodes[rd.victim].log, restarted, "level=ERROR"); n > 0 {
			rd.rejoinErr = fmt.Errorf("%w; its log since the restart has %d ERROR lines, first: %s", rd.rejoinErr, n, first)
		}
		return rd
	}
	rd.rejoin = time.Since(restarted)
	return rd
}

// logLines counts the lines of a broker log written after since (by their
// time= field) that contain what, and returns the first of them without
// its time and level.
func logLines(path string, since time.Time, what string) (n int, first string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, what) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || at.Before(since) {
			continue
		}
		if n++; n == 1 {
			first = line
			if _, rest, ok := strings.Cut(line, "msg="); ok {
				first = "msg=" + rest
			}
		}
	}
	return n, first
}

// durStats returns the median and the worst of ds.
func durStats(ds []time.Duration) (median, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		median = s[len(s)/2]
	} else {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[len(s)-1]
}

// writeCluster renders the replication phase.
func (r *report) writeCluster(b *strings.Builder) {
	c := r.cluster
	if c == nil {
		return
	}
	b.WriteString("\n### Replication (3-broker cluster)\n\n")
	fmt.Fprintf(b, "Three `strata serve` processes on loopback forming one metadata quorum (all three vote), "+
		"sharing this machine's %d cores with each other and with the load tool. Producers: franz-go, acks=all, "+
		"idempotent, %d-byte random values, no compression, seeded with every broker.\n", c.cores, r.cfg.recordSize)
	if c.err != nil {
		fmt.Fprintf(b, "\nFAILED: %s\n", cell(c.err.Error(), 300))
	}
	for _, n := range c.notes {
		fmt.Fprintf(b, "\nNote: %s\n", cell(n, 300))
	}
	if len(c.tput) > 0 {
		fmt.Fprintf(b, "\nProduce: %d partitions per topic, %v per run; the max-rate topics are deleted before "+
			"the 50%% runs, which go to fresh topics. Latency from each record's `Produce` call to its promise. "+
			"CPU: all three brokers together.\n\n", c.partitions, r.cfg.duration)
		b.WriteString("| topic | MB/s | records/s | p50 | p99 | p99.9 | notes |\n|---|---:|---:|---:|---:|---:|---|\n")
		for _, t := range c.tput {
			p50, p99, p999 := "", "", ""
			if t.lat != nil && t.lat.n > 0 {
				p50, p99, p999 = ms(t.lat.p50), ms(t.lat.p99), ms(t.lat.p999)
			}
			note := fmt.Sprintf("%d records in %.1fs; %s", t.st.records, t.st.elapsed.Seconds(), t.cpu)
			if t.rate > 0 {
				note = fmt.Sprintf("target %.0f rec/s; ", t.rate) + note
			}
			if t.rate < 0 {
				note = ""
			}
			fmt.Fprintf(b, "| %s | %.1f | %.0f | %s | %s | %s | %s |\n", t.name(), t.st.mbps(), t.st.recps(),
				p50, p99, p999, errOr(note, t.err))
		}
		var rf1, rf3 *clusterTputRow
		for i := range c.tput {
			if c.tput[i].rate == 0 && c.tput[i].err == nil {
				if c.tput[i].rf == 1 {
					rf1 = &c.tput[i]
				} else {
					rf3 = &c.tput[i]
				}
			}
		}
		if rf1 != nil && rf3 != nil && rf1.st.mbps() > 0 {
			fmt.Fprintf(b, "\nMax-rate throughput RF=3 / RF=1: **%.2f** (aim: ≥ 0.60).\n", rf3.st.mbps()/rf1.st.mbps())
		}
	}
	if cu := c.catchup; cu != nil {
		fmt.Fprintf(b, "\nCatch-up: a broker that is not the controller is SIGKILLed; once every other broker's "+
			"Metadata shows it fenced and out of every ISR of a fresh topic (%d partitions, RF=3, "+
			"min.insync.replicas=%s), the records are produced to that topic at the maximum rate, then the broker "+
			"is started again. **catch-up MB/s** = produced value bytes / (restart → back in every ISR in every other "+
			"broker's Metadata); **copy MB/s** counts only from the broker's unfencing (listed in the others' "+
			"Metadata again, after it rejoined the quorum and registered) to back in every ISR.\n\n",
			cu.partitions, clusterMinISR)
		b.WriteString("| broker | produced while down | kill → fenced, out of every ISR | restart → listening | restart → unfenced | restart → in every ISR | catch-up MB/s | copy MB/s | notes |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		opt := func(d time.Duration) string {
			if d <= 0 {
				return ""
			}
			return secs(d)
		}
		mbps, copyMBps := "", ""
		if cu.inISR > 0 {
			mbps = fmt.Sprintf("**%.1f**", cu.mbps())
			if cu.unfenced > 0 && cu.inISR > cu.unfenced {
				copyMBps = fmt.Sprintf("%.1f", rate(float64(cu.st.bytes)/1e6, cu.inISR-cu.unfenced))
			}
		}
		note := ""
		if cu.st.records > 0 {
			note = fmt.Sprintf("%d records produced at %.1f MB/s with the broker down", cu.st.records, cu.st.mbps())
		}
		fmt.Fprintf(b, "| %d | %.1f MB | %s | %s | %s | %s | %s | %s | %s |\n", cu.victim, float64(cu.st.bytes)/1e6,
			opt(cu.fenced), opt(cu.listening), opt(cu.unfenced), opt(cu.inISR), mbps, copyMBps, errOr(note, cu.err))
	}
	if len(c.failovers) > 0 {
		fmt.Fprintf(b, "\nFailover: two producers (each its own kgo client: kgo's defaults, and kgo with "+
			"`MetadataMinAge` 250ms instead of 5 s) send %d records/s each to a one-partition topic (RF=3, "+
			"min.insync.replicas=%s); each round SIGKILLs the partition's leader, waits for the failover, starts the "+
			"broker again and waits until it is back in the ISR. **kill → first ack**: until the producer's first "+
			"batch acknowledged by another broker (kgo's OnProduceBatchWritten hook); **kill → new leader**: until a "+
			"surviving broker's Metadata names another leader (polled every %v); **restart → in ISR**: in every "+
			"other broker's Metadata. Each settings row is a fresh cluster. Median and worst over the rounds.\n\n",
			clusterFailoverRate, clusterMinISR, clusterPoll)
		b.WriteString("| broker settings | client | rounds | kill → first ack, median | worst | kill → new leader, median | worst | restart → in ISR, median | worst | notes |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, f := range c.failovers {
			if len(f.clients) == 0 {
				fmt.Fprintf(b, "| %s | | 0 | | | | | | | %s |\n", f.settings(), errOr("", f.err))
			}
			for ci, name := range f.clients {
				var acks, moves, rejoins []time.Duration
				stuck := 0
				for _, rd := range f.rounds {
					if rd.err == nil {
						acks, moves = append(acks, rd.firstAcks[ci]), append(moves, rd.leaderMoved)
						if rd.rejoinErr == nil {
							rejoins = append(rejoins, rd.rejoin)
						} else {
							stuck++
						}
					}
				}
				am, aw := durStats(acks)
				mm, mw := durStats(moves)
				rm, rw := durStats(rejoins)
				note := ""
				if ci < len(f.produced) {
					note = fmt.Sprintf("%d records acknowledged, %d failed", f.produced[ci], f.failed[ci])
				}
				if stuck > 0 {
					note = fmt.Sprintf("%d of %d restarted brokers never rejoined the ISR (restart → in ISR over the others); ", stuck, len(acks)) + note
				}
				if ci == 0 {
					note = errOr(note, f.err)
				}
				fmt.Fprintf(b, "| %s | %s | %d | **%s** | **%s** | %s | %s | %s | %s | %s |\n", f.settings(), name, len(acks),
					secs(am), secs(aw), secs(mm), secs(mw), secs(rm), secs(rw), note)
			}
		}
		b.WriteString("\n| broker settings | round | killed leader | it was the controller | new leader | kill → new leader |")
		for _, name := range failoverClients {
			fmt.Fprintf(b, " kill → first ack, %s |", name.name)
		}
		b.WriteString(" restart → in ISR | notes |\n|---|---:|---:|---|---:|---:|")
		b.WriteString(strings.Repeat("---:|", len(failoverClients)) + "---:|---|\n")
		for _, f := range c.failovers {
			for i, rd := range f.rounds {
				ctrl := "no"
				if rd.controller {
					ctrl = "yes"
				}
				fmt.Fprintf(b, "| %s | %d | %d | %s | %d | %s |", f.settings(), i+1, rd.victim, ctrl, rd.newLeader, secs(rd.leaderMoved))
				for ci := range failoverClients {
					d := ""
					if ci < len(rd.firstAcks) {
						d = secs(rd.firstAcks[ci])
					}
					fmt.Fprintf(b, " %s |", d)
				}
				rejoin := secs(rd.rejoin)
				if rd.rejoinErr != nil {
					rejoin = "never"
				}
				fmt.Fprintf(b, " %s | %s |\n", rejoin, errOr(errOr("", rd.err), rd.rejoinErr))
			}
		}
	}
}
