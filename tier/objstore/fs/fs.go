// Package fs is an objstore.Store on a local directory: the embedded default
// object store of a single-node Strata (`strata serve` with no bucket).
//
// Objects are files under the root (see path.go for the key mapping). Every
// write goes to a temp file under <root>/.tmp, is fsynced, and is then
// renamed (Put) or hard-linked (PutIfAbsent, which fails if the target
// exists) into place, and the directory is fsynced: an object is either
// absent or complete and durable, also across a crash. Temp files a crash
// leaves behind are removed by New once they are an hour old.
//
// One process owns a root at a time; several Stores in one process may
// share it. The package must not be used on network file systems whose
// link(2) is not atomic.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/internal/sized"
)

const tmpDir = ".tmp"

// Store is an object store in a local directory.
type Store struct {
	root string
}

var _ objstore.Store = (*Store)(nil)

// New opens (creating if needed) the object store rooted at dir.
func New(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fs objstore %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(root, tmpDir), 0o755); err != nil {
		return nil, fmt.Errorf("fs objstore %s: %w", root, err)
	}
	s := &Store{root: root}
	s.removeStaleTemps(time.Hour)
	return s, nil
}

func (s *Store) String() string { return "file://" + s.root }

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

// removeStaleTemps deletes temp files older than age, left by a crash. It is
// best effort: a temp file it cannot remove is retried at the next New.
func (s *Store) removeStaleTemps(age time.Duration) {
	entries, err := os.ReadDir(filepath.Join(s.root, tmpDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > age {
			_ = os.Remove(filepath.Join(s.root, tmpDir, e.Name()))
		}
	}
}

func (s *Store) path(key string) (string, error) {
	rel, err := relPath(key)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(rel)), nil
}

func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size, false); err != nil {
		return fmt.Errorf("fs: put %s: %w", key, err)
	}
	return nil
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size, true); err != nil {
		return fmt.Errorf("fs: put-if-absent %s: %w", key, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) error {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tmp, err := s.writeTemp(ctx, r, size)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // after a rename this fails harmlessly; after a link it drops the extra name

	// A concurrent Delete may remove the (empty) parent directory between
	// mkdir and rename; retry a few times.
	for attempt := 0; ; attempt++ {
		err = s.mkdirAll(filepath.Dir(dst))
		if err == nil && ifAbsent {
			err = os.Link(tmp, dst)
			if errors.Is(err, fs.ErrExist) {
				return objstore.ErrExists
			}
		} else if err == nil {
			err = os.Rename(tmp, dst)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt >= 10 {
			return err
		}
	}
	return syncDir(filepath.Dir(dst))
}

// writeTemp writes exactly size bytes of r to a new fsynced temp file and
// returns its path.
func (s *Store) writeTemp(ctx context.Context, r io.Reader, size int64) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "put-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	err = sized.CopyN(ctx, f, r, size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// mkdirAll creates dir and any missing parents below the root, fsyncing
// the parent of each directory it creates.
func (s *Store) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != s.root {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// syncDir fsyncs a directory. A directory that no longer exists was pruned
// by a concurrent Delete, which leaves nothing of ours in it to make
// durable, so that is not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// notFound maps "no such file" (including a file where a directory was
// expected) to objstore.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%v)", objstore.ErrNotFound, err)
	}
	return err
}

func (s *Store) open(ctx context.Context, key string) (*os.File, int64, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, notFound(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	f, size, err := s.open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("fs: get %s: %w", key, err)
	}
	return sized.NewReader(ctx, f, size), nil
}

func (s *Store) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := objstore.CheckRange(off, n); err != nil {
		return nil, err
	}
	f, size, err := s.open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("fs: get range %s: %w", key, err)
	}
	defer f.Close()
	if off+n > size {
		return nil, fmt.Errorf("fs: get range %s [%d, %d) of %d bytes: %w", key, off, off+n, size, objstore.ErrShortRead)
	}
	buf := make([]byte, n)
	if err := sized.ReadFull(ctx, io.NewSectionReader(f, off, n), buf); err != nil {
		return nil, fmt.Errorf("fs: get range %s [%d, %d): %w: %w", key, off, off+n, objstore.ErrShortRead, err)
	}
	return buf, nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("fs: stat %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("fs: stat %s: %w", key, notFound(err))
	}
	return objstore.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fs: delete %s: %w", key, err)
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(notFound(err), objstore.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("fs: delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("fs: delete %s: %w", key, err)
	}
	// Prune directories the delete left empty. Best effort: a non-empty or
	// concurrently refilled directory simply stays.
	for dir := filepath.Dir(p); dir != s.root && strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// List walks the directories under prefix depth first, visiting each
// directory's entries in key order (a directory d sorts as "d/"), which
// yields keys in lexicographic order without collecting them all.
func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	dirPrefix := prefix[:strings.LastIndexByte(prefix, '/')+1]
	rel, ok := relDir(dirPrefix)
	if !ok {
		return nil
	}
	err := s.walk(ctx, filepath.Join(s.root, filepath.FromSlash(rel)), dirPrefix, prefix, fn)
	if err != nil {
		return fmt.Errorf("fs: list %q: %w", prefix, err)
	}
	return nil
}

type entry struct {
	sortKey string // key, or key prefix + "/" for a directory
	name    string
	dir     bool
}

func (s *Store) walk(ctx context.Context, dir, keyPrefix, prefix string, fn func(objstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(notFound(err), objstore.ErrNotFound) {
			return nil // vanished under a concurrent delete, or never existed
		}
		return err
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		e := entry{name: name, dir: de.IsDir()}
		if e.dir {
			seg, ok := unescapeSegment(name)
			if !ok {
				continue // .tmp and foreign names
			}
			e.sortKey = keyPrefix + seg + "/"
			if !strings.HasPrefix(e.sortKey, prefix) && !strings.HasPrefix(prefix, e.sortKey) {
				continue
			}
		} else {
			base, ok := strings.CutSuffix(name, fileSuffix)
			seg, ok2 := unescapeSegment(base)
			if !ok || !ok2 || base == "" {
				continue
			}
			e.sortKey = keyPrefix + seg
			if !strings.HasPrefix(e.sortKey, prefix) {
				continue
			}
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].sortKey < entries[j].sortKey })
	for _, e := range entries {
		p := filepath.Join(dir, e.name)
		if e.dir {
			if err := s.walk(ctx, p, e.sortKey, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(notFound(err), objstore.ErrNotFound) {
				continue // deleted since ReadDir
			}
			return err
		}
		if err := fn(objstore.ObjectInfo{Key: e.sortKey, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Close does nothing; an fs Store holds no resources between calls.
func (s *Store) Close() error { return nil }
