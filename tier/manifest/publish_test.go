package manifest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testPart = int32(7)

func openT(t testing.TB, c *Client, epoch int32) *Publisher {
	t.Helper()
	p, err := c.Open(context.Background(), testTopic, testPart, epoch)
	if err != nil {
		t.Fatalf("Open at epoch %d: %v", epoch, err)
	}
	return p
}

// appendSegment uploads a new segment object completely and publishes a
// manifest naming it; it returns the entry and Publish's error.
func appendSegment(t testing.TB, s *memStore, p *Publisher, span int64) (Entry, error) {
	t.Helper()
	next := p.Current()
	e := nextEntry(next, p.Epoch(), span, 100+span, time.Now().UnixMilli())
	upload(t, s, e)
	next.Entries = append(next.Entries, e)
	return e, p.Publish(context.Background(), next)
}

func manifestIDs(s *memStore) []ManifestID {
	var ids []ManifestID
	for _, k := range s.keys(ManifestPrefix(testTopic, testPart)) {
		n, _ := ParseManifestKey(k)
		ids = append(ids, n.ID)
	}
	return ids
}

func TestLoadEmptyPartition(t *testing.T) {
	c := NewClient(newMemStore(0), Options{})
	if _, _, err := c.Load(context.Background(), testTopic, testPart); !errors.Is(err, ErrNoManifest) {
		t.Fatalf("Load = %v, want ErrNoManifest", err)
	}
}

