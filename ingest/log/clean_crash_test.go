package log

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/strata-io/strata/ingest/log/vfs"
)

// mutating reports whether op changes the file system: the crash points.
func mutating(op vfs.Op) bool {
	switch op {
	case vfs.OpCreate, vfs.OpWrite, vfs.OpSync, vfs.OpTruncate, vfs.OpRemove, vfs.OpRename, vfs.OpSyncDir:
		return true
	}
	return false
}

// crashAfter makes every mutating operation after the first n fail, as if
// the machine stopped there; it returns a function reporting how many ran.
func crashAfter(fsys *vfs.CrashFS, n int) func() int {
	var count int // the injector runs under the CrashFS lock
	fsys.InjectError(func(op vfs.Op, _ string) error {
		if !mutating(op) {
			return nil
		}
		count++
		if count > n {
			return syscall.EIO
		}
		return nil
	})
	return func() int {
		fsys.InjectError(nil)
		return count
	}
}

func segmentBaseList(l *Log) []int64 {
	var out []int64
	for _, s := range l.Segments() {
		out = append(out, s.Base)
	}
	return out
}

// pendingSwap reports whether the cleaner checkpoint in fsys names groups.
func pendingSwap(t *testing.T, fsys vfs.FS) bool {
	t.Helper()
	b, err := readFile(fsys, filepath.Join(cleanDir, cleanerCheckpoint))
	if err != nil {
		return false
	}
	_, groups, err := decodeCleanerCheckpoint(b)
	if err != nil {
		t.Fatalf("cleaner checkpoint: %v", err)
	}
	return len(groups) > 0
}

