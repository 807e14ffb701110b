package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/faulty"
	"github.com/strata-io/strata/tier/objstore/mem"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
)

// With no rules the wrapper is transparent.
func TestAcceptance(t *testing.T) {
	objstoretest.AcceptanceTest(t, func(t *testing.T) objstore.Store {
		s := faulty.New(mem.New(), 1)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestErrorRateIsDeterministic(t *testing.T) {
	run := func(seed uint64) []bool {
		s := faulty.New(mem.New(), seed)
		s.SetRules(faulty.Rule{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpStat}, Prob: 0.3})
		objstoretest.MustPut(t, s, "k", []byte("v"))
		var out []bool
		for range 200 {
			_, err := s.Stat(context.Background(), "k")
			if err != nil && !errors.Is(err, faulty.ErrInjected) {
				t.Fatal(err)
			}
			out = append(out, err != nil)
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	fails := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different faults")
		}
		if a[i] {
			fails++
		}
	}
	if fails < 30 || fails > 90 {
		t.Fatalf("%d of 200 calls failed at rate 0.3", fails)
	}
	if equal := func() bool {
		for i := range a {
			if a[i] != c[i] {
				return false
			}
		}
		return true
	}(); equal {
		t.Fatal("different seeds, same faults")
	}
}

func TestRuleScopeAndCount(t *testing.T) {
	s := faulty.New(mem.New(), 1)
	boom := errors.New("boom")
	s.SetRules(faulty.Rule{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpPut}, KeyPrefix: "a/", Count: 2, Err: boom})
	ctx := context.Background()
	put := func(key string) error { return s.Put(ctx, key, bytes.NewReader([]byte("x")), 1) }
	if err := put("b/1"); err != nil {
		t.Fatalf("other prefix: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := put("a/1"); !errors.Is(err, boom) {
			t.Fatalf("put #%d: %v, want boom", i, err)
		}
	}
	if err := put("a/1"); err != nil {
		t.Fatalf("after count exhausted: %v", err)
	}
	if s.Injected() != 2 {
		t.Fatalf("injected %d", s.Injected())
	}
	if _, err := s.Stat(ctx, "a/1"); err != nil {
		t.Fatalf("other op: %v", err)
	}
}

func TestErrorAfterApplies(t *testing.T) {
	s := faulty.New(mem.New(), 1)
	s.SetRules(faulty.Rule{Kind: faulty.ErrorAfter, Ops: []objstore.Op{objstore.OpPutIfAbsent}, Count: 1})
	ctx := context.Background()
	err := s.PutIfAbsent(ctx, "m", bytes.NewReader([]byte("x")), 1)
	if !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("put-if-absent: %v", err)
	}
	// The lost response hid a success: the retry sees ErrExists.
	err = s.PutIfAbsent(ctx, "m", bytes.NewReader([]byte("x")), 1)
	if !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("retry: %v, want ErrExists", err)
	}
}

func TestLatencyRespectsContext(t *testing.T) {
	s := faulty.New(mem.New(), 1)
	s.SetRules(faulty.Rule{Kind: faulty.Latency, Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stat: %v", err)
	}
	s.SetRules(faulty.Rule{Kind: faulty.Latency, Latency: 30 * time.Millisecond})
	start := time.Now()
	_, _ = s.Stat(context.Background(), "k")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("latency %v", d)
	}
}

func TestTruncate(t *testing.T) {
	s := faulty.New(mem.New(), 1)
	data := objstoretest.Random(1, 10000)
	objstoretest.MustPut(t, s, "k", data)
	s.SetRules(faulty.Rule{Kind: faulty.Truncate, Ops: []objstore.Op{objstore.OpGet, objstore.OpGetRange}})
	rc, err := s.Get(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= len(data) || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("truncated get: %d bytes, %v", len(got), err)
	}
	b, err := s.GetRange(context.Background(), "k", 10, 100)
	if !errors.Is(err, objstore.ErrShortRead) || b != nil {
		t.Fatalf("truncated get range: %d bytes, %v", len(b), err)
	}
}

func TestSilentTruncate(t *testing.T) {
	s := faulty.New(mem.New(), 1)
	objstoretest.MustPut(t, s, "k", objstoretest.Random(1, 1000))
	s.SetRules(faulty.Rule{Kind: faulty.SilentTruncate, Bytes: 10})
	if got := objstoretest.MustGet(t, s, "k"); len(got) != 10 {
		t.Fatalf("silently truncated get: %d bytes", len(got))
	}
	if b, err := s.GetRange(context.Background(), "k", 0, 100); err != nil || len(b) != 10 {
		t.Fatalf("silently truncated range: %d bytes, %v", len(b), err)
	}
}

func TestFailAfterBytesPut(t *testing.T) {
	inner := mem.New()
	s := faulty.New(inner, 1)
	objstoretest.MustPut(t, s, "k", []byte("old"))
	s.SetRules(faulty.Rule{Kind: faulty.FailAfterBytes, Ops: []objstore.Op{objstore.OpPut}, Bytes: 500})
	data := objstoretest.Random(1, 1000)
	if err := s.Put(context.Background(), "k", bytes.NewReader(data), 1000); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("put: %v", err)
	}
	if got := objstoretest.MustGet(t, inner, "k"); string(got) != "old" {
		t.Fatalf("failed put replaced the object: %q", got)
	}
	s.SetRules(faulty.Rule{Kind: faulty.FailAfterBytes, Ops: []objstore.Op{objstore.OpGet}, Bytes: 2})
	rc, err := s.Get(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, faulty.ErrInjected) || string(got) != "ol" {
		t.Fatalf("get: %q, %v", got, err)
	}
}
