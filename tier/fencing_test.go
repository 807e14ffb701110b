package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
	"github.com/strata-io/strata/tier/segment"
)

// yieldStore yields the processor before every call, so that concurrent
// uploaders interleave at request granularity.
type yieldStore struct{ objstore.Store }

func (s yieldStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	runtime.Gosched()
	return s.Store.Put(ctx, key, r, size)
}

func (s yieldStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	runtime.Gosched()
	return s.Store.PutIfAbsent(ctx, key, r, size)
}

func (s yieldStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	runtime.Gosched()
	return s.Store.Get(ctx, key)
}

func (s yieldStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	runtime.Gosched()
	return s.Store.GetRange(ctx, key, off, n)
}

func (s yieldStore) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	runtime.Gosched()
	return s.Store.Stat(ctx, key)
}

func (s yieldStore) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	runtime.Gosched()
	return s.Store.List(ctx, prefix, fn)
}

// checkNewestManifest loads the newest manifest from the bucket and checks
// that every object it names is a complete, valid segment object matching
// its entry. It returns the manifest.
func checkNewestManifest(ctx context.Context, s objstore.Store) (*manifest.Manifest, error) {
	c := manifest.NewClient(storeAdapter{s}, manifest.Options{})
	m, _, err := c.Load(ctx, testTopic, testPartition)
	if errors.Is(err, manifest.ErrNoManifest) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range m.Entries {
		info, err := s.Stat(ctx, e.Key)
		if err != nil {
			return m, fmt.Errorf("manifest %s names %s: %w", m.ID(), e.Key, err)
		}
		if info.Size != e.StoredSize {
			return m, fmt.Errorf("manifest %s names %s of %d bytes, the object has %d", m.ID(), e.Key, e.StoredSize, info.Size)
		}
		fetch := func(ctx context.Context, off, n int64) ([]byte, error) { return s.GetRange(ctx, e.Key, off, n) }
		r, err := segment.OpenReader(ctx, fetch, info.Size, segment.WithName(e.Key))
		if err != nil {
			return m, fmt.Errorf("manifest %s names %s: %w", m.ID(), e.Key, err)
		}
		if sum := r.Footer().Summary; sum.BaseOffset != e.BaseOffset || sum.NextOffset != e.NextOffset || sum.UploaderEpoch != e.UploadEpoch {
			return m, fmt.Errorf("manifest %s names %s as [%d, %d) epoch %d, the object holds [%d, %d) epoch %d",
				m.ID(), e.Key, e.BaseOffset, e.NextOffset, e.UploadEpoch, sum.BaseOffset, sum.NextOffset, sum.UploaderEpoch)
		}
	}
	return m, nil
}

// manifestEpochs counts the partition's manifest objects per leader epoch.
func manifestEpochs(t testing.TB, s objstore.Store) map[int32]int {
	t.Helper()
	out := map[int32]int{}
	for _, k := range listKeys(t, s, manifest.ManifestPrefix(testTopic, testPartition)) {
		n, err := manifest.ParseManifestKey(k)
		if err != nil {
			t.Fatalf("manifest key %s: %v", k, err)
		}
		out[n.ID.Epoch]++
	}
	return out
}

// TestFencing: the leaders of epochs 1 and 2 upload the same partition
// (each from its own log holding the same data) into one bucket, their
// Upload calls interleaved, alone or concurrently, in a seeded order. The
// newest manifest never names a missing or partial object; once epoch 2 has
// published, epoch 1's uploads fail with ErrFenced and it never again
// changes what the bucket's newest manifest is; after its first ErrFenced
// it writes no manifest at all.
func TestFencing(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testFencing(t, seed) })
	}
}

