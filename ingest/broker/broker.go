// Package broker holds the partitions a node serves and the semantics of the
// Kafka APIs over them: produce, fetch, offsets, topics and configs. It is the
// layer between the wire protocol (ingest/wire) and the partition logs
// (ingest/log); it owns no sockets and knows no wire structs.
//
// Lock order: Broker.mu before Partition.mu. Neither is held across disk I/O
// except a partition's log append, which the log serialises itself.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/cluster"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
	"github.com/strata-io/strata/ingest/replica"
	"github.com/strata-io/strata/ingest/topicconfig"
	"github.com/strata-io/strata/tier"
)

// Config is the broker-level configuration.
type Config struct {
	NodeID  int32
	Host    string // advertised host
	Port    int32  // advertised port
	Rack    string
	DataDir string

	AutoCreateTopics bool  // auto.create.topics.enable
	NumPartitions    int32 // num.partitions, for auto-created and -1 partition requests
	// MinFreeBytes is the free-space headroom below which appends are refused.
	MinFreeBytes int64
	// ProducerIDExpirationMs is producer.id.expiration.ms.
	ProducerIDExpirationMs int64
	// RetentionCheckInterval is log.retention.check.interval.ms.
	RetentionCheckInterval time.Duration
	// MaxOpenFiles bounds descriptors held for sealed segments.
	MaxOpenFiles int
	// MaxPartitions caps the partitions this broker holds (each holds a
	// descriptor for its active segment); 0 means no cap. Creations beyond
	// it are refused with INVALID_PARTITIONS instead of running the process
	// out of descriptors.
	MaxPartitions int
	// SyncWorkers is the group-commit fsync pool size.
	SyncWorkers int

	// ControllerListen is the metadata quorum's address on this broker
	// (raft and requests to the controller); empty runs a one-node cluster
	// on an in-memory transport. ControllerVoters maps the quorum's voter
	// ids to their controller addresses (empty: this broker alone).
	ControllerListen string
	ControllerVoters map[int32]string
	// BrokerHeartbeatInterval and BrokerSessionTimeout are
	// broker.heartbeat.interval.ms (2s) and broker.session.timeout.ms (9s).
	BrokerHeartbeatInterval time.Duration
	BrokerSessionTimeout    time.Duration
	// ReplicaLagTime is replica.lag.time.max.ms: a follower that has not
	// caught up with the leader for this long leaves the ISR.
	ReplicaLagTime time.Duration
	// Dial, if set, makes this broker's connections to other brokers
	// (replica fetches, the metadata quorum); tests cut links with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	Logger *slog.Logger
	// FS is the file system for partition logs; nil means the OS.
	FS vfs.FS

	// Tier is the object-store tier; nil disables remote.storage.enable.
	Tier *tier.Manager
	// TierCheckInterval is how often tiered partitions upload, apply
	// retention to both tiers and (every TierGCEvery checks) collect garbage.
	TierCheckInterval time.Duration
	TierGCEvery       int
	// TierWorkers bounds the partitions uploading at once.
	TierWorkers int
	// CleanerBackoff is how often compacted partitions are checked for a
	// compaction pass (log.cleaner.backoff.ms); CleanerRateLimit bounds a
	// pass's reads plus writes in bytes/s (log.cleaner.io.max.bytes.per.second,
	// 0: unlimited); CleanerMapEntries bounds the keys one pass dedupes
	// (log.cleaner.dedupe.buffer.size, in keys; 0: the log's default).
	CleanerBackoff    time.Duration
	CleanerRateLimit  int64
	CleanerMapEntries int
	// MergeTargetBytes is the size small adjacent remote objects are merged
	// into (0: tier.DefaultMergeTargetBytes; < 0: no merging).
	MergeTargetBytes int64
	// OffsetsTopicPartitions is offsets.topic.num.partitions for a new
	// __consumer_offsets (0: 50); an existing topic keeps its count.
	// OffsetsRetention is offsets.retention.minutes (0: 7 days), checked
	// every OffsetsRetentionCheckInterval (0: 10 minutes).
	OffsetsTopicPartitions        int32
	OffsetsRetention              time.Duration
	OffsetsRetentionCheckInterval time.Duration
	// TxnTopicPartitions is transaction.state.log.num.partitions for a new
	// __transaction_state (0: 50); TxnMaxTimeout is
	// transaction.max.timeout.ms (0: 15 minutes).
	TxnTopicPartitions int32
	TxnMaxTimeout      time.Duration
}

