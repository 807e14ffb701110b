package main

// The consumer-group phase (-groups): rebalance time of real kgo group
// members with the cooperative-sticky and the eager range balancer,
// sustained simple offset commits, and the time the coordinators take to
// load many groups back after a restart.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

// The groups phase's fixed settings.
const (
	groupsTopic       = "groups-rebalance"
	groupsCommitTopic = "groups-commit"
	groupsLoadTopic   = "groups-load"
	// groupsCommitParts is the partitions of one OffsetCommit request.
	groupsCommitParts = 4
	// groupsLoadSample is the groups read back after the restart.
	groupsLoadSample = 100
	// groupsLoadWorkers commit the load part's groups in parallel.
	groupsLoadWorkers = 32
	// groupsStepTimeout bounds one rebalance step (kgo's default rebalance
	// timeout is 60 s).
	groupsStepTimeout = 2 * time.Minute
	// groupsLoadTimeout bounds the wait for correct answers after the restart.
	groupsLoadTimeout = 5 * time.Minute
	// groupsRequestTimeout bounds one raw request.
	groupsRequestTimeout = 15 * time.Second
	// groupsPoll is the pause between the checks of a wait loop.
	groupsPoll = 2 * time.Millisecond
	// defaultOffsetsPartitions is the broker's default partition count of
	// __consumer_offsets (used when the metadata does not show the topic).
	defaultOffsetsPartitions = 50
)

// groupsResult is the outcome of the consumer-group phase.
type groupsResult struct {
	partitions int
	// kgo's group timings as the members used them.
	heartbeat, session, rebalance time.Duration
	rows                          []rebalanceRow
	commit                        *commitResult
	load                          *coordLoadResult
	err                           error // setup failure outside any part
}

// rebalanceRow is one line of the rebalance table.
type rebalanceRow struct {
	members  int
	balancer string
	// formation, join and leave: from the clients' start (the new member's
	// start, the leaving member's Close) until the ownership was complete
	// again; gens is the generations the group went through until it was
	// Stable again.
	formation      rebalanceStep
	join, leave    []rebalanceStep // one per -groups-rounds
	violations     int
	firstViolation string
	lost           int // OnPartitionsLost calls
	err            error
}

// rebalanceStep is one measured step of a rebalance row.
type rebalanceStep struct {
	took time.Duration
	gens int32
	done bool
}

// commitResult is the outcome of the sustained-commit part.
type commitResult struct {
	committers int
	elapsed    time.Duration
	requests   int64
	lat        latencySummary
	verified   int // groups whose fetched offsets were the last committed ones
	err        error
}

// reqps returns OffsetCommit requests per second.
func (c *commitResult) reqps() float64 { return rate(float64(c.requests), c.elapsed) }

// coordLoadResult is the outcome of the coordinator-load part.
type coordLoadResult struct {
	groups        int
	createTook    time.Duration // committing every group's offsets
	sample        int
	sampleParts   int // distinct __consumer_offsets partitions of the sample
	offsetsParts  int
	listening     time.Duration // process start → accepting connections
	firstAnswer   time.Duration // process start → first OffsetFetch response
	firstCorrect  time.Duration // process start → first sampled group answered correctly
	allCorrect    time.Duration // process start → every sampled group answered correctly
	brokerTook    time.Duration // took= of the broker's "group coordinators loaded"
	loadedAt      time.Duration // process start → that line's time
	records       int64         // records= summed over "loaded group coordinator"
	loadedGroups  int64         // groups= summed likewise
	coordLines    int           // "loaded group coordinator" lines
	polls         int           // OffsetFetch requests of the wait loop
	loadingAnswer int           // groups answered COORDINATOR_LOAD_IN_PROGRESS
	otherErrs     int           // groups answered another error
	firstOther    string
	wrong         int // groups answered without error but with other offsets
	firstWrong    string
	err           error
}

// runGroups starts a broker and measures rebalances and sustained commits
// on it, then a second broker for the coordinator load after a restart.
func runGroups(ctx context.Context, cfg config, base string) (res groupsResult) {
	res.partitions = cfg.groupsPartitions
	dir := filepath.Join(base, "groups")
	b, err := startBrokerIn(ctx, cfg.strataBin, filepath.Join(dir, "data"), filepath.Join(dir, "broker.log"), nil)
	if err != nil {
		res.err = fmt.Errorf("start broker: %w", err)
		return res
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if err := b.Stop(); err != nil && res.err == nil {
			res.err = err
		}
		b.reportLog("groups")
	}
	defer stop()
	seeds := []string{b.addr}
	if err := createTopics(ctx, seeds, int32(cfg.groupsPartitions), groupsTopic); err != nil {
		res.err = err
		return res
	}
	if err := createTopics(ctx, seeds, groupsCommitParts, groupsCommitTopic); err != nil {
		res.err = err
		return res
	}
	if res.heartbeat, res.session, res.rebalance, err = groupTimings(seeds, cfg.groupsHeartbeat); err != nil {
		res.err = err
		return res
	}

	for _, n := range cfg.groupsMembers {
		for _, bal := range []string{balancerCooperative, balancerRange} {
			if ctx.Err() != nil {
				return res
			}
			logf("groups: rebalances of %d members, %s", n, bal)
			row := runRebalance(ctx, cfg, seeds, n, bal, res.heartbeat)
			if row.err == nil {
				row.err = b.alive()
			}
			res.rows = append(res.rows, row)
		}
	}
	if ctx.Err() != nil {
		return res
	}
	logf("groups: %d committers for %v", cfg.groupsCommitters, cfg.duration)
	c := runCommits(ctx, seeds, cfg.groupsCommitters, cfg.duration)
	if c.err != nil {
		c.err = withAlive(c.err, target{alive: b.alive})
	}
	res.commit = &c
	stop()
	if cfg.groupsLoad > 0 && ctx.Err() == nil {
		logf("groups: coordinator load of %d groups", cfg.groupsLoad)
		l := runCoordLoad(ctx, cfg, filepath.Join(dir, "load"), cfg.groupsLoad)
		res.load = &l
	}
	return res
}