func testFencing(t *testing.T, seed uint64) {
	ctx := context.Background()
	store := yieldStore{mem.New()}
	rng := rand.New(rand.NewPCG(seed, 0xfe11ce))
	m1 := newTestManager(t, store, Config{})
	m2 := newTestManager(t, store, Config{})
	l1 := openTestLog(t, vfs.NewCrashFS(), "/p")
	l2 := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(seed, nil)
	p1, err := m1.OpenPartition(ctx, testTopic, testPartition, 1, l1)
	if err != nil {
		t.Fatal(err)
	}
	var p2 *Partition
	takeover := 2 + rng.IntN(10)

	epoch2Seen := false    // an epoch-2 manifest existed before the step began
	epoch1AtTakeover := -1 // epoch-1 manifests when epoch 2's first one was seen
	epoch1AtFence := -1    // epoch-1 manifests after epoch 1's first ErrFenced
	p2Errors := 0
	fenced := 0

	// p1Pending reports whether epoch 1 has a sealed segment to upload.
	p1Pending := func() bool {
		segs := sealedBelow(l1, l1.DurableOffset())
		return len(segs) > 0 && segs[len(segs)-1].Next > p1.RemoteEndOffset()
	}
	upload1 := func(mustFence bool) error {
		_, err := p1.Upload(ctx, l1.DurableOffset())
		switch {
		case errors.Is(err, ErrFenced):
			fenced++
		case err != nil:
			return fmt.Errorf("epoch 1 upload: %w", err)
		case mustFence:
			return fmt.Errorf("epoch 1 uploaded after epoch 2 published")
		}
		return nil
	}
	upload2 := func() error {
		_, err := p2.Upload(ctx, l2.DurableOffset())
		if errors.Is(err, ErrFenced) {
			return fmt.Errorf("epoch 2 fenced: %w", err)
		}
		if err != nil {
			// Its view from OpenPartition may be older than epoch 1's last
			// publish; TestNewLeaderCatchesUp covers what follows.
			p2Errors++
		}
		return nil
	}

	for step := range 40 {
		g.appendTo(t, 1, 1+rng.IntN(6), l1, l2)
		if step == takeover {
			if p2, err = m2.OpenPartition(ctx, testTopic, testPartition, 2, l2); err != nil {
				t.Fatalf("step %d: open epoch 2: %v", step, err)
			}
		}
		counts := manifestEpochs(t, store)
		if !epoch2Seen && counts[2] > 0 {
			epoch2Seen, epoch1AtTakeover = true, counts[1]
		}
		mustFence := epoch2Seen && p1Pending()
		before, err := checkNewestManifest(ctx, store)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}

		action := rng.IntN(3) // 0: epoch 1, 1: epoch 2, 2: both at once
		if p2 == nil {
			action = 0
		}
		var err1, err2 error
		switch action {
		case 0:
			err1 = upload1(mustFence)
		case 1:
			err2 = upload2()
		case 2:
			// Both at once, with a reader checking the newest manifest
			// until they are done.
			var up sync.WaitGroup
			up.Add(2)
			go func() { defer up.Done(); err1 = upload1(mustFence) }()
			go func() { defer up.Done(); err2 = upload2() }()
			stop := make(chan struct{})
			checked := make(chan error, 1)
			go func() {
				for {
					select {
					case <-stop:
						checked <- nil
						return
					default:
					}
					if _, err := checkNewestManifest(ctx, store); err != nil {
						checked <- err
						return
					}
				}
			}()
			up.Wait()
			close(stop)
			if err := <-checked; err != nil {
				t.Fatalf("step %d, during concurrent uploads: %v", step, err)
			}
		}
		if err1 != nil || err2 != nil {
			t.Fatalf("step %d: %v / %v", step, err1, err2)
		}

		after, err := checkNewestManifest(ctx, store)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		counts = manifestEpochs(t, store)
		if epoch2Seen {
			if after.Epoch != 2 {
				t.Fatalf("step %d: newest manifest is %s after epoch 2 published", step, after.ID())
			}
			if action == 0 && after.ID() != before.ID() {
				t.Fatalf("step %d: epoch 1 changed the newest manifest from %s to %s", step, before.ID(), after.ID())
			}
			if counts[1] > epoch1AtTakeover+1 {
				t.Fatalf("step %d: %d epoch-1 manifests, %d when epoch 2 took over", step, counts[1], epoch1AtTakeover)
			}
		}
		if epoch1AtFence >= 0 && counts[1] != epoch1AtFence {
			t.Fatalf("step %d: epoch 1 wrote a manifest after it was fenced (%d, was %d)", step, counts[1], epoch1AtFence)
		}
		if fenced > 0 && epoch1AtFence < 0 {
			epoch1AtFence = counts[1]
		}
	}
	if fenced == 0 {
		t.Fatal("epoch 1 was never fenced")
	}

	// Epoch 2 finishes: everything sealed is in its contiguous manifest
	// and reads back as its log holds it.
	if _, err := l2.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Upload(ctx, l2.DurableOffset()); err != nil {
		// A stale view that never refreshes (see TestNewLeaderCatchesUp):
		// a restarted leader reloads it.
		t.Logf("epoch 2 upload failed %d times, reopening: %v", p2Errors+1, err)
		if p2, err = m2.OpenPartition(ctx, testTopic, testPartition, 2, l2); err != nil {
			t.Fatal(err)
		}
		if _, err := p2.Upload(ctx, l2.DurableOffset()); err != nil {
			t.Fatal(err)
		}
	}
	final, err := checkNewestManifest(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if final.Epoch != 2 || final.LogStartOffset != 0 || final.EndOffset() != l2.EndOffset() || final.ID() != p2.Manifest().ID() {
		t.Fatalf("final manifest %s covers [%d, %d), log end %d", final.ID(), final.LogStartOffset, final.EndOffset(), l2.EndOffset())
	}
	if err := final.Validate(); err != nil {
		t.Fatal(err)
	}
	want, _ := localBytes(t, l2, 0, l2.EndOffset())
	if got := readAllRemote(t, p2, 0, final.EndOffset()); string(got) != string(want) {
		t.Fatal("remote data differs from the new leader's log")
	}

	// Epoch 1, with a new sealed segment to upload, is fenced and changes
	// nothing.
	g.appendTo(t, 1, 30, l1)
	if !p1Pending() {
		t.Fatal("setup: epoch 1 has nothing to upload")
	}
	counts := manifestEpochs(t, store)
	for range 2 {
		if _, err := p1.Upload(ctx, l1.DurableOffset()); !errors.Is(err, ErrFenced) {
			t.Fatalf("epoch 1 upload after epoch 2 published: %v", err)
		}
		if got := newestManifest(t, store); got.ID() != final.ID() {
			t.Fatalf("newest manifest %s after epoch 1's fenced upload, was %s", got.ID(), final.ID())
		}
	}
	after := manifestEpochs(t, store)
	if after[1] > counts[1]+1 || (epoch1AtFence >= 0 && after[1] != epoch1AtFence) || after[1] > epoch1AtTakeover+1 {
		t.Fatalf("epoch-1 manifests: %d now, %d before, %d at the takeover, %d at the first fence", after[1], counts[1], epoch1AtTakeover, epoch1AtFence)
	}
}

