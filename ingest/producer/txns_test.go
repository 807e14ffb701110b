package producer

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/strata-io/strata/ingest/batch"
)

func txnHdr(pid int64, epoch int16, seq, n int32) *batch.Header {
	h := hdr(pid, epoch, seq, n)
	h.Attributes = batch.AttrTransactional
	return h
}

// bruteFUO is the first unstable offset computed by scanning every
// producer.
func bruteFUO(s *State) (int64, bool) {
	first := int64(math.MaxInt64)
	for id := range s.producers {
		p, _ := s.Producer(id)
		if p.CurrentTxnFirstOffset >= 0 {
			first = min(first, p.CurrentTxnFirstOffset)
		}
	}
	return first, first != math.MaxInt64
}

// TestFirstUnstableOffsetModel drives random transactions of many producers
// and checks FirstUnstableOffset and OpenTransactions against a scan of
// every producer after each step, and across Clone, snapshots, Expire and
// RemoveBelow.
func TestFirstUnstableOffsetModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := newAppender(t)
	seqs := map[int64]int32{}
	peak := 0 // most transactions open at once so far
	check := func(step int, s *State) {
		t.Helper()
		wf, wok := bruteFUO(s)
		if f, ok := s.FirstUnstableOffset(); ok != wok || (ok && f != wf) {
			t.Fatalf("step %d: FirstUnstableOffset = (%d, %v), want (%d, %v)", step, f, ok, wf, wok)
		}
		open := 0
		for id := range s.producers {
			if p, _ := s.Producer(id); p.CurrentTxnFirstOffset >= 0 {
				open++
			}
		}
		if s.OpenTransactions() != open {
			t.Fatalf("step %d: OpenTransactions = %d, want %d", step, s.OpenTransactions(), open)
		}
	}
	for step := range 20000 {
		// A hanging transaction of producer 0 for the first half: the
		// list must stay bounded meanwhile.
		pid := int64(rng.IntN(50))
		if step < 10000 && pid == 0 {
			pid = 1
		}
		if step == 0 {
			pid = 0
		}
		switch r := rng.IntN(10); {
		case r < 5 || step == 0:
			n := int32(1 + rng.IntN(3))
			a.add(txnHdr(pid, 0, seqs[pid], n))
			seqs[pid] += n
		case r < 8:
			h := markerHdr(pid, 0)
			h.BaseOffset = a.next
			a.next++
			wasOpen := int64(-1)
			if p, ok := a.s.Producer(pid); ok {
				wasOpen = p.CurrentTxnFirstOffset
			}
			if first := a.s.UpdateMarker(h, batch.Marker{Commit: r == 5, CoordinatorEpoch: 1}, a.now); first != wasOpen {
				t.Fatalf("step %d: UpdateMarker returned %d, want %d", step, first, wasOpen)
			}
		default:
			n := int32(1 + rng.IntN(3))
			a.add(hdr(pid+100, 0, seqs[pid+100], n)) // not transactional
			seqs[pid+100] += n
		}
		check(step, a.s)
		peak = max(peak, a.s.OpenTransactions())
		if len(a.s.txns.list) > 2*peak+compactSlack+1 {
			t.Fatalf("step %d: %d entries for at most %d open transactions", step, len(a.s.txns.list), peak)
		}
		if step%500 == 0 {
			c := a.s.Clone()
			check(step, c)
			d, _, err := DecodeSnapshot(a.s.AppendSnapshot(nil, a.next))
			if err != nil {
				t.Fatal(err)
			}
			check(step, d)
			c.Expire(a.now+1e12, 1)
			check(step, c)
			d.RemoveBelow(a.next)
			check(step, d)
			if c.OpenTransactions() != a.s.OpenTransactions() || d.OpenTransactions() != a.s.OpenTransactions() {
				t.Fatalf("step %d: Expire or RemoveBelow dropped an open transaction", step)
			}
		}
	}
}

func TestRemoveBelowKeepsOpenTransaction(t *testing.T) {
	a := newAppender(t)
	a.add(txnHdr(1, 0, 0, 2)) // 0-1, stays open
	a.addSeq(2, 0, 0, 1, 1)   // 2
	if n := a.s.RemoveBelow(100); n != 1 {
		t.Fatalf("removed %d, want 1", n)
	}
	if p, ok := a.s.Producer(1); !ok || p.CurrentTxnFirstOffset != 0 {
		t.Fatalf("producer 1 = %+v, %v", p, ok)
	}
	if f, ok := a.s.FirstUnstableOffset(); !ok || f != 0 {
		t.Fatalf("FirstUnstableOffset = %d, %v", f, ok)
	}
}

