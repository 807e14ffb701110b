package s3

import (
	"errors"
	"fmt"
	"io"

	"github.com/strata-io/strata/tier/objstore/internal/sized"
)

// sectionSource is a body that can be re-read by offset without buffering,
// such as an *os.File: parts and single PUTs are sent from it directly, so
// large parts cost no memory.
type sectionSource struct {
	ra   io.ReaderAt
	base int64 // r's position when the Put began
	size int64
}

// asSection returns r as a sectionSource if it is an io.ReaderAt and
// io.Seeker holding exactly size bytes from its current position; ok is
// false for other readers, which are buffered instead.
func asSection(r io.Reader, size int64) (src sectionSource, ok bool, err error) {
	ra, isRA := r.(io.ReaderAt)
	sk, isSeeker := r.(io.Seeker)
	if !isRA || !isSeeker {
		return sectionSource{}, false, nil
	}
	base, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return sectionSource{}, false, nil // not really seekable: buffer it
	}
	// Exactly size bytes: the last one must exist and the next must not.
	var one [1]byte
	if size > 0 {
		if _, err := ra.ReadAt(one[:], base+size-1); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return sectionSource{}, false, fmt.Errorf("body shorter than %d bytes: %w", size, err)
		}
	}
	if n, _ := ra.ReadAt(one[:], base+size); n > 0 {
		return sectionSource{}, false, sized.ErrTooLong
	}
	return sectionSource{ra: ra, base: base, size: size}, true, nil
}

// part returns the bytes [off, off+n) of the body as a fresh ReadSeeker.
func (s sectionSource) part(off, n int64) *io.SectionReader {
	return io.NewSectionReader(s.ra, s.base+off, n)
}
