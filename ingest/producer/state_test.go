package producer

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/strata-io/strata/ingest/batch"
)

// hdr returns the header of a batch of n records.
func hdr(pid int64, epoch int16, baseSeq int32, n int32) *batch.Header {
	return &batch.Header{
		Magic:           2,
		ProducerID:      pid,
		ProducerEpoch:   epoch,
		BaseSequence:    baseSeq,
		LastOffsetDelta: n - 1,
		RecordCount:     n,
		MaxTimestamp:    1_000 + int64(baseSeq),
	}
}

// appender appends batches to a State the way the partition log would:
// Check, assign offsets, Update.
type appender struct {
	t    testing.TB
	s    *State
	next int64 // next offset
	now  int64 // broker clock
}

func newAppender(t testing.TB) *appender { return &appender{t: t, s: NewState(), now: 10_000} }

// add appends a batch that must be accepted and returns its metadata.
func (a *appender) add(h *batch.Header) BatchMeta {
	a.t.Helper()
	dup, err := a.s.Check(h)
	if err != nil || dup != nil {
		a.t.Fatalf("append pid %d epoch %d seq %d: dup %v, err %v", h.ProducerID, h.ProducerEpoch, h.BaseSequence, dup, err)
	}
	h.BaseOffset = a.next
	a.next = h.LastOffset() + 1
	a.s.Update(h, a.now)
	return BatchMeta{h.BaseSequence, h.LastSequence(), h.BaseOffset, h.LastOffset(), h.MaxTimestamp}
}

// addSeq appends count batches of n records for pid at epoch, starting at seq.
func (a *appender) addSeq(pid int64, epoch int16, seq int32, n int32, count int) []BatchMeta {
	a.t.Helper()
	var ms []BatchMeta
	for range count {
		ms = append(ms, a.add(hdr(pid, epoch, seq, n)))
		seq = nextSeq(hdr(pid, epoch, seq, n).LastSequence())
	}
	return ms
}