// groupTimings returns the heartbeat interval, session timeout and
// rebalance timeout of a group member configured like the phase's members.
func groupTimings(seeds []string, heartbeat time.Duration) (hb, session, rebalance time.Duration, err error) {
	// Only the options are read back: a client without a group has kgo's
	// group defaults too.
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...)}
	if heartbeat > 0 {
		opts = append(opts, kgo.HeartbeatInterval(heartbeat))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	hb, _ = cl.OptValue(kgo.HeartbeatInterval).(time.Duration)
	session, _ = cl.OptValue(kgo.SessionTimeout).(time.Duration)
	rebalance, _ = cl.OptValue(kgo.RebalanceTimeout).(time.Duration)
	return hb, session, rebalance, nil
}

// The balancers of the rebalance table.
const (
	balancerCooperative = "cooperative-sticky"
	balancerRange       = "range (eager)"
)

// ownership tracks which member owns each partition, from the members'
// OnPartitionsAssigned/Revoked/Lost callbacks.
type ownership struct {
	mu      sync.Mutex
	owner   []int // partition → member index, -1 for none
	owned   []int // member → partitions owned
	live    []bool
	changed time.Time // the last change
	// violations counts assignments of a partition another member owned.
	violations     int
	firstViolation string
	lost           int
}

func newOwnership(partitions, members int) *ownership {
	o := &ownership{owner: make([]int, partitions), owned: make([]int, members), live: make([]bool, members)}
	for i := range o.owner {
		o.owner[i] = -1
	}
	return o
}

// assign records that member m now owns ps.
func (o *ownership) assign(m int, ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		if int(p) >= len(o.owner) {
			continue
		}
		switch prev := o.owner[p]; {
		case prev == m:
			continue
		case prev >= 0:
			o.violations++
			if o.firstViolation == "" {
				o.firstViolation = fmt.Sprintf("partition %d assigned to member %d while member %d owned it", p, m, prev)
			}
			o.owned[prev]--
		}
		o.owner[p] = m
		o.owned[m]++
	}
	o.changed = time.Now()
}

// revoke records that member m no longer owns ps.
func (o *ownership) revoke(m int, ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		if int(p) < len(o.owner) && o.owner[p] == m {
			o.owner[p] = -1
			o.owned[m]--
		}
	}
	o.changed = time.Now()
}

// revokeAll records that member m owns nothing.
func (o *ownership) revokeAll(m int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p, owner := range o.owner {
		if owner == m {
			o.owner[p] = -1
			o.owned[m]--
		}
	}
	o.changed = time.Now()
}

// setLive marks member m as a member (or not) of the group.
func (o *ownership) setLive(m int, live bool) {
	o.mu.Lock()
	o.live[m] = live
	o.mu.Unlock()
}

// complete reports whether every partition is owned by a live member and,
// when there are no more live members than partitions, every live member
// owns one, and when the last change happened.
func (o *ownership) complete() (bool, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.owner {
		if m < 0 || !o.live[m] {
			return false, o.changed
		}
	}
	var live int
	for _, l := range o.live {
		if l {
			live++
		}
	}
	if live <= len(o.owner) {
		for m, l := range o.live {
			if l && o.owned[m] == 0 {
				return false, o.changed
			}
		}
	}
	return true, o.changed
}

// waitComplete waits up to groupsStepTimeout for the ownership to be
// complete and returns the time of the change that completed it.
func (o *ownership) waitComplete(ctx context.Context, alive func() error) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, groupsStepTimeout)
	defer cancel()
	for {
		if ok, at := o.complete(); ok {
			return at, nil
		}
		if err := alive(); err != nil {
			return time.Time{}, err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("ownership not complete after %v: %s", groupsStepTimeout, o.summary())
		case <-time.After(groupsPoll):
		}
	}
}

