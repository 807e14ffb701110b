package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// On-disk entry format, version 1. One file per cached chunk, named
// <gen>.chunk with gen a 16-digit hex number unique within the directory
// (a file name is never reused, so deleting a file never hits a newer
// entry). Little-endian:
//
//	0   magic "STCC"
//	4   version u16 (1)
//	6   key length u16 (k)
//	8   chunk index u32
//	12  data length u32 (n)
//	16  CRC-32C of the data u32
//	20  object key [k]
//	20+k  CRC-32C of bytes [0, 20+k) u32
//	24+k  data [n]
//
// A file is valid only if its size is exactly 24+k+n and both CRCs match.
// Entries are written to <gen>.tmp and renamed; nothing is fsynced: the
// cache is disposable, and a file torn by a crash fails its CRC and is
// treated as a miss.
const (
	entryMagic   = "STCC"
	entryVersion = 1
	fixedHeader  = 20
	headerCRCLen = 4
	maxKeyLen    = 1024 // objstore.MaxKeyLen
	entrySuffix  = ".chunk"
	tmpSuffix    = ".tmp"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorruptEntry marks an entry file that fails verification.
var errCorruptEntry = errors.New("corrupt cache entry")

// chunkKey identifies one chunk of one object.
type chunkKey struct {
	key string
	idx uint32
}

func (k chunkKey) String() string { return fmt.Sprintf("%s#%d", k.key, k.idx) }

func headerLen(keyLen int) int64 { return int64(fixedHeader + keyLen + headerCRCLen) }

// entrySize is the file size of an entry holding n data bytes.
func entrySize(key string, n int) int64 { return headerLen(len(key)) + int64(n) }

func entryName(gen uint64) string { return fmt.Sprintf("%016x%s", gen, entrySuffix) }

func tmpName(gen uint64) string { return fmt.Sprintf("%016x%s", gen, tmpSuffix) }

// parseEntryName returns the generation of an entry file name.
func parseEntryName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, entrySuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	gen, err := strconv.ParseUint(hex, 16, 64)
	return gen, err == nil
}

func appendHeader(dst []byte, k chunkKey, data []byte) []byte {
	start := len(dst)
	dst = append(dst, entryMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, entryVersion)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(k.key)))
	dst = binary.LittleEndian.AppendUint32(dst, k.idx)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(data, castagnoli))
	dst = append(dst, k.key...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// header is a decoded entry header.
type header struct {
	k       chunkKey
	dataLen int64
	dataCRC uint32
	hdrLen  int64
}

// decodeHeader decodes and checks the header at the start of b (which may
// hold more than the header).
func decodeHeader(b []byte) (header, error) {
	if len(b) < fixedHeader+headerCRCLen {
		return header{}, fmt.Errorf("%w: %d bytes, shorter than a header", errCorruptEntry, len(b))
	}
	if string(b[:4]) != entryMagic {
		return header{}, fmt.Errorf("%w: bad magic %q", errCorruptEntry, b[:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != entryVersion {
		return header{}, fmt.Errorf("%w: version %d, want %d", errCorruptEntry, v, entryVersion)
	}
	kl := int(binary.LittleEndian.Uint16(b[6:]))
	if kl == 0 || kl > maxKeyLen {
		return header{}, fmt.Errorf("%w: key length %d", errCorruptEntry, kl)
	}
	hl := int(headerLen(kl))
	if len(b) < hl {
		return header{}, fmt.Errorf("%w: %d bytes, header needs %d", errCorruptEntry, len(b), hl)
	}
	if got, want := crc32.Checksum(b[:hl-headerCRCLen], castagnoli), binary.LittleEndian.Uint32(b[hl-headerCRCLen:]); got != want {
		return header{}, fmt.Errorf("%w: header checksum %08x, want %08x", errCorruptEntry, got, want)
	}
	return header{
		k:       chunkKey{key: string(b[fixedHeader : fixedHeader+kl]), idx: binary.LittleEndian.Uint32(b[8:])},
		dataLen: int64(binary.LittleEndian.Uint32(b[12:])),
		dataCRC: binary.LittleEndian.Uint32(b[16:]),
		hdrLen:  int64(hl),
	}, nil
}

// writeEntry writes data as entry gen of k: to a temporary name, then
// renamed into place. On error nothing is left behind.
func writeEntry(dir string, gen uint64, k chunkKey, data []byte) (err error) {
	tmp := filepath.Join(dir, tmpName(gen))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("cache: write %s: %w", k, err)
	}
	defer func() {
		if err != nil {
			f.Close()      // already failing; the write error is the one reported
			os.Remove(tmp) // best effort; Open removes leftover .tmp files
			err = fmt.Errorf("cache: write %s: %w", k, err)
		}
	}()
	hdr := appendHeader(make([]byte, 0, headerLen(len(k.key))), k, data)
	if _, err = f.Write(hdr); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, entryName(gen)))
}

// readEntry reads entry gen, which the index says holds k with size bytes
// in all, and returns its data (aliasing one buffer of size bytes). A file
// that is missing gives an error wrapping fs.ErrNotExist; one that does
// not verify an error wrapping errCorruptEntry.
func readEntry(dir string, gen uint64, k chunkKey, size int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, entryName(gen)))
	if err != nil {
		return nil, err
	}
	defer f.Close() // read-only; nothing to report
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != size {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", errCorruptEntry, k, st.Size(), size)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(f, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %s: %w", errCorruptEntry, k, err)
		}
		return nil, err
	}
	h, err := decodeHeader(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	if h.k != k || h.hdrLen+h.dataLen != size {
		return nil, fmt.Errorf("%w: file holds %s (%d data bytes), want %s", errCorruptEntry, h.k, h.dataLen, k)
	}
	data := buf[h.hdrLen:size:size]
	if got := crc32.Checksum(data, castagnoli); got != h.dataCRC {
		return nil, fmt.Errorf("%w: %s: data checksum %08x, want %08x", errCorruptEntry, k, got, h.dataCRC)
	}
	return data, nil
}

// readHeader reads and checks the header of an entry file and that the
// file is as long as the header says. It does not read the data: Open
// trusts lengths, Get checks the data CRC on every read.
func readHeader(path string) (header, error) {
	f, err := os.Open(path)
	if err != nil {
		return header{}, err
	}
	defer f.Close() // read-only
	st, err := f.Stat()
	if err != nil {
		return header{}, err
	}
	buf := make([]byte, min(st.Size(), headerLen(maxKeyLen)))
	if _, err := io.ReadFull(f, buf); err != nil {
		return header{}, fmt.Errorf("%w: %w", errCorruptEntry, err)
	}
	h, err := decodeHeader(buf)
	if err != nil {
		return header{}, err
	}
	if h.hdrLen+h.dataLen != st.Size() {
		return header{}, fmt.Errorf("%w: %d bytes, header says %d", errCorruptEntry, st.Size(), h.hdrLen+h.dataLen)
	}
	return h, nil
}