func TestOpenPublishLoad(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p := openT(t, c, 0)
	if cur := p.Current(); cur.ID() != (ManifestID{Epoch: 0, Seq: 1}) || len(cur.Entries) != 0 {
		t.Fatalf("first claim %+v", cur)
	}
	for i := range 5 {
		if _, err := appendSegment(t, s, p, int64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	m, key, err := c.Load(ctx, testTopic, testPart)
	if err != nil {
		t.Fatal(err)
	}
	if want := p.Current(); !reflect.DeepEqual(m, want) || key != want.Key() {
		t.Fatalf("Load = %s %+v, want %s %+v", key, m, want.Key(), want)
	}
	if m.ID() != (ManifestID{Epoch: 0, Seq: 6}) || m.Prev != (ManifestID{Epoch: 0, Seq: 5}) || len(m.Entries) != 5 || m.EndOffset() != 60 {
		t.Fatalf("after 5 publishes: %s prev %s, %d entries, end %d", m.ID(), m.Prev, len(m.Entries), m.EndOffset())
	}
	// A new leader continues from it, at a higher sequence.
	p2 := openT(t, c, 3)
	if cur := p2.Current(); cur.ID() != (ManifestID{Epoch: 3, Seq: 7}) || cur.Prev != m.ID() || !reflect.DeepEqual(cur.Entries, m.Entries) {
		t.Fatalf("claim at epoch 3: %s prev %s", cur.ID(), cur.Prev)
	}
	// Reopening at the same epoch continues from the epoch's newest manifest
	// without another claim.
	before := len(manifestIDs(s))
	p3 := openT(t, c, 3)
	if p3.Current().ID() != p2.Current().ID() || len(manifestIDs(s)) != before {
		t.Fatal("reopening the same epoch claimed again")
	}
}

func TestOpenBelowNewestEpochIsFenced(t *testing.T) {
	s := newMemStore(0)
	c := NewClient(s, Options{})
	openT(t, c, 4)
	if _, err := c.Open(context.Background(), testTopic, testPart, 3); !errors.Is(err, ErrFenced) {
		t.Fatalf("Open at epoch 3 after 4 = %v, want ErrFenced", err)
	}
}

// An old leader's publish that lands after the new leader's claim gets
// ErrFenced (its manifest sorts below the claim, so readers ignore it), and
// it stays fenced.
func TestPublishAfterNewEpochIsFenced(t *testing.T) {
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p1 := openT(t, c, 1)
	if _, err := appendSegment(t, s, p1, 10); err != nil {
		t.Fatal(err)
	}
	p2 := openT(t, c, 2)
	if _, err := appendSegment(t, s, p1, 10); !errors.Is(err, ErrFenced) {
		t.Fatalf("epoch 1 publish after epoch 2 opened: %v, want ErrFenced", err)
	}
	if err := p1.Publish(context.Background(), p1.Current()); !errors.Is(err, ErrFenced) {
		t.Fatalf("second publish of a fenced publisher: %v, want ErrFenced", err)
	}
	m, _, err := c.Load(context.Background(), testTopic, testPart)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID() != p2.Current().ID() || len(m.Entries) != 1 {
		t.Fatalf("newest is %s with %d entries, want epoch 2's claim with 1", m.ID(), len(m.Entries))
	}
}

// The claim protocol: an old leader's publish that lands while the new
// leader is opening (after its first listing) returns nil to the old leader,
// so the new leader must include it. Open notices it after the claim and
// claims again on top of it.
func TestOpenIncludesPublishesThatRacedTheClaim(t *testing.T) {
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p1 := openT(t, c, 1)
	if _, err := appendSegment(t, s, p1, 10); err != nil {
		t.Fatal(err)
	}
	var raced Entry
	var racedErr error
	s.afterList = func(string) {
		s.afterList = nil // once: the racing publish lists too
		raced, racedErr = appendSegment(t, s, p1, 5)
	}
	p2 := openT(t, c, 2)
	s.afterList = nil
	if racedErr != nil {
		t.Fatalf("old leader's racing publish: %v", racedErr)
	}
	cur := p2.Current()
	if len(cur.Entries) != 2 || cur.Entries[1].Key != raced.Key {
		t.Fatalf("epoch 2 built on %d entries, missing the raced publish %s", len(cur.Entries), raced.Key)
	}
	if cur.Prev != (ManifestID{Epoch: 1, Seq: 3}) || cur.ID() != (ManifestID{Epoch: 2, Seq: 4}) {
		t.Fatalf("re-claim is %s on %s, want (2,4) on (1,3)", cur.ID(), cur.Prev)
	}
	if _, err := appendSegment(t, s, p1, 5); !errors.Is(err, ErrFenced) {
		t.Fatalf("epoch 1 after epoch 2's claim: %v, want ErrFenced", err)
	}
}

func TestPublishRequiresCompleteObjects(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p := openT(t, c, 1)
	next := p.Current()
	e := nextEntry(next, 1, 10, 500, 1_700_000_000_000)
	next.Entries = append(next.Entries, e)
	before := manifestIDs(s)
	if err := p.Publish(ctx, next); !errors.Is(err, ErrMissingObject) {
		t.Fatalf("missing object: %v, want ErrMissingObject", err)
	}
	s.put(e.Key, make([]byte, 499)) // partial
	if err := p.Publish(ctx, next); !errors.Is(err, ErrMissingObject) {
		t.Fatalf("partial object: %v, want ErrMissingObject", err)
	}
	if !slices.Equal(manifestIDs(s), before) {
		t.Fatal("a refused publish wrote a manifest")
	}
	s.put(e.Key, make([]byte, 500))
	if err := p.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
}

func TestPublishRules(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p := openT(t, c, 1)
	for range 3 {
		if _, err := appendSegment(t, s, p, 10); err != nil {
			t.Fatal(err)
		}
	}
	// Not built from Current.
	stale := p.Current()
	if _, err := appendSegment(t, s, p, 10); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, stale); !errors.Is(err, ErrStale) {
		t.Fatalf("stale base: %v, want ErrStale", err)
	}
	// Dropping an entry without a Deleted record.
	next := p.Current()
	next.Entries = next.Entries[1:]
	next.LogStartOffset = next.Entries[0].BaseOffset
	if err := p.Publish(ctx, next); !errors.Is(err, ErrInvalid) {
		t.Fatalf("silent removal: %v, want ErrInvalid", err)
	}
	// Retention does it properly.
	next = p.Current()
	dropped := next.Entries[0].Key
	next.RemovePrefix(1, next.Entries[1].BaseOffset, 1000)
	if err := p.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	// A Deleted key cannot come back.
	next = p.Current()
	next.Entries = append([]Entry{{}}, next.Entries...)
	old := sampleEntryFor(t, c, dropped)
	next.Entries[0] = old
	next.DropDeleted([]string{dropped})
	next.LogStartOffset = old.BaseOffset
	if err := p.Publish(ctx, next); !errors.Is(err, ErrInvalid) {
		t.Fatalf("resurrected deleted key: %v, want ErrInvalid", err)
	}
	// Invalid manifests are refused before anything is written.
	next = p.Current()
	next.Entries[0].NextOffset++
	if err := p.Publish(ctx, next); !errors.Is(err, ErrInvalid) {
		t.Fatalf("overlap: %v, want ErrInvalid", err)
	}
}

// sampleEntryFor finds key's entry in the manifest chain.
func sampleEntryFor(t *testing.T, c *Client, key string) Entry {
	t.Helper()
	ms, err := c.History(context.Background(), testTopic, testPart, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, e := range m.Entries {
			if e.Key == key {
				return e
			}
		}
	}
	t.Fatalf("%s in no manifest", key)
	return Entry{}
}

// A conditional create whose response is lost: the manifest landed but the
// publisher saw an error. Publishing the same manifest again succeeds;
// publishing something else finds the landed manifest and returns ErrStale
// with Current moved to it.
func TestPublishAfterLostResponse(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p := openT(t, c, 1)
	lose := errors.New("connection reset")
	next := p.Current()
	e := nextEntry(next, 1, 10, 100, 1_700_000_000_000)
	upload(t, s, e)
	s.afterPut = func(string) error { s.afterPut = nil; return lose }
	next.Entries = append(next.Entries, e)
	if err := p.Publish(ctx, next); !errors.Is(err, lose) {
		t.Fatalf("lost response: %v", err)
	}
	if err := p.Publish(ctx, next); err != nil {
		t.Fatalf("retry of a landed publish: %v", err)
	}
	if cur := p.Current(); cur.ID() != (ManifestID{Epoch: 1, Seq: 2}) || len(cur.Entries) != 1 {
		t.Fatalf("after retry: %s with %d entries", cur.ID(), len(cur.Entries))
	}

	// Lost again, but the caller retries with different content.
	next = p.Current()
	e2 := nextEntry(next, 1, 10, 100, 1_700_000_000_002)
	upload(t, s, e2)
	next.Entries = append(next.Entries, e2)
	s.afterPut = func(string) error { s.afterPut = nil; return lose }
	if err := p.Publish(ctx, next); !errors.Is(err, lose) {
		t.Fatalf("lost response: %v", err)
	}
	other := next.Clone()
	e3 := nextEntry(other, 1, 3, 100, 1_700_000_000_003)
	upload(t, s, e3)
	other.Entries = append(other.Entries, e3)
	if err := p.Publish(ctx, other); !errors.Is(err, ErrStale) {
		t.Fatalf("different retry: %v, want ErrStale", err)
	}
	if cur := p.Current(); cur.ID() != (ManifestID{Epoch: 1, Seq: 3}) || len(cur.Entries) != 2 {
		t.Fatalf("Current after ErrStale: %s with %d entries, want the landed (1,3) with 2", cur.ID(), len(cur.Entries))
	}
}

func TestLoadRefusesForeignAndCorruptManifests(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(0)
	c := NewClient(s, Options{})
	p := openT(t, c, 1)
	if _, err := appendSegment(t, s, p, 10); err != nil {
		t.Fatal(err)
	}
	// The newest manifest is corrupt: a clear error naming it, no silent
	// fallback to an older one.
	bad := ManifestKey(testTopic, testPart, ManifestID{Epoch: 1, Seq: 3})
	s.put(bad, []byte("garbage"))
	if _, _, err := c.Load(ctx, testTopic, testPart); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("corrupt newest: %v", err)
	}
	// A manifest whose content is another (epoch, seq) than its key.
	b, _ := Encode(p.Current())
	s.put(bad, b)
	if _, _, err := c.Load(ctx, testTopic, testPart); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("misplaced manifest: %v", err)
	}
	s.Delete(bad)
	// A stray object under the manifest prefix.
	stray := ManifestPrefix(testTopic, testPart) + "notes.txt"
	s.put(stray, []byte("x"))
	if _, _, err := c.Load(ctx, testTopic, testPart); !errors.Is(err, ErrBadKey) {
		t.Fatalf("stray key: %v", err)
	}
}

