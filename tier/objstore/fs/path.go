package fs

import (
	"fmt"
	"strings"

	"github.com/strata-io/strata/tier/objstore"
)

// Key to path mapping.
//
// A key is split on '/'. Each segment is escaped: ASCII letters, digits and
// "-_.~=,+@" stay as they are (except a leading '.', so no name is hidden
// and temp files cannot collide with keys); every other byte becomes %XX.
// Directory names are the escaped segment; the file holding an object is
// the escaped last segment followed by fileSuffix. '%' never ends an escaped
// segment, so an object "a" (file "a%") and an object "a/b" (directory "a")
// can coexist, as they can in S3, and the mapping decodes unambiguously.
// ValidateKey has already excluded "", "." and ".." segments, so no path can
// leave the root.

const fileSuffix = "%"

// maxNameLen is the longest file name most Linux file systems accept.
const maxNameLen = 255

func keepByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.':
		return !first
	}
	return strings.IndexByte("-_~=,+@", c) >= 0
}

func escapeSegment(seg string) string {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if keepByte(c, i == 0) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapeSegment reverses escapeSegment; ok is false for names that
// escapeSegment cannot have produced (foreign files), which List skips.
func unescapeSegment(name string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			if !keepByte(c, i == 0) {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		hi, ok1 := unhex(name[i+1])
		lo, ok2 := unhex(name[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), true
}

// relPath maps a valid key to its file path relative to the root.
func relPath(key string) (string, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return "", err
	}
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		segs[i] = escapeSegment(seg)
		if i == len(segs)-1 {
			segs[i] += fileSuffix
		}
		if len(segs[i]) > maxNameLen {
			return "", fmt.Errorf("%w: segment %q of %q is too long for a file name once escaped", objstore.ErrInvalidKey, seg, key)
		}
	}
	return strings.Join(segs, "/"), nil
}

// relDir maps a key prefix that ends in '/' (or is empty) to the relative
// directory holding every key under it; ok is false if no valid key can
// start with dirPrefix.
func relDir(dirPrefix string) (dir string, ok bool) {
	dirPrefix = strings.TrimSuffix(dirPrefix, "/")
	if dirPrefix == "" {
		return ".", true
	}
	segs := strings.Split(dirPrefix, "/")
	for i, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
		segs[i] = escapeSegment(seg)
	}
	return strings.Join(segs, "/"), true
}