// summary describes the ownership for an error message.
func (o *ownership) summary() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	unowned := 0
	for _, m := range o.owner {
		if m < 0 {
			unowned++
		}
	}
	var empty []string
	for m, l := range o.live {
		if l && o.owned[m] == 0 {
			empty = append(empty, strconv.Itoa(m))
		}
	}
	return fmt.Sprintf("%d of %d partitions unowned, live members without partitions: [%s]",
		unowned, len(o.owner), strings.Join(empty, " "))
}

// groupMembers is the kgo clients of one rebalance row.
type groupMembers struct {
	seeds     []string
	group     string
	balancer  kgo.GroupBalancer
	heartbeat time.Duration
	own       *ownership
	cls       []*kgo.Client
}

// start creates member m's client, which joins the group at once.
func (g *groupMembers) start(m int) error {
	own := g.own
	opts := []kgo.Opt{
		kgo.SeedBrokers(g.seeds...),
		kgo.ConsumerGroup(g.group),
		kgo.ConsumeTopics(groupsTopic),
		kgo.Balancers(g.balancer),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			own.assign(m, a[groupsTopic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			own.revoke(m, r[groupsTopic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			own.mu.Lock()
			own.lost++
			own.mu.Unlock()
			own.revoke(m, l[groupsTopic])
		}),
	}
	if g.heartbeat > 0 {
		opts = append(opts, kgo.HeartbeatInterval(g.heartbeat))
	}
	own.setLive(m, true)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		own.setLive(m, false)
		return fmt.Errorf("new member client: %w", err)
	}
	g.cls[m] = cl
	return nil
}

// leave closes member m (kgo revokes its partitions and sends LeaveGroup).
func (g *groupMembers) leave(m int) {
	g.own.setLive(m, false)
	g.cls[m].Close()
	g.cls[m] = nil
	g.own.revokeAll(m)
}

// closeAll closes the remaining members in parallel, waiting up to a
// minute for them.
func (g *groupMembers) closeAll() {
	var wg sync.WaitGroup
	for m, cl := range g.cls {
		if cl == nil {
			continue
		}
		g.own.setLive(m, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.Close()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		logf("groups: members of %s still closing after a minute; going on", g.group)
	}
}

// generation returns the highest generation a live member has seen.
func (g *groupMembers) generation() int32 {
	gen := int32(-1)
	for m, cl := range g.cls {
		g.own.mu.Lock()
		live := g.own.live[m]
		g.own.mu.Unlock()
		if cl == nil || !live {
			continue
		}
		if _, gg := cl.GroupMetadata(); gg > gen {
			gen = gg
		}
	}
	return gen
}

// waitStable waits until DescribeGroups shows the group Stable with n
// members and the ownership is complete, and returns the time of the last
// ownership change: the one that gave the stable group its assignment.
func (g *groupMembers) waitStable(ctx context.Context, adm *kadm.Client, n int) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, groupsStepTimeout)
	defer cancel()
	var last string
	for {
		dg, err := adm.DescribeGroups(ctx, g.group)
		if err == nil {
			err = dg.Error()
		}
		if err == nil {
			d := dg[g.group]
			last = fmt.Sprintf("state %s, %d members", d.State, len(d.Members))
			if ok, at := g.own.complete(); ok && d.State == "Stable" && len(d.Members) == n {
				return at, nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("group %s not stable with %d members after %v (%s; %s)", g.group, n, groupsStepTimeout, last, g.own.summary())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runRebalance measures one row: n members forming a group, one more
// joining, and one leaving.
func runRebalance(ctx context.Context, cfg config, seeds []string, n int, balancer string, heartbeat time.Duration) (row rebalanceRow) {
	row.members, row.balancer = n, balancer
	g := &groupMembers{
		seeds: seeds, heartbeat: cfg.groupsHeartbeat,
		group: fmt.Sprintf("strata-load-%s-%d", strings.Fields(balancer)[0], n),
		own:   newOwnership(cfg.groupsPartitions, n+cfg.groupsRounds),
		cls:   make([]*kgo.Client, n+cfg.groupsRounds),
	}
	g.balancer = kgo.CooperativeStickyBalancer()
	if balancer == balancerRange {
		g.balancer = kgo.RangeBalancer()
	}
	admCl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		row.err = fmt.Errorf("new admin client: %w", err)
		return row
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	defer func() {
		g.closeAll()
		g.own.mu.Lock()
		row.violations, row.firstViolation, row.lost = g.own.violations, g.own.firstViolation, g.own.lost
		g.own.mu.Unlock()
		if row.violations > 0 {
			row.err = errors.Join(row.err, fmt.Errorf("%d assignments of a partition another member still owned; first: %s",
				row.violations, row.firstViolation))
		}
	}()
	rounds := cfg.groupsRounds
	// (a) formation: n members at once.
	start := time.Now()
	for m := range n {
		if err := g.start(m); err != nil {
			row.err = err
			return row
		}
	}
	if row.formation, row.err = g.step(ctx, adm, start, n, -1); row.err != nil {
		row.err = fmt.Errorf("formation: %w", row.err)
		return row
	}
	gen := row.formation.gens

	for r := range rounds {
		// (b) one more member joins the stable group.
		desync(ctx, heartbeat)
		start = time.Now()
		if err := g.start(n + r); err != nil {
			row.err = err
			return row
		}
		s, err := g.step(ctx, adm, start, n+1, gen)
		if err != nil {
			row.err = fmt.Errorf("join %d: %w", r+1, err)
			return row
		}
		row.join, gen = append(row.join, s), gen+s.gens

		// (c) the oldest member (the group's leader) leaves.
		desync(ctx, heartbeat)
		start = time.Now()
		g.leave(r)
		if s, err = g.step(ctx, adm, start, n, gen); err != nil {
			row.err = fmt.Errorf("leave %d: %w", r+1, err)
			return row
		}
		row.leave, gen = append(row.leave, s), gen+s.gens
	}
	return row
}

// step waits for the ownership to be complete and the group to be Stable
// with n members, and returns the time from start to the last ownership
// change and the generations since gen (-1: the generation reached).
func (g *groupMembers) step(ctx context.Context, adm *kadm.Client, start time.Time, n int, gen int32) (rebalanceStep, error) {
	if _, err := g.own.waitComplete(ctx, ctx.Err); err != nil {
		return rebalanceStep{}, err
	}
	at, err := g.waitStable(ctx, adm, n)
	if err != nil {
		return rebalanceStep{}, err
	}
	s := rebalanceStep{took: at.Sub(start), gens: g.generation(), done: true}
	if gen >= 0 {
		s.gens -= gen
	}
	return s, nil
}

// desync waits a random part of the heartbeat interval: the members'
// heartbeat timers restart when a rebalance ends, and a real join or leave
// comes at any point of their cycle, not right after the group became
// Stable.
func desync(ctx context.Context, heartbeat time.Duration) {
	if heartbeat <= 0 {
		return
	}
	select {
	case <-time.After(mrand.N(heartbeat)):
	case <-ctx.Done():
	}
}

// offsetCommit builds a simple (generation -1, no member id) OffsetCommit
// of offsets for partitions 0..len(offsets)-1 of topic.
func offsetCommit(groupID, topic string, offsets []int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = groupID
	req.Generation = -1
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = topic
	for p, o := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = int32(p), o
		t.Partitions = append(t.Partitions, rp)
	}
	req.Topics = append(req.Topics, t)
	return req
}

// commitErr returns the first error of an OffsetCommit response.
func commitErr(resp *kmsg.OffsetCommitResponse, want int) error {
	n := 0
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("commit %s-%d: %w", t.Topic, p.Partition, err)
			}
			n++
		}
	}
	if n != want {
		return fmt.Errorf("commit answered %d partitions, want %d", n, want)
	}
	return nil
}

