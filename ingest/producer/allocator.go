package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Allocator file format, version 1. All integers are big-endian.
//
//	offset size  field
//	0      4     magic "STPI"
//	4      2     format version (1)
//	6      8     end of the last block handed out: the first id not yet reserved
//	14     4     CRC-32C (Castagnoli) of bytes 0..13
const (
	allocMagic       = "STPI"
	AllocatorVersion = 1 // the format version the allocator writes
	allocFileSize    = 18
)

// Errors returned by the allocator, wrapped with details.
var (
	ErrAllocatorClosed    = errors.New("producer id allocator closed")
	ErrAllocatorCorrupt   = errors.New("corrupt producer id allocator file")
	ErrAllocatorVersion   = errors.New("unsupported producer id allocator file version")
	ErrProducerIDsUsedUp  = errors.New("producer ids exhausted")
	errAllocatorBlockSize = errors.New("producer id block size must be positive")
)

// Allocator hands out producer ids that never repeat, also across restarts
// and crashes. Ids are reserved in blocks: before handing out the first id of
// a block it durably records the block's end in its file (write a temporary
// file, fsync, rename, fsync the directory). After a restart, with or without
// Close, it continues from the recorded end, so ids of a block that were not
// handed out are skipped, never reused.
//
// Only one Allocator may use a file at a time. Deleting the file restarts ids
// from 0. A failure to persist is sticky: every later Next returns it, as the
// state of the file is then unknown.
type Allocator struct {
	path      string
	blockSize int64
	// reserve, when set, reserves blocks elsewhere (the metadata quorum)
	// instead of in the file at path.
	reserve func(n int64) (first int64, err error)
	// filling is set while TryNext's background reservation runs.
	filling atomic.Bool

	mu struct {
		sync.Mutex
		next   int64 // next id to hand out
		end    int64 // first id not reserved in the file
		err    error // sticky persistence error
		closed bool
	}
}

// OpenAllocator opens the allocator persisted at path, or starts a new one at
// id 0 if the file does not exist. The directory must exist. blockSize is how
// many ids each durable write reserves.
func OpenAllocator(path string, blockSize int64) (*Allocator, error) {
	if blockSize <= 0 {
		return nil, fmt.Errorf("open producer id allocator %s: %w (got %d)", path, errAllocatorBlockSize, blockSize)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open producer id allocator %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open producer id allocator %s: %s is not a directory", path, filepath.Dir(path))
	}
	a := &Allocator{path: path, blockSize: blockSize}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("open producer id allocator: %w", err)
	default:
		end, err := decodeAllocatorFile(b)
		if err != nil {
			return nil, fmt.Errorf("open producer id allocator %s: %w", path, err)
		}
		a.mu.next, a.mu.end = end, end
	}
	return a, nil
}

// NewQuorumAllocator returns an allocator whose blocks of blockSize ids are
// reserved by reserve (the cluster's metadata quorum, so that ids are
// unique across brokers). A failed reservation is returned to the caller
// and retried by the next Next; it is not sticky.
func NewQuorumAllocator(blockSize int64, reserve func(n int64) (first int64, err error)) (*Allocator, error) {
	if blockSize <= 0 {
		return nil, fmt.Errorf("producer id allocator: %w (got %d)", errAllocatorBlockSize, blockSize)
	}
	return &Allocator{path: "metadata quorum", blockSize: blockSize, reserve: reserve}, nil
}

// ReadAllocatorEnd returns the first id not yet reserved in an allocator
// file (0 when there is none), to carry it into the metadata quorum.
func ReadAllocatorEnd(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read producer id allocator: %w", err)
	}
	end, err := decodeAllocatorFile(b)
	if err != nil {
		return 0, fmt.Errorf("producer id allocator %s: %w", path, err)
	}
	return end, nil
}

// Next returns a producer id never returned before for this file. It is safe
// for concurrent use. Once per block it writes and syncs the file while
// holding the allocator's lock, so concurrent callers wait for that write.
func (a *Allocator) Next() (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return 0, ErrAllocatorClosed
	}
	if a.mu.err != nil {
		return 0, a.mu.err
	}
	if err := a.fillLocked(); err != nil {
		return 0, err
	}
	id := a.mu.next
	a.mu.next++
	return id, nil
}

