package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Store is what this package needs of an object store. Keys and sizes are
// plain strings and int64s; an adapter over tier/objstore is a few lines.
// PutIfAbsent must be atomic: of concurrent creators of one key exactly one
// succeeds. List must be strongly consistent (a completed PutIfAbsent is seen
// by every later List), as S3, the fs backend and Versity are.
type Store interface {
	PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the size of a complete object.
	Stat(ctx context.Context, key string) (size int64, err error)
	// List calls fn with every key under prefix.
	List(ctx context.Context, prefix string, fn func(key string) error) error
}

// Errors. A Store reports a lost conditional create with an error matching
// ErrExists and a missing key with one matching ErrNotFound, unless Options
// say how to recognise them.
var (
	ErrExists   = errors.New("manifest: object already exists")
	ErrNotFound = errors.New("manifest: object not found")

	// ErrNoManifest: the partition has no manifest yet.
	ErrNoManifest = errors.New("manifest: partition has no manifest")
	// ErrFenced: a manifest with a higher leader epoch exists; this leader
	// was deposed and must stop uploading and publishing.
	ErrFenced = errors.New("manifest: fenced by a higher leader epoch")
	// ErrStale: the manifest to publish was not built from the publisher's
	// current manifest; build it again from Current.
	ErrStale = errors.New("manifest: not built from the current manifest")
	// ErrMissingObject: a segment object a manifest would name is missing or
	// its size differs from the entry's StoredSize.
	ErrMissingObject = errors.New("manifest: segment object missing or incomplete")
)

// Options adapt a Client to its Store. Zero values use the defaults.
type Options struct {
	IsExists   func(error) bool // default: errors.Is(err, ErrExists)
	IsNotFound func(error) bool // default: errors.Is(err, ErrNotFound)
	Now        func() time.Time // default: time.Now
}

// Client reads and publishes manifests in one Store. Safe for concurrent use.
type Client struct {
	store Store
	opt   Options
}