// commitOnce sends one OffsetCommit through the client (which finds the
// group's coordinator).
func commitOnce(ctx context.Context, cl *kgo.Client, groupID, topic string, offsets []int64) error {
	ctx, cancel := context.WithTimeout(ctx, groupsRequestTimeout)
	defer cancel()
	resp, err := offsetCommit(groupID, topic, offsets).RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return commitErr(resp, len(offsets))
}

// commitOffsetsFor is the offsets of sequence number seq: seq*parts+p for
// partition p, so that every partition and request differs.
func commitOffsetsFor(seq int64) []int64 {
	out := make([]int64, groupsCommitParts)
	for p := range out {
		out[p] = seq*groupsCommitParts + int64(p)
	}
	return out
}

// runCommits runs n committers, each with its own client and simple group,
// committing groupsCommitParts partitions per request for d, and checks
// with OffsetFetch that each group's offsets are its last commit's.
func runCommits(ctx context.Context, seeds []string, n int, d time.Duration) (res commitResult) {
	res.committers = n
	type committer struct {
		cl   *kgo.Client
		id   string
		last int64
		lat  []time.Duration
		err  error
	}
	cs := make([]*committer, n)
	defer func() {
		for _, c := range cs {
			if c != nil && c.cl != nil {
				c.cl.Close()
			}
		}
	}()
	for i := range cs {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			res.err = fmt.Errorf("new client: %w", err)
			return res
		}
		cs[i] = &committer{cl: cl, id: fmt.Sprintf("strata-load-commit-%02d", i)}
		// Warm up: find the coordinator and create the group.
		if err := commitOnce(ctx, cl, cs[i].id, groupsCommitTopic, commitOffsetsFor(0)); err != nil {
			res.err = fmt.Errorf("first commit of %s: %w", cs[i].id, err)
			return res
		}
	}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(1); time.Now().Before(deadline) && ctx.Err() == nil; seq++ {
				t := time.Now()
				if err := commitOnce(ctx, c.cl, c.id, groupsCommitTopic, commitOffsetsFor(seq)); err != nil {
					c.err = fmt.Errorf("%s, commit %d: %w", c.id, seq, err)
					return
				}
				c.lat = append(c.lat, time.Since(t))
				c.last = seq
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	var lat []time.Duration
	var errs []error
	for _, c := range cs {
		lat = append(lat, c.lat...)
		errs = append(errs, c.err)
	}
	res.requests = int64(len(lat))
	res.lat = summarize(lat)
	if err := errors.Join(errs...); err != nil {
		res.err = err
		return res
	}
	// Verify: each group's offsets are its last commit's.
	adm := kadm.NewClient(cs[0].cl)
	for _, c := range cs {
		fctx, cancel := context.WithTimeout(ctx, groupsRequestTimeout)
		fetched, err := adm.FetchOffsets(fctx, c.id)
		cancel()
		if err == nil {
			err = fetched.Error()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("fetch offsets of %s: %w", c.id, err))
			continue
		}
		want := commitOffsetsFor(c.last)
		ok := true
		for p, w := range want {
			if o, found := fetched.Lookup(groupsCommitTopic, int32(p)); !found || o.At != w {
				errs = append(errs, fmt.Errorf("%s: %s-%d fetched %d (found %v), last committed %d",
					c.id, groupsCommitTopic, p, o.At, found, w))
				ok = false
			}
		}
		if ok {
			res.verified++
		}
	}
	res.err = errors.Join(errs...)
	return res
}

