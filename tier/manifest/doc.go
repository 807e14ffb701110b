// Package manifest owns the bucket layout of one partition's remote data and
// the partition manifest that lists it:
//
//   - object keys (keys.go): pure functions that build and parse the keys of
//     segment objects and manifests; every key carries the topic id and a hash
//     prefix derived from (topic id, partition);
//   - the manifest format (manifest.go, codec.go): a versioned, checksummed
//     binary encoding with strict validation;
//   - fenced publishing (publish.go): Load for readers, and a Publisher for
//     the partition leader that writes each manifest with a conditional create
//     and stops with ErrFenced once a higher leader epoch has published;
//   - plans (plan.go): pure functions deciding what garbage collection and
//     retention delete; they do no I/O.
//
// The package does not upload, read or delete segment objects, and does not
// know the segment object format: callers write a segment object completely,
// then name it in a manifest. It reaches the bucket only through the small
// Store interface defined here (standard types only), so any object store
// can sit behind a thin adapter. The layout is documented in
// docs/manifests.md, which is the public contract for replay tools.
package manifest
