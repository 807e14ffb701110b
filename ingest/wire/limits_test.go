package wire

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestBudgetFIFO(t *testing.T) {
	b := newBudget(10)
	ctx := context.Background()
	if err := b.acquire(ctx, 11); !errors.Is(err, errOverBudget) {
		t.Fatalf("acquire over budget: %v", err)
	}
	if err := b.acquire(ctx, 8); err != nil {
		t.Fatal(err)
	}
	// A large waiter queues first; a small one behind it must not jump the
	// queue even though it would fit.
	order := make(chan int64, 2)
	var wg sync.WaitGroup
	for _, n := range []int64{5, 1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.acquire(ctx, n); err != nil {
				t.Error(err)
				return
			}
			order <- n
		}()
		eventually(t, "waiter queued", func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.mu.waiters.Len() == map[int64]int{5: 1, 1: 2}[n]
		})
	}
	select {
	case n := <-order:
		t.Fatalf("acquired %d while the budget was held", n)
	case <-time.After(20 * time.Millisecond):
	}
	b.release(3) // 5 held: the 5 fits, and then the 1 no longer does
	if n := <-order; n != 5 {
		t.Fatalf("granted %d first, want 5", n)
	}
	select {
	case n := <-order:
		t.Fatalf("acquired %d over the budget", n)
	case <-time.After(20 * time.Millisecond):
	}
	b.release(5)
	wg.Wait()
	if n := <-order; n != 1 {
		t.Fatalf("granted %d second, want 1", n)
	}
	if used, peak := b.usage(); used != 6 || peak != 10 {
		t.Fatalf("used %d peak %d", used, peak)
	}
	b.release(6)
	if used, _ := b.usage(); used != 0 {
		t.Fatalf("used %d after releasing everything", used)
	}
}

func TestBudgetAcquireCancelled(t *testing.T) {
	b := newBudget(10)
	if err := b.acquire(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.acquire(ctx, 4) }()
	eventually(t, "waiter queued", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.mu.waiters.Len() == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	b.release(10)
	if used, _ := b.usage(); used != 0 {
		t.Fatalf("cancelled waiter left %d bytes held", used)
	}
	// The queue is empty again: a fitting acquire succeeds at once.
	if err := b.acquire(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	b := newBudget(100)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				n := int64(1 + (i*7+j)%40)
				if err := b.acquire(context.Background(), n); err != nil {
					t.Error(err)
					return
				}
				b.release(n)
			}
		}()
	}
	wg.Wait()
	if used, peak := b.usage(); used != 0 || peak > 100 {
		t.Fatalf("used %d peak %d", used, peak)
	}
}

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(2)
	for i, want := range []bool{true, true, false} {
		if got := l.add("10.0.0.1"); got != want {
			t.Fatalf("add #%d = %v", i, got)
		}
	}
	if !l.add("10.0.0.2") {
		t.Fatal("limit is per IP")
	}
	l.remove("10.0.0.1")
	if !l.add("10.0.0.1") {
		t.Fatal("slot not freed by remove")
	}
	l.remove("10.0.0.2")
	if len(l.mu.conns) != 1 {
		t.Fatalf("forgotten IPs kept: %v", l.mu.conns)
	}
}
