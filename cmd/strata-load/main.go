// Command strata-load measures the Strata broker under load and prints the
// results as Markdown.
//
// It starts the real broker binary ($STRATA_BIN or -strata) on a free port
// with a temporary data directory, produces fixed-size records with franz-go
// at the maximum rate and then at half of it (latency), consumes everything
// back from offset 0, and runs the same load against franz-go's in-memory
// kfake cluster as a reference. With -all it also measures the disk's
// sequential fdatasync bandwidth (the physical limit for acks=-1), the
// broker's memory and descriptors with many idle partitions, and tiered
// storage (-tier): it starts Versity S3 Gateway on loopback with a counting
// HTTP proxy in front of it, runs a broker on that bucket, and measures
// upload throughput and compression, replay against raw GETs of the same
// objects, cold random reads and object requests per GB; the log cleaner
// (-compact): a pass's throughput and produce latency while one runs; and
// the remote cleaner (-compact-remote): compaction of tiered history in the
// bucket, and object GETs per GB replayed before and after merging; and
// consumer groups (-groups): rebalance time of 1, 10 and 50 kgo members
// with the cooperative-sticky and the eager range balancer, sustained
// simple offset commits, and how long the coordinators take to load
// 10,000 groups after a restart; and replication (-cluster): three
// brokers on one metadata quorum, produce throughput and latency with
// replication.factor 1 and 3 (acks=all), the failover time when a
// partition's leader is SIGKILLed, and a restarted follower's catch-up;
// and transactions (-txn): produce throughput of transactions of 1, 100 and
// 10,000 records against non-transactional produce, the EndTransaction
// latency, and read_committed against read_uncommitted consumption.
//
// Every phase is bounded in time; the broker it started is stopped and the
// temporary directories are removed before it exits.
//
//	STRATA_BIN=bin/strata go run ./cmd/strata-load -all -duration 10s -out docs/bench-run.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config holds the command-line settings.
type config struct {
	all            bool
	load           bool
	duration       time.Duration
	records        int64
	recordSize     int
	partitions     int
	idlePartitions int
	disk           bool
	skipKfake      bool
	strataBin      string
	tmpDir         string
	out            string
	timeout        time.Duration

	tier               bool
	tierMB             int
	tierPartitions     int
	tierSegmentBytes   int64
	tierColdReads      int
	tierParallel       int
	tierShapeLatency   time.Duration
	tierShapeMBps      float64
	tierFetchPartBytes int32
	tierBrokerFlags    string
	keep               bool
	versitygw          string

	compact           bool
	compactMB         int
	compactKeys       int
	compactValueBytes int
	compactRate       float64
	compactIOLimit    int64
	compactSegBytes   int64

	compactRemote         bool
	compactRemoteMB       int
	compactRemoteSegBytes int64
	mergeMB               int
	mergeSegBytes         int64
	mergeTargetBytes      int64

	groups           bool
	groupsMembers    []int
	groupsPartitions int
	groupsCommitters int
	groupsLoad       int
	groupsHeartbeat  time.Duration
	groupsRounds     int

	cluster            bool
	clusterPartitions  int
	clusterFailovers   int
	clusterFastSession time.Duration
	clusterCatchupMB   int
	// clusterRejoinTimeout bounds the wait for a restarted broker to rejoin
	// the ISR after a failover (0: 1 minute); no flag, tests shorten it.
	clusterRejoinTimeout time.Duration

	txn         bool
	txnSizes    []int
	txnDuration time.Duration
	txnConsume  bool
	// txnAbortSize is the transaction size of the run that aborts every
	// second transaction (0: no such run).
	txnAbortSize int
	// txnBrokerFlags are extra flags of the txn phase's broker.
	txnBrokerFlags string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata-load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	err = run(ctx, cfg)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata-load:", err)
		os.Exit(1)
	}
}

