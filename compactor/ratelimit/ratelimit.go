// Package ratelimit bounds the bytes per second a background pass (local
// cleaning, remote compaction and merging) reads and writes, so that it
// cannot starve produce and fetch. It imports only the standard library.
package ratelimit

import (
	"context"
	"time"
)

// Bucket is a token bucket of bytes with a burst of 100 ms: a Take beyond
// the tokens sleeps off the debt. It is used by one goroutine at a time.
type Bucket struct {
	rate, burst, tokens float64
	last                time.Time
	now                 func() time.Time
	sleep               func(context.Context, time.Duration) error
}

// New returns a bucket of rate bytes per second (0 or less: unlimited).
// now and sleep may be nil (time.Now and Sleep); tests inject clocks.
func New(rate int64, now func() time.Time, sleep func(context.Context, time.Duration) error) *Bucket {
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = Sleep
	}
	b := &Bucket{rate: float64(rate), now: now, sleep: sleep}
	if rate > 0 {
		b.burst = b.rate / 10
		b.tokens = b.burst
		b.last = now()
	}
	return b
}

// Take spends n bytes, sleeping while the bucket is in debt; it returns the
// context's error if the context ends first.
func (b *Bucket) Take(ctx context.Context, n int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.rate <= 0 {
		return nil
	}
	now := b.now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return nil
	}
	return b.sleep(ctx, time.Duration(-b.tokens/b.rate*float64(time.Second)))
}

// Sleep waits for d or until ctx ends, returning the context's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
