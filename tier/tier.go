// Package tier moves the sealed segments of tiered partitions to object
// storage and reads history back from it.
//
// A Manager holds the object store and what all partitions share (footer
// cache, temp space, settings); a Partition is one tiered partition on its
// leader: it uploads sealed, durable segments in offset order and publishes
// them in fenced manifests (tier/manifest), applies retention to both tiers,
// garbage-collects objects no manifest names, and serves reads below the
// local log start from segment objects (tier/segment), with the aborted
// transactions their footers list for read_committed fetches (aborted.go).
// Uploads stop at the last stable offset, so every transaction an object
// holds batches of has ended when it is uploaded and its footer's aborted
// entries are final.
//
// The bucket is the source of truth for cold data: a Partition rebuilds its
// view from the newest manifest alone, so a broker whose disk was wiped
// continues from the bucket. Uploaders never delete; deletions happen only
// in GC after a grace period. This package knows nothing of Kafka requests.
package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-io/strata/tier/cache"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/segment"
)

// Config configures a Manager.
type Config struct {
	Store objstore.Store
	// TempDir holds segment objects while they are built and uploaded.
	TempDir string
	// UploadInterval rolls an idle partition's active segment once its first
	// record is this old, so idle partitions still upload (default 1h).
	UploadInterval time.Duration
	// GracePeriod protects objects that left the newest manifest, and new
	// unnamed uploads, from garbage collection (default 10m).
	GracePeriod time.Duration
	// ChunkTarget and IndexInterval shape segment objects (0: defaults).
	ChunkTarget   int
	IndexInterval int
	// CacheDir holds the on-disk cache of decompressed chunks read from the
	// bucket, bounded by CacheBytes (default 1 GiB; the broker shrinks it
	// before the log runs short of disk). Empty: TempDir/../tier-cache.
	CacheDir   string
	CacheBytes int64
	// FooterCacheBytes bounds the parsed segment footers kept in memory
	// (default 64 MiB).
	FooterCacheBytes int64
	// MemoryChunkBytes bounds the decompressed chunks kept in memory for
	// consumers that read a chunk in several fetches (default 64 MiB).
	MemoryChunkBytes int64
	// RemoteReaders bounds the object-store reads in flight for cold
	// fetches, read-ahead and footers together (default 8), so cold reads
	// cannot exhaust memory or starve the hot path.
	RemoteReaders int
	Logger        *slog.Logger
	Now           func() time.Time
}

func (c *Config) setDefaults() {
	if c.UploadInterval <= 0 {
		c.UploadInterval = time.Hour
	}
	if c.GracePeriod <= 0 {
		c.GracePeriod = 10 * time.Minute
	}
	if c.FooterCacheBytes <= 0 {
		c.FooterCacheBytes = 64 << 20
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 1 << 30
	}
	if c.MemoryChunkBytes <= 0 {
		c.MemoryChunkBytes = 64 << 20
	}
	if c.RemoteReaders <= 0 {
		c.RemoteReaders = 8
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(filepath.Dir(filepath.Clean(c.TempDir)), "tier-cache")
	}
}

// Manager is the tier of one broker.
type Manager struct {
	cfg     Config
	store   objstore.Store
	client  *manifest.Client
	footers *cache.FooterCache
	chunks  *cache.ChunkCache
	hot     *memChunks
}

// NewManager checks that the store honours conditional create (fenced
// manifests depend on it) and returns a Manager. It refuses to run against a
// store that does not.
func NewManager(ctx context.Context, cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if cfg.Store == nil {
		return nil, errors.New("tier: no object store")
	}
	if err := os.MkdirAll(cfg.TempDir, 0o755); err != nil {
		return nil, fmt.Errorf("tier: temp dir: %w", err)
	}
	// Objects being built when the broker stopped are rebuilt from the
	// local segments; drop their temp files.
	if leftovers, err := filepath.Glob(filepath.Join(cfg.TempDir, "upload-*.seg")); err == nil {
		for _, f := range leftovers {
			os.Remove(f)
		}
	}
	if err := objstore.ProbeConditionalCreate(ctx, cfg.Store, "_strata/probe/"); err != nil {
		return nil, err
	}
	pool := cache.NewLoadPool(cfg.RemoteReaders)
	hot := newMemChunks(cfg.MemoryChunkBytes)
	// Chunks loaded ahead of a reader are kept in memory too, so that the
	// reader does not read them back from disk.
	chunks, err := cache.Open(cfg.CacheDir, cfg.CacheBytes, cache.Options{Pool: pool, Loaded: hot.put})
	if err != nil {
		return nil, fmt.Errorf("tier: read cache: %w", err)
	}
	m := &Manager{
		cfg:     cfg,
		store:   cfg.Store,
		client:  manifest.NewClient(storeAdapter{cfg.Store}, manifest.Options{Now: cfg.Now}),
		footers: cache.NewFooterCache(cfg.FooterCacheBytes, pool),
		chunks:  chunks,
		hot:     hot,
	}
	return m, nil
}

