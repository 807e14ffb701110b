package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCrashSIGKILLDuringCompaction kills the strata process nine times (30
// with STRATA_SOAK) while an idempotent producer writes updates and deletes
// over 1000 keys to a compacted topic and the cleaner runs back to back
// (10 ms backoff, 32 KiB segments, dirty ratio 0.01, an I/O limit so that a
// pass takes tens of milliseconds). Each round waits for new records and
// two passes, then kills in turn as soon as a pass has written `.cleaned`
// files (rewrite), as soon as one has committed its swap (the checkpoint
// names groups), or at a random moment. Every restart must come up without
// errors; at the end the latest acknowledged record of every key is at its
// offset with its value, offsets strictly increase, and the cleaner still
// compacts the topic fully.
func TestCrashSIGKILLDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	flags := []string{"--log-cleaner-backoff", "10ms", "--log-cleaner-io-max-bytes-per-second", "4000000"}
	p := startProc(t, dir, port, flags...)
	const (
		topic = "compact-crash"
		keys  = 1000
	)
	kills := 9 // three of each kind
	if os.Getenv("STRATA_SOAK") != "" {
		kills = 30
	}
	ctx := ctxT(t, 2*time.Minute)
	cfg := map[string]*string{
		"cleanup.policy": ptr("compact"), "segment.bytes": ptr("32768"),
		"min.cleanable.dirty.ratio": ptr("0.01"), "delete.retention.ms": ptr("86400000"),
	}
	if r, err := newAdmin(t, p.addr).CreateTopic(ctx, 1, 1, cfg, topic); err != nil || r.Err != nil {
		t.Fatalf("create: %v %v", err, r.Err)
	}
	cl := newClient(t, p.addr,
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(2*time.Minute),
		kgo.RetryTimeout(2*time.Minute),
		kgo.MaxBufferedRecords(2000),
	)

	// The producer runs through the kills; the latest acknowledged record
	// of each key is what must survive.
	var (
		mu     sync.Mutex
		latest = map[string]*kgo.Record{}
		acked  int
		errs   []error
	)
	stop := make(chan struct{})
	produced := make(chan int, 1)
	go func() {
		rng := rand.New(rand.NewPCG(7, 7))
		i := 0
		defer func() { produced <- i }()
		for ; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // at most ~50k records/s
			}
			k := fmt.Sprintf("k%05d", rng.IntN(keys))
			var v []byte
			if rng.IntN(10) > 0 { // one in ten is a delete (tombstone)
				v = fmt.Appendf(nil, "%s=%d;%s", k, i, strings.Repeat("x", 40))
			}
			cl.Produce(ctx, &kgo.Record{Key: []byte(k), Value: v}, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				acked++
				if old := latest[k]; old == nil || r.Offset > old.Offset {
					latest[k] = r
				}
			})
		}
	}()
	ackedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return acked
	}

	partDir := filepath.Join(dir, "logs", topic+"-0.*")
	cleanedFiles := func() bool { m, _ := filepath.Glob(filepath.Join(partDir, "*.cleaned")); return len(m) > 0 }
	// committed reports whether the cleaner checkpoint names groups, i.e.
	// a pass is between its commit point and the end of its swap: the
	// checkpoint without groups is 22 bytes (docs/local-log.md).
	committed := func() bool {
		m, _ := filepath.Glob(filepath.Join(partDir, "cleaner-checkpoint"))
		if len(m) == 0 {
			return false
		}
		fi, err := os.Stat(m[0])
		return err == nil && fi.Size() > 22
	}
	inRewrite, inSwap, finishedSwaps, leftovers := 0, 0, 0, 0
	for round := range kills {
		start, n := time.Now(), ackedNow()
		for deadline := time.Now().Add(30 * time.Second); ackedNow() < n+3000; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: producer made no progress: %d acknowledged\n%s", round, ackedNow(), p.logs())
			}
		}
		// A pass that saw some of the new data, then the kill: as soon as
		// a pass has written .cleaned files (rewrite), as soon as one has
		// committed its swap, or at a random moment.
		waitLog(t, p, "msg=compacted", 2, 20*time.Second)
		mode := [...]string{"rewrite", "swap", "random"}[round%3]
		switch deadline := time.Now().Add(5 * time.Second); mode {
		case "random":
			time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		case "rewrite":
			for !cleanedFiles() && time.Now().Before(deadline) {
				time.Sleep(200 * time.Microsecond)
			}
		case "swap":
			for !committed() && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
		}
		p.kill()
		rewriting, swapping := cleanedFiles(), committed()
		if swapping {
			inSwap++
		} else if rewriting {
			inRewrite++
		}
		checkCleanLog(t, p)
		passes := strings.Count(p.logs(), "msg=compacted")
		p = startProc(t, dir, port, flags...)
		// Recovery's own reports are logged before the listener opens.
		swaps := strings.Count(p.logs(), "finished an interrupted cleaner swap")
		finishedSwaps += swaps
		leftovers += strings.Count(p.logs(), "removing leftover file of an uncommitted cleaner pass")
		t.Logf("round %d (%s): killed after %d passes, %v; .cleaned files: %v, committed swap: %v, swaps finished at restart: %d; %d records acknowledged before the round, %d now",
			round, mode, passes, time.Since(start).Round(time.Millisecond), rewriting, swapping, swaps, n, ackedNow())
	}
	waitLog(t, p, "msg=compacted", 1, 20*time.Second)
	close(stop)
	total := <-produced
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	mu.Lock()
	failed := errs
	mu.Unlock()
	if len(failed) > 0 {
		t.Fatalf("%d produce errors while the broker restarted, first: %v", len(failed), failed[0])
	}
	t.Logf("%d SIGKILLs: %d during a rewrite, %d during a committed swap; recovery finished %d swaps and removed %d leftover files; %d records produced and acknowledged over %d keys",
		kills, inRewrite, inSwap, finishedSwaps, leftovers, total, len(latest))

	// Fillers with unique keys push the last updates out of the active
	// segment, then: nothing acknowledged is lost, right now and once the
	// cleaner has caught up.
	for b := range 4 { // one batch per segment, each over segment.bytes
		var fill []*kgo.Record
		for i := range 300 {
			v := make([]byte, 100) // random: producer compression must not shrink it
			for j := range v {
				v[j] = byte(rand.Uint32())
			}
			fill = append(fill, &kgo.Record{Key: fmt.Appendf(nil, "f%d-%03d", b, i), Value: v})
		}
		produceSync(t, ctx, cl, fill)
	}
	checkLatestPresent(t, readCompacted(t, p.addr, topic), latest)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got := readCompacted(t, p.addr, topic)
		checkLatestPresent(t, got, latest)
		if compactedView(t, got, latest, true) {
			break
		}
		if time.Now().After(deadline) {
			ents, _ := filepath.Glob(filepath.Join(partDir, "*"))
			for i := range ents {
				ents[i] = filepath.Base(ents[i])
			}
			t.Logf("files: %v\nlog:\n%s", ents, p.logs())
			t.Fatalf("not fully compacted 20 s after the last restart: %d records of update keys for %d keys", len(got), len(latest))
		}
	}
	checkCleanLog(t, p)
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the process has logged n lines containing s.
func waitLog(t *testing.T, p *proc, s string, n int, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); strings.Count(p.logs(), s) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the broker's log within %v:\n%s", s, d, p.logs())
		}
	}
}

// checkCleanLog fails on errors and failed compaction passes in the
// process's log (torn tails truncated at recovery are expected warnings).
func checkCleanLog(t *testing.T, p *proc) {
	t.Helper()
	for _, line := range strings.Split(p.logs(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "msg=compaction ") || strings.Contains(line, "panic") {
			t.Fatalf("broker logged: %s\n%s", line, p.logs())
		}
	}
}

// checkLatestPresent fails unless every key's latest acknowledged record is
// among the records read, at its offset and with its value (tombstones
// included: delete.retention.ms has not passed).
func checkLatestPresent(t *testing.T, got []*kgo.Record, latest map[string]*kgo.Record) {
	t.Helper()
	at := make(map[int64]*kgo.Record, len(got))
	for _, r := range got {
		at[r.Offset] = r
	}
	lost := 0
	var first string
	for k, l := range latest {
		r := at[l.Offset]
		if r == nil || string(r.Key) != k || string(r.Value) != string(l.Value) || (r.Value == nil) != (l.Value == nil) {
			if lost++; lost == 1 {
				first = fmt.Sprintf("key %s offset %d value %q", k, l.Offset, l.Value)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d keys lost their latest acknowledged record, e.g. %s", lost, len(latest), first)
	}
}