func codeOf(err error) int16 {
	var e *Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func TestCheck(t *testing.T) {
	const pid = 7
	type setup func(a *appender) []BatchMeta
	// six batches of 10 records for pid at epoch 3: sequences 0..59.
	six := func(a *appender) []BatchMeta { return a.addSeq(pid, 3, 0, 10, 6) }
	tests := []struct {
		name     string
		setup    setup
		check    *batch.Header
		wantCode int16
		wantDup  int // index into the setup's batches; -1: no duplicate
	}{
		{"non-idempotent with no state", nil, hdr(-1, -1, -1, 5), 0, -1},
		{"non-idempotent ignores sequences", six, hdr(-1, 3, 999, 5), 0, -1},
		{"unknown producer at sequence 0", nil, hdr(pid, 0, 0, 5), 0, -1},
		{"unknown producer at any sequence", nil, hdr(pid, 0, 4242, 5), 0, -1},
		{"unknown producer at MaxInt32", nil, hdr(pid, 9, math.MaxInt32, 1), 0, -1},
		{"other producer's state does not matter", six, hdr(pid+1, 0, 77, 5), 0, -1},
		{"next in sequence", six, hdr(pid, 3, 60, 10), 0, -1},
		{"next in sequence, other size", six, hdr(pid, 3, 60, 1), 0, -1},
		{"gap", six, hdr(pid, 3, 61, 10), CodeOutOfOrderSequence, -1},
		{"far gap", six, hdr(pid, 3, 1000, 10), CodeOutOfOrderSequence, -1},
		{"duplicate of 5th newest", six, hdr(pid, 3, 10, 10), 0, 1},
		{"duplicate of 4th newest", six, hdr(pid, 3, 20, 10), 0, 2},
		{"duplicate of 3rd newest", six, hdr(pid, 3, 30, 10), 0, 3},
		{"duplicate of 2nd newest", six, hdr(pid, 3, 40, 10), 0, 4},
		{"duplicate of newest", six, hdr(pid, 3, 50, 10), 0, 5},
		{"older than the last 5", six, hdr(pid, 3, 0, 10), CodeOutOfOrderSequence, -1},
		{"same first sequence, other last", six, hdr(pid, 3, 50, 5), CodeOutOfOrderSequence, -1},
		{"overlapping a remembered batch", six, hdr(pid, 3, 45, 10), CodeOutOfOrderSequence, -1},
		{"sequence before the last one", six, hdr(pid, 3, 59, 1), CodeOutOfOrderSequence, -1},
		{"older epoch fenced", six, hdr(pid, 2, 60, 10), CodeInvalidProducerEpoch, -1},
		{"older epoch fenced even for a duplicate range", six, hdr(pid, 2, 50, 10), CodeInvalidProducerEpoch, -1},
		{"epoch bump at sequence 0", six, hdr(pid, 4, 0, 10), 0, -1},
		{"epoch bump at sequence 60", six, hdr(pid, 4, 60, 10), CodeOutOfOrderSequence, -1},
		{"epoch bump with duplicate range of old epoch", six, hdr(pid, 4, 50, 10), CodeOutOfOrderSequence, -1},
		{"negative sequence with producer id", six, hdr(pid, 3, -1, 1), CodeInvalidRecord, -1},
		{"negative sequence for unknown producer", nil, hdr(pid, 0, -5, 1), CodeInvalidRecord, -1},
		{
			"wrap: sequence 0 follows MaxInt32",
			func(a *appender) []BatchMeta { return a.addSeq(pid, 0, math.MaxInt32-9, 10, 1) },
			hdr(pid, 0, 0, 3), 0, -1,
		},
		{
			"wrap: sequence MaxInt32+1 does not exist",
			func(a *appender) []BatchMeta { return a.addSeq(pid, 0, math.MaxInt32-9, 10, 1) },
			hdr(pid, 0, 1, 3), CodeOutOfOrderSequence, -1,
		},
		{
			"wrap: batch spanning MaxInt32 then next",
			func(a *appender) []BatchMeta { return a.addSeq(pid, 0, math.MaxInt32-1, 4, 1) }, // 2147483646..2
			hdr(pid, 0, 2, 1), 0, -1,
		},
		{
			"wrap: duplicate of a batch spanning MaxInt32",
			func(a *appender) []BatchMeta { return a.addSeq(pid, 0, math.MaxInt32-1, 4, 3) },
			hdr(pid, 0, math.MaxInt32-1, 4), 0, 0,
		},
		{
			"bump replaced old batches: retry of new epoch's batch",
			func(a *appender) []BatchMeta {
				a.addSeq(pid, 0, 0, 5, 3)
				return a.addSeq(pid, 1, 0, 5, 1)
			},
			hdr(pid, 1, 0, 5), 0, 0,
		},
		{
			"bump replaced old batches: continue new epoch",
			func(a *appender) []BatchMeta {
				a.addSeq(pid, 0, 0, 5, 3)
				return a.addSeq(pid, 1, 0, 5, 1)
			},
			hdr(pid, 1, 5, 5), 0, -1,
		},
		{
			"bump replaced old batches: old sequence is out of order",
			func(a *appender) []BatchMeta {
				a.addSeq(pid, 0, 0, 5, 3)
				return a.addSeq(pid, 1, 0, 5, 1)
			},
			hdr(pid, 1, 10, 5), CodeOutOfOrderSequence, -1,
		},
		{
			"bump replaced old batches: old epoch fenced",
			func(a *appender) []BatchMeta {
				a.addSeq(pid, 0, 0, 5, 3)
				return a.addSeq(pid, 1, 0, 5, 1)
			},
			hdr(pid, 0, 15, 5), CodeInvalidProducerEpoch, -1,
		},
		{"marker at current epoch", six, markerHdr(pid, 3), 0, -1},
		{"marker at newer epoch", six, markerHdr(pid, 5), 0, -1},
		{"marker at older epoch fenced", six, markerHdr(pid, 2), CodeInvalidProducerEpoch, -1},
		{
			"after a marker only, any sequence",
			func(a *appender) []BatchMeta { a.add(markerHdr(pid, 2)); return nil },
			hdr(pid, 2, 17, 1), 0, -1,
		},
		{
			"after a marker only, older epoch fenced",
			func(a *appender) []BatchMeta { a.add(markerHdr(pid, 2)); return nil },
			hdr(pid, 1, 0, 1), CodeInvalidProducerEpoch, -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAppender(t)
			var ms []BatchMeta
			if tt.setup != nil {
				ms = tt.setup(a)
			}
			before := a.s.AppendSnapshot(nil, 0)
			dup, err := a.s.Check(tt.check)
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("code = %d (err %v), want %d", got, err, tt.wantCode)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Error() == "" {
					t.Fatalf("error %v is not a described *Error", err)
				}
			}
			switch {
			case tt.wantDup < 0 && dup != nil:
				t.Fatalf("dup = %+v, want none", *dup)
			case tt.wantDup >= 0 && dup == nil:
				t.Fatalf("dup = nil, want %+v", ms[tt.wantDup])
			case tt.wantDup >= 0 && *dup != ms[tt.wantDup]:
				t.Fatalf("dup = %+v, want %+v", *dup, ms[tt.wantDup])
			}
			if after := a.s.AppendSnapshot(nil, 0); !slices.Equal(before, after) {
				t.Fatal("Check changed the state")
			}
		})
	}
}