func TestCheckMarker(t *testing.T) {
	if CodeTransactionCoordinatorFenced != kerr.TransactionCoordinatorFenced.Code ||
		CodeInvalidProducerEpoch != kerr.InvalidProducerEpoch.Code {
		t.Fatal("codes differ from Kafka's")
	}
	a := newAppender(t)
	a.add(txnHdr(1, 2, 0, 1))
	m := batch.Marker{CoordinatorEpoch: 7}
	// No marker seen: any coordinator epoch.
	if err := a.s.CheckMarker(markerHdr(1, 2), batch.Marker{CoordinatorEpoch: 0}); err != nil {
		t.Fatal(err)
	}
	h := markerHdr(1, 2)
	h.BaseOffset = a.next
	a.next++
	if first := a.s.UpdateMarker(h, m, a.now); first != 0 {
		t.Fatalf("UpdateMarker = %d", first)
	}
	if p, _ := a.s.Producer(1); p.CoordinatorEpoch != 7 || p.CurrentTxnFirstOffset != -1 {
		t.Fatalf("producer = %+v", p)
	}
	for _, tt := range []struct {
		epoch int16
		coord int32
		want  error
	}{
		{2, 7, nil},
		{2, 8, nil},
		{3, 8, nil},
		{2, 6, ErrTransactionCoordinatorFenced},
		{1, 8, ErrInvalidProducerEpoch},
	} {
		err := a.s.CheckMarker(markerHdr(1, tt.epoch), batch.Marker{CoordinatorEpoch: tt.coord})
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("epoch %d coordinator %d: %v, want %v", tt.epoch, tt.coord, err, tt.want)
		}
	}
	var e *Error
	if err := a.s.CheckMarker(markerHdr(1, 2), batch.Marker{CoordinatorEpoch: 1}); !errors.As(err, &e) || e.Code() != 52 {
		t.Fatalf("fenced coordinator: %v", err)
	}
	// A snapshot keeps the coordinator epoch, so the fence survives.
	d, _, err := DecodeSnapshot(a.s.AppendSnapshot(nil, a.next))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckMarker(markerHdr(1, 2), batch.Marker{CoordinatorEpoch: 6}); !errors.Is(err, ErrTransactionCoordinatorFenced) {
		t.Fatalf("after snapshot: %v", err)
	}
}

func TestCheckFromCoordinator(t *testing.T) {
	a := newAppender(t)
	h := txnHdr(4, 3, 0, 1)
	for i := range 3 {
		if dup, err := a.s.CheckFrom(h, OriginCoordinator); dup != nil || err != nil {
			t.Fatalf("append %d: dup %v, err %v", i, dup, err)
		}
		h.BaseOffset = a.next
		a.next++
		a.s.Update(h, a.now)
	}
	if dup, _ := a.s.Check(h); dup == nil {
		t.Fatal("a client's batch with the same sequence is not a duplicate")
	}
	if _, err := a.s.CheckFrom(txnHdr(4, 2, 0, 1), OriginCoordinator); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("older epoch: %v", err)
	}
	if dup, err := a.s.CheckFrom(txnHdr(4, 5, 9, 1), OriginCoordinator); dup != nil || err != nil {
		t.Fatalf("newer epoch at sequence 9: dup %v, err %v", dup, err)
	}
	if f, ok := a.s.FirstUnstableOffset(); !ok || f != 0 {
		t.Fatalf("FirstUnstableOffset = %d, %v", f, ok)
	}
	if n := a.s.OpenTransactions(); n != 1 {
		t.Fatalf("OpenTransactions = %d", n)
	}
}

func TestProducers(t *testing.T) {
	a := newAppender(t)
	a.add(txnHdr(9, 1, 0, 2))
	a.addSeq(3, 0, 0, 1, 2)
	got := a.s.Producers()
	if len(got) != 2 || got[0].ID != 3 || got[1].ID != 9 || got[1].CurrentTxnFirstOffset != 0 || got[1].Epoch != 1 ||
		len(got[0].Batches) != 2 {
		t.Fatalf("Producers = %+v", got)
	}
}
