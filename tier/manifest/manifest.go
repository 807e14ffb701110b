package manifest

import (
	"errors"
	"fmt"
	"slices"
)

// Manifest lists one partition's remote segments. Manifests are immutable
// objects: a new state is a new manifest with a higher (Epoch, Seq), created
// from a copy of the previous one (Clone).
type Manifest struct {
	Topic     TopicID
	Partition int32
	Epoch     int32      // leader epoch of the writer
	Seq       int64      // >= 1; strictly increases along the Prev chain
	Prev      ManifestID // the manifest this one was built from; zero for the first
	CreatedMs int64      // wall clock of the writer, Unix ms

	// LogStartOffset is the partition's log start offset (after retention and
	// DeleteRecords). When Entries is not empty it lies inside the first
	// entry: whole segments below it are removed.
	LogStartOffset int64

	// CleanerPoint is the remote cleaner point: the first offset of the
	// remote history that no compaction pass has mapped (the start of its
	// dirty part); the compaction of tiered history
	// (compactor.PlanRemoteCompaction) reads it as
	// Partition.RemoteCleanerPoint. A value at or below LogStartOffset or
	// past EndOffset, such as 0 in a manifest no pass has compacted, means
	// the whole remote history is dirty. Format 1.1; 1.0 manifests decode
	// with 0. Only compaction moves it; other changes copy it.
	CleanerPoint int64

	// Entries are the remote segments in offset order; each NextOffset is the
	// next entry's BaseOffset.
	Entries []Entry

	// Deleted are objects that left Entries and wait out the grace period
	// before garbage collection deletes them (readers holding an older
	// manifest may still read them).
	Deleted []Deleted
}

// Entry is one remote segment object.
type Entry struct {
	Key            string // the segment object key; its base offset and epoch match the fields below
	BaseOffset     int64
	NextOffset     int64 // one past the last offset the segment covers
	RecordCount    int64
	StoredSize     int64 // size of the whole object in bytes (chunks, footer and trailer, not the footer's chunk total), checked before publishing
	RawSize        int64 // size of the record batches before chunk compression
	FirstTimestamp int64 // ms; -1 if unknown
	MaxTimestamp   int64 // ms; -1 if unknown
	Epochs         []EpochStart
	UploadEpoch    int32 // leader epoch of the uploader (also in Key)
	CreatedMs      int64 // when the object was uploaded, Unix ms
}

// EpochStart is one (leader epoch, start offset) pair a segment spans.
type EpochStart struct {
	Epoch       int32
	StartOffset int64
}

// Deleted is an object removed from Entries, pending deletion.
type Deleted struct {
	Key       string
	Size      int64
	RemovedMs int64 // when it left Entries, Unix ms
}

// ID returns the manifest's (Epoch, Seq).
func (m *Manifest) ID() ManifestID { return ManifestID{Epoch: m.Epoch, Seq: m.Seq} }

// Key returns the manifest's object key.
func (m *Manifest) Key() string { return ManifestKey(m.Topic, m.Partition, m.ID()) }

// EndOffset returns the offset after the last remote segment, or the log
// start offset if there is none.
func (m *Manifest) EndOffset() int64 {
	if len(m.Entries) == 0 {
		return m.LogStartOffset
	}
	return m.Entries[len(m.Entries)-1].NextOffset
}

// Clone returns a deep copy.
func (m *Manifest) Clone() *Manifest {
	c := *m
	c.Entries = slices.Clone(m.Entries)
	for i := range c.Entries {
		c.Entries[i].Epochs = slices.Clone(c.Entries[i].Epochs)
	}
	c.Deleted = slices.Clone(m.Deleted)
	return &c
}

// SegmentName returns the segment object name of an entry in m.
func (m *Manifest) SegmentName(uploadEpoch int32, baseOffset int64, uploadID string) SegmentName {
	return SegmentName{Topic: m.Topic, Partition: m.Partition, BaseOffset: baseOffset, Epoch: uploadEpoch, UploadID: uploadID}
}

// RemovePrefix moves the first n entries to Deleted (stamped nowMs) and sets
// the log start offset to logStart, which must lie inside the new first
// entry, or be at or past EndOffset when none remain (see PlanRetention).
func (m *Manifest) RemovePrefix(n int, logStart, nowMs int64) {
	for _, e := range m.Entries[:n] {
		m.Deleted = append(m.Deleted, Deleted{Key: e.Key, Size: e.StoredSize, RemovedMs: nowMs})
	}
	m.Entries = slices.Delete(m.Entries, 0, n)
	m.LogStartOffset = max(m.LogStartOffset, logStart)
}

