package vfs

import (
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Op names a file-system operation for error injection.
type Op int

// Operations seen by an injector.
const (
	OpCreate Op = iota // Create, or OpenFile with O_CREATE of a new file
	OpOpen
	OpRead
	OpWrite
	OpSync // Sync and Datasync
	OpTruncate
	OpRemove
	OpRename
	OpSyncDir
	OpReadDir
	OpStat
)

var opNames = [...]string{"create", "open", "read", "write", "sync", "truncate", "remove", "rename", "syncdir", "readdir", "stat"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op?"
}

// CrashFS is an in-memory FS that remembers, per file, which bytes were
// synced and, per directory, which entries were synced, so that CrashClone
// can produce what a power loss would leave behind. Directories themselves
// (MkdirAll) are durable at once. It is safe for concurrent use.
type CrashFS struct {
	mu struct {
		sync.Mutex
		dirs      map[string]*memDir
		inject    func(op Op, path string) error
		free      int64
		written   int64
		openFiles int
	}
}

type memDir struct {
	cur    map[string]*memNode
	synced map[string]*memNode
}

type memNode struct {
	data   []byte
	synced []byte // contents as of the last Sync/Datasync
	mtime  time.Time
}

// NewCrashFS returns an empty CrashFS with effectively unlimited free space.
func NewCrashFS() *CrashFS {
	c := &CrashFS{}
	c.mu.dirs = map[string]*memDir{}
	c.mu.free = 1 << 50
	return c
}

// InjectError installs fn, called before every operation with the file or
// directory path; a non-nil result fails the operation with that error. A
// failed Write writes nothing. nil removes the injector.
func (c *CrashFS) InjectError(fn func(op Op, path string) error) {
	c.mu.Lock()
	c.mu.inject = fn
	c.mu.Unlock()
}

// SetFreeSpace sets what FreeSpace reports.
func (c *CrashFS) SetFreeSpace(n int64) {
	c.mu.Lock()
	c.mu.free = n
	c.mu.Unlock()
}

// BytesWritten is the total number of bytes written through Write so far.
func (c *CrashFS) BytesWritten() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.written
}

// OpenFiles is the number of File handles currently open.
func (c *CrashFS) OpenFiles() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.openFiles
}

// CrashClone returns a new CrashFS holding only what was synced: directory
// entries as of each directory's last SyncDir and file contents as of each
// file's last sync. If rng is non-nil, a file whose unsynced contents extend
// its synced contents keeps a random prefix of the extension, as a torn write
// would. The clone has no injector and all its contents count as synced.
func (c *CrashFS) CrashClone(rng *rand.Rand) *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := NewCrashFS()
	n.mu.free = c.mu.free
	for path, d := range c.mu.dirs {
		nd := &memDir{cur: map[string]*memNode{}, synced: map[string]*memNode{}}
		for name, node := range d.synced {
			data := slices.Clone(node.synced)
			if rng != nil && len(node.data) > len(node.synced) && string(node.data[:len(node.synced)]) == string(node.synced) {
				extra := rng.IntN(len(node.data) - len(node.synced) + 1)
				data = append(data, node.data[len(node.synced):len(node.synced)+extra]...)
			}
			nn := &memNode{data: data, synced: slices.Clone(data), mtime: node.mtime}
			nd.cur[name] = nn
			nd.synced[name] = nn
		}
		n.mu.dirs[path] = nd
	}
	return n
}

// KillClone returns a new CrashFS as a process kill (SIGKILL) would leave
// this one: every write survives (it is in the page cache), and what was
// synced stays synced, so that a later CrashClone of the clone models a power
// loss after the restart. The clone has no injector.
func (c *CrashFS) KillClone() *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := NewCrashFS()
	n.mu.free = c.mu.free
	nodes := map[*memNode]*memNode{} // keeps a node shared by cur and synced shared
	clone := func(node *memNode) *memNode {
		if nn := nodes[node]; nn != nil {
			return nn
		}
		nn := &memNode{data: slices.Clone(node.data), synced: slices.Clone(node.synced), mtime: node.mtime}
		nodes[node] = nn
		return nn
	}
	for path, d := range c.mu.dirs {
		nd := &memDir{cur: map[string]*memNode{}, synced: map[string]*memNode{}}
		for name, node := range d.cur {
			nd.cur[name] = clone(node)
		}
		for name, node := range d.synced {
			nd.synced[name] = clone(node)
		}
		n.mu.dirs[path] = nd
	}
	return n
}

func (c *CrashFS) checkLocked(op Op, path string) error {
	if c.mu.inject == nil {
		return nil
	}
	if err := c.mu.inject(op, path); err != nil {
		return &os.PathError{Op: op.String(), Path: path, Err: err}
	}
	return nil
}

func (c *CrashFS) lookupLocked(name string) (*memDir, string, *memNode, error) {
	name = filepath.Clean(name)
	d := c.mu.dirs[filepath.Dir(name)]
	if d == nil {
		return nil, "", nil, fs.ErrNotExist
	}
	base := filepath.Base(name)
	return d, base, d.cur[base], nil
}

