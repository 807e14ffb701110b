package cache

import (
	"context"
	"fmt"
)

// DefaultMaxConcurrentLoads is the LoadPool size when Options leave it 0.
const DefaultMaxConcurrentLoads = 16

// LoadPool bounds the number of remote loads (chunk reads, footer opens)
// running at once. A load holds a slot from before its request until its
// bytes are in memory, so the pool also bounds the memory of loads in
// flight (slots × chunk size). Callers beyond the bound wait, and give up
// when their context ends. Safe for concurrent use; share one pool between
// a ChunkCache and a FooterCache to bound both together.
type LoadPool struct {
	sem chan struct{}
}

// NewLoadPool returns a pool of n slots (n <= 0: DefaultMaxConcurrentLoads).
func NewLoadPool(n int) *LoadPool {
	if n <= 0 {
		n = DefaultMaxConcurrentLoads
	}
	return &LoadPool{sem: make(chan struct{}, n)}
}

// Acquire takes a slot, waiting until one is free or ctx ends; then it
// returns an error wrapping ctx.Err(). Every successful Acquire must be
// paired with one Release.
func (p *LoadPool) Acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cache: waiting for a remote load slot: %w", ctx.Err())
	}
}

// Release returns a slot taken by Acquire.
func (p *LoadPool) Release() { <-p.sem }

// Size returns the number of slots.
func (p *LoadPool) Size() int { return cap(p.sem) }

// InUse returns the number of slots taken now.
func (p *LoadPool) InUse() int { return len(p.sem) }
