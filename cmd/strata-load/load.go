package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// loadRow is one line of the load table.
type loadRow struct {
	target string
	test   string
	mbps   float64
	recps  float64
	lat    *latencySummary // nil when latency was not measured
	note   string
	err    error
}

// loadResult is the outcome of one target's load suite.
type loadResult struct {
	target  string
	rows    []loadRow
	peakRSS int64    // broker's VmHWM in bytes; 0 when not measured
	err     error    // a failure outside any row (start, topic creation)
	notes   []string // problems that did not stop the suite
}

// target is a cluster under test.
type target struct {
	name  string
	seeds []string
	// alive returns an error once the cluster can no longer be used.
	alive func() error
	// cpu returns the server process's CPU time so far; nil when the
	// server runs inside this process.
	cpu func() (time.Duration, error)
}

// cpuMeter measures the CPU used over a phase by the server, by this
// process and by everything else on the machine: other processes compete
// for the same cores and skew the numbers, so the report shows them.
type cpuMeter struct {
	t                  target
	start              time.Time
	server, self, busy time.Duration
}

// startCPU starts measuring a phase's CPU use.
func startCPU(t target) cpuMeter {
	m := cpuMeter{t: t, start: time.Now(), self: selfCPU()}
	m.busy, _ = machineBusy()
	if t.cpu != nil {
		m.server, _ = t.cpu()
	}
	return m
}

// String reports the cores used since startCPU, e.g. "CPU cores: broker
// 1.10, load tool 0.80, rest of machine 0.05"; the rest includes kernel threads
// (writeback, softirq) as well as other processes.
func (m cpuMeter) String() string {
	wall := time.Since(m.start).Seconds()
	self := (selfCPU() - m.self).Seconds() / wall
	busy, err := machineBusy()
	others := (busy-m.busy).Seconds()/wall - self
	var b strings.Builder
	b.WriteString("CPU cores: ")
	if m.t.cpu == nil {
		fmt.Fprintf(&b, "load tool with in-process %s %.2f", m.t.name, self)
	} else if server, serr := m.t.cpu(); serr == nil {
		s := (server - m.server).Seconds() / wall
		others -= s
		fmt.Fprintf(&b, "broker %.2f, load tool %.2f", s, self)
	} else {
		fmt.Fprintf(&b, "load tool %.2f", self)
	}
	if err == nil {
		fmt.Fprintf(&b, ", rest of machine %.2f", max(others, 0))
	}
	return b.String()
}

// runStrataLoad starts the broker, runs the load suite against it and
// records its peak RSS.
func runStrataLoad(ctx context.Context, cfg config, base string) loadResult {
	res := loadResult{target: "strata"}
	b, err := startBroker(ctx, cfg.strataBin, base, "load")
	if err != nil {
		res.err = fmt.Errorf("start broker: %w", err)
		return res
	}
	t := target{name: "strata", seeds: []string{b.addr}, alive: b.alive,
		cpu: func() (time.Duration, error) { return procCPU(b.Pid()) }}
	runLoadSuite(ctx, cfg, t, &res)
	if b.alive() == nil {
		res.peakRSS, _ = procStatusBytes(b.Pid(), "VmHWM")
	}
	if err := b.Stop(); err != nil && res.err == nil {
		res.err = err
	}
	b.reportLog("strata load")
	return res
}

// runKfakeLoad runs the load suite against an in-process kfake cluster.
func runKfakeLoad(ctx context.Context, cfg config) loadResult {
	res := loadResult{target: "kfake"}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		res.err = fmt.Errorf("start kfake: %w", err)
		return res
	}
	defer c.Close()
	runLoadSuite(ctx, cfg, target{name: "kfake", seeds: c.ListenAddrs(), alive: func() error { return nil }}, &res)
	return res
}

// loadTopic names the topic of a phase.
func loadTopic(phase string, m ackMode) string {
	if m == acksLeader {
		return "load-" + phase + "-acks1"
	}
	return "load-" + phase + "-acksall"
}

