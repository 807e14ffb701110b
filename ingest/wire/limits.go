package wire

import (
	"container/list"
	"context"
	"errors"
	"sync"
)

// errOverBudget: a single request is larger than the whole in-flight budget
// and could never be admitted.
var errOverBudget = errors.New("request larger than the in-flight byte budget")

// budget is a FIFO counting semaphore over bytes: the global budget for
// requests being read, processed and answered. FIFO order means a large
// request is not starved by a stream of small ones. Safe for concurrent use.
type budget struct {
	size int64

	mu struct {
		sync.Mutex
		used    int64
		peak    int64
		waiters list.List // of *budgetWaiter, oldest first
	}
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes are granted
}

func newBudget(size int64) *budget { return &budget{size: size} }

// acquire blocks until n bytes are available or ctx is done. It returns
// errOverBudget at once if n exceeds the whole budget, and ctx.Err() if ctx
// ends first (in which case nothing is held).
func (b *budget) acquire(ctx context.Context, n int64) error {
	if n > b.size {
		return errOverBudget
	}
	b.mu.Lock()
	if b.mu.waiters.Len() == 0 && b.mu.used+n <= b.size {
		b.grantLocked(n)
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	elem := b.mu.waiters.PushBack(w)
	b.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready:
		// Granted while we were giving up: hand the bytes back.
		b.mu.used -= n
	default:
		b.mu.waiters.Remove(elem)
	}
	// Either way the head of the queue may now fit.
	b.notifyLocked()
	b.mu.Unlock()
	return ctx.Err()
}

// release returns n bytes taken by a successful acquire.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.mu.used -= n
	if b.mu.used < 0 {
		b.mu.Unlock()
		panic("wire: budget released more than acquired") // programming error, never input
	}
	b.notifyLocked()
	b.mu.Unlock()
}

func (b *budget) grantLocked(n int64) {
	b.mu.used += n
	b.mu.peak = max(b.mu.peak, b.mu.used)
}

// notifyLocked grants waiters in FIFO order while the oldest one fits.
func (b *budget) notifyLocked() {
	for {
		front := b.mu.waiters.Front()
		if front == nil {
			return
		}
		w := front.Value.(*budgetWaiter)
		if b.mu.used+w.n > b.size {
			return
		}
		b.grantLocked(w.n)
		b.mu.waiters.Remove(front)
		close(w.ready)
	}
}

// usage reports the bytes held now and the most ever held at once.
func (b *budget) usage() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.used, b.mu.peak
}

// ipLimiter counts open connections per remote IP. Safe for concurrent use.
type ipLimiter struct {
	max int
	mu  struct {
		sync.Mutex
		conns map[string]int
	}
}

func newIPLimiter(limit int) *ipLimiter {
	l := &ipLimiter{max: limit}
	l.mu.conns = make(map[string]int)
	return l
}

// add counts one more connection from ip, or reports false (counting
// nothing) when ip already has the maximum.
func (l *ipLimiter) add(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.conns[ip] >= l.max {
		return false
	}
	l.mu.conns[ip]++
	return true
}

// remove forgets one connection from ip counted by add.
func (l *ipLimiter) remove(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.conns[ip] <= 1 {
		delete(l.mu.conns, ip)
		return
	}
	l.mu.conns[ip]--
}