// ErrNotInManifest is returned by ReplaceRun when the entries to replace
// are no longer a run of the manifest (retention or another pass removed
// or replaced them since they were read).
var ErrNotInManifest = errors.New("manifest: entries to replace are not in the manifest")

// ReplaceRange replaces the adjacent entries [i, j) by with, which must
// cover exactly the same offsets: with[0] starts at Entries[i].BaseOffset
// (even if the first records of the span are gone from its object), each
// entry starts where the previous one ends, and the last ends at
// Entries[j-1].NextOffset. The replaced entries move to Deleted (stamped
// nowMs), so garbage collection removes their objects only after the grace
// period and readers holding an older manifest keep reading them until
// then. The log start offset and the cleaner point do not change. On error
// m is unchanged. This is how compaction and merging of remote objects
// publish their output.
func (m *Manifest) ReplaceRange(i, j int, with []Entry, nowMs int64) error {
	if i < 0 || j > len(m.Entries) || i >= j {
		return fmt.Errorf("%w: replace entries [%d, %d) of %d", ErrInvalid, i, j, len(m.Entries))
	}
	if len(with) == 0 {
		return fmt.Errorf("%w: replace entries [%d, %d) by none", ErrInvalid, i, j)
	}
	base, next := m.Entries[i].BaseOffset, m.Entries[j-1].NextOffset
	at := base
	for k, e := range with {
		if e.BaseOffset != at || e.NextOffset <= e.BaseOffset {
			return fmt.Errorf("%w: replacement %d covers [%d, %d), want it to start at %d", ErrInvalid, k, e.BaseOffset, e.NextOffset, at)
		}
		at = e.NextOffset
	}
	if at != next {
		return fmt.Errorf("%w: replacements cover [%d, %d), the replaced entries [%d, %d)", ErrInvalid, base, at, base, next)
	}
	for _, e := range m.Entries[i:j] {
		m.Deleted = append(m.Deleted, Deleted{Key: e.Key, Size: e.StoredSize, RemovedMs: nowMs})
	}
	m.Entries = slices.Replace(m.Entries, i, j, slices.Clone(with)...)
	return nil
}

// ReplaceRun is ReplaceRange over the run of adjacent entries whose keys
// are keys, in order. It returns an error wrapping ErrNotInManifest if
// they are not such a run of m.
func (m *Manifest) ReplaceRun(keys []string, with []Entry, nowMs int64) error {
	i := slices.IndexFunc(m.Entries, func(e Entry) bool { return len(keys) > 0 && e.Key == keys[0] })
	if i < 0 || i+len(keys) > len(m.Entries) {
		return fmt.Errorf("%w: %d entries from %v", ErrNotInManifest, len(keys), keys[:min(1, len(keys))])
	}
	for k, key := range keys {
		if m.Entries[i+k].Key != key {
			return fmt.Errorf("%w: %s", ErrNotInManifest, key)
		}
	}
	return m.ReplaceRange(i, i+len(keys), with, nowMs)
}

// DropDeleted removes the given keys from Deleted, once garbage collection
// has deleted their objects.
func (m *Manifest) DropDeleted(keys []string) {
	m.Deleted = slices.DeleteFunc(m.Deleted, func(d Deleted) bool { return slices.Contains(keys, d.Key) })
}

// ErrInvalid is wrapped by every Validate error, and so by every Decode error
// about a well-formed encoding of an invalid manifest.
var ErrInvalid = errors.New("invalid manifest")

