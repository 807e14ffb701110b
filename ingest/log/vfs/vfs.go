// Package vfs is the narrow file-system interface the partition log writes
// through, with two implementations: Default on the operating system, and an
// in-memory CrashFS that models what survives a power loss and injects I/O
// errors for tests.
//
// It owns nothing but files and directories: it must not know about segments,
// offsets or Kafka. Paths are plain strings joined with path/filepath.
package vfs

import (
	"io"
	"os"
)

// FS is the file-system surface the log uses. Implementations must be safe
// for concurrent use.
type FS interface {
	// Create creates or truncates name for reading and writing.
	Create(name string) (File, error)
	// OpenFile opens name with os.O_* flags. With os.O_APPEND every Write
	// goes to the end of the file.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	Remove(name string) error
	// Rename atomically replaces newname with oldname. The change is durable
	// only after SyncDir on the parent directory.
	Rename(oldname, newname string) error
	// ReadDir returns the names of the entries in dir, sorted.
	ReadDir(dir string) ([]string, error)
	MkdirAll(dir string, perm os.FileMode) error
	// SyncDir makes the directory's entries (creates, renames, removes)
	// durable.
	SyncDir(dir string) error
	Stat(name string) (os.FileInfo, error)
	// FreeSpace returns the bytes available to an unprivileged writer on the
	// file system holding dir. It must be cheap (one statfs).
	FreeSpace(dir string) (int64, error)
}

// File is an open file. ReadAt may be called concurrently with Write; other
// methods are not safe for concurrent use on the same File.
type File interface {
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync flushes data and metadata to stable storage (fsync).
	Sync() error
	// Datasync flushes data and the metadata needed to read it back
	// (fdatasync).
	Datasync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}