// parseFlags parses and validates the command line.
func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("strata-load", flag.ContinueOnError)
	fs.BoolVar(&cfg.all, "all", false, "run every phase: broker load, kfake reference, disk limit, idle partitions, tiered storage, compaction, remote compaction, consumer groups, replication, transactions")
	fs.BoolVar(&cfg.load, "load", true, "run the produce/consume phases (false: only disk and idle phases)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each produce phase")
	fs.Int64Var(&cfg.records, "records", 0, "stop each produce phase after this many records (0: only -duration bounds it)")
	fs.IntVar(&cfg.recordSize, "record-size", 1024, "record value size in bytes")
	fs.IntVar(&cfg.partitions, "partitions", 8, "partitions of the load topics")
	fs.IntVar(&cfg.idlePartitions, "idle-partitions", -1, "partitions to create in the idle phase (default 10000 with -all, else 0)")
	fs.BoolVar(&cfg.disk, "disk", false, "measure the disk's fdatasync bandwidth (implied by -all)")
	fs.BoolVar(&cfg.skipKfake, "skip-kfake", false, "do not run the kfake reference")
	fs.StringVar(&cfg.strataBin, "strata", os.Getenv("STRATA_BIN"), "strata binary to start (default $STRATA_BIN; empty skips the broker phases)")
	fs.StringVar(&cfg.tmpDir, "tmpdir", os.TempDir(), "directory under which data directories and disk-test files are created")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (data directories, broker and versitygw logs) for inspection")
	fs.StringVar(&cfg.out, "out", "", "also append the Markdown report to this file")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "hard limit for the whole run (default 10m + 12 x -duration, plus 10m + 2s per -tier-mb with -tier)")
	fs.BoolVar(&cfg.tier, "tier", false, "measure tiered storage on versitygw: upload, replay vs raw GET, cold random reads (implied by -all)")
	fs.IntVar(&cfg.tierMB, "tier-mb", 512, "MB (10^6 bytes) of record values produced per data kind in the tier phase")
	fs.IntVar(&cfg.tierPartitions, "tier-partitions", 1, "partitions of the tiered topics")
	fs.Int64Var(&cfg.tierSegmentBytes, "tier-segment-bytes", 64<<20, "segment.bytes of the tiered topics")
	fs.IntVar(&cfg.tierColdReads, "tier-cold-reads", 8, "pairs of cold random reads (first read in a segment, then another chunk of it)")
	fs.IntVar(&cfg.tierParallel, "tier-parallel-gets", 4, "concurrent GETs of the parallel raw-GET measurement")
	fs.DurationVar(&cfg.tierShapeLatency, "tier-shape-latency", 20*time.Millisecond, "first-byte latency the proxy adds in the S3-like replay")
	fs.Float64Var(&cfg.tierShapeMBps, "tier-shape-mbps", 80, "per-request bandwidth (MB/s) the proxy allows in the S3-like replay (0: skip that replay)")
	fs.Func("tier-fetch-partition-bytes", "the replay consumer's kgo FetchMaxPartitionBytes (default kgo's 1 MiB)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive byte count, got %q", v)
		}
		cfg.tierFetchPartBytes = int32(n)
		return nil
	})
	fs.StringVar(&cfg.tierBrokerFlags, "tier-broker-flags", "", "extra flags for the tier phase's broker, space-separated (e.g. \"--log-level info\")")
	fs.StringVar(&cfg.versitygw, "versitygw", "", "versitygw binary (default $VERSITYGW_BIN, <repo>/bin/versitygw, PATH)")
	fs.BoolVar(&cfg.compact, "compact", false, "measure the log cleaner: pass throughput and produce latency while it runs (implied by -all)")
	fs.IntVar(&cfg.compactMB, "compact-mb", 256, "MB (10^6 bytes) of record values of the compaction throughput pass")
	fs.IntVar(&cfg.compactKeys, "compact-keys", 100000, "key space of the compaction phase's records")
	fs.IntVar(&cfg.compactValueBytes, "compact-value-bytes", 200, "value size of the compaction phase's records")
	fs.Float64Var(&cfg.compactRate, "compact-rate", 0, "MB/s of the compaction latency runs (0: half the max-rate produce of the phase)")
	fs.Int64Var(&cfg.compactSegBytes, "compact-segment-bytes", 16<<20, "segment.bytes of the compaction phase's topics")
	fs.Int64Var(&cfg.compactIOLimit, "compact-io-limit", 0, "--log-cleaner-io-max-bytes-per-second of the limited latency run (0: a quarter of the unlimited pass's rate)")
	fs.BoolVar(&cfg.compactRemote, "compact-remote", false, "measure remote compaction and merging of tiered history on versitygw (implied by -all)")
	fs.IntVar(&cfg.compactRemoteMB, "compact-remote-mb", 128, "MB (10^6 bytes) of keyed updates of the remote compaction pass (keys and value size: -compact-keys, -compact-value-bytes)")
	fs.Int64Var(&cfg.compactRemoteSegBytes, "compact-remote-segment-bytes", 8<<20, "segment.bytes of the remote compaction topic")
	fs.IntVar(&cfg.mergeMB, "merge-mb", 64, "MB (10^6 bytes) of record values of the merge measurement")
	fs.Int64Var(&cfg.mergeSegBytes, "merge-segment-bytes", 256<<10, "segment.bytes of the merge measurement's topic (small objects)")
	fs.Int64Var(&cfg.mergeTargetBytes, "merge-target-bytes", 8<<20, "--tier-merge-target-bytes of the broker once merging is turned on")
	fs.BoolVar(&cfg.groups, "groups", false, "measure consumer groups: rebalance time, sustained offset commits, coordinator load after a restart (implied by -all)")
	cfg.groupsMembers = []int{1, 10, 50}
	fs.Func("groups-members", "comma-separated group sizes of the rebalance measurements (default \"1,10,50\")", func(v string) error {
		var sizes []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("want positive group sizes, got %q", v)
			}
			sizes = append(sizes, n)
		}
		cfg.groupsMembers = sizes
		return nil
	})
	fs.IntVar(&cfg.groupsPartitions, "groups-partitions", 100, "partitions of the topic the rebalance measurements' groups consume")
	fs.IntVar(&cfg.groupsCommitters, "groups-committers", 16, "goroutines (each its own client and group) committing offsets for -duration")
	fs.IntVar(&cfg.groupsLoad, "groups-load", 10000, "groups created before the restart of the coordinator-load measurement (0: skip it)")
	fs.IntVar(&cfg.groupsRounds, "groups-rounds", 5, "join/leave rounds per group size and balancer (each: one member joins, the oldest leaves)")
	fs.DurationVar(&cfg.groupsHeartbeat, "groups-heartbeat", 0, "heartbeat interval of the group members (0: kgo's default, 3s)")
	fs.BoolVar(&cfg.cluster, "cluster", false, "measure replication on a 3-broker cluster: RF=1 vs RF=3 produce, leader failover, follower catch-up (implied by -all)")
	fs.IntVar(&cfg.clusterPartitions, "cluster-partitions", 6, "partitions of the replication phase's produce and catch-up topics")
	fs.IntVar(&cfg.clusterFailovers, "cluster-failovers", 5, "leader SIGKILLs per failover run (0: skip the failover runs)")
	fs.DurationVar(&cfg.clusterFastSession, "cluster-fast-session", 2*time.Second, "--broker-session-timeout of a second failover run (heartbeat a quarter of it; 0: skip that run)")
	fs.IntVar(&cfg.clusterCatchupMB, "cluster-catchup-mb", 256, "MB (10^6 bytes) of record values produced while a follower is down (0: skip the catch-up measurement)")
	fs.BoolVar(&cfg.txn, "txn", false, "measure transactions: produce throughput per transaction size against non-transactional produce, EndTxn latency, read_committed consume (implied by -all)")
	cfg.txnSizes = []int{1, 100, 10000}
	fs.Func("txn-sizes", "comma-separated records per transaction of the txn phase's runs (default \"1,100,10000\")", func(v string) error {
		sizes, err := positiveInts(v)
		if err != nil {
			return err
		}
		seen := map[int]bool{}
		for _, n := range sizes {
			if seen[n] {
				return fmt.Errorf("size %d given twice in %q", n, v)
			}
			seen[n] = true
		}
		cfg.txnSizes = sizes
		return nil
	})
	fs.DurationVar(&cfg.txnDuration, "txn-duration", 3*time.Second, "length of each produce run of the txn phase (the non-transactional one and one per transaction size)")
	fs.IntVar(&cfg.txnAbortSize, "txn-abort-size", 100, "records per transaction of a txn run that aborts every second transaction (0: skip it)")
	fs.StringVar(&cfg.txnBrokerFlags, "txn-broker-flags", "", "extra flags for the txn phase's broker, space-separated (e.g. \"--admin-addr 127.0.0.1:6060\" for pprof)")
	fs.BoolVar(&cfg.txnConsume, "txn-consume", true, "consume the txn phase's topics back with read_uncommitted and read_committed")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.idlePartitions < 0 {
		cfg.idlePartitions = 0
		if cfg.all {
			cfg.idlePartitions = 10000
		}
	}
	cfg.disk = cfg.disk || cfg.all
	cfg.load = cfg.load || cfg.all
	cfg.tier = cfg.tier || cfg.all
	cfg.compact = cfg.compact || cfg.all
	cfg.compactRemote = cfg.compactRemote || cfg.all
	cfg.groups = cfg.groups || cfg.all
	cfg.cluster = cfg.cluster || cfg.all
	cfg.txn = cfg.txn || cfg.all
	if cfg.timeout == 0 {
		cfg.timeout = 10*time.Minute + 12*cfg.duration
		if cfg.tier {
			cfg.timeout += 10*time.Minute + time.Duration(cfg.tierMB)*2*time.Second
		}
		if cfg.compact {
			cfg.timeout += 10*time.Minute + time.Duration(cfg.compactMB)*time.Second
		}
		if cfg.compactRemote {
			cfg.timeout += 10*time.Minute + time.Duration(cfg.compactRemoteMB+cfg.mergeMB)*time.Second
		}
		if cfg.groups {
			cfg.timeout += 20*time.Minute + cfg.duration + time.Duration(cfg.groupsLoad)*10*time.Millisecond
		}
		if cfg.cluster {
			cfg.timeout += 10*time.Minute + 4*cfg.duration + time.Duration(cfg.clusterFailovers)*3*time.Minute +
				time.Duration(cfg.clusterCatchupMB)*time.Second
		}
		if cfg.txn {
			cfg.timeout += 5*time.Minute + time.Duration(len(cfg.txnSizes)+2)*(4*cfg.txnDuration+phaseGrace)
		}
	}
	switch {
	case cfg.duration <= 0:
		return cfg, errors.New("-duration must be positive")
	case cfg.recordSize <= 0:
		return cfg, errors.New("-record-size must be positive")
	case cfg.partitions <= 0:
		return cfg, errors.New("-partitions must be positive")
	case cfg.records < 0:
		return cfg, errors.New("-records must not be negative")
	case cfg.tierMB <= 0:
		return cfg, errors.New("-tier-mb must be positive")
	case cfg.tierPartitions <= 0:
		return cfg, errors.New("-tier-partitions must be positive")
	case cfg.tierSegmentBytes < 1024:
		return cfg, errors.New("-tier-segment-bytes must be at least 1024")
	case cfg.tierColdReads < 0:
		return cfg, errors.New("-tier-cold-reads must not be negative")
	case cfg.tierShapeMBps < 0 || cfg.tierShapeLatency < 0:
		return cfg, errors.New("-tier-shape-mbps and -tier-shape-latency must not be negative")
	case cfg.tierParallel <= 0:
		return cfg, errors.New("-tier-parallel-gets must be positive")
	case cfg.compactMB <= 0 || cfg.compactKeys <= 0 || cfg.compactValueBytes <= 0:
		return cfg, errors.New("-compact-mb, -compact-keys and -compact-value-bytes must be positive")
	case cfg.compactSegBytes < 1024:
		return cfg, errors.New("-compact-segment-bytes must be at least 1024")
	case cfg.compactRate < 0 || cfg.compactIOLimit < 0:
		return cfg, errors.New("-compact-rate and -compact-io-limit must not be negative")
	case cfg.compactRemoteMB <= 0 || cfg.mergeMB <= 0:
		return cfg, errors.New("-compact-remote-mb and -merge-mb must be positive")
	case cfg.compactRemoteSegBytes < 1024 || cfg.mergeSegBytes < 1024:
		return cfg, errors.New("-compact-remote-segment-bytes and -merge-segment-bytes must be at least 1024")
	case cfg.mergeTargetBytes <= 0:
		return cfg, errors.New("-merge-target-bytes must be positive")
	case cfg.groupsPartitions <= 0 || cfg.groupsCommitters <= 0 || cfg.groupsRounds <= 0:
		return cfg, errors.New("-groups-partitions, -groups-committers and -groups-rounds must be positive")
	case cfg.groupsLoad < 0 || cfg.groupsHeartbeat < 0:
		return cfg, errors.New("-groups-load and -groups-heartbeat must not be negative")
	case cfg.clusterPartitions <= 0:
		return cfg, errors.New("-cluster-partitions must be positive")
	case cfg.txnDuration <= 0:
		return cfg, errors.New("-txn-duration must be positive")
	case cfg.txnAbortSize < 0:
		return cfg, errors.New("-txn-abort-size must not be negative")
	case cfg.clusterFailovers < 0 || cfg.clusterFastSession < 0 || cfg.clusterCatchupMB < 0:
		return cfg, errors.New("-cluster-failovers, -cluster-fast-session and -cluster-catchup-mb must not be negative")
	}
	if cfg.tier && cfg.strataBin == "" {
		return cfg, errors.New("-tier needs the broker binary: set STRATA_BIN or -strata")
	}
	if cfg.compact && cfg.strataBin == "" {
		return cfg, errors.New("-compact needs the broker binary: set STRATA_BIN or -strata")
	}
	if cfg.compactRemote && cfg.strataBin == "" {
		return cfg, errors.New("-compact-remote needs the broker binary: set STRATA_BIN or -strata")
	}
	if cfg.groups && cfg.strataBin == "" {
		return cfg, errors.New("-groups needs the broker binary: set STRATA_BIN or -strata")
	}
	if cfg.cluster && cfg.strataBin == "" {
		return cfg, errors.New("-cluster needs the broker binary: set STRATA_BIN or -strata")
	}
	if cfg.txn && cfg.strataBin == "" {
		return cfg, errors.New("-txn needs the broker binary: set STRATA_BIN or -strata")
	}
	if cfg.idlePartitions > 0 && cfg.strataBin == "" {
		return cfg, errors.New("-idle-partitions needs the broker binary: set STRATA_BIN or -strata")
	}
	return cfg, nil
}

