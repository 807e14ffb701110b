package batch

import (
	"encoding/binary"
	"fmt"
)

// Control record types (the key's second int16), as Kafka numbers them.
const (
	ControlAbort  = 0
	ControlCommit = 1
)

// Marker is the content of a transaction marker: a control batch with one
// record whose key is (version 0, type) and whose value is (version 0,
// coordinator epoch).
type Marker struct {
	Commit           bool
	CoordinatorEpoch int32
}

// MarkerOptions describe the marker batch AppendMarker builds.
type MarkerOptions struct {
	ProducerID    int64
	ProducerEpoch int16
	LeaderEpoch   int32
	TimestampMs   int64
	Marker
}

// AppendMarker appends to dst a transaction marker batch (control and
// transactional attributes, base sequence -1, base offset 0: the log
// assigns offsets) for opts.ProducerID at opts.ProducerEpoch.
func AppendMarker(dst []byte, opts MarkerOptions) []byte {
	typ := uint16(ControlAbort)
	if opts.Commit {
		typ = ControlCommit
	}
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), typ)
	value := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), uint32(opts.CoordinatorEpoch))
	raw := appendRecord(nil, &Record{Key: key, Value: value}, 0)
	h := Header{
		PartitionLeaderEpoch: opts.LeaderEpoch,
		Magic:                2,
		Attributes:           AttrControl | AttrTransactional,
		BaseTimestamp:        opts.TimestampMs,
		MaxTimestamp:         opts.TimestampMs,
		ProducerID:           opts.ProducerID,
		ProducerEpoch:        opts.ProducerEpoch,
		BaseSequence:         -1,
		RecordCount:          1,
	}
	// An uncompressed batch cannot fail to build.
	out, _ := appendBatch(dst, &h, CodecNone, raw)
	return out
}

// ParseMarker decodes the marker in control batch b (the batch's first
// record; a marker batch has exactly one). As Kafka does, newer key and
// value versions are read as version 0 (their first fields are the same).
func ParseMarker(b []byte) (Marker, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Marker{}, err
	}
	if !h.IsControl() {
		return Marker{}, fmt.Errorf("%w: batch at %d is not a control batch", ErrCorrupt, h.BaseOffset)
	}
	var m Marker
	found := false
	err = Records(b, 1, func(r Record) error {
		if found {
			return nil
		}
		found = true
		var err error
		m, err = MarkerOf(r)
		return err
	})
	if err != nil {
		return Marker{}, err
	}
	if !found {
		return Marker{}, fmt.Errorf("%w: control batch at %d without records", ErrCorrupt, h.BaseOffset)
	}
	return m, nil
}

// MarkerOf decodes the control record r of a marker batch (its key is
// version, type; its value version, coordinator epoch).
func MarkerOf(r Record) (Marker, error) {
	var m Marker
	if len(r.Key) < 4 {
		return m, fmt.Errorf("%w: control record key of %d bytes", ErrCorrupt, len(r.Key))
	}
	if v := int16(binary.BigEndian.Uint16(r.Key)); v < 0 {
		return m, fmt.Errorf("%w: control record key version %d", ErrCorrupt, v)
	}
	switch typ := int16(binary.BigEndian.Uint16(r.Key[2:])); typ {
	case ControlAbort:
	case ControlCommit:
		m.Commit = true
	default:
		return m, fmt.Errorf("%w: control record type %d", ErrCorrupt, typ)
	}
	if len(r.Value) >= 6 {
		m.CoordinatorEpoch = int32(binary.BigEndian.Uint32(r.Value[2:]))
	}
	return m, nil
}
