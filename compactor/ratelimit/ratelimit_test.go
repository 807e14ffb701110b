package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	clock := time.UnixMilli(0)
	var slept time.Duration
	b := New(1000, func() time.Time { return clock }, func(_ context.Context, d time.Duration) error {
		slept += d
		clock = clock.Add(d)
		return nil
	})
	ctx := context.Background()
	for range 100 {
		if err := b.Take(ctx, 50); err != nil {
			t.Fatal(err)
		}
	}
	// 5000 bytes at 1000 B/s with a 100-byte burst: 4.9 s.
	if slept < 4890*time.Millisecond || slept > 4910*time.Millisecond {
		t.Fatalf("slept %v, want 4.9s", slept)
	}
	// Idle time refills up to the burst only.
	clock = clock.Add(time.Minute)
	slept = 0
	_ = b.Take(ctx, 100)
	if slept != 0 {
		t.Fatalf("slept %v within the burst", slept)
	}
	_ = b.Take(ctx, 100)
	if slept != 100*time.Millisecond {
		t.Fatalf("slept %v past the burst, want 100ms", slept)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Take(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if err := New(0, nil, nil).Take(ctx, 1<<30); err != nil {
		t.Fatalf("unlimited: %v", err)
	}
	if err := Sleep(cctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled sleep: %v", err)
	}
}