// TestNewLeaderCatchesUp: a new leader opened while the old one was still
// publishing starts from a view that may miss the old leader's last
// segments. Its first upload may fail on that, but the next one must go on
// from the bucket's newest manifest instead of failing forever.
func TestNewLeaderCatchesUp(t *testing.T) {
	ctx := context.Background()
	store, l1, l2, g, p1, p2 := twoLeaders(t, 21)
	stale := p2.RemoteEndOffset()
	g.appendTo(t, 1, 30, l1, l2)
	if n, err := p1.Upload(ctx, l1.DurableOffset()); err != nil || n == 0 {
		t.Fatalf("old leader's last upload: %d, %v", n, err)
	}
	if p1.RemoteEndOffset() <= stale {
		t.Fatal("setup: the old leader uploaded nothing new")
	}
	g.appendTo(t, 1, 30, l2)
	var errs []error
	for range 3 {
		if _, err := p2.Upload(ctx, l2.DurableOffset()); err != nil {
			errs = append(errs, err)
		}
	}
	want := sealedBelow(l2, l2.DurableOffset())
	if len(errs) > 1 || p2.RemoteEndOffset() != want[len(want)-1].Next {
		t.Fatalf("new leader: remote end %d, want %d; %d of 3 uploads failed: %v", p2.RemoteEndOffset(), want[len(want)-1].Next, len(errs), errs)
	}
	cur, err := checkNewestManifest(ctx, store)
	if err != nil || cur.Epoch != 2 || cur.EndOffset() != p2.RemoteEndOffset() {
		t.Fatalf("newest manifest %v, %v", cur.ID(), err)
	}
}

// TestFencedPartitionStopsUploading: once a newer leader has published, the
// old one's Upload returns ErrFenced without building or storing objects
// that could never be published.
func TestFencedPartitionStopsUploading(t *testing.T) {
	ctx := context.Background()
	store, l1, l2, g, p1, p2 := twoLeaders(t, 22)
	g.appendTo(t, 1, 30, l1, l2)
	if _, err := p2.Upload(ctx, l2.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Upload(ctx, l1.DurableOffset()); !errors.Is(err, ErrFenced) {
		t.Fatalf("old leader after the new one published: %v, want ErrFenced", err)
	}
	countObjects := func() int {
		n := 0
		store.List(ctx, "", func(objstore.ObjectInfo) error { n++; return nil })
		return n
	}
	before := countObjects()
	g.appendTo(t, 1, 30, l1)
	for range 3 {
		if _, err := p1.Upload(ctx, l1.DurableOffset()); !errors.Is(err, ErrFenced) {
			t.Fatalf("fenced upload: %v, want ErrFenced", err)
		}
	}
	if after := countObjects(); after != before || !p1.Fenced() {
		t.Fatalf("a fenced partition stored %d objects", after-before)
	}
}

// twoLeaders sets up one partition with two leaders on one bucket: logs l1
// and l2 with the same first 30 batches, p1 (epoch 1) having uploaded them,
// then p2 (epoch 2) opened.
func twoLeaders(t *testing.T, seed uint64) (*mem.Store, *plog.Log, *plog.Log, *batchGen, *Partition, *Partition) {
	t.Helper()
	ctx := context.Background()
	store := mem.New()
	l1 := openTestLog(t, vfs.NewCrashFS(), "/p")
	l2 := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(seed, nil)
	g.appendTo(t, 1, 30, l1, l2)
	p1, err := newTestManager(t, store, Config{}).OpenPartition(ctx, testTopic, testPartition, 1, l1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Upload(ctx, l1.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	p2, err := newTestManager(t, store, Config{}).OpenPartition(ctx, testTopic, testPartition, 2, l2)
	if err != nil {
		t.Fatal(err)
	}
	return store, l1, l2, g, p1, p2
}