// NewClient returns a Client over s.
func NewClient(s Store, opt Options) *Client {
	if opt.IsExists == nil {
		opt.IsExists = func(err error) bool { return errors.Is(err, ErrExists) }
	}
	if opt.IsNotFound == nil {
		opt.IsNotFound = func(err error) bool { return errors.Is(err, ErrNotFound) }
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Client{store: s, opt: opt}
}

// listIDs returns the ids of a partition's manifests in ascending order. A
// key under the manifest prefix that is not a manifest key of this partition
// is an error: guessing past it could hide the newest manifest.
func (c *Client) listIDs(ctx context.Context, topic TopicID, partition int32) ([]ManifestID, error) {
	var ids []ManifestID
	prefix := ManifestPrefix(topic, partition)
	err := c.store.List(ctx, prefix, func(key string) error {
		n, err := ParseManifestKey(key)
		if err != nil {
			return err
		}
		if n.Topic != topic || n.Partition != partition {
			return fmt.Errorf("%w: %s listed under %s", ErrBadKey, key, prefix)
		}
		ids = append(ids, n.ID)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list manifests %s: %w", prefix, err)
	}
	slices.SortFunc(ids, func(a, b ManifestID) int {
		if a.Less(b) {
			return -1
		}
		if b.Less(a) {
			return 1
		}
		return 0
	})
	return ids, nil
}

// get reads and decodes one manifest and checks it is the one its key names.
func (c *Client) get(ctx context.Context, topic TopicID, partition int32, id ManifestID) (*Manifest, []byte, error) {
	key := ManifestKey(topic, partition, id)
	rc, err := c.store.Get(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	m, err := Decode(b)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", key, err)
	}
	if m.Topic != topic || m.Partition != partition || m.ID() != id {
		return nil, nil, fmt.Errorf("manifest %s: %w: content is %s of %s/%d", key, ErrCorrupt, m.ID(), m.Topic, m.Partition)
	}
	return m, b, nil
}

// Load returns a partition's newest manifest and its key, or ErrNoManifest.
// This is how a reader, a restarted broker or a fresh broker on the same
// bucket rebuilds its view of remote data: from the bucket alone.
func (c *Client) Load(ctx context.Context, topic TopicID, partition int32) (*Manifest, string, error) {
	ms, err := c.History(ctx, topic, partition, 1)
	if err != nil {
		return nil, "", err
	}
	return ms[0], ms[0].Key(), nil
}

// History returns up to k of the newest manifests, newest first (k >= 1), or
// ErrNoManifest. Garbage collection plans over them (PlanGC).
func (c *Client) History(ctx context.Context, topic TopicID, partition int32, k int) ([]*Manifest, error) {
	k = max(k, 1)
	// A manifest may be garbage-collected between the listing and the read;
	// list again then. Only superseded manifests are ever deleted, so a few
	// rounds suffice.
	var lastErr error
	for range 3 {
		ids, err := c.listIDs(ctx, topic, partition)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoManifest, ManifestPrefix(topic, partition))
		}
		out := make([]*Manifest, 0, min(k, len(ids)))
		for i := len(ids) - 1; i >= 0 && len(out) < k; i-- {
			m, _, err := c.get(ctx, topic, partition, ids[i])
			if err != nil {
				lastErr = err
				break
			}
			out = append(out, m)
		}
		if len(out) == min(k, len(ids)) {
			return out, nil
		}
		if !c.opt.IsNotFound(lastErr) {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// Publisher publishes the manifests of one partition for one leader epoch.
// It is not safe for concurrent use: the partition leader owns it.
//
// Rules it enforces on every Publish:
//   - the new manifest is created at (epoch, seq+1) with a conditional
//     create, so no manifest is ever overwritten;
//   - every segment object the new manifest names that the current one did
//     not exists with exactly its StoredSize (the caller uploads segment
//     objects completely first);
//   - a segment that leaves Entries moves to Deleted (it waits out the grace
//     period), and a Deleted key never returns to Entries;
//   - after the create it lists the manifests, and returns ErrFenced if one
//     with a higher epoch exists. Once fenced it stays fenced.
//
// A Publish that returns nil is durable in the bucket and will be part of the
// lineage every later leader builds on (see Open), so the caller may treat
// its segments as uploaded (e.g. delete them locally).
type Publisher struct {
	c      *Client
	topic  TopicID
	part   int32
	epoch  int32
	cur    *Manifest
	fenced bool
}

// Open starts publishing a partition's manifests as leader at epoch. It
// builds on the highest manifest with epoch <= epoch and fails with
// ErrFenced if a higher epoch has published.
//
// A leader new to the epoch first claims it: it publishes a copy of the
// highest earlier manifest at its own epoch, then lists again. Any publish by
// an older leader that landed before the claim is now visible and, if it is
// newer than the copied one, the claim is repeated on top of it; a publish
// that lands after the claim sees the claim in its own check and returns
// ErrFenced. So every Publish that returned nil to any leader is in the
// lineage of every later leader. Open costs a LIST, then a GET, a PUT and a
// LIST per claim (usually one); call it when the partition has something to
// publish.
func (c *Client) Open(ctx context.Context, topic TopicID, partition int32, epoch int32) (*Publisher, error) {
	if epoch < 0 || partition < 0 {
		return nil, fmt.Errorf("manifest: open %s/%d at epoch %d: negative epoch or partition", topic, partition, epoch)
	}
	p := &Publisher{c: c, topic: topic, part: partition, epoch: epoch}
	ids, err := c.listIDs(ctx, topic, partition)
	if err != nil {
		return nil, err
	}
	base, fenced := highest(ids, epoch)
	if fenced {
		return nil, fmt.Errorf("%w: %s/%d at epoch %d, newest is %s", ErrFenced, topic, partition, epoch, ids[len(ids)-1])
	}
	if !base.IsZero() && base.Epoch == epoch {
		// This epoch has published already (an earlier Open, or a claim
		// whose response was lost): continue from it.
		if p.cur, _, err = c.get(ctx, topic, partition, base); err != nil {
			return nil, err
		}
		return p, nil
	}
	seq := base.Seq
	for range 4 {
		next := &Manifest{Topic: topic, Partition: partition}
		if !base.IsZero() {
			if next, _, err = c.get(ctx, topic, partition, base); err != nil {
				return nil, err
			}
		}
		next.Epoch, next.Seq, next.Prev, next.CreatedMs = epoch, seq+1, base, c.opt.Now().UnixMilli()
		existing, ids, err := p.put(ctx, next)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			p.cur = existing // another Open at this epoch claimed it first
			return p, nil
		}
		p.cur = next
		lower, _ := highest(ids, epoch-1)
		if !base.Less(lower) {
			return p, nil
		}
		base, seq = lower, max(lower.Seq, next.Seq)
	}
	return nil, fmt.Errorf("manifest: open %s/%d at epoch %d: older leaders keep publishing", topic, partition, epoch)
}

// highest returns the highest of the sorted ids with epoch <= maxEpoch, and
// whether one with a higher epoch exists.
func highest(ids []ManifestID, maxEpoch int32) (top ManifestID, higher bool) {
	for _, id := range ids {
		if id.Epoch > maxEpoch {
			return top, true
		}
		top = id
	}
	return top, false
}

// Epoch returns the publisher's leader epoch.
func (p *Publisher) Epoch() int32 { return p.epoch }

// Current returns a copy of the newest manifest this publisher knows: build
// the next manifest from it and pass it to Publish.
func (p *Publisher) Current() *Manifest { return p.cur.Clone() }

// Publish publishes next, which must be built from Current (same Epoch and
// Seq, else ErrStale): Publish sets Epoch, Seq, Prev and CreatedMs itself.
// On success Current becomes the published manifest.
//
// An error other than ErrFenced, ErrStale or ErrMissingObject leaves it
// unknown whether the manifest landed; publishing the same next again
// resolves it (an identical manifest already in place counts as success; a
// different one becomes Current and ErrStale is returned).
func (p *Publisher) Publish(ctx context.Context, next *Manifest) error {
	if p.fenced {
		return fmt.Errorf("%w: %s/%d epoch %d", ErrFenced, p.topic, p.part, p.epoch)
	}
	if next.Topic != p.topic || next.Partition != p.part || next.ID() != p.cur.ID() {
		return fmt.Errorf("%w: publishing %s over current %s", ErrStale, next.ID(), p.cur.ID())
	}
	n := next.Clone()
	n.Epoch, n.Seq, n.Prev, n.CreatedMs = p.epoch, p.cur.Seq+1, p.cur.ID(), p.c.opt.Now().UnixMilli()
	if err := n.Validate(); err != nil {
		return err
	}
	if err := p.checkTransition(ctx, n); err != nil {
		return err
	}
	existing, _, err := p.put(ctx, n)
	if err != nil {
		return err
	}
	if existing != nil {
		p.cur = existing
		return fmt.Errorf("%w: %s already holds a different manifest", ErrStale, existing.Key())
	}
	p.cur = n
	return nil
}

// checkTransition checks what n changes relative to the current manifest:
// new objects exist completely, nothing leaves without passing through
// Deleted, and nothing comes back from Deleted.
func (p *Publisher) checkTransition(ctx context.Context, n *Manifest) error {
	old := make(map[string]bool, len(p.cur.Entries))
	for _, e := range p.cur.Entries {
		old[e.Key] = true
	}
	gone := make(map[string]bool, len(p.cur.Deleted))
	for _, d := range p.cur.Deleted {
		gone[d.Key] = true
	}
	for _, e := range n.Entries {
		if gone[e.Key] {
			return fmt.Errorf("%w: %s is pending deletion and cannot be named again", ErrInvalid, e.Key)
		}
		if old[e.Key] {
			delete(old, e.Key)
			continue
		}
		size, err := p.c.store.Stat(ctx, e.Key)
		switch {
		case p.c.opt.IsNotFound(err):
			return fmt.Errorf("%w: %s: %w", ErrMissingObject, e.Key, err)
		case err != nil:
			return fmt.Errorf("stat %s: %w", e.Key, err)
		case size != e.StoredSize:
			return fmt.Errorf("%w: %s is %d bytes, entry says %d", ErrMissingObject, e.Key, size, e.StoredSize)
		}
	}
	for _, d := range n.Deleted {
		delete(old, d.Key)
	}
	for key := range old {
		return fmt.Errorf("%w: %s leaves the manifest without a Deleted entry", ErrInvalid, key)
	}
	return nil
}

// put creates n with a conditional create, then lists the manifests and
// returns ErrFenced if one with a higher epoch exists; else it returns the
// listed ids. If n's key exists already it returns the existing manifest when
// that differs from n (nil when it is identical apart from CreatedMs: an
// earlier attempt of ours that landed).
func (p *Publisher) put(ctx context.Context, n *Manifest) (existing *Manifest, ids []ManifestID, err error) {
	b, err := Encode(n)
	if err != nil {
		return nil, nil, err
	}
	key := n.Key()
	if err := p.c.store.PutIfAbsent(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		if !p.c.opt.IsExists(err) {
			return nil, nil, fmt.Errorf("publish manifest %s: %w", key, err)
		}
		got, raw, gerr := p.c.get(ctx, p.topic, p.part, n.ID())
		if gerr != nil {
			return nil, nil, gerr
		}
		same := *n
		same.CreatedMs = got.CreatedMs
		if sb, _ := Encode(&same); !bytes.Equal(sb, raw) {
			existing = got
		} else {
			n.CreatedMs = got.CreatedMs
		}
	}
	if ids, err = p.c.listIDs(ctx, p.topic, p.part); err != nil {
		return nil, nil, err
	}
	if _, fenced := highest(ids, p.epoch); fenced {
		p.fenced = true
		return nil, nil, fmt.Errorf("%w: %s/%d epoch %d, newest is %s", ErrFenced, p.topic, p.part, p.epoch, ids[len(ids)-1])
	}
	return existing, ids, nil
}
