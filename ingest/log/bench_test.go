package log

import (
	"context"
	"testing"

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