func (c *Config) setDefaults() {
	if c.NumPartitions <= 0 {
		c.NumPartitions = 1
	}
	if c.ProducerIDExpirationMs <= 0 {
		c.ProducerIDExpirationMs = 86400000
	}
	if c.RetentionCheckInterval <= 0 {
		c.RetentionCheckInterval = 5 * time.Minute
	}
	if c.MaxOpenFiles <= 0 {
		c.MaxOpenFiles = 1024
	}
	if c.SyncWorkers <= 0 {
		c.SyncWorkers = 4
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.TierCheckInterval <= 0 {
		c.TierCheckInterval = 10 * time.Second
	}
	if c.TierGCEvery <= 0 {
		c.TierGCEvery = 30
	}
	if c.TierWorkers <= 0 {
		c.TierWorkers = 2
	}
	if c.CleanerBackoff <= 0 {
		c.CleanerBackoff = DefaultCleanerBackoff
	}
	if c.ReplicaLagTime <= 0 {
		c.ReplicaLagTime = DefaultReplicaLagTime
	}
}

// Broker serves the partitions of one node.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	meta   *cluster.Raft
	syncer *plog.Syncer
	files  *plog.FileCache
	pids   *producer.Allocator

	mu struct {
		sync.RWMutex
		parts map[partKey]*Partition
	}
	// openMu serialises partition opens so that two callers never run
	// recovery on the same directory at once.
	openMu sync.Mutex
	// attachSem bounds the tiers being opened in the background.
	attachSem chan struct{}
	// delMu guards the pending remote deletions file; delRun serialises
	// deletion runs.
	delMu, delRun sync.Mutex
	// throttleMs is the produce throttle while the data disk is nearly full.
	throttleMs atomic.Int32
	// descWritten remembers the tiered topic descriptors already in the
	// bucket (topic id → fingerprint).
	descMu      sync.Mutex
	descWritten map[cluster.TopicID]string
	// groups is the group coordinators, set once by Open (groups.go).
	groups *groupState
	// txns is the transaction coordinators (txns.go).
	txns txnShared
	// replicas fetches the partitions this broker follows.
	replicas *replica.Manager

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type partKey struct {
	id  cluster.TopicID
	idx int32
}

// Errors the wire layer maps to Kafka codes.
var (
	ErrUnknownTopicOrPartition = errors.New("unknown topic or partition")
	ErrInvalidTopic            = errors.New("invalid topic")
	ErrInvalidPartitions       = errors.New("invalid partitions")
	ErrInvalidReplication      = errors.New("invalid replication factor")
	ErrTopicExists             = cluster.ErrTopicExists
	ErrNotEnoughReplicas       = errors.New("not enough replicas")
	ErrInternalTopic           = errors.New("internal topics cannot be modified")
	// ErrNotLeader: this broker holds the partition but does not lead it
	// (NOT_LEADER_OR_FOLLOWER: clients refresh metadata and go to the
	// leader). ErrLeaderNotAvailable: no replica can lead it now.
	ErrNotLeader          = errors.New("not the partition's leader")
	ErrLeaderNotAvailable = errors.New("the partition has no leader")
)

// Open starts a broker over cfg.DataDir: it opens the metadata store and
// every partition log (recovering them), removes directories of deleted
// topics, and starts background retention.
func Open(cfg Config) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.FS.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// Make the directory entries durable, so a power loss cannot remove
	// directories that hold acknowledged data.
	for _, d := range []string{filepath.Dir(filepath.Clean(cfg.DataDir)), cfg.DataDir} {
		if err := cfg.FS.SyncDir(d); err != nil {
			return nil, fmt.Errorf("sync %s: %w", d, err)
		}
	}
	// The metadata quorum. A broker that ran on the single-node metadata
	// file (metadata.json, producer-ids) seeds a new quorum with it; the
	// quorum then keeps metadata.json up to date for offline tools.
	mirror := filepath.Join(cfg.DataDir, "metadata.json")
	meta, err := cluster.OpenRaft(cluster.RaftConfig{
		Dir:               filepath.Join(cfg.DataDir, "metadata"),
		Self:              cluster.Broker{ID: cfg.NodeID, Host: cfg.Host, Port: cfg.Port, Rack: cfg.Rack},
		ControllerAddr:    cfg.ControllerListen,
		Voters:            cfg.ControllerVoters,
		HeartbeatInterval: cfg.BrokerHeartbeatInterval,
		SessionTimeout:    cfg.BrokerSessionTimeout,
		MirrorPath:        mirror,
		Logger:            cfg.Logger,
		Dial:              cfg.Dial,
		Import: func() (cluster.Imported, error) {
			imp, err := cluster.ReadImport(mirror, cfg.NodeID)
			if err != nil {
				return imp, err
			}
			imp.NextProducerID, err = producer.ReadAllocatorEnd(filepath.Join(cfg.DataDir, "producer-ids"))
			return imp, err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("metadata quorum: %w", err)
	}
	pids, err := producer.NewQuorumAllocator(1000, meta.AllocateProducerIDs)
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("producer id allocator: %w", err)
	}
	b := &Broker{
		cfg:    cfg,
		log:    cfg.Logger,
		meta:   meta,
		syncer: plog.NewSyncer(cfg.Logger, cfg.SyncWorkers),
		files:  plog.NewFileCache(cfg.MaxOpenFiles),
		pids:   pids,
		// Tiers opened in the background at once (bucket reads).
		attachSem: make(chan struct{}, 4),
	}
	b.mu.parts = map[partKey]*Partition{}
	b.descWritten = map[cluster.TopicID]string{}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.replicas = replica.NewManager(replica.Config{
		Self: cfg.NodeID, Logger: cfg.Logger.With("component", "replica-fetcher"), Dial: cfg.Dial,
		Resolve: func(id int32) (string, bool) {
			r, ok := meta.Registration(id)
			if !ok || r.Fenced {
				return "", false
			}
			return net.JoinHostPort(r.Host, strconv.Itoa(int(r.Port))), true
		},
	})
	if err := b.openAll(); err != nil {
		b.Close()
		return nil, err
	}
	meta.Watch(b.onMetadata)
	// Changes applied between openAll and Watch.
	for _, t := range meta.Topics() {
		b.onMetadata(cluster.Event{Topic: t.Name, ID: t.ID})
	}
	if cfg.Tier != nil {
		if err := b.importTopics(); err != nil {
			b.Close()
			return nil, err
		}
	}
	if err := b.startGroups(); err != nil {
		b.Close()
		return nil, err
	}
	b.startTxns()
	b.wg.Add(3)
	go b.every(time.Second, b.manageISR)
	// Retention and producer-state expiry; compaction, one partition at a
	// time (Kafka's log.cleaner.threads=1).
	go b.every(b.cfg.RetentionCheckInterval, b.ApplyRetention)
	go b.every(b.cfg.CleanerBackoff, func() { b.CleanPass(b.ctx) })
	if cfg.Tier != nil {
		b.wg.Add(2)
		go b.tierLoop()
		// Compaction and merging of the history in the bucket, beside the
		// uploads (each pass holds one partition's tier work at a time).
		go b.every(b.cfg.CleanerBackoff, func() {
			b.CompactRemote(b.ctx)
			if b.cfg.MergeTargetBytes >= 0 {
				b.MergeRemote(b.ctx, b.cfg.MergeTargetBytes)
			}
		})
	}
	return b, nil
}

// Meta returns the cluster metadata store.
func (b *Broker) Meta() cluster.Store { return b.meta }

// NodeID returns this broker's id.
func (b *Broker) NodeID() int32 { return b.cfg.NodeID }

// Logger returns the broker's logger.
func (b *Broker) Logger() *slog.Logger { return b.log }

// AutoCreateTopics reports whether auto.create.topics.enable is on.
func (b *Broker) AutoCreateTopics() bool { return b.cfg.AutoCreateTopics }

func (b *Broker) partDir(t cluster.Topic, idx int32) string {
	return filepath.Join(b.cfg.DataDir, "logs", fmt.Sprintf("%s-%d.%s", t.Name, idx, t.ID))
}

// openAll opens every partition in the metadata and removes log directories
// that belong to no current topic (a deletion interrupted by a crash).
func (b *Broker) openAll() error {
	keep := map[string]bool{}
	for _, t := range b.meta.Topics() {
		for i, mp := range t.Partitions {
			if !slices.Contains(mp.Replicas, b.cfg.NodeID) {
				continue
			}
			dir := b.partDir(t, int32(i))
			keep[filepath.Base(dir)] = true
			p, err := b.openPartition(t, int32(i))
			if err != nil {
				return err
			}
			// At start the tier is attached before the replica fetches:
			// an empty log continues from the bucket's end.
			if err := b.attachTier(p, topicconfig.Resolve(t.Configs)); err != nil {
				b.log.Warn("open tier; will retry", "topic", t.Name, "partition", i, "err", err)
			}
			b.applyState(p, mp)
		}
	}
	logs := filepath.Join(b.cfg.DataDir, "logs")
	names, err := b.cfg.FS.ReadDir(logs)
	if err != nil {
		return fmt.Errorf("list %s: %w", logs, err)
	}
	for _, name := range names {
		if !keep[name] {
			b.log.Info("removing log directory of a deleted topic", "dir", name)
			if err := removeDir(b.cfg.FS, filepath.Join(logs, name)); err != nil {
				return err
			}
		}
	}
	return b.cfg.FS.SyncDir(logs)
}

// removeDir removes a partition directory and the files in it.
func removeDir(fs vfs.FS, dir string) error {
	names, err := fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, n := range names {
		if err := fs.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("remove %s: %w", n, err)
		}
	}
	if err := fs.Remove(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

func logConfig(c topicconfig.Config, brokerCfg *Config) plog.Config {
	return plog.Config{
		SegmentBytes:           c.SegmentBytes,
		SegmentMs:              c.SegmentMs,
		IndexIntervalBytes:     c.IndexIntervalBytes,
		FlushMessages:          c.FlushMessages,
		FlushMs:                c.FlushMs,
		ProducerIDExpirationMs: brokerCfg.ProducerIDExpirationMs,
		MinFreeBytes:           brokerCfg.MinFreeBytes,
	}
}

func (b *Broker) openPartition(t cluster.Topic, idx int32) (*Partition, error) {
	b.openMu.Lock()
	defer b.openMu.Unlock()
	key := partKey{t.ID, idx}
	b.mu.RLock()
	p := b.mu.parts[key]
	b.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	tc := topicconfig.Resolve(t.Configs)
	p = newPartition(t.Name, t.ID, idx, tc)
	l, err := plog.Open(b.partDir(t, idx), logConfig(tc, &b.cfg), plog.Options{
		FS:        b.cfg.FS,
		Syncer:    b.syncer,
		Files:     b.files,
		Logger:    b.log.With("topic", t.Name, "partition", idx),
		OnDurable: p.onDurable,
	})
	if err != nil {
		return nil, fmt.Errorf("open partition %s-%d: %w", t.Name, idx, err)
	}
	p.log = l
	if b.cfg.Tier != nil && tc.RemoteStorage {
		// Until its tier is attached, an empty log refuses writes and
		// reads below the local start fail with a retriable error.
		p.needsTier.Store(true)
	}
	b.mu.Lock()
	b.mu.parts[key] = p
	b.mu.Unlock()
	return p, nil
}

// onMetadata applies a metadata change to the partitions this broker holds.
func (b *Broker) onMetadata(ev cluster.Event) {
	if ev.Deleted {
		b.mu.Lock()
		var gone []*Partition
		for k, p := range b.mu.parts {
			if k.id == ev.ID {
				gone = append(gone, p)
				delete(b.mu.parts, k)
			}
		}
		b.mu.Unlock()
		var tiered []int32
		for _, p := range gone {
			p.close()
			if p.tiered() != nil || p.needsTier.Load() {
				tiered = append(tiered, p.Index)
			}
			if err := p.log.Delete(); err != nil {
				b.log.Error("delete partition log", "topic", p.Topic, "partition", p.Index, "err", err)
			}
		}
		if len(tiered) > 0 {
			slices.Sort(tiered)
			b.deleteRemote(ev.ID, tiered)
		}
		return
	}
	t, ok := b.meta.TopicByID(ev.ID)
	if !ok {
		return
	}
	switch t.Name {
	case OffsetsTopic:
		defer b.syncCoordinators(t)
	case TxnStateTopic:
		defer b.syncTxnCoordinators(t)
	}
	tc := topicconfig.Resolve(t.Configs)
	for i, mp := range t.Partitions {
		if !slices.Contains(mp.Replicas, b.cfg.NodeID) {
			continue
		}
		p, err := b.openPartition(t, int32(i))
		if err != nil {
			b.log.Error("open partition", "topic", t.Name, "partition", i, "err", err)
			continue
		}
		b.applyState(p, mp)
		p.setConfig(tc, logConfig(tc, &b.cfg))
		// Not on this (the metadata) goroutine: it reads the bucket.
		b.attachTierLater(p, tc)
	}
}

// Partition returns the partition idx of topic when this broker leads it;
// ErrNotLeader or ErrLeaderNotAvailable when another broker or none does,
// ErrUnknownTopicOrPartition when there is no such partition.
func (b *Broker) Partition(topic string, idx int32) (*Partition, error) {
	t, ok := b.meta.Topic(topic)
	if !ok || idx < 0 || int(idx) >= len(t.Partitions) {
		return nil, ErrUnknownTopicOrPartition
	}
	switch t.Partitions[idx].Leader {
	case b.cfg.NodeID:
	case cluster.NoLeader:
		return nil, fmt.Errorf("%w: %s-%d", ErrLeaderNotAvailable, topic, idx)
	default:
		return nil, fmt.Errorf("%w: %s-%d is led by broker %d", ErrNotLeader, topic, idx, t.Partitions[idx].Leader)
	}
	b.mu.RLock()
	p := b.mu.parts[partKey{t.ID, idx}]
	b.mu.RUnlock()
	if p == nil {
		return nil, ErrUnknownTopicOrPartition
	}
	return p, nil
}

// Replica returns this broker's copy of a partition whether or not it
// leads it (for inspection and tests; clients go through Partition).
func (b *Broker) Replica(topic string, idx int32) (*Partition, error) {
	t, ok := b.meta.Topic(topic)
	if !ok || idx < 0 || int(idx) >= len(t.Partitions) {
		return nil, ErrUnknownTopicOrPartition
	}
	b.mu.RLock()
	p := b.mu.parts[partKey{t.ID, idx}]
	b.mu.RUnlock()
	if p == nil {
		return nil, ErrUnknownTopicOrPartition
	}
	return p, nil
}

// NextProducerID allocates a producer id that is never handed out again.
func (b *Broker) NextProducerID() (int64, error) { return b.pids.Next() }

var topicNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateTopicName applies Kafka's topic name rules.
func ValidateTopicName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q is not a valid topic name", ErrInvalidTopic, name)
	case len(name) > 249:
		return fmt.Errorf("%w: topic name is longer than 249 characters", ErrInvalidTopic)
	case !topicNameRE.MatchString(name):
		return fmt.Errorf("%w: topic name %q contains characters other than ASCII letters, digits, '.', '_' and '-'", ErrInvalidTopic, name)
	}
	return nil
}