// runLoadSuite produces at the maximum rate in both ack modes, consumes
// what was produced from offset 0, deletes those topics (so kfake, which
// keeps everything in this process's heap, and the broker's disk start the
// latency phases clean), then produces at half the maximum rate to measure
// latency.
func runLoadSuite(ctx context.Context, cfg config, t target, res *loadResult) {
	modes := []ackMode{acksAll, acksLeader}
	var maxTopics, topics []string
	for _, m := range modes {
		maxTopics = append(maxTopics, loadTopic("max", m))
		topics = append(topics, loadTopic("max", m), loadTopic("lat", m))
	}
	if err := createTopics(ctx, t.seeds, int32(cfg.partitions), topics...); err != nil {
		res.err = err
		return
	}
	maxRate := map[ackMode]float64{}
	for _, m := range modes {
		if ctx.Err() != nil {
			return
		}
		row, st := produceRow(ctx, cfg, t, m, 0)
		res.rows = append(res.rows, row)
		if row.err == nil {
			maxRate[m] = st.recps()
		}
	}
	if ctx.Err() != nil {
		return
	}
	res.rows = append(res.rows, consumeRow(ctx, cfg, t, maxTopics...))
	if err := deleteTopics(ctx, t.seeds, maxTopics...); err != nil {
		logf("%s: %v (continuing)", t.name, err)
		res.notes = append(res.notes, err.Error())
	}
	for _, m := range modes {
		if ctx.Err() != nil {
			return
		}
		if maxRate[m] == 0 {
			res.rows = append(res.rows, loadRow{target: t.name, test: latencyTest(m),
				err: fmt.Errorf("skipped: no max rate measured")})
			continue
		}
		row, _ := produceRow(ctx, cfg, t, m, maxRate[m]/2)
		res.rows = append(res.rows, row)
	}
}

// latencyTest names a rate-limited produce row.
func latencyTest(m ackMode) string { return "produce " + m.String() + ", 50% of max rate" }

// produceRow runs one produce phase (rate 0: max rate) and turns it into a
// row.
func produceRow(ctx context.Context, cfg config, t target, m ackMode, rps float64) (loadRow, produceStats) {
	phase, test := "max", "produce "+m.String()+", max rate"
	if rps > 0 {
		phase, test = "lat", latencyTest(m)
	}
	row := loadRow{target: t.name, test: test}
	if err := t.alive(); err != nil {
		row.err = err
		return row, produceStats{}
	}
	logf("%s: %s", t.name, test)
	cpu := startCPU(t)
	st, err := produce(ctx, t.seeds, produceSpec{
		topic: loadTopic(phase, m), acks: m, recordSize: cfg.recordSize,
		duration: cfg.duration, maxRecords: cfg.records, rate: rps,
	})
	row.mbps, row.recps = st.mbps(), st.recps()
	row.note = fmt.Sprintf("%d records in %.1fs; %v", st.records, st.elapsed.Seconds(), cpu)
	if rps > 0 {
		s := summarize(st.latencies)
		row.lat = &s
		row.note = fmt.Sprintf("target %.0f rec/s; ", rps) + row.note
	}
	if err != nil {
		row.err = withAlive(err, t)
	}
	return row, st
}

// consumeRow consumes the topics from offset 0 and turns it into a row.
func consumeRow(ctx context.Context, cfg config, t target, topics ...string) loadRow {
	row := loadRow{target: t.name, test: "consume from offset 0 (max-rate topics)"}
	if err := t.alive(); err != nil {
		row.err = err
		return row
	}
	logf("%s: %s", t.name, row.test)
	cpu := startCPU(t)
	st, err := consume(ctx, t.seeds, 2*cfg.duration+phaseGrace, topics...)
	row.mbps, row.recps = st.mbps(), st.recps()
	row.note = fmt.Sprintf("%d records in %.1fs; %v", st.records, st.elapsed.Seconds(), cpu)
	if err != nil {
		row.err = withAlive(err, t)
	}
	return row
}

// withAlive adds the cluster's death, if it died, to a phase error.
func withAlive(err error, t target) error {
	if aerr := t.alive(); aerr != nil {
		return fmt.Errorf("%w; %v", err, aerr)
	}
	return err
}
