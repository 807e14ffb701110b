package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/strata-io/strata/ingest/log/vfs"
)

// File names in a log directory.
const (
	logSuffix         = ".log"
	indexSuffix       = ".index"
	timeIndexSuffix   = ".timeindex"
	snapshotSuffix    = ".snapshot"
	txnIndexSuffix    = ".txnindex"
	tmpSuffix         = ".tmp"
	cleanedSuffix     = ".cleaned" // a cleaner's output, appended to a segment's file names
	epochCheckpoint   = "leader-epoch-checkpoint"
	startCheckpoint   = "log-start-offset"
	cleanerCheckpoint = "cleaner-checkpoint"
	segmentVersion    = 1
	segHeaderSize     = 16
	checkpointVersion = 1
)

var (
	segmentMagic    = [4]byte{'S', 'T', 'S', 'G'}
	epochMagic      = [4]byte{'S', 'L', 'E', 'C'}
	startMagic      = [4]byte{'S', 'L', 'S', 'O'}
	cleanerMagic    = [4]byte{'S', 'L', 'C', 'P'}
	castagnoli      = crc32.MakeTable(crc32.Castagnoli)
	errShortSegment = errors.New("segment file shorter than its header")
)

func fileName(base int64, suffix string) string {
	return fmt.Sprintf("%020d%s", base, suffix)
}

// parseFileName returns the base offset of a name like
// 00000000000000000042.log with the given suffix.
func parseFileName(name, suffix string) (int64, bool) {
	s, ok := strings.CutSuffix(name, suffix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// Segment file header (16 bytes, big-endian): magic "STSG", version u16,
// flags u16, base offset i64. Raw record batches follow verbatim.
//
// Flags: segFlagCompacted marks a segment written by the cleaner, whose
// batches may leave offset gaps (compacted-away batches); the last batch
// still ends at the segment's end. Other bits are refused.
const segFlagCompacted = 1

func appendSegmentHeader(dst []byte, base int64) []byte {
	return appendSegmentHeaderFlags(dst, base, 0)
}

func appendSegmentHeaderFlags(dst []byte, base int64, flags uint16) []byte {
	dst = append(dst, segmentMagic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, segmentVersion)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	return binary.BigEndian.AppendUint64(dst, uint64(base))
}

// decodeSegmentHeader checks a segment file header and returns its base
// offset and flags. name is used in errors.
func decodeSegmentHeader(b []byte, name string) (int64, uint16, error) {
	if len(b) < segHeaderSize {
		return 0, 0, fmt.Errorf("%s: %w", name, errShortSegment)
	}
	if [4]byte(b[:4]) != segmentMagic {
		return 0, 0, fmt.Errorf("%s: %w: bad segment magic %q", name, ErrCorrupt, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != segmentVersion {
		return 0, 0, fmt.Errorf("%s: %w: segment format version %d (this build reads %d)", name, ErrVersion, v, segmentVersion)
	}
	flags := binary.BigEndian.Uint16(b[6:])
	if flags&^segFlagCompacted != 0 {
		return 0, 0, fmt.Errorf("%s: %w: unknown segment header flags %#x", name, ErrCorrupt, flags)
	}
	base := int64(binary.BigEndian.Uint64(b[8:]))
	if base < 0 {
		return 0, 0, fmt.Errorf("%s: %w: negative base offset %d", name, ErrCorrupt, base)
	}
	return base, flags, nil
}

// Small checkpoint files: magic [4], version u16, payload, CRC-32C u32 of
// everything before it.
func encodeCheckpoint(magic [4]byte, payload []byte) []byte {
	b := append(magic[:0:0], magic[:]...)
	b = binary.BigEndian.AppendUint16(b, checkpointVersion)
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeCheckpoint(b []byte, magic [4]byte, name string) ([]byte, error) {
	if len(b) < 10 {
		return nil, fmt.Errorf("%s: %w: %d bytes", name, ErrCorrupt, len(b))
	}
	if [4]byte(b[:4]) != magic {
		return nil, fmt.Errorf("%s: %w: bad magic %q", name, ErrCorrupt, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != checkpointVersion {
		return nil, fmt.Errorf("%s: %w: version %d (this build reads %d)", name, ErrVersion, v, checkpointVersion)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("%s: %w: checksum mismatch", name, ErrCorrupt)
	}
	return body[6:], nil
}

func encodeStartOffset(off int64) []byte {
	return encodeCheckpoint(startMagic, binary.BigEndian.AppendUint64(nil, uint64(off)))
}

func decodeStartOffset(b []byte) (int64, error) {
	p, err := decodeCheckpoint(b, startMagic, startCheckpoint)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("%s: %w: payload of %d bytes", startCheckpoint, ErrCorrupt, len(p))
	}
	off := int64(binary.BigEndian.Uint64(p))
	if off < 0 {
		return 0, fmt.Errorf("%s: %w: negative offset %d", startCheckpoint, ErrCorrupt, off)
	}
	return off, nil
}

// writeAtomic writes data to dir/name through a temporary file: write,
// fsync, rename, and fsync the directory if syncDir.
func writeAtomic(fsys vfs.FS, dir, name string, data []byte, syncDir bool) error {
	path := filepath.Join(dir, name)
	tmp := path + tmpSuffix
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil && syncDir {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		_ = fsys.Remove(tmp) // best effort; Open removes leftovers
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readFile reads a whole small file.
func readFile(fsys vfs.FS, path string) ([]byte, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > 1<<30 {
		return nil, fmt.Errorf("%s: %w: %d bytes", path, ErrCorrupt, fi.Size())
	}
	b := make([]byte, fi.Size())
	if n, err := f.ReadAt(b, 0); n < len(b) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
