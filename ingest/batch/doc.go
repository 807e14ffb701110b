// Package batch owns the Kafka record batch (magic v2) as bytes: parsing and
// validating the fixed header, patching offsets and leader epochs in place,
// rewriting timestamps for LogAppendTime, the compression codecs needed
// when a batch must be decompressed or recompressed, iterating records,
// rewriting a batch with only some of its records for compaction (Filter,
// Kafka's v2 filterTo), the null-key check of compacted topics
// (ValidateOptions.RequireKeys), and a builder for tests.
//
// It must not know about partitions, files or requests: callers hand it byte
// slices and get facts or errors back. Nothing here decodes individual
// records on the hot path unless the caller asks for it (Validate walks the
// records of uncompressed batches, which is cheap and allocation free, and
// decompresses only when keys must be checked).
//
// # Validation and Kafka error codes
//
// Validate refuses, with an *Error wrapping one sentinel:
//
//   - ErrCorrupt (CORRUPT_MESSAGE, 2): a batch shorter than its header or
//     than its batchLength, a batchLength below the header size, trailing
//     bytes that are not a whole batch, a CRC-32C mismatch, compressed
//     records that do not decode.
//   - ErrInvalidRecord (INVALID_RECORD, 87): magic other than 2 (Kafka 4's
//     ProduceRequest.validateRecords answers v0/v1 message sets this way,
//     so we do too, rather than CORRUPT_MESSAGE or
//     UNSUPPORTED_FOR_MESSAGE_FORMAT); no batch at all; a control batch; a
//     record count below 1 or not matching lastOffsetDelta+1, or the records
//     present; a record that does not decode or whose offset delta is not its
//     position; a null key when keys are required; a producer id with a
//     negative sequence; a transactional batch without a producer id; more
//     than one batch with a producer id, or at all with SingleBatch.
//   - ErrTooLarge (MESSAGE_TOO_LARGE, 10): a batch above max.message.bytes,
//     or records decompressing to more than the allowed bytes.
//   - ErrInvalidTimestamp (INVALID_TIMESTAMP, 32): with CreateTime, a base,
//     max or (when records are walked) record timestamp outside the window;
//     the LogAppendTime bit set by a producer.
//   - ErrUnsupportedCompression (UNSUPPORTED_COMPRESSION_TYPE, 76): codec
//     ids 5-7; zstd with DisallowZstd.
//
// CodeOf maps any of these errors to its code.
package batch
