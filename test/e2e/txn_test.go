package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// eosWorkerEnv, when set in the environment, makes the test binary run as
// the exactly-once worker process of TestTxnExactlyOnce instead of running
// tests (so the test can SIGKILL a real client process).
const eosWorkerEnv = "STRATA_E2E_EOS_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(eosWorkerEnv) != "" {
		os.Exit(runEOSWorker())
	}
	os.Exit(m.Run())
}

// consumeAll reads topic from the beginning with the isolation level until
// it has seen want records or nothing came for quiet; it returns the values.
func consumeIsolated(t *testing.T, addr, topic string, committed bool, want int, quiet time.Duration) []string {
	t.Helper()
	level := kgo.ReadUncommitted()
	if committed {
		level = kgo.ReadCommitted()
	}
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(level), kgo.FetchMaxWait(200*time.Millisecond))
	var out []string
	deadline := time.Now().Add(60 * time.Second)
	lastNew := time.Now()
	for time.Now().Before(deadline) && (want < 0 || len(out) < want) && time.Since(lastNew) < quiet {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("fetch error: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, string(r.Value))
			lastNew = time.Now()
		})
	}
	return out
}

func produceTxn(t *testing.T, cl *kgo.Client, topic string, values []string, commit bool) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		r := &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: []byte(v)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// TestTxnReadCommitted: committed transactions are seen by read_committed
// consumers, aborted ones only by read_uncommitted ones; an open
// transaction holds the last stable offset (ListOffsets read_committed)
// below the high watermark until it ends.
func TestTxnReadCommitted(t *testing.T) {
	ip := startInproc(t, "", func(c *brokerCfg, _ *wireCfg) { c.NumPartitions = 3 })
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctxT(t, 10*time.Second), 3, 1, nil, "txn"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr, kgo.TransactionalID("rc-1"), kgo.DefaultProduceTopic("txn"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var committed, all []string
	for i := range 6 {
		var vals []string
		for j := range 10 {
			vals = append(vals, fmt.Sprintf("t%d-%d", i, j))
		}
		commit := i%2 == 0
		produceTxn(t, cl, "txn", vals, commit)
		all = append(all, vals...)
		if commit {
			committed = append(committed, vals...)
		}
	}
	// A non-transactional producer's records interleave with them.
	plain := newClient(t, ip.addr)
	for i := range 5 {
		if err := plain.ProduceSync(ctxT(t, 10*time.Second), &kgo.Record{Topic: "txn", Value: []byte("plain-" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, "plain-"+strconv.Itoa(i))
		all = append(all, "plain-"+strconv.Itoa(i))
	}

	got := consumeIsolated(t, ip.addr, "txn", true, len(committed), 3*time.Second)
	if !sameSet(got, committed) {
		t.Fatalf("read_committed got %d records %v\nwant %d %v", len(got), got, len(committed), committed)
	}
	got = consumeIsolated(t, ip.addr, "txn", false, len(all), 3*time.Second)
	if !sameSet(got, all) {
		t.Fatalf("read_uncommitted got %d records, want %d", len(got), len(all))
	}

	// An open transaction holds the LSO.
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the open record's timestamp is after every marker's
	openRec := &kgo.Record{Topic: "txn", Partition: 0, Value: []byte("open")}
	if err := cl.ProduceSync(ctxT(t, 10*time.Second), openRec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// By timestamp: read_uncommitted finds the open record, read_committed
	// nothing (it may not fetch there yet).
	for _, level := range []int8{0, 1} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = level
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "txn"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = 0, openRec.Timestamp.UnixMilli()
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t, 10*time.Second), cl)
		if err != nil {
			t.Fatal(err)
		}
		got, want := resp.Topics[0].Partitions[0].Offset, openRec.Offset
		if level == 1 {
			want = -1
		}
		if got != want {
			t.Fatalf("ListOffsets by timestamp, isolation %d: offset %d, want %d", level, got, want)
		}
	}
	end, err := adm.ListEndOffsets(ctxT(t, 10*time.Second), "txn")
	if err != nil {
		t.Fatal(err)
	}
	stable, err := adm.ListCommittedOffsets(ctxT(t, 10*time.Second), "txn")
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := end.Lookup("txn", 0)
	lso, _ := stable.Lookup("txn", 0)
	if lso.Offset != hw.Offset-1 {
		t.Fatalf("partition 0 with an open transaction: LSO %d, high watermark %d (want LSO = HW-1)", lso.Offset, hw.Offset)
	}
	if err := cl.EndTransaction(ctxT(t, 10*time.Second), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	stable, err = adm.ListCommittedOffsets(ctxT(t, 10*time.Second), "txn")
	if err != nil {
		t.Fatal(err)
	}
	if lso, _ = stable.Lookup("txn", 0); lso.Offset != hw.Offset+1 {
		t.Fatalf("after the commit: LSO %d, want %d (past the marker)", lso.Offset, hw.Offset+1)
	}
	// Operators see the transactional id.
	described, err := adm.DescribeTransactions(ctxT(t, 10*time.Second), "rc-1")
	if err != nil {
		t.Fatal(err)
	}
	d, ok := described["rc-1"]
	if !ok || d.Err != nil || d.State != "CompleteCommit" || d.ProducerID < 0 {
		t.Fatalf("describe rc-1: %+v", described)
	}
	listed, err := adm.ListTransactions(ctxT(t, 10*time.Second), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed["rc-1"]; !ok {
		t.Fatalf("list transactions: %+v", listed)
	}
}

// TestTxnZombieFenced: a second producer instance with the same
// transactional id fences the first; the first cannot commit and its open
// transaction is aborted.
func TestTxnZombieFenced(t *testing.T) {
	ip := startInproc(t, "")
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctxT(t, 10*time.Second), 1, 1, nil, "z"); err != nil {
		t.Fatal(err)
	}
	zombie := newClient(t, ip.addr, kgo.TransactionalID("zombie"), kgo.DefaultProduceTopic("z"))
	ctx := ctxT(t, 60*time.Second)
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(ctx, kgo.StringRecord("from-zombie")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fresh := newClient(t, ip.addr, kgo.TransactionalID("zombie"), kgo.DefaultProduceTopic("z"))
	if err := fresh.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	// The new instance's first produce runs InitProducerId, which fences
	// the zombie and aborts its transaction.
	if err := fresh.ProduceSync(ctx, kgo.StringRecord("from-fresh")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	err := zombie.EndTransaction(ctx, kgo.TryCommit)
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		// The zombie's produce may fail first instead.
		if err2 := zombie.ProduceSync(ctx, kgo.StringRecord("zombie-again")).FirstErr(); !errors.Is(err2, kerr.ProducerFenced) && !errors.Is(err2, kerr.InvalidProducerEpoch) {
			t.Fatalf("zombie commit: %v; zombie produce: %v (want fenced)", err, err2)
		}
	}
	if err := fresh.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	got := consumeIsolated(t, ip.addr, "z", true, 1, 3*time.Second)
	if !slices.Equal(got, []string{"from-fresh"}) {
		t.Fatalf("read_committed after fencing: %v", got)
	}
}

// TestTxnTimeoutAborts: a transaction left open past its timeout is
// aborted by the coordinator: the LSO moves on, its records stay
// invisible to read_committed, and its producer is fenced.
func TestTxnTimeoutAborts(t *testing.T) {
	ip := startInproc(t, "")
	if _, err := newAdmin(t, ip.addr).CreateTopic(ctxT(t, 10*time.Second), 1, 1, nil, "slow"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr, kgo.TransactionalID("slow"), kgo.DefaultProduceTopic("slow"),
		kgo.TransactionTimeout(2*time.Second))
	ctx := ctxT(t, 60*time.Second)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("abandoned")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	plain := newClient(t, ip.addr, kgo.DefaultProduceTopic("slow"))
	if err := plain.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := newAdmin(t, ip.addr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		stable, err := adm.ListCommittedOffsets(ctx, "slow")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := stable.Lookup("slow", 0); o.Offset >= 3 { // abandoned, after, abort marker
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the timed-out transaction was never aborted (LSO stuck)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := consumeIsolated(t, ip.addr, "slow", true, 1, 2*time.Second)
	if !slices.Equal(got, []string{"after"}) {
		t.Fatalf("read_committed: %v", got)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("committing a transaction the coordinator aborted succeeded")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestTxnExactlyOnce: a consume-transform-produce worker using franz-go's
// GroupTransactSession is SIGKILLed and restarted several times, and the
// broker is SIGKILLed and restarted once; the output topic, read
// read_committed, holds every input record exactly once.
func TestTxnExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	port := freePort(t)
	bp := startProc(t, dir, port)
	adm := newAdmin(t, bp.addr)
	ctx := ctxT(t, 5*time.Minute)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "eos-in"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "eos-out"); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	in := newClient(t, bp.addr, kgo.DefaultProduceTopic("eos-in"))
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, kgo.StringRecord(strconv.Itoa(i)))
	}
	if err := in.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	in.Close()

	var logs []*strings.Builder
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range logs {
				t.Logf("worker %d:\n%s", i, l.String())
			}
			t.Logf("broker:\n%s", bp.logs())
		}
	})
	worker := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), eosWorkerEnv+"=1", "EOS_SEEDS="+bp.addr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		l := &strings.Builder{}
		logs = append(logs, l)
		cmd.Stdout, cmd.Stderr = l, l
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		return cmd
	}
	// Kill the worker mid-run four times; the broker once, in between.
	for round := range 4 {
		w := worker()
		time.Sleep(time.Duration(1500+300*round) * time.Millisecond)
		w.Process.Signal(syscall.SIGKILL)
		w.Wait()
		if round == 1 {
			bp.kill()
			bp = startProc(t, dir, port)
		}
	}
	// The last worker runs until the group's committed offsets reach the
	// end of the input.
	w := worker()
	ends, err := adm.ListEndOffsets(ctx, "eos-in")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the group never committed the end of the input")
		}
		offs, err := adm.FetchOffsets(ctx, "eos")
		done := err == nil
		ends.Each(func(e kadm.ListedOffset) {
			at := int64(0) // nothing committed: nothing consumed
			if o, ok := offs.Lookup(e.Topic, e.Partition); ok {
				at = o.At
			}
			if at < e.Offset {
				done = false
			}
		})
		if done {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.Process.Signal(syscall.SIGKILL)
	w.Wait()
	got := consumeIsolated(t, bp.addr, "eos-out", true, n, 5*time.Second)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	var missing, dup []string
	for i := range n {
		v := "out-" + strconv.Itoa(i)
		switch seen[v] {
		case 1:
		case 0:
			missing = append(missing, v)
		default:
			dup = append(dup, v)
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(got) != n {
		t.Fatalf("output holds %d records for %d inputs: %d missing (%v…), %d duplicated (%v…)",
			len(got), n, len(missing), head(missing), len(dup), head(dup))
	}
	// Some of the output must have been written and then aborted (a kill
	// in the middle of a transaction), or the kills proved nothing.
	raw := consumeIsolated(t, bp.addr, "eos-out", false, -1, 3*time.Second)
	t.Logf("%d inputs, %d committed outputs, %d outputs including aborted", n, len(got), len(raw))
	if len(raw) <= n {
		t.Fatalf("no aborted output: no kill hit a transaction in flight (%d outputs in all)", len(raw))
	}
}

func head(s []string) []string { return s[:min(5, len(s))] }

// runEOSWorker is the worker process of TestTxnExactlyOnce: it consumes
// eos-in in group eos with a GroupTransactSession and writes "out-"+value to
// eos-out, in transactions of at most 50 records, each held open for 150 ms
// (so the test's kills land inside transactions), until it is killed (or
// has found nothing new for a minute).
func runEOSWorker() int {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(os.Getenv("EOS_SEEDS")),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)),
		kgo.TransactionalID("eos-worker"),
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumerGroup("eos"),
		// A restarted worker takes its killed predecessor's place at once
		// (static membership) instead of waiting out its session.
		kgo.InstanceID("eos-worker-0"),
		kgo.SessionTimeout(6*time.Second),
		kgo.ConsumeTopics("eos-in"),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.DefaultProduceTopic("eos-out"),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "session:", err)
		return 1
	}
	defer sess.Close()
	ctx := context.Background()
	idleSince := time.Now()
	for time.Since(idleSince) < time.Minute {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := sess.PollRecords(pctx, 50)
		cancel()
		if fs.IsClientClosed() {
			return 1
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintln(os.Stderr, "fetch:", topic, p, err)
			}
		})
		if fs.NumRecords() == 0 {
			continue
		}
		idleSince = time.Now()
		if err := sess.Begin(); err != nil {
			fmt.Fprintln(os.Stderr, "begin:", err)
			return 1
		}
		first, last := map[int32]int64{}, map[int32]int64{}
		fs.EachRecord(func(r *kgo.Record) {
			if _, ok := first[r.Partition]; !ok {
				first[r.Partition] = r.Offset
			}
			last[r.Partition] = r.Offset
			sess.Produce(ctx, &kgo.Record{Topic: "eos-out", Key: r.Key, Value: []byte("out-" + string(r.Value))}, nil)
		})
		time.Sleep(150 * time.Millisecond)
		committed, err := sess.End(ctx, kgo.TryCommit)
		fmt.Fprintf(os.Stderr, "%s txn of in-offsets %v..%v: committed %v err %v\n",
			time.Now().Format("15:04:05.000"), first, last, committed, err)
	}
	return 0
}

