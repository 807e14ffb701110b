package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/group"
)

func TestOwnership(t *testing.T) {
	o := newOwnership(4, 3)
	o.setLive(0, true)
	o.setLive(1, true)
	if ok, _ := o.complete(); ok {
		t.Fatal("complete with nothing owned")
	}
	o.assign(0, []int32{0, 1})
	o.assign(1, []int32{2, 3})
	if ok, _ := o.complete(); !ok {
		t.Fatalf("not complete: %s", o.summary())
	}
	// A third member without partitions: incomplete.
	o.setLive(2, true)
	if ok, _ := o.complete(); ok {
		t.Error("complete while member 2 owns nothing")
	}
	// Cooperative move: revoke first, then assign.
	o.revoke(1, []int32{3})
	o.revoke(1, nil) // an empty revocation changes nothing
	o.assign(2, []int32{3})
	if ok, _ := o.complete(); !ok || o.violations != 0 {
		t.Fatalf("after a clean move: complete %v, violations %d: %s", ok, o.violations, o.summary())
	}
	// An assignment of an owned partition is a violation.
	o.assign(2, []int32{0})
	if o.violations != 1 || !strings.Contains(o.firstViolation, "partition 0 assigned to member 2 while member 0 owned it") {
		t.Errorf("violations %d, first %q", o.violations, o.firstViolation)
	}
	// A member that left: its partitions are not owned by a live member.
	o.setLive(0, false)
	if ok, _ := o.complete(); ok {
		t.Error("complete while a left member owns partition 1")
	}
	o.revokeAll(0)
	o.assign(1, []int32{1})
	if ok, _ := o.complete(); !ok {
		t.Errorf("not complete after the leave: %s", o.summary())
	}
}

func TestStepsCell(t *testing.T) {
	steps := []rebalanceStep{{took: 3 * time.Second, gens: 2, done: true}, {took: time.Second, gens: 1, done: true},
		{took: 2 * time.Second, gens: 2, done: true}}
	if got, want := stepsCell(steps), "2.000 s (1.000–3.000; 1–2 gen)"; got != want {
		t.Errorf("cell = %q, want %q", got, want)
	}
	if got, want := stepsCell(steps[:1]), "3.000 s (2 gen)"; got != want {
		t.Errorf("single cell = %q, want %q", got, want)
	}
	if got := stepsCell(nil); got != "" {
		t.Errorf("empty cell = %q", got)
	}
}

func TestLoadSample(t *testing.T) {
	s := loadSample(10000, 100, 50)
	if len(s) != 100 {
		t.Fatalf("%d groups sampled", len(s))
	}
	per := map[int32]int{}
	seen := map[int]bool{}
	for _, i := range s {
		if seen[i] || i < 0 || i >= 10000 {
			t.Fatalf("bad or repeated group %d", i)
		}
		seen[i] = true
		per[group.PartitionFor(loadGroupName(i), 50)]++
	}
	if len(per) != 50 {
		t.Errorf("sample covers %d of 50 partitions", len(per))
	}
	if s := loadSample(30, 100, 50); len(s) != 30 {
		t.Errorf("sample of 30 groups: %d", len(s))
	}
}

func TestCoordLoadCheck(t *testing.T) {
	pending := map[string][]int64{"a": loadOffsets(1), "b": loadOffsets(2), "c": loadOffsets(3)}
	resp := kmsg.NewPtrOffsetFetchResponse()
	answer := func(g string, code int16, offsets []int64) {
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group, rg.ErrorCode = g, code
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = groupsLoadTopic
		for p, o := range offsets {
			rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
			rp.Partition, rp.Offset = int32(p), o
			rt.Partitions = append(rt.Partitions, rp)
		}
		rg.Topics = append(rg.Topics, rt)
		resp.Groups = append(resp.Groups, rg)
	}
	answer("a", kerr.CoordinatorLoadInProgress.Code, nil)
	answer("b", 0, []int64{-1, -1, -1, -1}) // answered before the load: wrong
	answer("c", 0, loadOffsets(3))
	var res coordLoadResult
	res.check(resp, pending, 42*time.Millisecond)
	if res.loadingAnswer != 1 || res.wrong != 1 || res.firstCorrect != 42*time.Millisecond || len(pending) != 2 {
		t.Errorf("result %+v, pending %v", res, pending)
	}
}

func TestParseLoadLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.log")
	lines := []string{
		`time=2026-11-25T16:00:00.000Z level=INFO msg="strata broker started"`,
		`time=2026-11-25T16:00:00.500Z level=INFO msg="loaded group coordinator" partition=0 records=40 groups=10 took=3ms`,
		`time=2026-11-25T16:00:00.600Z level=INFO msg="loaded group coordinator" partition=1 records=8 groups=2 took=1ms`,
		`time=2026-11-25T16:00:00.700Z level=INFO msg="group coordinators loaded" partitions=2 took=650ms`,
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines[:3], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	var res coordLoadResult
	if found, err := res.parseLoadLog(path, t0); found || err != nil {
		t.Fatalf("found %v, err %v before the final line", found, err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	found, err := res.parseLoadLog(path, t0)
	if !found || err != nil {
		t.Fatalf("found %v, err %v", found, err)
	}
	if res.records != 48 || res.loadedGroups != 12 || res.coordLines != 2 || res.brokerTook != 650*time.Millisecond ||
		res.loadedAt != 700*time.Millisecond {
		t.Errorf("parsed %+v", res)
	}
}

func TestParseFlagsGroups(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil || !cfg.groups || len(cfg.groupsMembers) != 3 || cfg.groupsMembers[2] != 50 ||
		cfg.groupsPartitions != 100 || cfg.groupsCommitters != 16 || cfg.groupsLoad != 10000 || cfg.groupsRounds != 5 {
		t.Errorf("-all config = %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"-groups", "-strata", "/bin/true", "-groups-members", "1, 3"})
	if err != nil || len(cfg.groupsMembers) != 2 || cfg.groupsMembers[1] != 3 {
		t.Errorf("-groups-members 1,3: %v, %v", cfg.groupsMembers, err)
	}
	for _, bad := range [][]string{
		{"-groups", "-strata", ""},
		{"-groups", "-strata", "/bin/true", "-groups-members", "1,x"},
		{"-groups", "-strata", "/bin/true", "-groups-members", "0"},
		{"-groups", "-strata", "/bin/true", "-groups-partitions", "0"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestGroupsPhase runs the whole phase, small, against $STRATA_BIN.
func TestGroupsPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the broker for about 15 s")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN not set")
	}
	cfg := config{strataBin: bin, duration: 2 * time.Second, groupsMembers: []int{1, 3}, groupsPartitions: 12,
		groupsCommitters: 4, groupsLoad: 200, groupsHeartbeat: 300 * time.Millisecond, groupsRounds: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := runGroups(ctx, cfg, t.TempDir())
	if errs := res.errs(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if res.heartbeat != 300*time.Millisecond || res.session <= 0 {
		t.Errorf("timings: heartbeat %v, session %v", res.heartbeat, res.session)
	}
	if len(res.rows) != 4 {
		t.Fatalf("%d rebalance rows, want 4", len(res.rows))
	}
	for _, r := range res.rows {
		if len(r.join) != 2 || len(r.leave) != 2 {
			t.Fatalf("%d members, %s: %d joins, %d leaves; want 2 each", r.members, r.balancer, len(r.join), len(r.leave))
		}
		steps := map[string]rebalanceStep{"formation": r.formation, "join 1": r.join[0], "join 2": r.join[1],
			"leave 1": r.leave[0], "leave 2": r.leave[1]}
		for name, s := range steps {
			if !s.done || s.took <= 0 || s.took > time.Minute || s.gens < 1 {
				t.Errorf("%d members, %s: %s = %+v", r.members, r.balancer, name, s)
			}
		}
		if r.violations != 0 {
			t.Errorf("%d members, %s: %d double owners", r.members, r.balancer, r.violations)
		}
		// Cooperative: the joiner gets its partitions only in a second
		// round, after the owners revoked them.
		for _, j := range r.join {
			if r.balancer == balancerCooperative && j.gens < 2 {
				t.Errorf("%d members, cooperative join in %d generations", r.members, j.gens)
			}
		}
	}
	c := res.commit
	if c == nil || c.requests <= 0 || c.lat.n != int(c.requests) || c.lat.p50 <= 0 || c.verified != 4 {
		t.Errorf("commits: %+v", c)
	}
	l := res.load
	if l == nil {
		t.Fatal("no coordinator load result")
	}
	if l.sample != 100 || l.sampleParts != 50 || l.wrong != 0 || l.allCorrect <= 0 || l.allCorrect < l.firstCorrect ||
		l.firstAnswer <= 0 || l.firstAnswer > l.firstCorrect {
		t.Errorf("load: %+v", l)
	}
	if l.loadedGroups < 200 || l.records < 200*groupsCommitParts || l.coordLines != l.offsetsParts || l.loadedAt <= 0 {
		t.Errorf("load log: %+v", l)
	}
	md := (&report{cfg: cfg, groups: &res}).markdown()
	for _, want := range []string{"### Consumer groups", "| 3 | cooperative-sticky |", "| 3 | range (eager) |",
		"heartbeat interval 300ms", "all 100 sampled groups correct", "group coordinators loaded"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