// fillLocked reserves the next block when the current one is used up.
func (a *Allocator) fillLocked() error {
	if a.mu.next >= a.mu.end && a.reserve != nil {
		first, err := a.reserve(a.blockSize)
		if err != nil {
			return fmt.Errorf("reserve producer ids: %w", err)
		}
		a.mu.next, a.mu.end = first, first+a.blockSize
	}
	if a.mu.next >= a.mu.end {
		if a.mu.end > math.MaxInt64-a.blockSize {
			return fmt.Errorf("producer id allocator %s: %w", a.path, ErrProducerIDsUsedUp)
		}
		end := a.mu.end + a.blockSize
		if err := a.persist(end); err != nil {
			a.mu.err = fmt.Errorf("producer id allocator %s: reserve ids up to %d: %w", a.path, end, err)
			return a.mu.err
		}
		a.mu.end = end
	}
	return nil
}

// TryNext is Next without waiting: when the current block is used up (or
// another caller is reserving one), it reports ok false and makes sure a
// block is being reserved in the background, so that a caller holding a
// lock (the transaction coordinator) can answer a retriable error instead
// of blocking on a durable write or a metadata quorum round trip.
func (a *Allocator) TryNext() (id int64, ok bool, err error) {
	if !a.mu.TryLock() {
		return 0, false, nil
	}
	switch {
	case a.mu.closed:
		a.mu.Unlock()
		return 0, false, ErrAllocatorClosed
	case a.mu.err != nil:
		err = a.mu.err
		a.mu.Unlock()
		return 0, false, err
	case a.mu.next < a.mu.end:
		id = a.mu.next
		a.mu.next++
		a.mu.Unlock()
		return id, true, nil
	}
	a.mu.Unlock()
	if a.filling.CompareAndSwap(false, true) {
		go func() {
			defer a.filling.Store(false)
			a.mu.Lock()
			defer a.mu.Unlock()
			if !a.mu.closed && a.mu.err == nil {
				_ = a.fillLocked() // a failure is seen by the next call
			}
		}()
	}
	return 0, false, nil
}

// Close stops the allocator; later Next calls fail. Unused ids of the current
// block are skipped by the next OpenAllocator. Close is idempotent.
func (a *Allocator) Close() error {
	a.mu.Lock()
	a.mu.closed = true
	a.mu.Unlock()
	return nil
}

// persist durably replaces the allocator file with one recording end.
func (a *Allocator) persist(end int64) (err error) {
	tmp := a.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Best effort: a leftover temporary file is ignored and
			// overwritten by the next attempt.
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(encodeAllocatorFile(end)); err != nil {
		_ = f.Close() // the write error is the one to report
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync error is the one to report
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, a.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(a.path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close() // the sync error is the one to report
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}

func encodeAllocatorFile(end int64) []byte {
	b := make([]byte, 0, allocFileSize)
	b = append(b, allocMagic...)
	b = binary.BigEndian.AppendUint16(b, AllocatorVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeAllocatorFile returns the block end recorded in an allocator file.
func decodeAllocatorFile(b []byte) (int64, error) {
	if len(b) < 6 {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the header", ErrAllocatorCorrupt, len(b))
	}
	if string(b[:4]) != allocMagic {
		return 0, fmt.Errorf("%w: bad magic %q", ErrAllocatorCorrupt, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != AllocatorVersion {
		return 0, fmt.Errorf("%w %d (this build reads version %d)", ErrAllocatorVersion, v, AllocatorVersion)
	}
	if len(b) != allocFileSize {
		return 0, fmt.Errorf("%w: %d bytes, want %d", ErrAllocatorCorrupt, len(b), allocFileSize)
	}
	if want, got := binary.BigEndian.Uint32(b[14:]), crc32.Checksum(b[:14], crcTable); want != got {
		return 0, fmt.Errorf("%w: CRC mismatch (stored %08x, computed %08x)", ErrAllocatorCorrupt, want, got)
	}
	end := int64(binary.BigEndian.Uint64(b[6:]))
	if end < 0 {
		return 0, fmt.Errorf("%w: negative block end %d", ErrAllocatorCorrupt, end)
	}
	return end, nil
}