// TestKcatTransactions: librdkafka (kcat) produces in a transaction and
// consumes read_committed against the real binary; an aborted
// transaction's records (written by franz-go) stay invisible to it.
func TestKcatTransactions(t *testing.T) {
	p := startProc(t, t.TempDir(), freePort(t))
	ctx := ctxT(t, 60*time.Second)
	if _, err := newAdmin(t, p.addr).CreateTopic(ctx, 1, 1, nil, "kcat-txn"); err != nil {
		t.Fatal(err)
	}
	ab := newClient(t, p.addr, kgo.TransactionalID("kcat-abort"), kgo.DefaultProduceTopic("kcat-txn"))
	if err := ab.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := ab.ProduceSync(ctx, kgo.StringRecord("aborted")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := ab.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for i := range 50 {
		fmt.Fprintf(&in, "k%d\n", i)
	}
	kcat(t, in.String(), "-b", p.addr, "-P", "-t", "kcat-txn", "-X", "transactional.id=kcat-1")
	out := kcat(t, "", "-b", p.addr, "-C", "-t", "kcat-txn", "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_committed")
	lines := strings.Fields(out)
	if len(lines) != 50 || lines[0] != "k0" || lines[49] != "k49" || strings.Contains(out, "aborted") {
		t.Fatalf("kcat read_committed: %d lines: %q", len(lines), out)
	}
	all := kcat(t, "", "-b", p.addr, "-C", "-t", "kcat-txn", "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_uncommitted")
	if !strings.Contains(all, "aborted") {
		t.Fatalf("kcat read_uncommitted does not see the aborted record: %q", all)
	}
}
