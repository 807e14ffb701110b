package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// adminMember is a franz-go group consumer that records the first offset it
// consumed of each partition and how many records it consumed.
type adminMember struct {
	cl    *kgo.Client
	done  chan struct{}
	mu    sync.Mutex
	first map[int32]int64
	n     int
}

func startAdminMember(t *testing.T, addr, group, topic string) *adminMember {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(300*time.Millisecond),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		t.Fatal(err)
	}
	m := &adminMember{cl: cl, done: make(chan struct{}), first: map[int32]int64{}}
	go func() {
		defer close(m.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				m.mu.Lock()
				if _, ok := m.first[r.Partition]; !ok {
					m.first[r.Partition] = r.Offset
				}
				m.n++
				m.mu.Unlock()
			})
		}
	}()
	t.Cleanup(m.close)
	return m
}

func (m *adminMember) consumed() (int, map[int32]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	first := map[int32]int64{}
	for p, o := range m.first {
		first[p] = o
	}
	return m.n, first
}

// waitConsumed waits until the member consumed n records.
func (m *adminMember) waitConsumed(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := m.consumed()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d records, want %d", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// close leaves the group (kgo's Close sends LeaveGroup).
func (m *adminMember) close() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cl.Close()
	<-m.done
}

func waitGroupStateIs(t *testing.T, adm *kadm.Client, group, state string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, err := adm.DescribeGroups(context.Background(), group)
		if err == nil && ds[group].State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: state %q (err %v), want %s", group, ds[group].State, err, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustMatch(t *testing.T, what, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("%s: no match for %s in\n%s", what, re, out)
		}
	}
}

// TestGroupsAdmin: `strata groups ls/describe/reset` against a broker with
// a real group consumer: the lag per partition is exact; reset is refused
// while a member is active; a dry run changes nothing; --execute moves the
// committed offsets and a new member starts there; --to-datetime finds the
// first offset after a time; bad input exits 1 with a message.
func TestGroupsAdmin(t *testing.T) {
	ip := startInproc(t, "")
	ctx := ctxT(t, 2*time.Minute)
	const topic, group = "orders", "billing"
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	prod := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(counts ...int) {
		t.Helper()
		for p, n := range counts {
			for i := range n {
				r := &kgo.Record{Partition: int32(p), Value: fmt.Appendf(nil, "p%d-%d", p, i)}
				if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	bs := []string{"--bootstrap", ip.addr}
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return strataCLI(t, append(append([]string{"groups"}, args...), bs...)...)
	}

	// 12, 8 and 5 records; a member consumes them all and commits.
	produce(12, 8, 5)
	time.Sleep(20 * time.Millisecond)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	m := startAdminMember(t, ip.addr, group, topic)
	m.waitConsumed(t, 25)
	if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	// Then 3 more on partition 0 and 2 on partition 2: lag 3, 0, 2.
	produce(3, 0, 2)

	// While the member is active: Stable, one member, reset refused.
	out, errOut, code := cli("ls")
	if code != 0 {
		t.Fatalf("groups ls: exit %d: %s", code, errOut)
	}
	mustMatch(t, "ls (active)", out, `(?m)^billing\s+Stable\s+consumer\s+\S+\s+1$`)
	out, errOut, code = cli("describe", group)
	if code != 0 {
		t.Fatalf("groups describe: exit %d: %s", code, errOut)
	}
	mustMatch(t, "describe (active)", out, `state Stable`, `1 members`, `orders:0,1,2`)
	out, errOut, code = cli("reset", group, "--topic", topic, "--to-earliest", "--execute")
	if code != 1 || !strings.Contains(errOut, "stop its consumers first") || out != "" {
		t.Errorf("reset of an active group: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	m.close()
	waitGroupStateIs(t, adm, group, "Empty")

	out, _, code = cli("ls")
	if code != 0 {
		t.Fatal("groups ls failed")
	}
	mustMatch(t, "ls (empty)", out, `(?m)^billing\s+Empty\s+consumer\s+\S+\s+0$`)
	out, errOut, code = cli("describe", group)
	if code != 0 {
		t.Fatalf("groups describe: exit %d: %s", code, errOut)
	}
	mustMatch(t, "describe (empty)", out,
		`state Empty`,
		`(?m)^orders\s+0\s+12\s+15\s+3\s+-$`,
		`(?m)^orders\s+1\s+8\s+8\s+0\s+-$`,
		`(?m)^orders\s+2\s+5\s+7\s+2\s+-$`,
		`total lag 5`)

	committed := func() [3]int64 {
		t.Helper()
		got, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		var at [3]int64
		for p := range at {
			o, _ := got.Lookup(topic, int32(p))
			at[p] = o.At
		}
		return at
	}

	// Dry runs print the plan and change nothing.
	out, errOut, code = cli("reset", group, "--topic", topic, "--to-earliest")
	if code != 0 {
		t.Fatalf("reset dry run: exit %d: %s", code, errOut)
	}
	mustMatch(t, "reset --to-earliest", out, `(?m)^orders\s+0\s+12\s+0$`, `(?m)^orders\s+1\s+8\s+0$`, `(?m)^orders\s+2\s+5\s+0$`, `dry run`)
	out, _, code = cli("reset", group, "--topic", topic, "--to-datetime", between.UTC().Format(time.RFC3339Nano))
	if code != 0 {
		t.Fatal("reset --to-datetime failed")
	}
	mustMatch(t, "reset --to-datetime", out, `(?m)^orders\s+0\s+12\s+12$`, `(?m)^orders\s+1\s+8\s+8$`, `(?m)^orders\s+2\s+5\s+5$`)
	if at := committed(); at != [3]int64{12, 8, 5} {
		t.Fatalf("after dry runs the committed offsets are %v, want [12 8 5]", at)
	}

	// --execute commits; a new member starts there.
	out, errOut, code = cli("reset", group, "--topic", topic, "--to-offset", "4", "--execute")
	if code != 0 {
		t.Fatalf("reset --execute: exit %d: %s", code, errOut)
	}
	mustMatch(t, "reset --to-offset 4 --execute", out, `(?m)^orders\s+0\s+12\s+4$`, `committed 3 offsets`)
	if at := committed(); at != [3]int64{4, 4, 4} {
		t.Fatalf("after --execute the committed offsets are %v, want [4 4 4]", at)
	}
	m2 := startAdminMember(t, ip.addr, group, topic)
	m2.waitConsumed(t, (15-4)+(8-4)+(7-4))
	n, first := m2.consumed()
	if n != 18 || first[0] != 4 || first[1] != 4 || first[2] != 4 {
		t.Errorf("new member consumed %d records, first offsets %v; want 18 from offset 4 on each", n, first)
	}
	m2.close()

	// Bad input: exit 1 and a message on stderr.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"describe", "nobody"}, `unknown group "nobody"`},
		{[]string{"reset", group, "--topic", "nope", "--to-latest"}, `unknown topic "nope"`},
		{[]string{"reset", group, "--topic", topic, "--to-datetime", "noon"}, "RFC 3339"},
	} {
		_, errOut, code := cli(tc.args...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, errOut, tc.want)
		}
	}
	_, errOut, code = strataCLI(t, "groups", "ls", "--bootstrap", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if code != 1 || !strings.Contains(errOut, "cannot reach a broker") {
		t.Errorf("unreachable broker: exit %d, stderr %q", code, errOut)
	}
}