// loadGroupName is the name of group i of the load part.
func loadGroupName(i int) string { return fmt.Sprintf("strata-load-g%05d", i) }

// loadOffsets is the offsets group i commits: i*parts+p+1 for partition p.
func loadOffsets(i int) []int64 {
	out := make([]int64, groupsCommitParts)
	for p := range out {
		out[p] = int64(i)*groupsCommitParts + int64(p) + 1
	}
	return out
}

// runCoordLoad creates n groups with committed offsets on a fresh broker,
// restarts it gracefully on the same data directory and measures until
// a sample of the groups answers OffsetFetch with the right offsets.
func runCoordLoad(ctx context.Context, cfg config, dir string, n int) (res coordLoadResult) {
	res.groups = n
	dataDir := filepath.Join(dir, "data")
	info := []string{"--log-level", "info"}
	b, err := startBrokerIn(ctx, cfg.strataBin, dataDir, filepath.Join(dir, "broker-fill.log"), info)
	if err != nil {
		res.err = fmt.Errorf("start broker: %w", err)
		return res
	}
	seeds := []string{b.addr}
	err = createTopics(ctx, seeds, groupsCommitParts, groupsLoadTopic)
	if err == nil {
		res.offsetsParts = offsetsPartitions(ctx, seeds)
		start := time.Now()
		err = fillGroups(ctx, seeds, n)
		res.createTook = time.Since(start)
		if err != nil {
			err = withAlive(err, target{alive: b.alive})
		}
	}
	stopErr := b.Stop()
	b.reportLog("groups fill")
	if err = errors.Join(err, stopErr); err != nil {
		res.err = err
		return res
	}

	sample := loadSample(n, groupsLoadSample, int32(res.offsetsParts))
	res.sample = len(sample)
	parts := map[int32]bool{}
	for _, i := range sample {
		parts[group.PartitionFor(loadGroupName(i), int32(res.offsetsParts))] = true
	}
	res.sampleParts = len(parts)

	logPath := filepath.Join(dir, "broker-restart.log")
	t0 := time.Now()
	b, err = startBrokerIn(ctx, cfg.strataBin, dataDir, logPath, info)
	if err != nil {
		res.err = fmt.Errorf("restart broker: %w", err)
		return res
	}
	res.listening = time.Since(t0)
	defer func() {
		if err := b.Stop(); err != nil && res.err == nil {
			res.err = err
		}
		b.reportLog("groups restart")
	}()
	if err := res.waitCorrect(ctx, b, sample, t0); err != nil {
		res.err = withAlive(err, target{alive: b.alive})
		return res
	}
	if err := res.readLoadLog(ctx, b, t0); err != nil {
		res.err = err
	}
	if res.wrong > 0 {
		res.err = errors.Join(res.err, fmt.Errorf("%d OffsetFetch answers without error but with other offsets than committed; first: %s",
			res.wrong, res.firstWrong))
	}
	return res
}

// offsetsPartitions returns the partition count of __consumer_offsets from
// the metadata, or the broker's default when the topic is not shown.
func offsetsPartitions(ctx context.Context, seeds []string) int {
	n := defaultOffsetsPartitions
	_ = withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		md, err := adm.Metadata(ctx, "__consumer_offsets")
		if err != nil {
			return err
		}
		if t, ok := md.Topics["__consumer_offsets"]; ok && t.Err == nil && len(t.Partitions) > 0 {
			n = len(t.Partitions)
		}
		return nil
	})
	return n
}

// fillGroups commits loadOffsets(i) for groups 0..n-1 from
// groupsLoadWorkers clients.
func fillGroups(ctx context.Context, seeds []string, n int) error {
	var next atomic.Int64
	errs := make([]error, groupsLoadWorkers)
	var wg sync.WaitGroup
	for w := range groupsLoadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
			if err != nil {
				errs[w] = err
				return
			}
			defer cl.Close()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := commitOnce(ctx, cl, loadGroupName(i), groupsLoadTopic, loadOffsets(i)); err != nil {
					errs[w] = fmt.Errorf("commit %s: %w", loadGroupName(i), err)
					return
				}
			}
			errs[w] = ctx.Err()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// loadSample picks k of the n groups at random, at most ceil(k/parts) per
