package batch

import (
	"errors"
	"fmt"
	"strings"
)

// Kafka error codes the package's errors map to.
const (
	CodeCorruptMessage             int16 = 2
	CodeMessageTooLarge            int16 = 10
	CodeInvalidTimestamp           int16 = 32
	CodeUnsupportedCompressionType int16 = 76
	CodeInvalidRecord              int16 = 87
	// CodeUnknownServerError is what CodeOf returns for an error that
	// carries no Kafka code.
	CodeUnknownServerError int16 = -1
)

// kindError is the type of the sentinel errors: a Kafka error name and code.
type kindError struct {
	name string
	code int16
}

func (e *kindError) Error() string { return e.name }

// Code returns the Kafka error code.
func (e *kindError) Code() int16 { return e.code }

// Sentinel errors, one per Kafka error code. Every error returned by
// Validate, Records, Decompress and friends wraps exactly one of them, so
// callers can use errors.Is, or CodeOf to get the code for the wire.
var (
	// ErrCorrupt: the bytes are not a well formed v2 batch (length,
	// truncation, trailing bytes, CRC, undecodable compressed data).
	ErrCorrupt error = &kindError{"CORRUPT_MESSAGE", CodeCorruptMessage}
	// ErrTooLarge: the batch exceeds max.message.bytes, or decompresses to
	// more than the allowed size.
	ErrTooLarge error = &kindError{"MESSAGE_TOO_LARGE", CodeMessageTooLarge}
	// ErrInvalidTimestamp: a timestamp is outside the allowed window, or the
	// producer set the LogAppendTime attribute.
	ErrInvalidTimestamp error = &kindError{"INVALID_TIMESTAMP", CodeInvalidTimestamp}
	// ErrUnsupportedCompression: an unknown codec id, or zstd where the
	// request version does not allow it.
	ErrUnsupportedCompression error = &kindError{"UNSUPPORTED_COMPRESSION_TYPE", CodeUnsupportedCompressionType}
	// ErrInvalidRecord: a well formed batch Kafka refuses: magic other than
	// 2, control batches from producers, inconsistent counts or offsets,
	// malformed records, missing keys on compacted topics, several batches
	// where one is required, bad sequence numbers.
	ErrInvalidRecord error = &kindError{"INVALID_RECORD", CodeInvalidRecord}
)

// Error is a validation failure of one batch. It wraps one of the sentinel
// errors (Kind) and says which batch of the request failed and why.
type Error struct {
	Kind   error // one of ErrCorrupt, ErrTooLarge, …
	Batch  int   // index of the batch in the validated bytes
	Detail string
}

func (e *Error) Error() string {
	return fmt.Sprintf("batch %d: %v: %s", e.Batch, e.Kind, e.Detail)
}

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Code returns the Kafka error code of Kind.
func (e *Error) Code() int16 { return CodeOf(e.Kind) }

func batchErr(kind error, batch int, format string, args ...any) *Error {
	return &Error{Kind: kind, Batch: batch, Detail: fmt.Sprintf(format, args...)}
}

// kinds lists the sentinels, for asBatchErr.
var kinds = []error{ErrCorrupt, ErrTooLarge, ErrInvalidTimestamp, ErrUnsupportedCompression, ErrInvalidRecord}

// asBatchErr turns an error wrapping a sentinel into an *Error for batch i,
// dropping the sentinel's name from the front of the detail. Errors without
// a sentinel count as corrupt.
func asBatchErr(batch int, err error) *Error {
	kind := ErrCorrupt
	for _, k := range kinds {
		if errors.Is(err, k) {
			kind = k
			break
		}
	}
	detail := strings.TrimPrefix(err.Error(), kind.Error()+": ")
	return &Error{Kind: kind, Batch: batch, Detail: detail}
}

// CodeOf returns the Kafka error code carried by err, 0 for nil, or
// CodeUnknownServerError if err carries none.
func CodeOf(err error) int16 {
	if err == nil {
		return 0
	}
	var c interface{ Code() int16 }
	if errors.As(err, &c) {
		return c.Code()
	}
	return CodeUnknownServerError
}
