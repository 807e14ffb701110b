package log

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// epochEntry says that leader epoch Epoch starts at offset Start.
type epochEntry struct {
	Epoch int32
	Start int64
}

// epochCache is the leader-epoch history of the log (Kafka's
// LeaderEpochFileCache): epochs and start offsets both strictly increasing.
// Not safe for concurrent use; the log guards it with Log.mu.
type epochCache struct {
	entries []epochEntry
}

// assign records that epoch starts at offset, if epoch is newer than the
// latest one. It reports whether the cache changed.
func (c *epochCache) assign(epoch int32, offset int64) bool {
	if epoch < 0 {
		return false
	}
	if n := len(c.entries); n > 0 {
		last := c.entries[n-1]
		if epoch <= last.Epoch {
			return false
		}
		if offset < last.Start {
			return false
		}
		if offset == last.Start {
			c.entries[n-1].Epoch = epoch
			return true
		}
	}
	c.entries = append(c.entries, epochEntry{Epoch: epoch, Start: offset})
	return true
}

// truncateFromEnd drops entries starting at or after end.
func (c *epochCache) truncateFromEnd(end int64) bool {
	i := len(c.entries)
	for i > 0 && c.entries[i-1].Start >= end {
		i--
	}
	changed := i != len(c.entries)
	c.entries = c.entries[:i]
	return changed
}

// truncateFromStart moves the start of the log to start: entries wholly below
// it are dropped and the one covering it starts at start.
func (c *epochCache) truncateFromStart(start int64) bool {
	i := 0
	for i+1 < len(c.entries) && c.entries[i+1].Start <= start {
		i++
	}
	if len(c.entries) == 0 || (i == 0 && c.entries[0].Start >= start) {
		return false
	}
	c.entries = slices.Delete(c.entries, 0, i)
	c.entries[0].Start = start
	return true
}

// endOffsetFor answers OffsetForLeaderEpoch as Kafka does: for the latest
// epoch, the log end offset; otherwise the start offset of the first epoch
// above the requested one, paired with the largest epoch <= requested (or the
// requested epoch itself if it is older than every entry). Unknown: (-1, -1).
func (c *epochCache) endOffsetFor(epoch int32, logEnd int64) (int32, int64) {
	n := len(c.entries)
	if epoch < 0 || n == 0 {
		return -1, -1
	}
	if c.entries[n-1].Epoch == epoch {
		return epoch, logEnd
	}
	hi := -1
	for i, e := range c.entries {
		if e.Epoch > epoch {
			hi = i
			break
		}
	}
	if hi < 0 {
		return -1, -1
	}
	if hi == 0 {
		return epoch, c.entries[0].Start
	}
	return c.entries[hi-1].Epoch, c.entries[hi].Start
}

func (c *epochCache) clone() []epochEntry { return slices.Clone(c.entries) }

// Leader-epoch checkpoint payload: count u32, then (epoch i32, start i64).
func encodeEpochs(entries []epochEntry) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(len(entries)))
	for _, e := range entries {
		p = binary.BigEndian.AppendUint32(p, uint32(e.Epoch))
		p = binary.BigEndian.AppendUint64(p, uint64(e.Start))
	}
	return encodeCheckpoint(epochMagic, p)
}

func decodeEpochs(b []byte) ([]epochEntry, error) {
	p, err := decodeCheckpoint(b, epochMagic, epochCheckpoint)
	if err != nil {
		return nil, err
	}
	if len(p) < 4 || int64(len(p)) != 4+12*int64(binary.BigEndian.Uint32(p)) {
		return nil, fmt.Errorf("%s: %w: bad length %d", epochCheckpoint, ErrCorrupt, len(p))
	}
	var c epochCache
	for i := 4; i < len(p); i += 12 {
		e := epochEntry{Epoch: int32(binary.BigEndian.Uint32(p[i:])), Start: int64(binary.BigEndian.Uint64(p[i+4:]))}
		n := len(c.entries)
		if e.Epoch < 0 || e.Start < 0 || (n > 0 && (e.Epoch <= c.entries[n-1].Epoch || e.Start <= c.entries[n-1].Start)) {
			return nil, fmt.Errorf("%s: %w: entry %d (%d, %d) out of order", epochCheckpoint, ErrCorrupt, (i-4)/12, e.Epoch, e.Start)
		}
		c.entries = append(c.entries, e)
	}
	return c.entries, nil
}
