package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// batchSpec describes a test record batch.
type batchSpec struct {
	records  int
	valSize  int
	ts       int64 // first record's timestamp; record i has ts+i
	pid      int64 // -1: not idempotent
	pepoch   int16
	seq      int32
	fill     byte
	tsDeltas []int64 // optional per-record timestamp deltas
}

// makeBatch builds an uncompressed v2 record batch with a valid CRC.
func makeBatch(sp batchSpec) []byte {
	if sp.records == 0 {
		sp.records = 1
	}
	var recs []byte
	maxTs := sp.ts
	for i := range sp.records {
		delta := int64(i)
		if sp.tsDeltas != nil {
			delta = sp.tsDeltas[i]
		}
		maxTs = max(maxTs, sp.ts+delta)
		var r []byte
		r = append(r, 0) // attributes
		r = binary.AppendVarint(r, delta)
		r = binary.AppendVarint(r, int64(i))
		r = binary.AppendVarint(r, -1) // null key
		r = binary.AppendVarint(r, int64(sp.valSize))
		r = append(r, bytes.Repeat([]byte{sp.fill + byte(i)}, sp.valSize)...)
		r = binary.AppendVarint(r, 0) // headers
		recs = binary.AppendVarint(recs, int64(len(r)))
		recs = append(recs, r...)
	}
	be := binary.BigEndian
	b := make([]byte, batch.HeaderSize, batch.HeaderSize+len(recs))
	be.PutUint64(b[0:], 0)
	be.PutUint32(b[8:], uint32(batch.HeaderSize-batch.LogOverhead+len(recs)))
	be.PutUint32(b[12:], 0)
	b[16] = 2
	be.PutUint16(b[21:], 0)
	be.PutUint32(b[23:], uint32(sp.records-1))
	be.PutUint64(b[27:], uint64(sp.ts))
	be.PutUint64(b[35:], uint64(maxTs))
	be.PutUint64(b[43:], uint64(sp.pid))
	be.PutUint16(b[51:], uint16(sp.pepoch))
	be.PutUint32(b[53:], uint32(sp.seq))
	be.PutUint32(b[57:], uint32(sp.records))
	b = append(b, recs...)
	be.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func simpleBatch(records, valSize int, fill byte) []byte {
	return makeBatch(batchSpec{records: records, valSize: valSize, ts: 1000, pid: -1, seq: -1, fill: fill})
}

type testClock struct{ ms int64 }

func (c *testClock) now() time.Time { return time.UnixMilli(c.ms) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOptions(fsys vfs.FS) Options {
	return Options{FS: fsys, Logger: quietLogger()}
}

func mustOpen(t testing.TB, fsys vfs.FS, dir string, cfg Config, opts Options) *Log {
	t.Helper()
	if opts.FS == nil {
		opts.FS = fsys
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(dir, cfg, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustAppend(t testing.TB, l *Log, b []byte) AppendResult {
	t.Helper()
	res, err := l.Append(b, AppendInfo{LeaderEpoch: 1})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

func waitDurable(t testing.TB, l *Log, off int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitDurable(ctx, off); err != nil {
		t.Fatalf("WaitDurable(%d): %v", off, err)
	}
}

// readAll reads the whole log from its start, checking each batch's CRC and
// offset continuity, and returns the batches.
func readAll(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	off := l.StartOffset()
	for {
		b, err := l.Read(off, 1<<20, 1<<62)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(b) == 0 {
			if off != l.EndOffset() {
				t.Fatalf("empty read at %d, end %d", off, l.EndOffset())
			}
			return out
		}
		for len(b) > 0 {
			h, err := batch.ParseHeader(b)
			if err != nil {
				t.Fatalf("batch at %d: %v", off, err)
			}
			if crc32.Checksum(b[21:h.Size()], crc32.MakeTable(crc32.Castagnoli)) != h.CRC {
				t.Fatalf("batch at %d: bad CRC (torn batch served)", h.BaseOffset)
			}
			if h.BaseOffset > off || h.LastOffset() < off {
				t.Fatalf("batch [%d, %d] does not hold offset %d", h.BaseOffset, h.LastOffset(), off)
			}
			out = append(out, b[:h.Size()])
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
}
