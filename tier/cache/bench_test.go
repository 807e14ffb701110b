package cache

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkGetHit measures cached reads of 4 MiB and 64 KiB chunks from
// the on-disk cache (page-cache warm), in parallel over a set of chunks.
func BenchmarkGetHit(b *testing.B) {
	for _, n := range []int{64 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", n>>10), func(b *testing.B) {
			c := openCache(b, b.TempDir(), 1<<30, Options{})
			const chunks = 16
			for i := range chunks {
				mustPut(b, c, "topic/0/segment", i, data("topic/0/segment", i, n))
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := c.Get("topic/0/segment", i%chunks); !ok {
						b.Error("miss")
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkGetOrLoadHit is the hit path of GetOrLoad, the one Fetch uses.
func BenchmarkGetOrLoadHit(b *testing.B) {
	const n = 1 << 20
	c := openCache(b, b.TempDir(), 1<<30, Options{})
	mustPut(b, c, "k", 0, data("k", 0, n))
	load := func(context.Context) ([]byte, error) { b.Fatal("load on a hit"); return nil, nil }
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetOrLoad(context.Background(), "k", 0, load); err != nil {
			b.Fatal(err)
		}
	}
}