// Validate checks every invariant of a manifest: identity fields, keys that
// belong to this partition, entries sorted, contiguous and non-overlapping,
// epochs ordered, the log start inside the first entry, and no key named
// twice.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalid, m.ID(), fmt.Sprintf(format, args...))
	}
	switch {
	case m.Partition < 0:
		return bad("negative partition %d", m.Partition)
	case m.Epoch < 0:
		return bad("negative epoch")
	case m.Seq < 1:
		return bad("sequence must be at least 1")
	case !m.Prev.IsZero() && (m.Prev.Seq < 1 || m.Prev.Seq >= m.Seq || m.Prev.Epoch < 0 || m.Prev.Epoch > m.Epoch):
		return bad("previous manifest %s does not precede it", m.Prev)
	case m.LogStartOffset < 0:
		return bad("negative log start offset %d", m.LogStartOffset)
	case m.CleanerPoint < 0:
		return bad("negative cleaner point %d", m.CleanerPoint)
	}
	if len(m.Entries) > 0 {
		first := m.Entries[0]
		if m.LogStartOffset < first.BaseOffset || m.LogStartOffset >= first.NextOffset {
			return bad("log start offset %d is outside the first segment [%d, %d)", m.LogStartOffset, first.BaseOffset, first.NextOffset)
		}
	}
	seen := make(map[string]bool, len(m.Entries)+len(m.Deleted))
	lastEpoch := int32(-1)
	for i, e := range m.Entries {
		if err := m.validateEntry(&e); err != nil {
			return bad("segment %d: %v", i, err)
		}
		if i > 0 && e.BaseOffset != m.Entries[i-1].NextOffset {
			return bad("segment %d starts at %d, previous ends at %d", i, e.BaseOffset, m.Entries[i-1].NextOffset)
		}
		if e.Epochs[0].Epoch < lastEpoch {
			return bad("segment %d starts in leader epoch %d, below the previous segment's %d", i, e.Epochs[0].Epoch, lastEpoch)
		}
		lastEpoch = e.Epochs[len(e.Epochs)-1].Epoch
		if seen[e.Key] {
			return bad("key %s named twice", e.Key)
		}
		seen[e.Key] = true
	}
	for i, d := range m.Deleted {
		if err := m.checkKey(d.Key); err != nil {
			return bad("deleted %d: %v", i, err)
		}
		if d.Size < 0 || d.RemovedMs < 0 {
			return bad("deleted %d: negative size or time", i)
		}
		if seen[d.Key] {
			return bad("key %s named twice", d.Key)
		}
		seen[d.Key] = true
	}
	return nil
}

func (m *Manifest) validateEntry(e *Entry) error {
	switch {
	case e.BaseOffset < 0 || e.NextOffset <= e.BaseOffset:
		return fmt.Errorf("offsets [%d, %d) are empty or negative", e.BaseOffset, e.NextOffset)
	case e.RecordCount < 0 || e.RecordCount > e.NextOffset-e.BaseOffset:
		return fmt.Errorf("record count %d does not fit offsets [%d, %d)", e.RecordCount, e.BaseOffset, e.NextOffset)
	case e.StoredSize <= 0 || e.RawSize < 0:
		return fmt.Errorf("sizes stored=%d raw=%d", e.StoredSize, e.RawSize)
	case e.FirstTimestamp < -1 || e.MaxTimestamp < -1 || e.CreatedMs < 0:
		return fmt.Errorf("negative timestamp")
	case e.UploadEpoch < 0 || e.UploadEpoch > m.Epoch:
		return fmt.Errorf("upload epoch %d is outside [0, %d]", e.UploadEpoch, m.Epoch)
	case len(e.Epochs) == 0:
		return fmt.Errorf("no leader epochs")
	}
	for i, es := range e.Epochs {
		if es.Epoch < 0 || es.StartOffset < e.BaseOffset || es.StartOffset >= e.NextOffset {
			return fmt.Errorf("leader epoch %d starts at %d, outside [%d, %d)", es.Epoch, es.StartOffset, e.BaseOffset, e.NextOffset)
		}
		if i > 0 && (es.Epoch <= e.Epochs[i-1].Epoch || es.StartOffset <= e.Epochs[i-1].StartOffset) {
			return fmt.Errorf("leader epochs not strictly increasing at %d", i)
		}
	}
	if err := m.checkKey(e.Key); err != nil {
		return err
	}
	n, _ := ParseSegmentKey(e.Key) // checked above
	if n.BaseOffset != e.BaseOffset || n.Epoch != e.UploadEpoch {
		return fmt.Errorf("key %s does not match base offset %d and upload epoch %d", e.Key, e.BaseOffset, e.UploadEpoch)
	}
	return nil
}

// checkKey checks that key is a segment key of m's partition.
func (m *Manifest) checkKey(key string) error {
	n, err := ParseSegmentKey(key)
	if err != nil {
		return err
	}
	if n.Topic != m.Topic || n.Partition != m.Partition {
		return fmt.Errorf("key %s belongs to another partition", key)
	}
	return nil
}
