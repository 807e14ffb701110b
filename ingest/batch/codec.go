package batch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultDecompressLimit bounds the decompressed size of one batch's records
// where a function takes no explicit limit (FirstAtOrAfter,
// MaxTimestampRecord, Recompress) or is given a limit <= 0.
const DefaultDecompressLimit = 64 << 20

// CodecName returns Kafka's name for a codec id ("none", "gzip", …).
func CodecName(codec int) string {
	switch codec {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", codec)
}

// Compress appends src compressed with codec to dst and returns the
// extended slice. Snappy is written with xerial framing, as the Java
// producer does; lz4 as a frame with 64 KiB blocks; gzip at the default
// level. Encoders are pooled; Compress is safe for concurrent use.
func Compress(codec int, src, dst []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		return append(dst, src...), nil
	case CodecGzip:
		w := gzipWriters.Get().(*gzipWriter)
		defer gzipWriters.Put(w)
		defer func() { w.out.b = nil }() // do not pin dst in the pool
		w.out.b = dst
		w.w.Reset(&w.out)
		if _, err := w.w.Write(src); err != nil {
			return dst, fmt.Errorf("gzip compress: %w", err)
		}
		if err := w.w.Close(); err != nil {
			return dst, fmt.Errorf("gzip compress: %w", err)
		}
		return w.out.b, nil
	case CodecSnappy:
		return appendXerial(dst, src), nil
	case CodecLZ4:
		w := lz4Writers.Get().(*lz4Writer)
		defer lz4Writers.Put(w)
		defer func() { w.out.b = nil; w.w.Reset(nil) }() // do not pin dst in the pool
		w.out.b = dst
		w.w.Reset(&w.out)
		if _, err := w.w.Write(src); err != nil {
			return dst, fmt.Errorf("lz4 compress: %w", err)
		}
		if err := w.w.Close(); err != nil {
			return dst, fmt.Errorf("lz4 compress: %w", err)
		}
		return w.out.b, nil
	case CodecZstd:
		enc := zstdEncoders.Get().(*zstd.Encoder)
		defer zstdEncoders.Put(enc)
		return enc.EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("compress: %w: unknown codec %d", ErrUnsupportedCompression, codec)
}

// Decompress appends src decompressed with codec to dst and returns the
// extended slice. It fails with an error wrapping ErrTooLarge as soon as
// more than limit bytes would be appended (limit <= 0 means
// DefaultDecompressLimit), so a decompression bomb costs at most about
// limit bytes of memory; and with an error wrapping ErrCorrupt if src does
// not decode. Snappy input may be xerial framed or a raw snappy block.
// Decoders are pooled; Decompress is safe for concurrent use.
func Decompress(codec int, src, dst []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultDecompressLimit
	}
	switch codec {
	case CodecNone:
		if len(src) > limit {
			return dst, tooLarge(codec, limit)
		}
		return append(dst, src...), nil
	case CodecGzip:
		r := gzipReaders.Get().(*gzipReader)
		defer gzipReaders.Put(r)
		r.src.Reset(src)
		if err := r.r.Reset(&r.src); err != nil {
			return dst, corruptCodec(codec, err)
		}
		return readLimited(codec, &r.r, dst, limit)
	case CodecSnappy:
		return decodeSnappy(src, dst, limit)
	case CodecLZ4:
		r := lz4Readers.Get().(*lz4Reader)
		defer lz4Readers.Put(r)
		r.src.Reset(src)
		r.r.Reset(&r.src)
		out, err := readLimited(codec, r.r, dst, limit)
		r.r.Reset(nil)
		return out, err
	case CodecZstd:
		return decodeZstd(src, dst, limit)
	}
	return dst, fmt.Errorf("decompress: %w: unknown codec %d", ErrUnsupportedCompression, codec)
}

func tooLarge(codec, limit int) error {
	return fmt.Errorf("%s decompress: %w: output exceeds %d bytes", CodecName(codec), ErrTooLarge, limit)
}

func corruptCodec(codec int, err error) error {
	return fmt.Errorf("%s decompress: %w: %w", CodecName(codec), ErrCorrupt, err)
}

// readLimited appends everything r yields to dst, failing once more than
// limit bytes were appended. Reads go straight into dst's spare capacity,
// never past limit+1 bytes.
func readLimited(codec int, r io.Reader, dst []byte, limit int) ([]byte, error) {
	start := len(dst)
	for {
		room := limit + 1 - (len(dst) - start)
		if room <= 0 {
			return dst[:start], tooLarge(codec, limit)
		}
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, min(max(cap(dst)-start, 4<<10), room))
		}
		buf := dst[len(dst):cap(dst)]
		if len(buf) > room {
			buf = buf[:room]
		}
		n, err := r.Read(buf)
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst[:start], tooLarge(codec, limit)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:start], corruptCodec(codec, err)
		}
	}
}

// appendWriter is an io.Writer appending to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

type gzipWriter struct {
	w   *gzip.Writer
	out appendWriter
}

type gzipReader struct {
	r   gzip.Reader
	src bytes.Reader
}

type lz4Writer struct {
	w   *lz4.Writer
	out appendWriter
}

type lz4Reader struct {
	r   *lz4.Reader
	src bytes.Reader
}

var (
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression) // the level is valid
		return &gzipWriter{w: w}
	}}
	gzipReaders = sync.Pool{New: func() any { return new(gzipReader) }}
	lz4Writers  = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// 64 KiB blocks, as the Java producer writes; the option is valid.
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb))
		return &lz4Writer{w: w}
	}}
	lz4Readers   = sync.Pool{New: func() any { return &lz4Reader{r: lz4.NewReader(nil)} }}
	zstdEncoders = sync.Pool{New: func() any {
		// The options are valid, so NewWriter cannot fail.
		enc, _ := zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
		)
		return enc
	}}
	zstdDecoders = sync.Pool{New: func() any {
		dec, _ := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
		)
		return dec
	}}
)

// decodeZstd decodes every frame of src, bounded by limit: the decoder
// refuses a frame whose declared size exceeds the bound before allocating,
// and stops a frame that outgrows it while decoding.
func decodeZstd(src, dst []byte, limit int) ([]byte, error) {
	dec := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(dec)
	// The decoder also refuses windows above the bound, and zstd's minimum
	// window is 1 KiB: keep the decoder's bound at least zstdMinBound and
	// check the exact limit on the output.
	if err := dec.ResetWithOptions(nil, zstd.WithDecoderMaxMemory(uint64(max(limit, zstdMinBound)))); err != nil {
		return dst, fmt.Errorf("zstd decompress: %w", err)
	}
	// The decoder counts bytes already in dst against its bound, so decode
	// into the empty tail of dst and join the two afterwards.
	tail := dst[len(dst):]
	out, err := dec.DecodeAll(src, tail)
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || len(out) > limit {
		return dst, tooLarge(CodecZstd, limit)
	}
	if err != nil {
		return dst, corruptCodec(CodecZstd, err)
	}
	if len(out) > 0 && cap(tail) > 0 && &out[0] == &tail[:1][0] {
		return dst[:len(dst)+len(out)], nil // decoded in place
	}
	return append(dst, out...), nil
}

// zstdMinBound is the smallest decoded-size bound given to the zstd decoder.
const zstdMinBound = 64 << 10
