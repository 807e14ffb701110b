package vfs

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
)

func readAllFile(t *testing.T, fsys FS, name string) string {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	b := make([]byte, fi.Size())
	if n, err := f.ReadAt(b, 0); n < len(b) && err != io.EOF {
		t.Fatal(err)
	}
	return string(b)
}

func TestCrashCloneKeepsOnlySynced(t *testing.T) {
	c := NewCrashFS()
	c.MkdirAll("/d", 0o755)
	f, _ := c.Create("/d/a")
	f.Write([]byte("hello"))
	f.Sync()
	f.Write([]byte(" world"))
	// Entry not synced yet: the file is lost.
	if _, err := c.CrashClone(nil).Stat("/d/a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unsynced entry survived: %v", err)
	}
	c.SyncDir("/d")
	if got := readAllFile(t, c.CrashClone(nil), "/d/a"); got != "hello" {
		t.Fatalf("clone has %q, want synced %q", got, "hello")
	}
	// Torn tails keep a prefix of the unsynced bytes.
	rng := rand.New(rand.NewPCG(1, 1))
	seen := map[int]bool{}
	for range 50 {
		got := readAllFile(t, c.CrashClone(rng), "/d/a")
		if got != "hello world"[:len(got)] || len(got) < 5 {
			t.Fatalf("torn clone %q is not a prefix extension", got)
		}
		seen[len(got)] = true
	}
	if len(seen) < 3 {
		t.Fatalf("torn lengths %v: not random", seen)
	}
	// Rename is durable only after SyncDir.
	g, _ := c.Create("/d/b.tmp")
	g.Write([]byte("new"))
	g.Sync()
	g.Close()
	c.Rename("/d/b.tmp", "/d/a")
	if got := readAllFile(t, c.CrashClone(nil), "/d/a"); got != "hello" {
		t.Fatalf("unsynced rename visible: %q", got)
	}
	c.SyncDir("/d")
	if got := readAllFile(t, c.CrashClone(nil), "/d/a"); got != "new" {
		t.Fatalf("synced rename lost: %q", got)
	}
	f.Close()
	if c.OpenFiles() != 0 {
		t.Fatalf("%d files open", c.OpenFiles())
	}
}

func TestInjectError(t *testing.T) {
	c := NewCrashFS()
	c.MkdirAll("/d", 0o755)
	f, _ := c.Create("/d/a")
	c.InjectError(func(op Op, path string) error {
		if op == OpWrite && c.mu.written >= 4 {
			return syscall.ENOSPC
		}
		return nil
	})
	if _, err := f.Write([]byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("e")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("got %v, want ENOSPC", err)
	}
	if c.BytesWritten() != 4 {
		t.Fatalf("wrote %d", c.BytesWritten())
	}
}

func TestOSFS(t *testing.T) {
	dir := t.TempDir()
	f, err := Default.Create(dir + "/x")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("abc"))
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := Default.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if n, err := Default.FreeSpace(dir); err != nil || n <= 0 {
		t.Fatalf("FreeSpace = %d, %v", n, err)
	}
	names, _ := Default.ReadDir(dir)
	if len(names) != 1 || names[0] != "x" {
		t.Fatalf("ReadDir = %v", names)
	}
}

func TestKillCloneKeepsWritesAndSyncState(t *testing.T) {
	c := NewCrashFS()
	c.MkdirAll("/d", 0o755)
	f, _ := c.Create("/d/a")
	f.Write([]byte("hello"))
	f.Sync()
	c.SyncDir("/d")
	f.Write([]byte(" world"))
	g, _ := c.Create("/d/b") // entry never synced
	g.Write([]byte("b"))
	k := c.KillClone()
	if got := readAllFile(t, k, "/d/a"); got != "hello world" {
		t.Fatalf("kill clone has %q, want every write", got)
	}
	if got := readAllFile(t, k, "/d/b"); got != "b" {
		t.Fatalf("kill clone lost an unsynced entry: %q", got)
	}
	// A power loss after the restart still loses what was never synced.
	p := k.CrashClone(nil)
	if got := readAllFile(t, p, "/d/a"); got != "hello" {
		t.Fatalf("power loss after kill: %q, want synced %q", got, "hello")
	}
	if _, err := p.Stat("/d/b"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unsynced entry survived the power loss: %v", err)
	}
	// The clone is independent of the original.
	f.Write([]byte("!"))
	if got := readAllFile(t, k, "/d/a"); got != "hello world" {
		t.Fatalf("clone changed with the original: %q", got)
	}
	f.Close()
	g.Close()
}
