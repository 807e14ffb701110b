package log

import "errors"

var (
	// ErrOffsetOutOfRange is returned for offsets below the log start or
	// above the log end.
	ErrOffsetOutOfRange = errors.New("offset out of range")
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
