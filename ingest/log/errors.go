package log

import (
	"errors"
	"fmt"
)

var (
	// ErrOffsetOutOfRange is returned for offsets below the log start or
	// above the log end.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrBelowLocalStart is returned by Read for an offset at or above the
	// log start but below LocalStartOffset: the record exists, but only in
	// the remote tier (its local segment was deleted by DeleteLocalBefore,
	// or the log was ResetTo a later offset). It wraps ErrOffsetOutOfRange,
	// so callers that route reads to the remote tier must test for it
	// first.
	ErrBelowLocalStart = fmt.Errorf("%w: below the local log start", ErrOffsetOutOfRange)
	// ErrNotFound is returned by OpenSegment and ProducerSnapshotAt when no
	// local segment (or snapshot) matches: never written, already deleted,
	// or below the local start.
	ErrNotFound = errors.New("no such local segment")
	// ErrNotSealed is returned by OpenSegment and ProducerSnapshotAt for the
	// active segment, or a sealed one whose seal work (fdatasync, index
	// files, producer snapshot) is not durable yet. Retry after the next
	// sync round (WaitDurable on its last offset).
	ErrNotSealed = errors.New("segment not sealed and durable yet")
	// ErrStorage wraps a sticky I/O error: once a write, sync or truncate
	// failed, every later Append returns it until the log is closed and
	// reopened (KAFKA_STORAGE_ERROR).
	ErrStorage = errors.New("log storage error")
	// ErrDiskFull is returned by Append when free space is below
	// Config.MinFreeBytes. It is not sticky.
	ErrDiskFull = errors.New("not enough free disk space")
	// ErrClosed is returned by calls on a closed log.
	ErrClosed = errors.New("log closed")
	// ErrCorrupt wraps decode errors of the log's own files.
	ErrCorrupt = errors.New("corrupt log file")
	// ErrVersion wraps errors about files written in an unknown format
	// version; the message names the file and the version.
	ErrVersion = errors.New("unsupported log file format version")
)
