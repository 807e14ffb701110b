// Package segment builds and reads remote segment objects: one object per
// sealed local log segment, holding the segment's record batches in
// independently compressed chunks, then a footer (summary, chunk map, sparse
// offset and time indexes, producer-state snapshot, aborted transactions)
// and a fixed-size trailer. The byte layout is owned by index/footer.go and
// documented in docs/object-layout.md; it is a public, versioned format.
//
// Build streams raw batches (a local segment's bytes after its file header)
// into an object, validating every batch header and CRC on the way, so a
// corrupt segment fails the build instead of being uploaded. Reader answers
// reads from an object through a caller-supplied ranged fetch: one fetch for
// the tail (trailer and footer, usually), then one fetch per chunk.
//
// The aborted-transaction section holds the caller's aborted transactions
// clipped to the segment's offsets (BuildOptions.Aborted), so a transaction
// spanning segments has one piece in each. The section is part of format
// 1.0 (written empty before transactions existed): filling it needs no
// version change, and readers of objects without entries find it empty.
//
// The package does no object-store I/O of its own and knows nothing about
// keys, manifests or Kafka requests: callers hand it an io.Writer or a fetch
// function.
package segment