func markerHdr(pid int64, epoch int16) *batch.Header {
	return &batch.Header{
		Magic:         2,
		Attributes:    batch.AttrControl | batch.AttrTransactional,
		ProducerID:    pid,
		ProducerEpoch: epoch,
		BaseSequence:  -1,
		RecordCount:   1,
	}
}

func TestErrorsIs(t *testing.T) {
	a := newAppender(t)
	a.addSeq(1, 0, 0, 1, 1)
	_, err := a.s.Check(hdr(1, 0, 5, 1))
	if !errors.Is(err, ErrOutOfOrderSequence) || errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("errors.Is mismatch for %v", err)
	}
	_, err = a.s.Check(hdr(1, -1, 1, 1))
	if !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("errors.Is mismatch for %v", err)
	}
}

func TestUpdateKeepsLastFive(t *testing.T) {
	a := newAppender(t)
	ms := a.addSeq(3, 0, 0, 2, 8)
	p, ok := a.s.Producer(3)
	if !ok {
		t.Fatal("producer missing")
	}
	if !slices.Equal(p.Batches, ms[3:]) {
		t.Fatalf("batches = %+v, want %+v", p.Batches, ms[3:])
	}
	if p.Epoch != 0 || p.CurrentTxnFirstOffset != -1 || p.CoordinatorEpoch != -1 || p.LastAppendMs != a.now {
		t.Fatalf("producer = %+v", p)
	}
	// A bump drops the old epoch's batches.
	m := a.add(hdr(3, 1, 0, 1))
	p, _ = a.s.Producer(3)
	if p.Epoch != 1 || !slices.Equal(p.Batches, []BatchMeta{m}) {
		t.Fatalf("after bump producer = %+v", p)
	}
	// Non-idempotent batches keep no state.
	a.add(hdr(-1, -1, -1, 3))
	if a.s.Len() != 1 {
		t.Fatalf("Len = %d, want 1", a.s.Len())
	}
}

func TestTransactionFirstOffset(t *testing.T) {
	a := newAppender(t)
	a.addSeq(1, 0, 0, 1, 2) // offsets 0, 1
	h := hdr(1, 0, 2, 1)
	h.Attributes = batch.AttrTransactional
	a.add(h) // offset 2 opens the transaction
	h = hdr(1, 0, 3, 1)
	h.Attributes = batch.AttrTransactional
	a.add(h)
	if p, _ := a.s.Producer(1); p.CurrentTxnFirstOffset != 2 {
		t.Fatalf("CurrentTxnFirstOffset = %d, want 2", p.CurrentTxnFirstOffset)
	}
	// Open transactions do not expire.
	if n := a.s.Expire(a.now+1e9, 1); n != 0 {
		t.Fatalf("expired %d producers with an open transaction", n)
	}
	a.add(markerHdr(1, 0))
	p, _ := a.s.Producer(1)
	if p.CurrentTxnFirstOffset != -1 || len(p.Batches) != 4 {
		t.Fatalf("after marker producer = %+v", p)
	}
	if n := a.s.Expire(a.now+1e9, 1); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
}

func TestExpire(t *testing.T) {
	// Producers 1, 2, 3 last appended at 100, 200, 300.
	build := func(t *testing.T) *State {
		a := newAppender(t)
		for i := range int64(3) {
			a.now = 100 * (i + 1)
			a.addSeq(i+1, 0, 0, 1, 2)
		}
		return a.s
	}
	tests := []struct {
		now, expiration int64
		wantLeft        []int64
	}{
		{300, 1000, []int64{1, 2, 3}},
		{1099, 1000, []int64{1, 2, 3}},
		{1100, 1000, []int64{2, 3}}, // idle exactly expiration: expired, as in Kafka
		{1250, 1000, []int64{3}},
		{1300, 1000, nil},
		{250, 100, []int64{2, 3}},
		{400, 100, nil},
	}
	for _, tt := range tests {
		s := build(t)
		removed := s.Expire(tt.now, tt.expiration)
		var left []int64
		for id := range int64(4) {
			if _, ok := s.Producer(id); ok {
				left = append(left, id)
			}
		}
		if !slices.Equal(left, tt.wantLeft) || removed != 3-len(tt.wantLeft) || s.Len() != len(left) {
			t.Errorf("Expire(%d, %d): removed %d, left %v, want %v", tt.now, tt.expiration, removed, left, tt.wantLeft)
		}
	}
	// An expired producer may continue at any sequence.
	s := build(t)
	s.Expire(1300, 1000)
	if dup, err := s.Check(hdr(1, 0, 999, 1)); dup != nil || err != nil {
		t.Fatalf("after expiry: dup %v, err %v", dup, err)
	}
}

