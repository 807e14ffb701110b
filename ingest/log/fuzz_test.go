package log

import (
	"bytes"
	"errors"
	"testing"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/log/vfs"
)

func FuzzDecodeSegmentHeader(f *testing.F) {
	f.Add(appendSegmentHeader(nil, 42))
	f.Add(appendSegmentHeaderFlags(nil, 42, segFlagCompacted))
	f.Add([]byte("STSG\x00\x09"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		base, flags, err := decodeSegmentHeader(b, "x.log")
		if err == nil && !bytes.Equal(appendSegmentHeaderFlags(nil, base, flags), b[:segHeaderSize]) {
			t.Fatalf("header %x decodes to base %d but does not re-encode", b[:segHeaderSize], base)
		}
	})
}

func FuzzDecodeCheckpoints(f *testing.F) {
	f.Add(encodeStartOffset(7))
	f.Add(encodeEpochs([]epochEntry{{1, 0}, {3, 10}}))
	f.Add([]byte("SLEC\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if off, err := decodeStartOffset(b); err == nil && !bytes.Equal(encodeStartOffset(off), b) {
			t.Fatal("start offset does not re-encode")
		}
		if e, err := decodeEpochs(b); err == nil && !bytes.Equal(encodeEpochs(e), b) {
			t.Fatal("epochs do not re-encode")
		}
	})
}

// FuzzDecodeTxnIndex: the aborted-transaction index decoder never panics,
// and what it accepts re-encodes to the same bytes and keeps its rules.
func FuzzDecodeTxnIndex(f *testing.F) {
	f.Add(encodeTxnIndex(10, nil))
	f.Add(encodeTxnIndex(10, []index.AbortedTxn{{ProducerID: 1, FirstOffset: 3, LastOffset: 10}, {ProducerID: 2, FirstOffset: 0, LastOffset: 12}}))
	f.Add([]byte("SLTX\x00\x01"))
	f.Add([]byte("SLTX\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		base, entries, err := decodeTxnIndex(b, "x.txnindex")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		if !bytes.Equal(encodeTxnIndex(base, entries), b) {
			t.Fatal("txn index does not re-encode")
		}
		for i, e := range entries {
			if e.FirstOffset > e.LastOffset || e.LastOffset < base || (i > 0 && e.LastOffset <= entries[i-1].LastOffset) {
				t.Fatalf("accepted bad entry %+v", e)
			}
		}
	})
}

// FuzzRecoverSegment opens a log whose only segment holds arbitrary bytes
// after a valid header: recovery must never panic, and a log that opens must
// serve only whole, checked batches and take appends.
func FuzzRecoverSegment(f *testing.F) {
	good := append(simpleBatch(3, 10, 1), simpleBatch(2, 5, 2)...)
	good2 := bytes.Clone(good)
	good2[len(good2)-1] ^= 1
	f.Add(good, true)
	f.Add(good[:len(good)-3], true)
	f.Add(good2, true)
	f.Add([]byte{1, 2, 3}, false)
	f.Add(appendSegmentHeader(nil, 0)[:9], false)
	f.Fuzz(func(t *testing.T, b []byte, withHeader bool) {
		fsys := vfs.NewCrashFS()
		fsys.MkdirAll("/d", 0o755)
		file, _ := fsys.Create("/d/" + fileName(0, logSuffix))
		if withHeader {
			file.Write(appendSegmentHeader(nil, 0))
		}
		file.Write(b)
		file.Sync()
		file.Close()
		fsys.SyncDir("/d")
		l, err := Open("/d", Config{IndexIntervalBytes: 64}, testOptions(fsys))
		if err != nil {
			return
		}
		defer l.Close()
		readAll(t, l)
		res, err := l.Append(simpleBatch(1, 1, 1), AppendInfo{})
		if err != nil || res.BaseOffset != l.EndOffset()-1 {
			t.Fatalf("append after recovery: %+v %v", res, err)
		}
	})
}
