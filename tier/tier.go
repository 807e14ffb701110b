// Package tier moves the sealed segments of tiered partitions to object
// storage and reads history back from it.
//
// A Manager holds the object store and what all partitions share (footer
// cache, temp space, settings); a Partition is one tiered partition on its
// leader: it uploads sealed, durable segments in offset order and publishes
// them in fenced manifests (tier/manifest), applies retention to both tiers,
// garbage-collects objects no manifest names, and serves reads below the
// local log start from segment objects (tier/segment).
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
	"sync"
	"time"

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
	// FooterCacheEntries bounds the cached segment footers (default 1024).
	FooterCacheEntries int
	Logger             *slog.Logger
	Now                func() time.Time
}

func (c *Config) setDefaults() {
	if c.UploadInterval <= 0 {
		c.UploadInterval = time.Hour
	}
	if c.GracePeriod <= 0 {
		c.GracePeriod = 10 * time.Minute
	}
	if c.FooterCacheEntries <= 0 {
		c.FooterCacheEntries = 1024
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
}

// Manager is the tier of one broker.
type Manager struct {
	cfg     Config
	store   objstore.Store
	client  *manifest.Client
	footers *footerCache
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
	m := &Manager{
		cfg:     cfg,
		store:   cfg.Store,
		client:  manifest.NewClient(storeAdapter{cfg.Store}, manifest.Options{Now: cfg.Now}),
		footers: newFooterCache(cfg.FooterCacheEntries),
	}
	return m, nil
}

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

// footerCache keeps opened segment readers (their parsed footers) by object
// key, least recently used first out.
type footerCache struct {
	max int
	mu  struct {
		sync.Mutex
		entries map[string]*footerEntry
		clock   uint64
	}
}

type footerEntry struct {
	r    *segment.Reader
	used uint64
}

func newFooterCache(max int) *footerCache {
	c := &footerCache{max: max}
	c.mu.entries = map[string]*footerEntry{}
	return c
}

func (c *footerCache) get(key string) *segment.Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.mu.entries[key]
	if e == nil {
		return nil
	}
	c.mu.clock++
	e.used = c.mu.clock
	return e.r
}

func (c *footerCache) put(key string, r *segment.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.clock++
	c.mu.entries[key] = &footerEntry{r: r, used: c.mu.clock}
	if len(c.mu.entries) <= c.max {
		return
	}
	var oldest string
	var oldestUse uint64
	for k, e := range c.mu.entries {
		if oldest == "" || e.used < oldestUse {
			oldest, oldestUse = k, e.used
		}
	}
	delete(c.mu.entries, oldest)
}

func (c *footerCache) drop(key string) {
	c.mu.Lock()
	delete(c.mu.entries, key)
	c.mu.Unlock()
}

// readChunk returns the raw batches of chunk i of an object.
func (m *Manager) readChunk(ctx context.Context, key string, r *segment.Reader, i int) ([]byte, error) {
	return r.ReadChunk(ctx, i)
}