// Close releases the read cache. The store is the caller's to close.
func (m *Manager) Close() error { return m.chunks.Close() }

// ShrinkCache evicts the read cache down to n bytes, for when the data disk
// runs short: cached chunks go before the log is refused writes.
func (m *Manager) ShrinkCache(n int64) int64 { return m.chunks.Shrink(n) }

// UploadInterval is the age at which idle active segments are rolled.
func (m *Manager) UploadInterval() time.Duration { return m.cfg.UploadInterval }

// DeletePartitionData deletes every object of a partition (segments and
// manifests). It is idempotent, so an interrupted topic deletion can simply
// be run again.
func (m *Manager) DeletePartitionData(ctx context.Context, topic [16]byte, partition int32) (int, error) {
	prefix := manifest.PartitionPrefix(manifest.TopicID(topic), partition)
	var keys []string
	err := m.store.List(ctx, prefix, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tier: list %s: %w", prefix, err)
	}
	for _, k := range keys {
		if err := m.store.Delete(ctx, k); err != nil {
			return 0, fmt.Errorf("tier: delete %s: %w", k, err)
		}
	}
	if _, err := objstore.AbortIncompleteUploads(ctx, m.store, prefix, m.cfg.Now()); err != nil {
		return len(keys), fmt.Errorf("tier: abort uploads under %s: %w", prefix, err)
	}
	return len(keys), nil
}

// ManifestClient returns a manifest client over store, for tools that read
// the bucket directly (inspection, replay).
func ManifestClient(store objstore.Store) *manifest.Client {
	return manifest.NewClient(storeAdapter{store}, manifest.Options{})
}

// storeAdapter adapts objstore.Store to the narrow interface of
// tier/manifest.
type storeAdapter struct{ s objstore.Store }

func (a storeAdapter) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	err := a.s.PutIfAbsent(ctx, key, r, size)
	if errors.Is(err, objstore.ErrExists) {
		return fmt.Errorf("%w: %w", manifest.ErrExists, err)
	}
	return err
}

func (a storeAdapter) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := a.s.Get(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", manifest.ErrNotFound, err)
	}
	return rc, err
}

func (a storeAdapter) Stat(ctx context.Context, key string) (int64, error) {
	info, err := a.s.Stat(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return 0, fmt.Errorf("%w: %w", manifest.ErrNotFound, err)
	}
	return info.Size, err
}

func (a storeAdapter) List(ctx context.Context, prefix string, fn func(string) error) error {
	return a.s.List(ctx, prefix, func(o objstore.ObjectInfo) error { return fn(o.Key) })
}

// readChunk returns the raw batches of chunk i of an object, from memory,
// the read cache or the store, and keeps read-ahead going for sequential
// readers; sequential reports whether chunk i-1 was read recently. The
// result is shared: callers must not modify it.
func (m *Manager) readChunk(ctx context.Context, key string, r *segment.Reader, i int) (raw []byte, sequential bool, err error) {
	raw, err = m.chunk(ctx, key, r, i)
	if err != nil {
		return nil, false, err
	}
	return raw, m.chunks.ReadAhead(key, r, i), nil
}

// chunk returns the raw batches of chunk i of an object, from memory, the
// read cache or the store, without read-ahead. The result is shared:
// callers must not modify it.
func (m *Manager) chunk(ctx context.Context, key string, r *segment.Reader, i int) ([]byte, error) {
	raw, ok := m.hot.get(key, i)
	if !ok {
		var err error
		raw, err = m.chunks.GetOrLoad(ctx, key, i, cache.ChunkLoader(r, i))
		if err != nil {
			return nil, err
		}
		m.hot.put(key, i, raw)
	}
	return raw, nil
}
