package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/wire"
	"github.com/strata-io/strata/tier"
)

type serveOptions struct {
	configFile       string
	listen           string
	advertisedHost   string
	advertisedPort   int
	nodeID           int32
	dataDir          string
	autoCreate       bool
	numPartitions    int32
	minFreeBytes     int64
	maxRequestBytes  int32
	maxInflightBytes int64
	maxInflightConn  int
	maxConnsPerIP    int
	retentionCheck   time.Duration
	producerIDExpiry time.Duration
	maxOpenFiles     int
	maxPartitions    int
	logLevel         string
	logFormat        string
	adminAddr        string

	cleanerBackoff    time.Duration
	cleanerRateLimit  int64
	cleanerMapEntries int
	mergeTargetBytes  int64

	offsetsPartitions int32
	txnPartitions     int32
	txnMaxTimeout     time.Duration
	offsetsRetention  time.Duration

	controllerListen  string
	controllerVoters  string
	rack              string
	heartbeatInterval time.Duration
	sessionTimeout    time.Duration
	replicaLagTime    time.Duration

	store              objectStoreFlags
	tierUploadInterval time.Duration
	tierCheckInterval  time.Duration
	tierGracePeriod    time.Duration
	tierGCEvery        int
}

func serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker",
		Long: `Run a broker. Every flag can also be set with an environment variable
(STRATA_ plus the flag name in upper case with '-' as '_', e.g. STRATA_DATA_DIR)
or in a config file of flag=value lines (--config). Flags win over the
environment, which wins over the file.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), o.configFile); err != nil {
				return err
			}
			return runServe(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "config file of flag=value lines")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9092", "address to listen on for Kafka clients")
	f.StringVar(&o.advertisedHost, "advertised-host", "", "host clients should connect to (default: the listen host)")
	f.IntVar(&o.advertisedPort, "advertised-port", 0, "port clients should connect to (default: the listen port)")
	f.Int32Var(&o.nodeID, "node-id", 0, "this broker's node id")
	f.StringVar(&o.dataDir, "data-dir", "./strata-data", "directory for partition logs and metadata")
	f.BoolVar(&o.autoCreate, "auto-create-topics", true, "auto.create.topics.enable: create unknown topics on metadata requests")
	f.Int32Var(&o.numPartitions, "num-partitions", 1, "num.partitions: partitions of auto-created topics")
	f.Int64Var(&o.minFreeBytes, "min-free-bytes", 256<<20, "refuse appends when the data disk has less free space than this")
	f.Int32Var(&o.maxRequestBytes, "socket-request-max-bytes", wire.DefaultMaxRequestBytes, "socket.request.max.bytes: largest request accepted")
	f.Int64Var(&o.maxInflightBytes, "max-inflight-bytes", wire.DefaultMaxInflightBytes, "global budget of request bytes being processed; sockets stop being read beyond it")
	f.IntVar(&o.maxInflightConn, "max-inflight-per-conn", wire.DefaultMaxInflightPerConn, "requests outstanding per connection before it stops being read")
	f.IntVar(&o.maxConnsPerIP, "max-connections-per-ip", wire.DefaultMaxConnsPerIP, "max.connections.per.ip")
	f.DurationVar(&o.retentionCheck, "retention-check-interval", 5*time.Minute, "log.retention.check.interval.ms")
	f.DurationVar(&o.producerIDExpiry, "producer-id-expiration", 24*time.Hour, "producer.id.expiration.ms")
	f.IntVar(&o.maxOpenFiles, "max-open-segment-files", 1024, "descriptors cached for reading sealed segments")
	f.IntVar(&o.maxPartitions, "max-partitions", 0, "most partitions this broker holds (0: derived from RLIMIT_NOFILE, leaving room for connections and cached segment files)")
	o.store.register(f, "object store for tiered topics: fs (a local directory), s3, or none (tiering off)")
	f.DurationVar(&o.tierUploadInterval, "tier-upload-interval", time.Hour, "roll and upload an idle tiered partition's active segment once it is this old")
	f.DurationVar(&o.tierCheckInterval, "tier-check-interval", 10*time.Second, "how often tiered partitions upload and apply retention")
	f.DurationVar(&o.tierGracePeriod, "tier-grace-period", 10*time.Minute, "how long objects no manifest names are kept before deletion")
	f.IntVar(&o.tierGCEvery, "tier-gc-every", 30, "collect garbage in the bucket every this many tier checks")
	f.DurationVar(&o.cleanerBackoff, "log-cleaner-backoff", broker.DefaultCleanerBackoff, "log.cleaner.backoff.ms: how often compacted partitions are checked for cleaning")
	f.Int64Var(&o.cleanerRateLimit, "log-cleaner-io-max-bytes-per-second", 64<<20, "log.cleaner.io.max.bytes.per.second: bound on the cleaner's reads plus writes, local and remote (0: unlimited)")
	f.IntVar(&o.cleanerMapEntries, "log-cleaner-dedupe-keys", 0, "distinct keys one cleaning pass dedupes (0: 1 Mi, about 60 MiB); a pass stops at the segment where the map fills")
	f.Int64Var(&o.mergeTargetBytes, "tier-merge-target-bytes", tier.DefaultMergeTargetBytes, "adjacent remote objects smaller than half this are merged into objects of up to this size (-1: no merging)")
	f.Int32Var(&o.offsetsPartitions, "offsets-topic-partitions", broker.DefaultOffsetsTopicPartitions, "offsets.topic.num.partitions: partitions of __consumer_offsets when it is created (an existing topic keeps its count)")
	f.Int32Var(&o.txnPartitions, "transaction-topic-partitions", broker.DefaultTxnTopicPartitions, "transaction.state.log.num.partitions: partitions of __transaction_state when it is created (an existing topic keeps its count)")
	f.DurationVar(&o.txnMaxTimeout, "transaction-max-timeout", 15*time.Minute, "transaction.max.timeout.ms: the longest transaction timeout a producer may ask for")
	f.DurationVar(&o.offsetsRetention, "offsets-retention", 7*24*time.Hour, "offsets.retention.minutes: committed offsets of a group without members are dropped this long after its last commit")
	f.StringVar(&o.controllerListen, "controller-listen", "", "address of this broker's metadata quorum port (raft and requests to the controller), e.g. 127.0.0.1:9093; empty runs a one-broker cluster")
	f.StringVar(&o.controllerVoters, "controller-voters", "", "controller.quorum.voters: the quorum's voters as id@host:port,... (1, 3 or 5; a broker not listed joins as a non-voter); empty: this broker alone")
	f.StringVar(&o.rack, "rack", "", "broker.rack: replicas of a partition are spread over racks")
	f.DurationVar(&o.heartbeatInterval, "broker-heartbeat-interval", 2*time.Second, "broker.heartbeat.interval.ms: how often this broker tells the controller it is alive")
	f.DurationVar(&o.sessionTimeout, "broker-session-timeout", 9*time.Second, "broker.session.timeout.ms: a broker silent this long is fenced and its partitions move to other replicas")
	f.DurationVar(&o.replicaLagTime, "replica-lag-time-max", broker.DefaultReplicaLagTime, "replica.lag.time.max.ms: a follower that has not caught up with its leader for this long leaves the ISR")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.adminAddr, "admin-addr", "", "address of the admin HTTP API (retention dry runs) and Go's /debug/pprof handlers (off when empty; no authentication: keep it on loopback)")
	return cmd
}

// parseVoters parses controller.quorum.voters: id@host:port,...
func parseVoters(s string) (map[int32]string, error) {
	out := map[int32]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, v := range strings.Split(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(v), "@")
		id, err := strconv.ParseInt(idStr, 10, 32)
		if !ok || err != nil || id < 0 {
			return nil, fmt.Errorf("--controller-voters: %q is not id@host:port", v)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--controller-voters: %q: %w", v, err)
		}
		if _, dup := out[int32(id)]; dup {
			return nil, fmt.Errorf("--controller-voters: voter %d listed twice", id)
		}
		out[int32(id)] = addr
	}
	if n := len(out); n%2 == 0 {
		return nil, fmt.Errorf("--controller-voters: %d voters; use an odd number (1, 3 or 5) so a majority survives failures", n)
	}
	return out, nil
}

// applyEnvAndFile fills flags not set on the command line from STRATA_*
// environment variables, then from the config file.
func applyEnvAndFile(fs *pflag.FlagSet, file string) error {
	fromFile := map[string]string{}
	if file != "" {
		fh, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return fmt.Errorf("config file %s:%d: expected flag=value", file, n)
			}
			k = strings.TrimSpace(k)
			if fs.Lookup(k) == nil {
				return fmt.Errorf("config file %s:%d: unknown setting %q", file, n, k)
			}
			fromFile[k] = strings.TrimSpace(v)
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("config file %s: %w", file, err)
		}
	}
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		env := "STRATA_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v, ok := os.LookupEnv(env)
		src := env
		if !ok {
			v, ok = fromFile[fl.Name]
			src = "config file"
		}
		if ok {
			if e := fl.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: invalid value %q for %s: %w", src, v, fl.Name, e)
			}
		}
	})
	return err
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format must be text or json, got %q", format)
}

func runServe(o serveOptions) error {
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(logger)
	if o.txnPartitions < 1 || o.txnPartitions > 1000 {
		return fmt.Errorf("--transaction-topic-partitions must be between 1 and 1000, got %d", o.txnPartitions)
	}
	if o.txnMaxTimeout < time.Second {
		return fmt.Errorf("--transaction-max-timeout must be at least 1s, got %v", o.txnMaxTimeout)
	}
	if o.offsetsPartitions < 1 || o.offsetsPartitions > 1000 {
		return fmt.Errorf("--offsets-topic-partitions must be between 1 and 1000, got %d", o.offsetsPartitions)
	}
	if o.offsetsRetention < time.Minute {
		return fmt.Errorf("--offsets-retention must be at least 1m, got %v", o.offsetsRetention)
	}
	voters, err := parseVoters(o.controllerVoters)
	if err != nil {
		return err
	}
	if len(voters) > 0 && o.controllerListen == "" {
		return errors.New("--controller-voters needs --controller-listen: the quorum reaches this broker there")
	}
	if _, ok := voters[o.nodeID]; ok && voters[o.nodeID] != o.controllerListen {
		return fmt.Errorf("--controller-voters lists broker %d at %s but --controller-listen is %s", o.nodeID, voters[o.nodeID], o.controllerListen)
	}
	if o.heartbeatInterval <= 0 || o.sessionTimeout <= 2*o.heartbeatInterval {
		return fmt.Errorf("--broker-session-timeout (%v) must be more than twice --broker-heartbeat-interval (%v)", o.sessionTimeout, o.heartbeatInterval)
	}
	nofile := logFileLimit(logger)
	if o.maxPartitions == 0 && nofile > 0 {
		// Each partition holds one descriptor; keep the segment-file cache
		// and 4096 descriptors for connections and everything else.
		o.maxPartitions = max(1, int(nofile)-o.maxOpenFiles-4096)
		logger.Info("partition cap from RLIMIT_NOFILE", "max_partitions", o.maxPartitions)
	}

	host, portStr, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", o.listen, err)
	}
	// A signal during start (joining the quorum can take a while) is
	// held and shuts the broker down cleanly once it has started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if o.advertisedHost == "" {
		o.advertisedHost = host
		if o.advertisedHost == "" || o.advertisedHost == "0.0.0.0" || o.advertisedHost == "::" {
			o.advertisedHost = "127.0.0.1"
		}
	}
	if o.advertisedPort == 0 {
		if portStr == "0" {
			portStr = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		}
		p, _ := strconv.Atoi(portStr)
		o.advertisedPort = p
	}

	tm, closeStore, err := openTier(o, logger)
	if err != nil {
		ln.Close()
		return err
	}
	defer closeStore()
	b, err := broker.Open(broker.Config{
		Tier:                    tm,
		TierCheckInterval:       o.tierCheckInterval,
		TierGCEvery:             o.tierGCEvery,
		NodeID:                  o.nodeID,
		Host:                    o.advertisedHost,
		Port:                    int32(o.advertisedPort),
		DataDir:                 o.dataDir,
		AutoCreateTopics:        o.autoCreate,
		NumPartitions:           o.numPartitions,
		MinFreeBytes:            o.minFreeBytes,
		ProducerIDExpirationMs:  o.producerIDExpiry.Milliseconds(),
		RetentionCheckInterval:  o.retentionCheck,
		MaxOpenFiles:            o.maxOpenFiles,
		MaxPartitions:           o.maxPartitions,
		CleanerBackoff:          o.cleanerBackoff,
		CleanerRateLimit:        o.cleanerRateLimit,
		CleanerMapEntries:       o.cleanerMapEntries,
		MergeTargetBytes:        o.mergeTargetBytes,
		OffsetsTopicPartitions:  o.offsetsPartitions,
		TxnTopicPartitions:      o.txnPartitions,
		TxnMaxTimeout:           o.txnMaxTimeout,
		Rack:                    o.rack,
		ControllerListen:        o.controllerListen,
		ControllerVoters:        voters,
		BrokerHeartbeatInterval: o.heartbeatInterval,
		BrokerSessionTimeout:    o.sessionTimeout,
		ReplicaLagTime:          o.replicaLagTime,
		OffsetsRetention:        o.offsetsRetention,
		Logger:                  logger,
	})
	if err != nil {
		ln.Close()
		return err
	}
	srv, err := wire.NewServer(wire.Config{
		Broker:             b,
		Logger:             logger,
		MaxRequestBytes:    o.maxRequestBytes,
		MaxInflightBytes:   o.maxInflightBytes,
		MaxInflightPerConn: o.maxInflightConn,
		MaxConnsPerIP:      o.maxConnsPerIP,
	})
	if err != nil {
		b.Close()
		ln.Close()
		return err
	}
	if o.adminAddr != "" {
		stopAdmin, err := serveAdmin(o.adminAddr, b, logger)
		if err != nil {
			b.Close()
			ln.Close()
			return err
		}
		defer stopAdmin()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("strata broker started", "listen", ln.Addr().String(), "advertised", net.JoinHostPort(o.advertisedHost, strconv.Itoa(o.advertisedPort)),
		"node_id", o.nodeID, "data_dir", o.dataDir, "object_store", o.store.kind)

	select {
	case s := <-sigs:
		logger.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		if err != nil {
			logger.Error("server stopped", "err", err)
		}
	}
	// Hand leadership to other replicas while clients can still be told
	// where it went (NOT_LEADER_OR_FOLLOWER, then new metadata).
	if err := b.ControlledShutdown(15 * time.Second); err != nil {
		logger.Warn("controlled shutdown", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("server shutdown", "err", err)
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("close broker: %w", err)
	}
	logger.Info("strata broker stopped")
	return nil
}

// logFileLimit raises the soft RLIMIT_NOFILE to the hard limit, logs both
// and returns the soft limit (0 if unknown): every partition's active
// segment holds a descriptor.
func logFileLimit(logger *slog.Logger) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		logger.Warn("read RLIMIT_NOFILE", "err", err)
		return 0
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	logger.Info("file descriptor limit", "RLIMIT_NOFILE_soft", rl.Cur, "RLIMIT_NOFILE_hard", rl.Max)
	return rl.Cur
}

// openTier opens the configured object store and the tier over it; (nil,
// no-op) when tiering is off.
func openTier(o serveOptions, logger *slog.Logger) (*tier.Manager, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := o.store.open(ctx, o.dataDir, false)
	if errors.Is(err, errNoObjectStore) {
		return nil, func() {}, nil
	} else if err != nil {
		return nil, nil, err
	}
	tm, err := tier.NewManager(ctx, tier.Config{
		Store:          store,
		TempDir:        filepath.Join(o.dataDir, "tier-tmp"),
		UploadInterval: o.tierUploadInterval,
		GracePeriod:    o.tierGracePeriod,
		Logger:         logger,
	})
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("tiered storage: %w", err)
	}
	return tm, func() {
		tm.Close()
		store.Close()
	}, nil
}
