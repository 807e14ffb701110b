package log

import (
	"bytes"
	"errors"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

func TestAppendReadAcrossRolls(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{SegmentBytes: 4096, IndexIntervalBytes: 512}
	l := mustOpen(t, fsys, "/data/t-0", cfg, Options{})
	var want [][]byte
	var next int64
	for i := range 300 {
		b := simpleBatch(1+i%7, 10+i%90, byte(i))
		res := mustAppend(t, l, b)
		if res.BaseOffset != next || res.LastOffset != next+int64(1+i%7)-1 {
			t.Fatalf("append %d: got [%d, %d], want base %d", i, res.BaseOffset, res.LastOffset, next)
		}
		next = res.LastOffset + 1
		want = append(want, bytes.Clone(b))
	}
	waitDurable(t, l, next-1)
	check := func(l *Log) {
		t.Helper()
		got := readAll(t, l)
		if len(got) != len(want) {
			t.Fatalf("read %d batches, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("batch %d differs", i)
			}
		}
	}
	check(l)
	l.mu.Lock()
	nseg := len(l.mu.segments)
	l.mu.Unlock()
	if nseg < 10 {
		t.Fatalf("only %d segments; rolls not exercised", nseg)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen after a clean close: sealed segments load from their indexes.
	l = mustOpen(t, fsys, "/data/t-0", cfg, Options{})
	check(l)
	if l.EndOffset() != next || l.DurableOffset() != next {
		t.Fatalf("end %d durable %d, want %d", l.EndOffset(), l.DurableOffset(), next)
	}
	res := mustAppend(t, l, simpleBatch(2, 5, 9))
	if res.BaseOffset != next {
		t.Fatalf("append after reopen at %d, want %d", res.BaseOffset, next)
	}
	l.Close()
	// And after a power loss, with everything synced.
	l = mustOpen(t, fsys.CrashClone(nil), "/data/t-0", cfg, Options{})
	defer l.Close()
	want = append(want, nil)
	got := readAll(t, l)
	if len(got) != len(want) {
		t.Fatalf("after crash: %d batches, want %d", len(got), len(want))
	}
}

func TestReadLimits(t *testing.T) {
	l := mustOpen(t, vfs.NewCrashFS(), "/d", Config{IndexIntervalBytes: 1}, Options{})
	defer l.Close()
	var sizes []int
	for i := range 5 {
		b := simpleBatch(10, 50, byte(i))
		sizes = append(sizes, len(b))
		mustAppend(t, l, b) // offsets 10*i .. 10*i+9
	}
	tests := []struct {
		name     string
		offset   int64
		maxBytes int
		upTo     int64
		want     []int64 // base offsets of the batches returned
		err      error
	}{
		{"middle of batch", 15, 1, 1 << 40, []int64{10}, nil},
		{"at least one batch", 0, 0, 1 << 40, []int64{0}, nil},
		{"exactly two", 0, sizes[0] + sizes[1], 1 << 40, []int64{0, 10}, nil},
		{"two and a half", 0, sizes[0] + sizes[1] + sizes[2]/2, 1 << 40, []int64{0, 10}, nil},
		{"all", 0, 1 << 20, 1 << 40, []int64{0, 10, 20, 30, 40}, nil},
		{"upTo", 0, 1 << 20, 30, []int64{0, 10, 20}, nil},
		{"upTo inside a batch", 0, 1 << 20, 25, []int64{0, 10, 20}, nil},
		{"upTo below offset", 35, 1 << 20, 30, nil, nil},
		{"last record", 49, 1, 1 << 40, []int64{40}, nil},
		{"end", 50, 1, 1 << 40, nil, nil},
		{"past end", 51, 1, 1 << 40, nil, ErrOffsetOutOfRange},
		{"negative", -1, 1, 1 << 40, nil, ErrOffsetOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := l.Read(tt.offset, tt.maxBytes, tt.upTo)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			var got []int64
			for len(b) > 0 {
				h, err := batch.ParseHeader(b)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, h.BaseOffset)
				b = b[h.Size():]
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got batches %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got batches %v, want %v", got, tt.want)
				}
			}
		})
	}
}
