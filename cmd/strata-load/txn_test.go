package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsTxn(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil || !cfg.txn || len(cfg.txnSizes) != 3 || cfg.txnSizes[2] != 10000 || cfg.txnDuration != 3*time.Second ||
		cfg.txnAbortSize != 100 || !cfg.txnConsume {
		t.Errorf("-all config = %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"-txn", "-strata", "/bin/true", "-txn-sizes", "1, 5", "-txn-abort-size", "0"})
	if err != nil || len(cfg.txnSizes) != 2 || cfg.txnSizes[1] != 5 || cfg.txnAbortSize != 0 || cfg.groups {
		t.Errorf("-txn -txn-sizes 1,5: %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{
		{"-txn", "-strata", ""},
		{"-txn", "-strata", "/bin/true", "-txn-sizes", "1,x"},
		{"-txn", "-strata", "/bin/true", "-txn-sizes", "0"},
		{"-txn", "-strata", "/bin/true", "-txn-sizes", "100,100"},
		{"-txn", "-strata", "/bin/true", "-txn-duration", "0s"},
		{"-txn", "-strata", "/bin/true", "-txn-abort-size", "-1"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestTxnTopicNames(t *testing.T) {
	for _, c := range []struct {
		size        int
		abort       bool
		topic, cell string
	}{
		{0, false, "txn-none", "none"},
		{100, false, "txn-100", "100"},
		{100, true, "txn-100-abort", "100, every 2nd aborted"},
	} {
		if got := txnTopic(c.size, c.abort); got != c.topic {
			t.Errorf("txnTopic(%d, %v) = %q, want %q", c.size, c.abort, got, c.topic)
		}
		if got := sizeCell(c.size, c.abort); got != c.cell {
			t.Errorf("sizeCell(%d, %v) = %q, want %q", c.size, c.abort, got, c.cell)
		}
	}
}

func TestWriteTxn(t *testing.T) {
	res := txnResult{partitions: 8, recordSize: 1024, duration: 3 * time.Second,
		nones: []txnRow{{topic: "txn-none", records: 1000, bytes: 1024000, elapsed: time.Second, warmup: 1},
			{topic: "txn-none", records: 3000, bytes: 3072000, elapsed: time.Second, warmup: 1}},
		rows: []txnRow{
			{size: 100, topic: "txn-100", txns: 5, records: 500, bytes: 512000, elapsed: time.Second, parts: 10, noneRef: 2000,
				endTxn:     latencySummary{p50: time.Millisecond, p99: 3 * time.Millisecond, n: 5},
				produceRTT: latencySummary{p50: time.Millisecond / 2, p99: time.Millisecond, n: 7}},
			{size: 100, topic: "txn-100-abort", abort: true, txns: 2, aborted: 2, records: 400, abortedRecords: 200,
				elapsed: time.Second, abortTxn: latencySummary{p50: 2 * time.Millisecond, p99: 2 * time.Millisecond, n: 2},
				err: errors.New("boom")},
		},
		consumes: []txnReadRow{{topic: "txn-100-abort", size: 100, abort: true, committed: true, want: 201,
			st: txnConsumeStats{consumeStats: consumeStats{records: 201, elapsed: time.Second}}}},
	}
	rep := &report{txn: &res}
	md := rep.markdown()
	for _, want := range []string{
		"### Transactions",
		"| none | | | 2000 | 2.0 | 100% |",
		"2 runs: 1000, 3000 records/s; 4000 records in 2.0 s",
		"| 100 | 5 | 5.0 | 500 | 0.5 | 25% of 2000 | 2.0 |  | 1.00 ms | 3.00 ms |",
		"| 100, every 2nd aborted | 2 + 2 aborted | 4.0 | 400 |",
		"EndTransaction(TryAbort) p50 2.00 ms",
		"0 AddPartitionsToTxn, 7 Produce requests (RTT p50 0.50 ms, p99 1.00 ms), 0 batches",
		"FAILED: boom",
		"| txn-100-abort | 100, every 2nd aborted | read_committed | 201 | 0 | 201 |",
		"txn: txn-100-abort: boom",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestTxnPhase runs the whole phase, briefly, against $STRATA_BIN.
func TestTxnPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the broker for about 10 s")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN not set")
	}
	cfg := config{strataBin: bin, partitions: 4, recordSize: 100, txnSizes: []int{1, 50},
		txnDuration: 500 * time.Millisecond, txnAbortSize: 10, txnConsume: true}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := runTxn(ctx, cfg, t.TempDir())
	if errs := res.errs(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(res.rows) != 3 || len(res.nones) != 4 {
		t.Fatalf("%d transactional and %d non-transactional runs, want 3 and 4", len(res.rows), len(res.nones))
	}
	for i, r := range res.nones {
		if r.records <= 0 || r.warmup != 1 || r.produceRTT.n == 0 || r.batches <= 0 || r.batches > r.records {
			t.Errorf("non-transactional run %d: %+v", i+1, r)
		}
	}
	for i, size := range []int{1, 50, 10} {
		r := res.rows[i]
		abort := i == 2
		if want := (res.nones[i].recps() + res.nones[i+1].recps()) / 2; r.noneRef != want {
			t.Errorf("size %d: compared with %.0f records/s, want %.0f", size, r.noneRef, want)
		}
		if r.size != size || r.abort != abort || r.txns <= 0 || r.warmup != 1 {
			t.Errorf("row %d: size %d, abort %v, %d transactions", i, r.size, r.abort, r.txns)
			continue
		}
		if r.records != (r.txns+r.aborted)*int64(size) || r.bytes != r.records*100 {
			t.Errorf("size %d: %d records, %d bytes in %d+%d transactions", size, r.records, r.bytes, r.txns, r.aborted)
		}
		if r.endTxn.n != int(r.txns) || r.endTxn.p50 <= 0 || r.endTxn.p99 < r.endTxn.p50 || r.flush.n != int(r.txns+r.aborted) {
			t.Errorf("size %d: EndTransaction %+v, flush %+v", size, r.endTxn, r.flush)
		}
		if r.endTxnReqs < r.txns+r.aborted || r.endTxnRTT.n == 0 || r.addPartsReqs < r.txns+r.aborted ||
			r.produceRTT.n == 0 {
			t.Errorf("size %d: %d EndTxn, %d AddPartitionsToTxn requests, RTTs %+v", size, r.endTxnReqs,
				r.addPartsReqs, r.endTxnRTT)
		}
		if r.batches < r.txns+r.aborted || r.batches > r.records {
			t.Errorf("size %d: %d batches for %d records in %d transactions", size, r.batches, r.records, r.txns+r.aborted)
		}
		if parts := float64(r.parts) / float64(r.txns+r.aborted); parts < 1 || parts > 4 || size == 1 && parts != 1 {
			t.Errorf("size %d: %.2f partitions per transaction", size, parts)
		}
		switch {
		case abort && (r.aborted != r.txns || r.abortedRecords != r.aborted*10 || r.abortTxn.n != int(r.aborted)):
			t.Errorf("abort run: %d committed, %d aborted (%d records), abort latencies %d", r.txns, r.aborted,
				r.abortedRecords, r.abortTxn.n)
		case !abort && (r.aborted != 0 || r.abortedRecords != 0):
			t.Errorf("size %d: %d aborted", size, r.aborted)
		}
	}
	if len(res.consumes) != 8 {
		t.Fatalf("%d consume rows, want 8", len(res.consumes))
	}
	abortRow := res.rows[2]
	if none := res.noneTotal(); res.consumes[0].want != none.records+4 {
		t.Errorf("consume of %s wants %d records, the 4 runs wrote %d and 4 warm-ups", none.topic, res.consumes[0].want,
			none.records)
	}
	for _, c := range res.consumes {
		if c.st.records != c.want || c.st.recps() <= 0 {
			t.Errorf("%s %s: %d of %d records", c.topic, c.isolation(), c.st.records, c.want)
		}
		if c.topic == abortRow.topic {
			want := abortRow.records + 1
			wantAborted := abortRow.abortedRecords
			if c.committed {
				want, wantAborted = want-abortRow.abortedRecords, 0
			}
			if c.want != want || c.st.aborted != wantAborted || wantAborted == 0 && !c.committed {
				t.Errorf("%s %s: want %d (%d aborted), got %d (%d aborted)", c.topic, c.isolation(), want,
					wantAborted, c.st.records, c.st.aborted)
			}
		}
	}
	md := (&report{cfg: cfg, txn: &res}).markdown()
	for _, want := range []string{"### Transactions", "| none |", "| 50 |", "| 10, every 2nd aborted |",
		"| txn-10-abort | 10, every 2nd aborted | read_committed |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "FAILED") {
		t.Errorf("report has a failure:\n%s", md)
	}
}