// __consumer_offsets partition so that they spread over the partitions.
func loadSample(n, k int, parts int32) []int {
	k = min(k, n)
	per := (k + int(parts) - 1) / int(parts)
	count := map[int32]int{}
	var out []int
	for _, i := range mrand.Perm(n) {
		p := group.PartitionFor(loadGroupName(i), parts)
		if count[p] >= per {
			continue
		}
		count[p]++
		out = append(out, i)
		if len(out) == k {
			break
		}
	}
	sort.Ints(out)
	return out
}

// waitCorrect polls the restarted broker with one raw OffsetFetch v8
// (every pending group in one request, on a plain connection: no client,
// metadata, coordinator lookup or retries) every groupsPoll until every
// sampled group answers its committed offsets.
func (res *coordLoadResult) waitCorrect(ctx context.Context, b *brokerProc, sample []int, t0 time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, groupsLoadTimeout)
	defer cancel()
	pending := map[string][]int64{}
	for _, i := range sample {
		pending[loadGroupName(i)] = loadOffsets(i)
	}
	var conn *rawConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for len(pending) > 0 {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.SetVersion(8)
		for g := range pending {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g
			rt := kmsg.NewOffsetFetchRequestGroupTopic()
			rt.Topic = groupsLoadTopic
			for p := range groupsCommitParts {
				rt.Partitions = append(rt.Partitions, int32(p))
			}
			rg.Topics = append(rg.Topics, rt)
			req.Groups = append(req.Groups, rg)
		}
		var err error
		if conn == nil {
			conn, err = dialRaw(ctx, b.addr)
		}
		var kr kmsg.Response
		if err == nil {
			kr, err = conn.request(req, time.Now().Add(groupsRequestTimeout))
		}
		at := time.Since(t0)
		if err != nil {
			if conn != nil {
				conn.Close()
				conn = nil
			}
			res.otherErrs++
			if res.firstOther == "" {
				res.firstOther = fmt.Sprintf("at %v: %v", at.Round(time.Millisecond), err)
			}
			if aerr := b.alive(); aerr != nil {
				return aerr
			}
		} else {
			res.polls++
			if res.firstAnswer == 0 {
				res.firstAnswer = at
			}
			res.check(kr.(*kmsg.OffsetFetchResponse), pending, at)
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d sampled groups not answered correctly after %v", len(pending), len(sample), groupsLoadTimeout)
		case <-time.After(groupsPoll):
		}
	}
	return nil
}

// rawConn is a Kafka connection without a client: each request goes out
// as it is, with its version set by the caller.
type rawConn struct {
	conn net.Conn
	f    *kmsg.RequestFormatter
	corr int32
}

// dialRaw connects to addr.
func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, groupsRequestTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{conn: conn, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("strata-load"))}, nil
}

// Close closes the connection.
func (c *rawConn) Close() { c.conn.Close() }

