package log

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// residentPages reports, for each page of the file at path, whether it is in
// the page cache.
func residentPages(t *testing.T, path string) []bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Munmap(mem) }()
	page := os.Getpagesize()
	vec := make([]byte, (len(mem)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

// residentShare is the share of pages in [from, to) bytes that are cached.
func residentShare(res []bool, from, to int64) float64 {
	page := int64(os.Getpagesize())
	n, in := 0, 0
	for i := from / page; i < to/page && i < int64(len(res)); i++ {
		n++
		if res[i] {
			in++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(in) / float64(n)
}

// A follower's log keeps only the newest ReplicaCacheKeep durable bytes of
// its active segment in the page cache (plus what is not durable yet); what
// it dropped still reads back from the disk, and a leader's log keeps all.
func TestAppendReplicaDropsDurableCache(t *testing.T) {
	dir := t.TempDir()
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || sfs.Type == unix.TMPFS_MAGIC {
		t.Skip("page cache advice needs a disk-backed file system")
	}
	cfg := Config{SegmentBytes: 256 << 20}
	follower := mustOpen(t, vfs.Default, filepath.Join(dir, "follower"), cfg, Options{})
	defer follower.Close()
	leader := mustOpen(t, vfs.Default, filepath.Join(dir, "leader"), cfg, Options{})
	defer leader.Close()

	const rounds, perRound = 12, 1 << 20 // 12 fetches of ~1 MiB
	var want [][]byte
	for i := range rounds {
		b := makeBatch(batchSpec{records: 16, valSize: perRound / 16, ts: 1000, pid: -1, seq: -1, fill: byte(i)})
		mustAppend(t, leader, bytes.Clone(b))
		batch.SetBaseOffset(b, follower.EndOffset())
		batch.SetLeaderEpoch(b, 1)
		if _, err := follower.AppendReplica(b); err != nil {
			t.Fatalf("AppendReplica %d: %v", i, err)
		}
		waitDurable(t, follower, follower.EndOffset()-1) // as the fetcher does
		want = append(want, b)
	}
	waitDurable(t, leader, leader.EndOffset()-1)

	segs := follower.Segments()
	path := filepath.Join(dir, "follower", fileName(segs[len(segs)-1].Base, logSuffix))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The last append dropped what the rounds before it made durable, all
	// but the newest ReplicaCacheKeep bytes; the last round is cached.
	last := st.Size() - int64(len(want[rounds-1]))
	dropped := last - ReplicaCacheKeep - 2*int64(os.Getpagesize())
	res := residentPages(t, path)
	if got := residentShare(res, 0, dropped); got > 0.05 {
		t.Errorf("%.0f%% of the follower's first %d durable bytes are still cached, want them dropped", got*100, dropped)
	}
	if got := residentShare(res, last, st.Size()); got < 0.9 {
		t.Errorf("only %.0f%% of the follower's newest (last appended) bytes are cached", got*100)
	}
	lsegs := leader.Segments()
	lpath := filepath.Join(dir, "leader", fileName(lsegs[len(lsegs)-1].Base, logSuffix))
	if got := residentShare(residentPages(t, lpath), 0, dropped); got < 0.9 {
		t.Errorf("only %.0f%% of the leader's log is cached: Append must not drop it", got*100)
	}

	// Dropped pages read back from the disk.
	got := readAll(t, follower)
	if len(got) != len(want) {
		t.Fatalf("read %d batches, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("batch %d differs after its cache was dropped", i)
		}
	}
}
