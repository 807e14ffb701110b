// Package index owns the sparse offset and time index encodings shared by
// local and remote segments: the in-memory form, binary-search lookups, and
// the versioned, checksummed file encoding.
//
// It must not do I/O or know about Kafka requests or record batches: callers
// feed it (offset, position, timestamp) facts and bytes.
package index
