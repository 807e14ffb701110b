package tier

// Aborted transactions of the remote history.
//
// Each segment object's footer lists the aborted transactions overlapping
// the object, clipped to its offsets (segment.BuildOptions.Aborted): a
// transaction that spans objects has one piece in each, all but the last
// ending at their object's last offset, all but the first starting at their
// object's first batch. Readers merge the pieces back, so each aborted
// transaction is reported once: some Kafka clients (franz-go) keep a queue
// of aborted first offsets per producer and pop one per abort marker, so
// two entries for one transaction would make them drop the producer's next,
// committed, transaction.
//
// Whether two pieces of one producer in adjacent objects are one
// transaction cannot be told from the entries alone: a piece that ends at
// its object's last offset is either clipped (the transaction goes on) or
// ends there because its abort marker is that object's last batch, and the
// producer's next transaction may start at the next object's first batch.
// The object's last batch decides: the producer's marker ends the
// transaction, anything else means the piece was clipped. That batch is
// read (one chunk, usually cached) only for such a pair, which only
// transactions crossing an object boundary produce.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/segment"
)

// AbortedTxns returns the aborted transactions of the remote history that
// overlap [from, upTo): LastOffset (the abort marker's offset) >= from and
// FirstOffset < upTo, ordered by FirstOffset, each once: the pieces of a
// transaction that spans segment objects are merged. It reads the footers
// (through the footer cache) of the objects overlapping the range, and a
// chunk only to tell a transaction crossing an object boundary from two
// transactions meeting there.
//
// Entries are as precise as the objects read: a transaction that began in
// an object below from reports the first batch of the range's first object
// as its first offset, and one whose first batches compaction removed the
// first batch of the object it now begins in. Either is at or before the
// transaction's first batch in the range, which is all a read_committed
// consumer needs (the Fetch response carries only producer id and first
// offset). LastOffset is the abort marker's offset, or the last offset of
// the last object overlapping the range when the marker lies beyond it.
// An empty range returns nothing.
func (p *Partition) AbortedTxns(ctx context.Context, from, upTo int64) ([]index.AbortedTxn, error) {
	if from >= upTo {
		return nil, nil
	}
	m := p.Manifest()
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].NextOffset > from })
	var objs []abortedObject
	var readers []*segment.Reader
	some := false
	for ; i < len(m.Entries) && m.Entries[i].BaseOffset < upTo; i++ {
		e := &m.Entries[i]
		r, err := p.reader(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("tier: open %s: %w", e.Key, err)
		}
		objs = append(objs, newAbortedObject(e, r.Footer()))
		readers = append(readers, r)
		some = some || len(r.Footer().Aborted) > 0
	}
	if !some {
		return nil, nil
	}
	all, err := mergeAborted(objs, func(i int) (int64, bool, error) {
		return p.m.lastBatchMarker(ctx, objs[i].key, readers[i])
	})
	if err != nil {
		return nil, fmt.Errorf("tier: aborted transactions of %s/%d in [%d, %d): %w", p.topic, p.part, from, upTo, err)
	}
	out := all[:0]
	for _, a := range all {
		if a.LastOffset >= from && a.FirstOffset < upTo {
			out = append(out, a)
		}
	}
	return out, nil
}

// abortedObject is what mergeAborted needs of one segment object.
type abortedObject struct {
	key                  string
	entryBase, entryNext int64 // the manifest entry's range
	first, next          int64 // the footer's: first batch, next offset
	aborted              []index.AbortedTxn
}

func newAbortedObject(e *manifest.Entry, f *index.Footer) abortedObject {
	return abortedObject{
		key: e.Key, entryBase: e.BaseOffset, entryNext: e.NextOffset,
		first: f.Summary.BaseOffset, next: f.Summary.NextOffset, aborted: f.Aborted,
	}
}

// mergeAborted returns the aborted-transaction entries of objects (in
// offset order), with the pieces of each transaction spanning adjacent
// objects merged into one entry, ordered by first offset. A piece of
// producer P that ends at its object's last offset and a piece of P that
// starts at the next object's first batch are one transaction unless the
// first object's last batch is a control batch of P. lastMarker(i) reports
// the producer of object i's last batch if that is a control batch; it is
// called only for such pairs, at most once per object.
func mergeAborted(objs []abortedObject, lastMarker func(i int) (producerID int64, control bool, err error)) ([]index.AbortedTxn, error) {
	var out []index.AbortedTxn
	var open map[int64]int // producer -> its entry in out reaching the previous object's end
	for i, o := range objs {
		if i > 0 && objs[i-1].entryNext != o.entryBase {
			open = nil // not adjacent (never so in a manifest)
		}
		var reaching map[int64]int
		checked, markerPID, isMarker := false, int64(0), false
		for _, a := range o.aborted {
			if j, ok := open[a.ProducerID]; ok && a.FirstOffset == o.first {
				if !checked {
					var err error
					if markerPID, isMarker, err = lastMarker(i - 1); err != nil {
						return nil, err
					}
					checked = true
				}
				if !isMarker || markerPID != a.ProducerID {
					// The transaction went on past the previous object.
					out[j].LastOffset = a.LastOffset
					delete(open, a.ProducerID)
					if a.LastOffset == o.next-1 {
						reaching = setReaching(reaching, a.ProducerID, j)
					}
					continue
				}
			}
			out = append(out, a)
			if a.LastOffset == o.next-1 {
				reaching = setReaching(reaching, a.ProducerID, len(out)-1)
			}
		}
		open = reaching
	}
	// Objects written by this package list their entries in order, so out
	// is sorted already; a footer from elsewhere need not be.
	slices.SortStableFunc(out, func(x, y index.AbortedTxn) int {
		return cmp.Or(cmp.Compare(x.FirstOffset, y.FirstOffset), cmp.Compare(x.ProducerID, y.ProducerID))
	})
	return out, nil
}

func setReaching(m map[int64]int, pid int64, j int) map[int64]int {
	if m == nil {
		m = map[int64]int{}
	}
	m[pid] = j
	return m
}

// lastBatchMarker reads the last batch of an object (its last chunk, from
// the read caches or the store) and reports the producer id if it is a
// control batch.
func (m *Manager) lastBatchMarker(ctx context.Context, key string, r *segment.Reader) (int64, bool, error) {
	ci := len(r.Footer().Chunks) - 1
	raw, err := m.chunk(ctx, key, r, ci)
	if err != nil {
		return 0, false, fmt.Errorf("read chunk %d of %s: %w", ci, key, err)
	}
	return lastControlBatch(raw, key)
}

// lastControlBatch walks the batches of raw (one chunk) to the last and
// reports its producer id if it is a control batch.
func lastControlBatch(raw []byte, key string) (int64, bool, error) {
	var last batch.Header
	found := false
	for pos := 0; pos < len(raw); {
		h, err := batch.ParseHeader(raw[pos:])
		if err != nil || h.Size() > len(raw)-pos {
			return 0, false, fmt.Errorf("%w: %s: batch at raw position %d: %v", segment.ErrCorrupt, key, pos, err)
		}
		last, found = h, true
		pos += h.Size()
	}
	if !found {
		return 0, false, fmt.Errorf("%w: %s: empty last chunk", segment.ErrCorrupt, key)
	}
	return last.ProducerID, last.IsControl(), nil
}