// run executes the selected phases and writes the report. Phase failures
// are recorded in the report and returned together at the end, so one broken
// phase does not hide the others' numbers.
func run(ctx context.Context, cfg config) error {
	base, err := os.MkdirTemp(cfg.tmpDir, "strata-load-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if cfg.keep {
		defer logf("kept %s", base)
	} else {
		defer os.RemoveAll(base)
	}

	rep := &report{started: time.Now(), cfg: cfg}
	rep.machine = describeMachine(base, cfg.strataBin)

	if cfg.disk {
		logf("disk: dd and fdatasync loop in %s", base)
		d := measureDisk(ctx, base, cfg.duration)
		rep.disk = &d
	}
	switch {
	case !cfg.load || ctx.Err() != nil:
	case cfg.strataBin != "":
		logf("strata: load against %s", cfg.strataBin)
		rep.loads = append(rep.loads, runStrataLoad(ctx, cfg, base))
	default:
		logf("strata: skipped (no STRATA_BIN / -strata)")
	}
	if cfg.load && !cfg.skipKfake && ctx.Err() == nil {
		logf("kfake: reference load")
		rep.loads = append(rep.loads, runKfakeLoad(ctx, cfg))
	}
	if cfg.idlePartitions > 0 && ctx.Err() == nil {
		logf("strata: idle phase with %d partitions", cfg.idlePartitions)
		idle := runIdle(ctx, cfg, base)
		rep.idle = &idle
	}

	if cfg.tier && ctx.Err() == nil {
		logf("strata: tiered storage phase (%d MB per data kind)", cfg.tierMB)
		t := runTier(ctx, cfg, base)
		rep.tier = &t
	}

	if cfg.compact && ctx.Err() == nil {
		logf("strata: compaction phase (%d MB over %d keys)", cfg.compactMB, cfg.compactKeys)
		c := runCompact(ctx, cfg, base)
		rep.compact = &c
	}
	if cfg.compactRemote && ctx.Err() == nil {
		logf("strata: remote compaction and merging phase (%d MB of updates, %d MB of small segments)", cfg.compactRemoteMB, cfg.mergeMB)
		c := runCompactRemote(ctx, cfg, base)
		rep.compactRemote = &c
	}
	if cfg.groups && ctx.Err() == nil {
		logf("strata: consumer-group phase (members %v, %d partitions)", cfg.groupsMembers, cfg.groupsPartitions)
		g := runGroups(ctx, cfg, base)
		rep.groups = &g
	}
	if cfg.cluster && ctx.Err() == nil {
		logf("strata: replication phase (3 brokers, %d partitions)", cfg.clusterPartitions)
		c := runCluster(ctx, cfg, base)
		rep.cluster = &c
	}
	if cfg.txn && ctx.Err() == nil {
		logf("strata: transactions phase (sizes %v, %v per run)", cfg.txnSizes, cfg.txnDuration)
		t := runTxn(ctx, cfg, base)
		rep.txn = &t
	}

	md := rep.markdown()
	fmt.Print(md)
	if cfg.out != "" {
		if err := appendFile(cfg.out, md); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stopped early: %w", context.Cause(ctx))
	}
	return rep.err()
}

// positiveInts parses a comma-separated list of positive integers.
func positiveInts(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("want positive integers, got %q", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// appendFile appends s to the file at path, creating it if needed.
func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open -out file: %w", err)
	}
	if _, err := io.WriteString(f, s); err != nil {
		f.Close()
		return fmt.Errorf("write -out file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close -out file: %w", err)
	}
	return nil
}

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s strata-load: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
