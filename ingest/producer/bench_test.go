package producer

import (
	"testing"
)

// BenchmarkCheckUpdate measures the per-batch cost on the append path: one
// Check and one Update for an in-sequence batch, over 1000 producers.
func BenchmarkCheckUpdate(b *testing.B) {
	const producers = 1000
	s := NewState()
	seqs := make([]int32, producers)
	h := hdr(0, 0, 0, 10)
	var offset int64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pid := i % producers
		h.ProducerID = int64(pid)
		h.BaseSequence = seqs[pid]
		if dup, err := s.Check(h); err != nil || dup != nil {
			b.Fatalf("dup %v, err %v", dup, err)
		}
		h.BaseOffset = offset
		s.Update(h, int64(i))
		offset += 10
		seqs[pid] = nextSeq(h.LastSequence())
	}
}

// BenchmarkSnapshot measures encoding and decoding a snapshot of 1000
// producers with full histories.
func BenchmarkSnapshot(b *testing.B) {
	s := NewState()
	for pid := range int64(1000) {
		for seq := int32(0); seq < 50; seq += 10 {
			s.Update(hdr(pid, 0, seq, 10), 0)
		}
	}
	buf := s.AppendSnapshot(nil, 0)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendSnapshot(buf[:0], 0)
		if _, _, err := DecodeSnapshot(buf); err != nil {
			b.Fatal(err)
		}
	}
}
