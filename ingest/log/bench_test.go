package log

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// benchBatch is 16 records of 1 KiB: about 16 KiB.
func benchBatch() []byte { return simpleBatch(16, 1024, 1) }

func BenchmarkAppend(b *testing.B) {
	l := mustOpen(b, vfs.Default, b.TempDir(), Config{SegmentBytes: 64 << 20}, Options{})
	defer l.Close()
	src := benchBatch()
	buf := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for b.Loop() {
		copy(buf, src)
		if _, err := l.Append(buf, AppendInfo{LeaderEpoch: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendDurable waits for every append to be fdatasync'd on the real
// disk, from several goroutines so that group commit shows.
func BenchmarkAppendDurable(b *testing.B) {
	l := mustOpen(b, vfs.Default, b.TempDir(), Config{SegmentBytes: 64 << 20}, Options{})
	defer l.Close()
	src := benchBatch()
	b.SetBytes(int64(len(src)))
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, len(src))
		for pb.Next() {
			copy(buf, src)
			res, err := l.Append(buf, AppendInfo{LeaderEpoch: 1})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.WaitDurable(context.Background(), res.LastOffset); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	l := mustOpen(b, vfs.Default, b.TempDir(), Config{SegmentBytes: 8 << 20}, Options{})
	defer l.Close()
	src := benchBatch()
	buf := make([]byte, len(src))
	for range 1024 { // 16 MiB, a few segments
		copy(buf, src)
		if _, err := l.Append(buf, AppendInfo{LeaderEpoch: 1}); err != nil {
			b.Fatal(err)
		}
	}
	end := l.EndOffset()
	b.SetBytes(1 << 20)
	b.ResetTimer()
	off := int64(0)
	for b.Loop() {
		data, err := l.Read(off, 1<<20, end)
		if err != nil || len(data) == 0 {
			b.Fatalf("read %d: %v", off, err)
		}
		off += 16 * int64(len(data)/len(src))
		if off >= end {
			off = 0
		}
	}
}

// BenchmarkAppendTransactional is BenchmarkAppend with transactional
// batches (16 records of 1 KiB) of four interleaved producers, each
// transaction of txnBatches batches ended by a marker (every other one an
// abort, so the aborted index grows). An op is one data batch, plus the
// marker append when it ends its transaction.
func BenchmarkAppendTransactional(b *testing.B) {
	for _, txnBatches := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batches=%d", txnBatches), func(b *testing.B) {
			l := mustOpen(b, vfs.Default, b.TempDir(), Config{SegmentBytes: 64 << 20}, Options{})
			defer l.Close()
			const producers = 4
			recs := make([]batch.Record, 16)
			for i := range recs {
				recs[i] = batch.Record{Value: make([]byte, 1024)}
			}
			var srcs [producers][]byte
			for p := range srcs {
				srcs[p] = batch.Build(batch.BuildOptions{BaseTimestamp: 1, Transactional: true, Idempotent: true,
					ProducerID: int64(p)}, recs...)
			}
			data := make([]byte, len(srcs[0]))
			marker := make([]byte, 0, 128)
			var seqs [producers]int32
			var inTxn [producers]int
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p := i % producers
				// The next sequence, and the CRC it changes (as a client
				// would send it).
				copy(data, srcs[p])
				binary.BigEndian.PutUint32(data[53:], uint32(seqs[p]))
				binary.BigEndian.PutUint32(data[17:], crc32.Checksum(data[21:], castagnoli))
				seqs[p] += int32(len(recs))
				if _, err := l.Append(data, AppendInfo{LeaderEpoch: 1}); err != nil {
					b.Fatal(err)
				}
				if inTxn[p]++; inTxn[p] < txnBatches {
					continue
				}
				inTxn[p] = 0
				m := batch.AppendMarker(marker[:0], batch.MarkerOptions{ProducerID: int64(p), TimestampMs: 1,
					Marker: batch.Marker{Commit: (i/producers)%2 == 0}})
				if _, err := l.Append(m, AppendInfo{LeaderEpoch: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTxnQueries measures what a read_committed fetch asks the log:
// FirstUnstableOffset, LastStableOffset, and AbortedTxns over a fetch-sized range at the tail
// (in the active segment and the cache) and far back (sealed segments'
// .txnindex files, through the small cache), over a log of 64 segments
// with 20,000 transactions, half of them aborted, of 8 producers, and 1,000
// idle idempotent producers.
func BenchmarkTxnQueries(b *testing.B) {
	l := mustOpen(b, vfs.Default, b.TempDir(), Config{SegmentBytes: 64 << 10}, Options{})
	defer l.Close()
	for pid := range int64(1000) {
		if _, err := l.Append(makeBatch(batchSpec{records: 1, pid: 100 + pid, seq: 0}), AppendInfo{}); err != nil {
			b.Fatal(err)
		}
	}
	var seqs [8]int32
	for i := range 20000 {
		p := int64(i % 8)
		if _, err := l.Append(txnData(p, seqs[p], 1), AppendInfo{}); err != nil {
			b.Fatal(err)
		}
		seqs[p]++
		if _, err := l.Append(marker(p, i%2 == 0, 0), AppendInfo{}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Append(txnData(0, seqs[0], 1), AppendInfo{}); err != nil { // one left open
		b.Fatal(err)
	}
	waitDurable(b, l, l.EndOffset()-1)
	end := l.EndOffset()
	b.Logf("%d segments, end %d", len(l.Segments()), end)
	b.Run("FirstUnstableOffset", func(b *testing.B) {
		for b.Loop() {
			if _, ok := l.FirstUnstableOffset(); !ok {
				b.Fatal("no open transaction")
			}
		}
	})
	b.Run("LastStableOffset", func(b *testing.B) {
		for b.Loop() {
			if l.LastStableOffset(end) >= end {
				b.Fatal("open transaction ignored")
			}
		}
	})
	b.Run("AbortedTxns/tail", func(b *testing.B) {
		for b.Loop() {
			if len(l.abortedT(end-500, end)) == 0 {
				b.Fatal("none")
			}
		}
	})
	b.Run("AbortedTxns/history", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 1))
		for b.Loop() {
			from := 1000 + rng.Int64N(end-2000)
			if len(l.abortedT(from, from+500)) == 0 {
				b.Fatal("none")
			}
		}
	})
}