// TestCleanCrashAtEveryStep stops the machine before each mutating
// operation of a cleaner pass (every write, fsync, rename, removal and
// directory sync), then reopens what a process kill and what a power loss
// leave: the log holds either the old or the new segments for the whole
// range, never a missing or doubled offset; producer duplicate detection
// works; no .cleaned file is left; and a pass on the recovered log gives
// the cleaned records. Where the crash left a committed swap unfinished,
// recovery itself is crashed at each of its steps too.
func TestCleanCrashAtEveryStep(t *testing.T) {
	const batches, keys, seed = 150, 30, 11
	opts := func(l *Log) CleanOptions {
		return CleanOptions{From: 0, To: activeBase(l), SegmentBytes: 12 << 10} // groups of about three
	}
	c := fillCleanLog(t, vfs.NewCrashFS(), batches, keys, seed)
	to := activeBase(c.l)
	oldRecs, newRecs := c.model.recs, c.model.survivors(to, false)
	oldBases := segmentBaseList(c.l)
	done := crashAfter(c.fsys, 1<<30)
	res, err := c.l.Clean(opts(c.l))
	steps := done()
	if err != nil {
		t.Fatal(err)
	}
	newBases := segmentBaseList(c.l)
	c.l.Close()
	if res.SegmentsOut >= res.SegmentsIn || len(newBases) >= len(oldBases) {
		t.Fatalf("no merge to crash in: %+v", res)
	}
	t.Logf("%d mutating steps; segments %d -> %d", steps, len(oldBases), len(newBases))

	// check opens a crashed copy and says which state it holds.
	check := func(name string, fsys *vfs.CrashFS) (isNew bool) {
		t.Helper()
		r, err := Open(cleanDir, cleanCfg, Options{FS: fsys, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("%s: Open: %v", name, err)
		}
		defer r.Close()
		got := readRecords(t, r)
		switch {
		case slices.Equal(got, oldRecs):
			if b := segmentBaseList(r); !slices.Equal(b, oldBases) {
				t.Fatalf("%s: old records in segments %v, want %v", name, b, oldBases)
			}
		case slices.Equal(got, newRecs):
			isNew = true
			if b := segmentBaseList(r); !slices.Equal(b, newBases) {
				t.Fatalf("%s: new records in segments %v, want %v", name, b, newBases)
			}
			if r.CleanerPoint() != to {
				t.Fatalf("%s: cleaner point %d, want %d", name, r.CleanerPoint(), to)
			}
		default:
			diffRecs(t, name+" (neither old nor new)", got, newRecs)
		}
		if f := cleanedFiles(t, fsys, cleanDir); len(f) > 0 {
			t.Fatalf("%s: leftover files %v", name, f)
		}
		if pendingSwap(t, fsys) {
			t.Fatalf("%s: recovery left the swap pending", name)
		}
		c.checkRetryIsDuplicate(t, r)
		if !isNew {
			if _, err := r.Clean(opts(r)); err != nil {
				t.Fatalf("%s: Clean after recovery: %v", name, err)
			}
			diffRecs(t, name+": cleaned after recovery", readRecords(t, r), newRecs)
		}
		return isNew
	}

	rng := rand.New(rand.NewPCG(seed, 5))
	var sawOld, sawNew, sawPending int
	for k := 0; k <= steps; k++ {
		c := fillCleanLog(t, vfs.NewCrashFS(), batches, keys, seed)
		done := crashAfter(c.fsys, k)
		_, err := c.l.Clean(opts(c.l))
		if ran := done(); k < steps && (err == nil || ran <= k) {
			t.Fatalf("step %d: the pass went on past the failure: %v after %d steps", k, err, ran)
		}
		killed, lost := c.fsys.KillClone(), c.fsys.CrashClone(rng)
		c.l.Close() // the log failed or is fine; the clones are what counts

		if pendingSwap(t, killed) {
			sawPending++
			// Crash recovery itself at each of its steps.
			for j := 0; ; j++ {
				again := killed.KillClone()
				done := crashAfter(again, j)
				r, err := Open(cleanDir, cleanCfg, Options{FS: again, Logger: quietLogger()})
				ran := done()
				if err == nil {
					r.Close()
				}
				if ran <= j { // recovery needed no more steps
					break
				}
				if !check(fmt.Sprintf("step %d, recovery step %d", k, j), again.KillClone()) {
					t.Fatalf("step %d, recovery step %d: a committed swap came back old", k, j)
				}
			}
		}
		for _, cl := range []struct {
			name string
			fsys *vfs.CrashFS
		}{{"kill", killed}, {"power loss", lost}} {
			if check(fmt.Sprintf("step %d, %s", k, cl.name), cl.fsys) {
				sawNew++
			} else {
				sawOld++
			}
		}
	}
	if sawOld == 0 || sawNew == 0 || sawPending == 0 {
		t.Fatalf("states seen: %d old, %d new, %d with a pending swap", sawOld, sawNew, sawPending)
	}
}

// TestCleanCommitFailureIsSticky fails the commit of a pass and checks that
// the log refuses writes, keeps serving the old records, and recovers a
// consistent state.
func TestCleanCommitFailureIsSticky(t *testing.T) {
	fsys := vfs.NewCrashFS()
	c := fillCleanLog(t, fsys, 150, 30, 12)
	to := activeBase(c.l)
	fsys.InjectError(func(op vfs.Op, path string) error {
		if op == vfs.OpRename && filepath.Base(path) == cleanerCheckpoint {
			return syscall.EIO
		}
		return nil
	})
	if _, err := c.l.Clean(CleanOptions{From: 0, To: to, SegmentBytes: 12 << 10}); !errors.Is(err, ErrStorage) {
		t.Fatalf("failed commit: %v, want ErrStorage", err)
	}
	fsys.InjectError(nil)
	if _, err := c.l.Append(simpleBatch(1, 1, 1), AppendInfo{}); !errors.Is(err, ErrStorage) {
		t.Fatalf("append after a failed commit: %v", err)
	}
	diffRecs(t, "reads after a failed commit", readRecords(t, c.l), c.model.recs)
	c.l.Close()
	r := mustOpen(t, fsys, cleanDir, cleanCfg, Options{})
	defer r.Close()
	diffRecs(t, "after reopen", readRecords(t, r), c.model.recs)
	if f := cleanedFiles(t, fsys, cleanDir); len(f) > 0 {
		t.Fatalf("leftover files %v", f)
	}
}