func TestRemoveBelow(t *testing.T) {
	// Producer 1: offsets 0..9, producer 2: 10..19, producer 3: 20..29,
	// producer 4: only a marker (no batches).
	build := func(t *testing.T) *State {
		a := newAppender(t)
		for pid := int64(1); pid <= 3; pid++ {
			a.addSeq(pid, 0, 0, 5, 2)
		}
		a.add(markerHdr(4, 0))
		return a.s
	}
	tests := []struct {
		logStart int64
		wantLeft []int64
	}{
		{0, []int64{1, 2, 3}},
		{9, []int64{1, 2, 3}}, // producer 1's last batch ends at 9
		{10, []int64{2, 3}},
		{25, []int64{3}},
		{29, []int64{3}},
		{30, nil},
	}
	for _, tt := range tests {
		s := build(t)
		removed := s.RemoveBelow(tt.logStart)
		var left []int64
		for id := range int64(5) {
			if _, ok := s.Producer(id); ok {
				left = append(left, id)
			}
		}
		if !slices.Equal(left, tt.wantLeft) || removed != 4-len(tt.wantLeft) {
			t.Errorf("RemoveBelow(%d): removed %d, left %v, want %v", tt.logStart, removed, left, tt.wantLeft)
		}
	}
	// A removed producer may continue at any sequence.
	s := build(t)
	s.RemoveBelow(30)
	if dup, err := s.Check(hdr(2, 0, 12345, 1)); dup != nil || err != nil {
		t.Fatalf("after RemoveBelow: dup %v, err %v", dup, err)
	}
}

func TestCloneIsDeep(t *testing.T) {
	a := newAppender(t)
	a.addSeq(1, 0, 0, 1, 3)
	c := a.s.Clone()
	before := c.AppendSnapshot(nil, 0)
	a.addSeq(1, 0, 3, 1, 3)
	a.addSeq(2, 0, 0, 1, 1)
	if after := c.AppendSnapshot(nil, 0); !slices.Equal(before, after) {
		t.Fatal("appending to the original changed the clone")
	}
	orig := a.s.AppendSnapshot(nil, 0)
	c.Update(hdr(1, 5, 0, 1), 0)
	c.Expire(1e12, 1)
	if got := a.s.AppendSnapshot(nil, 0); !slices.Equal(got, orig) {
		t.Fatal("changing the clone changed the original")
	}
}

// TestModel drives random appends, retries and bumps against a simple model
// of what a well-behaved client expects: every retry of one of the last 5
// batches is a duplicate with its original offsets; nothing is appended twice.
func TestModel(t *testing.T) {
	type prod struct {
		epoch int16
		seq   int32
		sent  []BatchMeta // accepted batches of the current epoch
	}
	a := newAppender(t)
	prods := map[int64]*prod{}
	rnd := uint64(42)
	rand := func(n int) int { // xorshift, deterministic
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return int(rnd % uint64(n))
	}
	for i := range 5000 {
		pid := int64(rand(8))
		p := prods[pid]
		if p == nil {
			p = &prod{}
			prods[pid] = p
		}
		switch r := rand(10); {
		case r < 2 && len(p.sent) > 0: // retry a recent batch
			k := len(p.sent) - 1 - rand(min(len(p.sent), MaxBatches))
			m := p.sent[k]
			dup, err := a.s.Check(hdr(pid, p.epoch, m.FirstSeq, int32(m.LastOffset-m.FirstOffset+1)))
			if err != nil || dup == nil || *dup != m {
				t.Fatalf("step %d: retry of %+v: dup %v, err %v", i, m, dup, err)
			}
		case r == 2: // bump
			p.epoch++
			p.seq = 0
			p.sent = nil
		default:
			n := int32(1 + rand(20))
			m := a.add(hdr(pid, p.epoch, p.seq, n))
			p.sent = append(p.sent, m)
			p.seq = nextSeq(m.LastSeq)
		}
	}
}