// request writes req and reads its response.
func (c *rawConn) request(req kmsg.Request, deadline time.Time) (kmsg.Response, error) {
	c.corr++
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(c.f.AppendRequest(nil, req, c.corr)); err != nil {
		return nil, fmt.Errorf("write request: %w", err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c.conn, size[:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 64<<20 {
		return nil, fmt.Errorf("response of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if corr := int32(binary.BigEndian.Uint32(body)); corr != c.corr {
		return nil, fmt.Errorf("response correlation id %d, want %d", corr, c.corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() { // response header v1: tagged fields
		r := kbin.Reader{Src: body}
		for range r.Uvarint() {
			r.Uvarint()
			r.Span(int(r.Uvarint()))
		}
		if !r.Ok() {
			return nil, errors.New("bad response header")
		}
		body = r.Src
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return resp, nil
}

// check counts one OffsetFetch response's answers and removes the groups
// answered correctly from pending.
func (res *coordLoadResult) check(resp *kmsg.OffsetFetchResponse, pending map[string][]int64, at time.Duration) {
	for _, g := range resp.Groups {
		want, ok := pending[g.Group]
		if !ok {
			continue
		}
		switch {
		case g.ErrorCode == kerr.CoordinatorLoadInProgress.Code:
			res.loadingAnswer++
			continue
		case g.ErrorCode != 0:
			res.otherErrs++
			if res.firstOther == "" {
				res.firstOther = fmt.Sprintf("%s: %v", g.Group, kerr.ErrorForCode(g.ErrorCode))
			}
			continue
		}
		got := make([]int64, groupsCommitParts)
		for i := range got {
			got[i] = -2
		}
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				if t.Topic == groupsLoadTopic && p.Partition >= 0 && int(p.Partition) < len(got) && p.ErrorCode == 0 {
					got[p.Partition] = p.Offset
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			res.wrong++
			if res.firstWrong == "" {
				res.firstWrong = fmt.Sprintf("%s at %v: offsets %v, committed %v", g.Group, at.Round(time.Millisecond), got, want)
			}
			continue
		}
		delete(pending, g.Group)
		if res.firstCorrect == 0 {
			res.firstCorrect = at
		}
		res.allCorrect = at
	}
}

// readLoadLog waits for the broker's "group coordinators loaded" line and
// reads its took= and the records and groups of the partitions' lines.
func (res *coordLoadResult) readLoadLog(ctx context.Context, b *brokerProc, t0 time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, groupsStepTimeout)
	defer cancel()
	for {
		found, err := res.parseLoadLog(b.logPath, t0)
		if found || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no \"group coordinators loaded\" line in %s after %v", b.logPath, groupsStepTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// parseLoadLog reads the load lines of the broker's log; found is whether
// the "group coordinators loaded" line is there.
func (res *coordLoadResult) parseLoadLog(path string, t0 time.Time) (found bool, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var records, groups int64
	lines := 0
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.Contains(line, `msg="loaded group coordinator"`):
			kv, err := logFields(line)
			if err != nil {
				return false, fmt.Errorf("log line %q: %w", line, err)
			}
			r, err1 := strconv.ParseInt(kv["records"], 10, 64)
			g, err2 := strconv.ParseInt(kv["groups"], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return false, fmt.Errorf("log line %q: %w", line, err)
			}
			records, groups, lines = records+r, groups+g, lines+1
		case strings.Contains(line, `msg="group coordinators loaded"`):
			kv, err := logFields(line)
			if err != nil {
				return false, fmt.Errorf("log line %q: %w", line, err)
			}
			took, err1 := time.ParseDuration(kv["took"])
			at, err2 := time.Parse(time.RFC3339Nano, kv["time"])
			if err := errors.Join(err1, err2); err != nil {
				return false, fmt.Errorf("log line %q: %w", line, err)
			}
			res.brokerTook, res.loadedAt, found = took, at.Sub(t0), true
		}
	}
	res.records, res.loadedGroups, res.coordLines = records, groups, lines
	return found, nil
}

// errs returns the phase's failures.
func (g *groupsResult) errs() []error {
	var errs []error
	if g.err != nil {
		errs = append(errs, fmt.Errorf("groups: %w", g.err))
	}
	for _, r := range g.rows {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("groups: %d members, %s: %w", r.members, r.balancer, r.err))
		}
	}
	if g.commit != nil && g.commit.err != nil {
		errs = append(errs, fmt.Errorf("groups: commits: %w", g.commit.err))
	}
	if g.load != nil && g.load.err != nil {
		errs = append(errs, fmt.Errorf("groups: coordinator load: %w", g.load.err))
	}
	return errs
}

// secs formats a duration in seconds with three decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// String renders a rebalance step: its time and generations.
func (s rebalanceStep) String() string {
	if !s.done {
		return ""
	}
	return fmt.Sprintf("%s (%d gen)", secs(s.took), s.gens)
}

// stepsCell renders repeated steps: the median time, the range and the
// generations.
func stepsCell(steps []rebalanceStep) string {
	if len(steps) == 0 {
		return ""
	}
	if len(steps) == 1 {
		return steps[0].String()
	}
	took := make([]time.Duration, len(steps))
	lo, hi := steps[0].gens, steps[0].gens
	for i, s := range steps {
		took[i] = s.took
		lo, hi = min(lo, s.gens), max(hi, s.gens)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	med := took[len(took)/2]
	if len(took)%2 == 0 {
		med = (took[len(took)/2-1] + took[len(took)/2]) / 2
	}
	gens := strconv.Itoa(int(lo))
	if hi != lo {
		gens += "–" + strconv.Itoa(int(hi))
	}
	return fmt.Sprintf("%s (%.3f–%.3f; %s gen)", secs(med), took[0].Seconds(), took[len(took)-1].Seconds(), gens)
}

// writeGroups renders the consumer-group phase.
func (r *report) writeGroups(b *strings.Builder) {
	g := r.groups
	if g == nil {
		return
	}
	b.WriteString("\n### Consumer groups\n\n")
	if g.err != nil {
		fmt.Fprintf(b, "FAILED: %s\n", cell(g.err.Error(), 300))
	}
	if len(g.rows) > 0 {
		fmt.Fprintf(b, "Rebalances on a topic of %d partitions: every member is its own franz-go client (kgo "+
			"`ConsumerGroup`, no polling, autocommit off) with kgo's group timings: heartbeat interval %v, "+
			"session timeout %v, rebalance timeout %v. Members learn of a rebalance from their next heartbeat. "+
			"Ownership comes from the OnPartitionsAssigned/Revoked/Lost callbacks; a step ends at the callback "+
			"that gave the Stable group its assignment (every partition owned by a live member, every member owning one; "+
			"DescribeGroups then says Stable with every member). "+
			"**formation**: n clients started at once; **join**: one more member starts in the Stable group; "+
			"**leave**: the oldest member (the leader) closes (kgo revokes, then LeaveGroup). Join and leave start "+
			"at a random point of the heartbeat interval after the group became Stable, and alternate %d times "+
			"per row: median (min–max). gen = generations until the group was Stable again (formation: the "+
			"generation reached).\n\n",
			g.partitions, g.heartbeat, g.session, g.rebalance, r.cfg.groupsRounds)
		b.WriteString("| members | balancer | formation | join | leave | double ownership | notes |\n")
		b.WriteString("|---:|---|---:|---:|---:|---:|---|\n")
		for _, row := range g.rows {
			note := ""
			if row.lost > 0 {
				note = fmt.Sprintf("%d OnPartitionsLost", row.lost)
			}
			fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %d | %s |\n", row.members, row.balancer,
				row.formation, stepsCell(row.join), stepsCell(row.leave), row.violations, errOr(note, row.err))
		}
	}
	if c := g.commit; c != nil {
		fmt.Fprintf(b, "\nSustained commits: %d goroutines, each with its own kgo client and simple group "+
			"(generation -1, no member id), one raw OffsetCommit of %d partitions after the other for %v; "+
			"latency per request, from the call to the answer. Afterwards OffsetFetch of every group must "+
			"return its last commit.\n\n", c.committers, groupsCommitParts, r.cfg.duration)
		b.WriteString("| committers | requests | requests/s | partition offsets/s | p50 | p99 | p99.9 | notes |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---|\n")
		p50, p99, p999 := "", "", ""
		if c.lat.n > 0 {
			p50, p99, p999 = ms(c.lat.p50), ms(c.lat.p99), ms(c.lat.p999)
		}
		fmt.Fprintf(b, "| %d | %d | **%.0f** | %.0f | %s | %s | %s | %s |\n", c.committers, c.requests, c.reqps(),
			c.reqps()*groupsCommitParts, p50, p99, p999,
			errOr(fmt.Sprintf("in %.1f s; %d of %d groups fetched their last commit", c.elapsed.Seconds(), c.verified, c.committers), c.err))
	}
	if l := g.load; l != nil {
		fmt.Fprintf(b, "\nCoordinator load: %d groups with simple commits of %d partitions each (one OffsetCommit "+
			"per group, %d clients in parallel) on a fresh broker, which is then stopped with SIGTERM and started "+
			"again on the same data directory with `--log-level info`. Times from the new process's start. "+
			"%d groups sampled at random over %d of the %d `__consumer_offsets` partitions are asked in one raw "+
			"OffsetFetch v8 on a plain connection (no client: no metadata, coordinator lookup or retries) every %v "+
			"until each has answered its committed offsets.\n\n", l.groups, groupsCommitParts, groupsLoadWorkers, l.sample, l.sampleParts,
			l.offsetsParts, groupsPoll)
		b.WriteString("| measurement | value |\n|---|---:|\n")
		if l.createTook > 0 {
			fmt.Fprintf(b, "| creating the groups | %s (%.0f groups/s) |\n", secs(l.createTook), rate(float64(l.groups), l.createTook))
		}
		if l.listening > 0 {
			fmt.Fprintf(b, "| process start → accepting connections | %s |\n", secs(l.listening))
		}
		if l.firstAnswer > 0 {
			fmt.Fprintf(b, "| process start → first OffsetFetch answered (the poll started at accepting connections) | %s |\n", secs(l.firstAnswer))
		}
		if l.firstCorrect > 0 {
			fmt.Fprintf(b, "| process start → first sampled group correct | %s |\n", secs(l.firstCorrect))
			fmt.Fprintf(b, "| process start → all %d sampled groups correct | **%s** |\n", l.sample, secs(l.allCorrect))
		}
		if l.brokerTook > 0 {
			fmt.Fprintf(b, "| broker's `group coordinators loaded` took= | **%s** (%.0f groups/s, %.0f records/s) |\n",
				secs(l.brokerTook), rate(float64(l.loadedGroups), l.brokerTook), rate(float64(l.records), l.brokerTook))
			fmt.Fprintf(b, "| process start → that log line (so the loads began at %s) | %s |\n",
				secs(l.loadedAt-l.brokerTook), secs(l.loadedAt))
			fmt.Fprintf(b, "| records / groups loaded (sum of %d `loaded group coordinator` lines) | %d / %d |\n",
				l.coordLines, l.records, l.loadedGroups)
		}
		fmt.Fprintf(b, "| OffsetFetch polls; group answers COORDINATOR_LOAD_IN_PROGRESS / other error / wrong offsets | %d; %d / %d / %d |\n",
			l.polls, l.loadingAnswer, l.otherErrs, l.wrong)
		if l.err != nil {
			fmt.Fprintf(b, "| FAILED | %s |\n", cell(l.err.Error(), 300))
		} else if l.firstOther != "" {
			fmt.Fprintf(b, "| first other error | %s |\n", cell(l.firstOther, 200))
		}
	}
}
