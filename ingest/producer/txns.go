package producer

import "sort"

// openTxns orders the open transactions of a State by first offset, so that
// the first unstable offset is found without scanning every producer (a
// partition may have thousands of idempotent producers and a handful of
// open transactions).
//
// Transactions open at the log end, so their first offsets arrive in
// increasing order and opened appends. A closed transaction is not removed
// at once: an entry is live only while its producer's txnFirstOffset still
// equals it, dead entries are dropped from the front by first, and the list
// is compacted when dead entries outnumber live ones, so each operation is
// amortized O(1) and the list stays within twice the open transactions
// (plus a small slack).
type openTxns struct {
	list []openTxn // by increasing first offset; may hold dead entries
	live int       // producers with an open transaction
}

type openTxn struct {
	pid   int64
	first int64
}

// compactSlack is how many dead entries are tolerated before a compaction
// regardless of the live count.
const compactSlack = 16

func isLive(producers map[int64]*entry, t openTxn) bool {
	e := producers[t.pid]
	return e != nil && e.txnFirstOffset == t.first
}

// opened records that pid's transaction opened at first (already set in
// producers).
func (o *openTxns) opened(producers map[int64]*entry, pid, first int64) {
	if len(o.list)-o.live > o.live+compactSlack {
		o.compact(producers) // before counting the new one: it is not in the list yet
	}
	o.live++
	t := openTxn{pid: pid, first: first}
	if n := len(o.list); n == 0 || o.list[n-1].first < first {
		o.list = append(o.list, t)
		return
	}
	// Not the log order (cannot happen with offsets assigned by a log):
	// keep the list sorted anyway.
	i := sort.Search(len(o.list), func(i int) bool { return o.list[i].first >= first })
	o.list = append(o.list, openTxn{})
	copy(o.list[i+1:], o.list[i:])
	o.list[i] = t
}

// closed records that a transaction closed; its entry goes later.
func (o *openTxns) closed() { o.live-- }

// first returns the first offset of the oldest open transaction.
func (o *openTxns) first(producers map[int64]*entry) (int64, bool) {
	for len(o.list) > 0 && !isLive(producers, o.list[0]) {
		o.list[0] = openTxn{}
		o.list = o.list[1:]
	}
	if len(o.list) == 0 {
		o.list = nil // let a drained backing array go
		return 0, false
	}
	return o.list[0].first, true
}

// compact drops the dead entries.
func (o *openTxns) compact(producers map[int64]*entry) {
	kept := make([]openTxn, 0, o.live)
	for _, t := range o.list {
		if isLive(producers, t) {
			kept = append(kept, t)
		}
	}
	o.list = kept
}

// clone returns a copy holding only the live entries.
func (o *openTxns) clone(producers map[int64]*entry) openTxns {
	c := openTxns{live: o.live}
	if o.live > 0 {
		c.list = make([]openTxn, 0, o.live)
		for _, t := range o.list {
			if isLive(producers, t) {
				c.list = append(c.list, t)
			}
		}
	}
	return c
}

// rebuild recomputes the list from the producers' open transactions, for
// a State decoded from a snapshot.
func (o *openTxns) rebuild(producers map[int64]*entry) {
	o.list, o.live = nil, 0
	for id, e := range producers {
		if e.txnFirstOffset >= 0 {
			o.list = append(o.list, openTxn{pid: id, first: e.txnFirstOffset})
		}
	}
	o.live = len(o.list)
	sort.Slice(o.list, func(i, j int) bool {
		if o.list[i].first != o.list[j].first {
			return o.list[i].first < o.list[j].first
		}
		return o.list[i].pid < o.list[j].pid
	})
}