// TestFencingUnderConcurrency runs two leaders of one partition, epochs 1
// and 2, publishing as fast as they can from their own goroutines against
// one store whose calls yield at seeded random points, while a reader loads
// the newest manifest in a loop. Epoch 2 opens after epoch 1 has published a
// few times. It checks:
//   - every manifest the reader sees decodes and names only segment objects
//     that exist completely, and the newest (epoch, seq) never goes back;
//   - a publish by epoch 1 that started after epoch 2's Open returned fails
//     with ErrFenced, and epoch 1 is fenced eventually;
//   - every segment epoch 1 published successfully is in epoch 2's final
//     manifest (nothing acknowledged as uploaded is lost);
//   - sequences strictly increase along the Prev chain;
//   - a fresh client rebuilds exactly epoch 2's view from the bucket.
func TestFencingUnderConcurrency(t *testing.T) {
	for seed := uint64(1); seed <= 32; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runFencing(t, seed) })
	}
}

func runFencing(t *testing.T, seed uint64) {
	ctx := context.Background()
	s := newMemStore(seed)
	c := NewClient(s, Options{})
	p1 := openT(t, c, 1)

	var (
		wg          sync.WaitGroup
		e1Published atomic.Int32
		e2Opened    atomic.Bool
		racedOpen   atomic.Int32 // epoch 1 publishes that succeeded during epoch 2's Open
		done        = make(chan struct{})
		acked1      []string // keys epoch 1 published successfully
		p2          *Publisher
	)
	startE2 := int32(1 + seed%4)

	wg.Add(1)
	go func() { // leader at epoch 1
		defer wg.Done()
		for i := 0; i < 500; i++ {
			startedAfterE2 := e2Opened.Load()
			e, err := appendSegment(t, s, p1, 1+int64(i%5))
			switch {
			case errors.Is(err, ErrFenced):
				return
			case err != nil:
				t.Errorf("epoch 1: %v", err)
				return
			case startedAfterE2:
				t.Errorf("epoch 1 published %s after epoch 2 opened", e.Key)
				return
			}
			acked1 = append(acked1, e.Key)
			e1Published.Add(1)
		}
		t.Error("epoch 1 was never fenced")
	}()

	wg.Add(1)
	go func() { // leader at epoch 2
		defer wg.Done()
		for e1Published.Load() < startE2 {
			time.Sleep(10 * time.Microsecond)
		}
		before := e1Published.Load()
		p, err := c.Open(ctx, testTopic, testPart, 2)
		racedOpen.Store(e1Published.Load() - before)
		if err != nil {
			t.Errorf("epoch 2 open: %v", err)
			return
		}
		e2Opened.Store(true)
		for i := range 20 {
			if _, err := appendSegment(t, s, p, 1+int64(i%3)); err != nil {
				t.Errorf("epoch 2: %v", err)
				return
			}
		}
		p2 = p
	}()

	readerDone := make(chan struct{})
	go func() { // reader
		defer close(readerDone)
		var last ManifestID
		for {
			select {
			case <-done:
				return
			default:
			}
			m, _, err := c.Load(ctx, testTopic, testPart)
			if err != nil {
				t.Errorf("reader: %v", err)
				return
			}
			if m.ID().Less(last) {
				t.Errorf("newest manifest went back from %s to %s", last, m.ID())
			}
			last = m.ID()
			for _, e := range m.Entries {
				if size, err := s.Stat(ctx, e.Key); err != nil || size != e.StoredSize {
					t.Errorf("newest manifest %s names %s: size %d, err %v; want %d", m.ID(), e.Key, size, err, e.StoredSize)
				}
			}
		}
	}()
	wg.Wait()
	close(done)
	<-readerDone
	if t.Failed() {
		return
	}

	final := p2.Current()
	named := map[string]bool{}
	for _, e := range final.Entries {
		named[e.Key] = true
	}
	for _, k := range acked1 {
		if !named[k] {
			t.Errorf("segment %s acknowledged to epoch 1 is missing from epoch 2's manifest", k)
		}
	}

	// Walk the Prev chain: every link exists and sequences strictly increase.
	m := final
	for !m.Prev.IsZero() {
		prev, _, err := c.get(ctx, testTopic, testPart, m.Prev)
		if err != nil {
			t.Fatalf("chain link %s: %v", m.Prev, err)
		}
		if prev.Seq >= m.Seq || m.Epoch < prev.Epoch {
			t.Fatalf("chain goes from %s back to %s", m.ID(), prev.ID())
		}
		m = prev
	}

	// Rebuild from the bucket alone.
	fresh, _, err := NewClient(s, Options{}).Load(ctx, testTopic, testPart)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fresh, final) {
		t.Fatalf("fresh reader sees %s, leader has %s", fresh.ID(), final.ID())
	}
	t.Logf("epoch 1 published %d segments (%d during epoch 2's Open), %d manifests in the bucket", len(acked1), racedOpen.Load(), len(manifestIDs(s)))
}
