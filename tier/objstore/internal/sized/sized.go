// Package sized holds the io helpers the backends share: reading exactly the
// declared number of bytes of a Put body, and readers that notice
// cancellation and truncation.
package sized

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrTooLong is returned when a Put body holds more bytes than declared.
var ErrTooLong = errors.New("body longer than declared size")

// ReadAll reads exactly size bytes from r and checks that r has no more.
// A body shorter than size is an error wrapping io.ErrUnexpectedEOF.
func ReadAll(ctx context.Context, r io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d", size)
	}
	buf := make([]byte, size)
	if err := ReadFull(ctx, r, buf); err != nil {
		return nil, err
	}
	if err := ExpectEOF(r); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadFull fills p from r, checking ctx between reads. A body that ends early
// is an error wrapping io.ErrUnexpectedEOF.
func ReadFull(ctx context.Context, r io.Reader, p []byte) error {
	const step = 1 << 20
	for len(p) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(len(p), step)
		n, err := io.ReadFull(r, p[:k])
		p = p[n:]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("body short by %d bytes: %w", len(p)+k-n, err)
		}
	}
	return nil
}

// ExpectEOF checks that r is exhausted.
func ExpectEOF(r io.Reader) error {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return ErrTooLong
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// CopyN copies exactly n bytes from r to w, checking ctx between chunks, and
// checks r has no more. It is the streaming counterpart of ReadAll.
func CopyN(ctx context.Context, w io.Writer, r io.Reader, n int64) error {
	const step = 1 << 20
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, step)
		c, err := io.CopyN(w, r, k)
		n -= c
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("body short by %d bytes: %w", n, err)
		}
	}
	return ExpectEOF(r)
}

// Reader wraps an object body of known size. It returns an error wrapping
// io.ErrUnexpectedEOF if the body ends before size bytes, an error if it
// holds more, and ctx.Err() once ctx is done.
type Reader struct {
	ctx    context.Context
	r      io.ReadCloser
	remain int64
}

// NewReader returns a Reader over r that expects exactly size bytes.
func NewReader(ctx context.Context, r io.ReadCloser, size int64) *Reader {
	return &Reader{ctx: ctx, r: r, remain: size}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.remain <= 0 {
		if err := ExpectEOF(r.r); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.remain -= int64(n)
	if errors.Is(err, io.EOF) {
		if r.remain > 0 {
			return n, fmt.Errorf("object body ended %d bytes early: %w", r.remain, io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}

// Close closes the underlying body.
func (r *Reader) Close() error { return r.r.Close() }
