// Package objstore is Strata's narrow driver interface to object storage:
// the bucket that holds sealed segments and manifests.
//
// It owns the Store interface, its error vocabulary, key rules and the small
// wrappers that every backend can sit behind (WithPrefix, NewCounting). The
// backends live in subpackages: s3 (aws-sdk-go-v2, any S3-compatible server),
// fs (a local directory, the embedded default), mem (in-memory, for tests) and
// faulty (fault injection). objstoretest holds the AcceptanceTest every
// backend passes and a Versity S3 Gateway harness.
//
// The package must not know about Kafka, segments or manifests, and no SDK
// type crosses its API: callers see only standard library types.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors returned by every Store. Backends wrap them with context; test with
// errors.Is.
var (
	// ErrNotFound: the key does not exist (Get, GetRange, Stat).
	ErrNotFound = errors.New("objstore: object not found")
	// ErrExists: PutIfAbsent lost, the key already exists.
	ErrExists = errors.New("objstore: object already exists")
	// ErrShortRead: a ranged read asked for bytes past the end of the object,
	// or the body ended before the requested length arrived.
	ErrShortRead = errors.New("objstore: short read")
	// ErrInvalidKey: the key breaks the rules in ValidateKey.
	ErrInvalidKey = errors.New("objstore: invalid key")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is an object store: a flat namespace of immutable-once-written
// byte strings addressed by key.
//
// Every method takes a context and returns when it is done or cancelled; a
// cancelled call returns an error wrapping ctx.Err(). Implementations are safe
// for concurrent use. Consistency assumed (true of AWS S3 since 2020, of the
// fs and mem backends, and of Versity): read-after-write and list-after-write
// are strong; a successful Put is visible to every later call.
type Store interface {
	// Put stores exactly size bytes read from r under key, replacing any
	// existing object. The object appears atomically: readers see the old
	// object or the whole new one, never a part. If r yields fewer or more
	// than size bytes, or fails, Put returns an error and stores nothing.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// PutIfAbsent is Put that succeeds only if key does not exist, atomically:
	// of any number of concurrent creators exactly one succeeds and the others
	// get an error wrapping ErrExists.
	PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error

	// Get opens the whole object for reading. The reader returns an error
	// (wrapping io.ErrUnexpectedEOF) rather than io.EOF if the body ends
	// before the object's full size; the caller must Close it.
	Get(ctx context.Context, key string) (io.ReadCloser, error)

	// GetRange returns exactly n bytes of the object starting at offset off,
	// or an error: it never returns partial data. A range that reaches past
	// the end of the object, or a body that ends early, is an error wrapping
	// ErrShortRead. n == 0 returns an empty slice if the object exists and
	// off <= its size. Reads are meant for chunks (Strata's are <= ~4 MiB);
	// use Get to stream a whole object.
	GetRange(ctx context.Context, key string, off, n int64) ([]byte, error)

	// Stat returns the object's size and modification time.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List calls fn for every object whose key starts with prefix, in
	// lexicographic (byte) order of keys, paging internally. An error from fn
	// stops the listing and is returned (wrapped). Objects created or deleted
	// during a listing may or may not be reported.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// Close releases resources. The Store must not be used afterwards.
	Close() error
}

// IncompleteUpload is a multipart upload that was started and neither
// completed nor aborted (a crashed uploader leaves these behind; they cost
// storage until aborted).
type IncompleteUpload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// UploadJanitor is implemented by stores that can leave incomplete multipart
// uploads behind (s3). Use the package functions ListIncompleteUploads and
// AbortIncompleteUploads, which treat other stores as having none.
type UploadJanitor interface {
	// ListIncompleteUploads calls fn for every incomplete upload whose key
	// starts with prefix.
	ListIncompleteUploads(ctx context.Context, prefix string, fn func(IncompleteUpload) error) error
	// AbortIncompleteUploads aborts the incomplete uploads under prefix that
	// were initiated before olderThan and returns how many it aborted.
	AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error)
}

// ListIncompleteUploads lists s's incomplete multipart uploads under prefix;
// a store that does not implement UploadJanitor has none.
func ListIncompleteUploads(ctx context.Context, s Store, prefix string, fn func(IncompleteUpload) error) error {
	if j, ok := s.(UploadJanitor); ok {
		return j.ListIncompleteUploads(ctx, prefix, fn)
	}
	return nil
}

// AbortIncompleteUploads aborts s's incomplete multipart uploads under prefix
// initiated before olderThan; a store that does not implement UploadJanitor
// has none and returns 0, nil.
func AbortIncompleteUploads(ctx context.Context, s Store, prefix string, olderThan time.Time) (int, error) {
	if j, ok := s.(UploadJanitor); ok {
		return j.AbortIncompleteUploads(ctx, prefix, olderThan)
	}
	return 0, nil
}

// MaxKeyLen is the longest key accepted, in bytes (S3's limit).
const MaxKeyLen = 1024

// ValidateKey reports whether key is usable on every backend. A key is valid
// UTF-8, 1..MaxKeyLen bytes, contains no NUL or other control character, does
// not start or end with '/', and has no empty, "." or ".." segment between
// slashes. Any other byte is allowed (spaces, '%', '+', '?', '#', non-ASCII).
// Every Store method that takes a key returns an error wrapping ErrInvalidKey
// for keys that break these rules.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidKey, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalidKey, key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrInvalidKey, key)
		}
	}
	return nil
}

// CheckRange validates the arguments of GetRange.
func CheckRange(off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("objstore: invalid range off=%d n=%d", off, n)
	}
	if off > (1<<63-1)-n {
		return fmt.Errorf("objstore: range off=%d n=%d overflows", off, n)
	}
	return nil
}