// IsInternal reports whether a topic name is reserved for the broker.
func IsInternal(name string) bool {
	return strings.HasPrefix(name, "__")
}

// checkPartitionBudget refuses adding n partitions beyond MaxPartitions.
func (b *Broker) checkPartitionBudget(n int) error {
	if b.cfg.MaxPartitions <= 0 {
		return nil
	}
	have := 0
	for _, t := range b.meta.Topics() {
		if t.Internal {
			continue // __consumer_offsets is created at start, outside the budget
		}
		have += len(t.Partitions)
	}
	if have+n > b.cfg.MaxPartitions {
		return fmt.Errorf("%w: this broker holds %d partitions and may hold at most %d (each needs a file descriptor; raise RLIMIT_NOFILE or --max-partitions)",
			ErrInvalidPartitions, have, b.cfg.MaxPartitions)
	}
	return nil
}

// CreateTopic creates a topic. partitions or replicationFactor of -1 take the
// broker defaults. With validateOnly nothing is created.
func (b *Broker) CreateTopic(name string, partitions int32, replicationFactor int16, configs map[string]string, validateOnly bool) (cluster.Topic, error) {
	if err := ValidateTopicName(name); err != nil {
		return cluster.Topic{}, err
	}
	if partitions == -1 {
		partitions = b.cfg.NumPartitions
	}
	if partitions <= 0 || partitions > 100000 {
		return cluster.Topic{}, fmt.Errorf("%w: number of partitions must be between 1 and 100000, got %d", ErrInvalidPartitions, partitions)
	}
	if replicationFactor == -1 {
		replicationFactor = 1
	}
	if replicationFactor <= 0 || int(replicationFactor) > len(b.meta.Brokers()) {
		return cluster.Topic{}, fmt.Errorf("%w: replication factor %d is larger than the %d available brokers", ErrInvalidReplication, replicationFactor, len(b.meta.Brokers()))
	}
	if err := topicconfig.Validate(configs, b.configOptions()); err != nil {
		return cluster.Topic{}, err
	}
	if err := b.checkPartitionBudget(int(partitions)); err != nil {
		return cluster.Topic{}, err
	}
	t := cluster.Topic{Name: name, Partitions: make([]cluster.Partition, partitions), Configs: configs}
	if _, ok := b.meta.Topic(name); ok {
		return cluster.Topic{}, fmt.Errorf("%w: topic %q already exists", ErrTopicExists, name)
	}
	if validateOnly {
		return t, nil
	}
	created, err := b.meta.CreateTopic(t, int(replicationFactor))
	if err == nil {
		b.waitTiersOpen(created.ID, 30*time.Second)
	}
	return created, err
}