// Create implements FS.
func (c *CrashFS) Create(name string) (File, error) {
	return c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Open implements FS.
func (c *CrashFS) Open(name string) (File, error) { return c.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile implements FS.
func (c *CrashFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, base, node, err := c.lookupLocked(name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	op := OpOpen
	if node == nil && flag&os.O_CREATE != 0 {
		op = OpCreate
	}
	if err := c.checkLocked(op, name); err != nil {
		return nil, err
	}
	switch {
	case node == nil && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case node != nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case node == nil:
		node = &memNode{mtime: time.Now()}
		d.cur[base] = node
	case flag&os.O_TRUNC != 0:
		node.data = nil
	}
	c.mu.openFiles++
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	return &memFile{fs: c, node: node, name: name, writable: writable, append: flag&os.O_APPEND != 0}, nil
}

// Remove implements FS.
func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(OpRemove, name); err != nil {
		return err
	}
	if d := c.mu.dirs[filepath.Clean(name)]; d != nil {
		if len(d.cur) > 0 || len(c.subdirsLocked(filepath.Clean(name))) > 0 {
			return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
		}
		delete(c.mu.dirs, filepath.Clean(name))
		return nil
	}
	d, base, node, err := c.lookupLocked(name)
	if err == nil && node == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	delete(d.cur, base)
	return nil
}

// Rename implements FS.
func (c *CrashFS) Rename(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	od, obase, node, err := c.lookupLocked(oldname)
	if err == nil && node == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	nd, nbase, _, err := c.lookupLocked(newname)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	if err := c.checkLocked(OpRename, newname); err != nil {
		return err
	}
	delete(od.cur, obase)
	nd.cur[nbase] = node
	return nil
}

// ReadDir implements FS.
func (c *CrashFS) ReadDir(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(OpReadDir, dir); err != nil {
		return nil, err
	}
	d := c.mu.dirs[filepath.Clean(dir)]
	if d == nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	names := c.subdirsLocked(filepath.Clean(dir))
	for name := range d.cur {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

func (c *CrashFS) subdirsLocked(dir string) []string {
	var names []string
	for p := range c.mu.dirs {
		if p != dir && filepath.Dir(p) == dir {
			names = append(names, filepath.Base(p))
		}
	}
	return names
}

// MkdirAll implements FS. Directories are durable as soon as they exist.
func (c *CrashFS) MkdirAll(dir string, _ os.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if c.mu.dirs[p] == nil {
			c.mu.dirs[p] = &memDir{cur: map[string]*memNode{}, synced: map[string]*memNode{}}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// SyncDir implements FS.
func (c *CrashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(OpSyncDir, dir); err != nil {
		return err
	}
	d := c.mu.dirs[filepath.Clean(dir)]
	if d == nil {
		return &os.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	d.synced = make(map[string]*memNode, len(d.cur))
	for k, v := range d.cur {
		d.synced[k] = v
	}
	return nil
}

// Stat implements FS.
func (c *CrashFS) Stat(name string) (os.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(OpStat, name); err != nil {
		return nil, err
	}
	if d := c.mu.dirs[filepath.Clean(name)]; d != nil {
		return memInfo{name: filepath.Base(name), dir: true}, nil
	}
	_, _, node, err := c.lookupLocked(name)
	if err == nil && node == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return memInfo{name: filepath.Base(name), size: int64(len(node.data)), mtime: node.mtime}, nil
}

// FreeSpace implements FS; see SetFreeSpace.
func (c *CrashFS) FreeSpace(string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.free, nil
}

type memFile struct {
	fs       *CrashFS
	node     *memNode
	name     string
	pos      int64
	writable bool
	append   bool
	closed   bool
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	if err := c.checkLocked(OpRead, f.name); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL}
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	if !f.writable {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: syscall.EBADF}
	}
	if err := c.checkLocked(OpWrite, f.name); err != nil {
		return 0, err
	}
	n := f.node
	if f.append {
		f.pos = int64(len(n.data))
	}
	end := f.pos + int64(len(p))
	if end > int64(len(n.data)) {
		if end > int64(cap(n.data)) {
			grown := make([]byte, len(n.data), max(end, 2*int64(cap(n.data))))
			copy(grown, n.data)
			n.data = grown
		}
		n.data = n.data[:end]
	}
	copy(n.data[f.pos:], p)
	f.pos = end
	n.mtime = time.Now()
	c.mu.written += int64(len(p))
	return len(p), nil
}

func (f *memFile) Sync() error { return f.Datasync() }

func (f *memFile) Datasync() error {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	if err := c.checkLocked(OpSync, f.name); err != nil {
		return err
	}
	f.node.synced = slices.Clone(f.node.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	if err := c.checkLocked(OpTruncate, f.name); err != nil {
		return err
	}
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	n := f.node
	if size <= int64(len(n.data)) {
		// Copy so that bytes handed out earlier by CrashClone never alias.
		n.data = slices.Clone(n.data[:size])
	} else {
		n.data = append(n.data, make([]byte, size-int64(len(n.data)))...)
	}
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.closed {
		return nil, os.ErrClosed
	}
	return memInfo{name: filepath.Base(f.name), size: int64(len(f.node.data)), mtime: f.node.mtime}, nil
}

func (f *memFile) Close() error {
	c := f.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	c.mu.openFiles--
	return nil
}

type memInfo struct {
	name  string
	size  int64
	mtime time.Time
	dir   bool
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mtime }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