// waitTiersOpen waits, at most d, until this broker's replicas of a new
// tiered topic have their tiers open (in the background), so that the
// client that created the topic can produce at once.
func (b *Broker) waitTiersOpen(id cluster.TopicID, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && b.ctx.Err() == nil {
		waiting := false
		b.mu.RLock()
		for k, p := range b.mu.parts {
			// (An attach that failed is retried by the tier pass; the
			// client gets a retriable error meanwhile.)
			if k.id == id && p.needsTier.Load() && p.tiered() == nil && p.attaching.Load() {
				waiting = true
				break
			}
		}
		b.mu.RUnlock()
		if !waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// DeleteTopic deletes a topic and, asynchronously, its data.
func (b *Broker) DeleteTopic(name string) (cluster.Topic, error) {
	if IsInternal(name) {
		return cluster.Topic{}, fmt.Errorf("%w: %s", ErrInternalTopic, name)
	}
	t, err := b.meta.DeleteTopic(name)
	if errors.Is(err, cluster.ErrUnknownTopic) {
		return t, ErrUnknownTopicOrPartition
	}
	return t, err
}

// CreatePartitions grows a topic to total partitions.
func (b *Broker) CreatePartitions(name string, total int32, validateOnly bool) error {
	if IsInternal(name) { // growing __consumer_offsets would move groups away from their records
		return fmt.Errorf("%w: %s", ErrInternalTopic, name)
	}
	t, ok := b.meta.Topic(name)
	if !ok {
		return ErrUnknownTopicOrPartition
	}
	if int(total) <= len(t.Partitions) {
		return fmt.Errorf("%w: topic %s already has %d partitions; the count can only grow", ErrInvalidPartitions, name, len(t.Partitions))
	}
	if total > 100000 {
		return fmt.Errorf("%w: at most 100000 partitions", ErrInvalidPartitions)
	}
	if err := b.checkPartitionBudget(int(total) - len(t.Partitions)); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	_, err := b.meta.CreatePartitions(name, total)
	return err
}

// SetTopicConfigs replaces a topic's config overrides after validating them.
func (b *Broker) SetTopicConfigs(name string, configs map[string]string, validateOnly bool) error {
	t, ok := b.meta.Topic(name)
	if !ok {
		return ErrUnknownTopicOrPartition
	}
	if err := topicconfig.Validate(configs, b.configOptions()); err != nil {
		return err
	}
	if topicconfig.Resolve(t.Configs).RemoteStorage && !topicconfig.Resolve(configs).RemoteStorage {
		return &topicconfig.Error{Name: topicconfig.RemoteStorageEnable, Value: "false",
			Reason: "tiered storage cannot be turned off for a topic once on (its history lives in the bucket)"}
	}
	if validateOnly {
		return nil
	}
	_, err := b.meta.SetConfigs(name, configs)
	return err
}

// every runs fn every d until the broker closes (a background loop started
// with b.wg.Add(1)).
func (b *Broker) every(d time.Duration, fn func()) {
	defer b.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// ApplyRetention runs one retention and producer-expiry pass over every
// partition.
func (b *Broker) ApplyRetention() {
	b.mu.RLock()
	parts := make([]*Partition, 0, len(b.mu.parts))
	for _, p := range b.mu.parts {
		parts = append(parts, p)
	}
	b.mu.RUnlock()
	for _, p := range parts {
		c := p.Config()
		if p.tiered() != nil {
			p.log.ExpireProducers()
			continue // the tier loop applies retention to both tiers
		}
		pol, err := compactor.ParseCleanupPolicy(c.CleanupPolicy)
		if err != nil { // validated when set; never delete on a value we cannot read
			b.log.Warn("retention", "topic", p.Topic, "partition", p.Index, "err", err)
			p.log.ExpireProducers()
			continue
		}
		plan, err := p.log.ApplyRetentionConfig(compactor.Config{
			CleanupPolicy: pol, RetentionMs: c.RetentionMs, RetentionBytes: c.RetentionBytes,
			LocalRetentionMs: -1, LocalRetentionBytes: -1,
		})
		if err != nil {
			b.log.Warn("retention", "topic", p.Topic, "partition", p.Index, "err", err)
		} else if n := len(plan.Local); n > 0 {
			b.log.Info("retention deleted segments", "topic", p.Topic, "partition", p.Index, "segments", n, "log_start", plan.LogStart)
		}
		p.log.ExpireProducers()
	}
}

// Close stops background work and closes every partition log, syncing what
// was written.
func (b *Broker) Close() error {
	b.stopGroups()
	b.stopTxns()
	b.cancel()
	b.wg.Wait()
	// No metadata change may open or delete partitions from here on, and
	// nothing is fetched from leaders.
	metaErr := b.meta.Close()
	if b.replicas != nil {
		b.replicas.Close()
	}
	b.mu.Lock()
	parts := b.mu.parts
	b.mu.parts = map[partKey]*Partition{}
	b.mu.Unlock()
	var errs []error
	for _, p := range parts {
		p.close()
		if err := p.log.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.syncer != nil {
		b.syncer.Close()
	}
	if b.pids != nil {
		errs = append(errs, b.pids.Close())
	}
	errs = append(errs, metaErr)
	return errors.Join(errs...)
}

// StaticConfigs returns the broker's settings under Kafka's names, for
// DescribeConfigs on the broker resource.
func (b *Broker) StaticConfigs() map[string]string {
	itoa := func(n int64) string { return fmt.Sprint(n) }
	return map[string]string{
		"node.id":                         itoa(int64(b.cfg.NodeID)),
		"broker.id":                       itoa(int64(b.cfg.NodeID)),
		"log.dirs":                        b.cfg.DataDir,
		"auto.create.topics.enable":       fmt.Sprint(b.cfg.AutoCreateTopics),
		"num.partitions":                  itoa(int64(b.cfg.NumPartitions)),
		"default.replication.factor":      "1",
		"producer.id.expiration.ms":       itoa(b.cfg.ProducerIDExpirationMs),
		"log.retention.check.interval.ms": itoa(b.cfg.RetentionCheckInterval.Milliseconds()),
		"broker.rack":                     b.cfg.Rack,
	}
}
