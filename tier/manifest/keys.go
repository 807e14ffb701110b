package manifest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Key layout (version 1; docs/manifests.md is the public description):
//
//	<hash4>/t/<topicid>/<partition>/seg/<baseOffset:20>-<epoch:10>-<uploadID>.seg
//	<hash4>/t/<topicid>/<partition>/manifest/<epoch:10>-<seq:20>.mf
//
// hash4 is the first 4 lowercase hex digits of SHA-256(topic id (16 bytes) ||
// partition (int32 big-endian)), so one partition's objects share a prefix
// while partitions spread over 65,536 prefixes. topicid is the topic UUID in
// 32 lowercase hex digits; partition is decimal without leading zeros;
// numbers marked :N are zero-padded decimal of width N, so byte order of keys
// is numeric order; uploadID is 16 lowercase hex digits, random per upload
// attempt. Keys use only [0-9a-z/.-], safe on every backend and file system.

// TopicID is a topic's UUID. It converts from cluster.TopicID (same
// underlying type) without this package importing the cluster package.
type TopicID [16]byte

// String returns the id as 32 lowercase hex digits, as used in keys.
func (id TopicID) String() string { return hex.EncodeToString(id[:]) }

// ErrBadKey is wrapped by every key parse error.
var ErrBadKey = errors.New("manifest: not a strata key")

const (
	segDir        = "seg/"
	manifestDir   = "manifest/"
	segSuffix     = ".seg"
	manifestExt   = ".mf"
	uploadIDLen   = 16
	offsetDigits  = 20
	epochDigits   = 10
	seqDigits     = 20
	hashHexDigits = 4
)

// hashPrefix returns the 4 hex digit load-spreading prefix of a partition.
func hashPrefix(topic TopicID, partition int32) string {
	var b [20]byte
	copy(b[:], topic[:])
	binary.BigEndian.PutUint32(b[16:], uint32(partition))
	sum := sha256.Sum256(b[:])
	return hex.EncodeToString(sum[:hashHexDigits/2])
}

// PartitionPrefix returns the prefix, ending in '/', under which every object
// of one partition lives. Listing it enumerates the partition; deleting
// everything listed deletes the partition's remote data.
func PartitionPrefix(topic TopicID, partition int32) string {
	return hashPrefix(topic, partition) + "/t/" + topic.String() + "/" + strconv.FormatInt(int64(partition), 10) + "/"
}

// TopicPrefixes returns the partition prefixes of a topic with the given
// number of partitions. The hash prefix scatters a topic across the bucket,
// so a topic is enumerated (and deleted) partition by partition; the
// partition count comes from cluster metadata, which must keep a deleted
// topic's id and count until its prefixes are empty.
func TopicPrefixes(topic TopicID, partitions int32) []string {
	out := make([]string, 0, max(partitions, 0))
	for p := int32(0); p < partitions; p++ {
		out = append(out, PartitionPrefix(topic, p))
	}
	return out
}

// SegmentPrefix returns the prefix of a partition's segment objects.
func SegmentPrefix(topic TopicID, partition int32) string {
	return PartitionPrefix(topic, partition) + segDir
}

// ManifestPrefix returns the prefix of a partition's manifests. List returns
// them in (epoch, seq) order: the newest is the last.
func ManifestPrefix(topic TopicID, partition int32) string {
	return PartitionPrefix(topic, partition) + manifestDir
}

// NewUploadID returns a fresh random upload id (16 lowercase hex digits).
// Every upload attempt uses a new one, so a retry never overwrites an object
// a manifest may already name, and a failed attempt leaves a recognisable
// orphan.
func NewUploadID() string {
	var b [uploadIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

// SegmentName is the parsed form of a segment object key.
type SegmentName struct {
	Topic      TopicID
	Partition  int32
	BaseOffset int64
	Epoch      int32 // leader epoch of the uploader
	UploadID   string
}

// Key returns the object key. The name must be valid (see Check).
func (s SegmentName) Key() string {
	return SegmentPrefix(s.Topic, s.Partition) + pad(s.BaseOffset, offsetDigits) + "-" +
		pad(int64(s.Epoch), epochDigits) + "-" + s.UploadID + segSuffix
}

// Check reports whether every field can be encoded in a key.
func (s SegmentName) Check() error {
	switch {
	case s.Partition < 0:
		return fmt.Errorf("%w: negative partition %d", ErrBadKey, s.Partition)
	case s.BaseOffset < 0:
		return fmt.Errorf("%w: negative base offset %d", ErrBadKey, s.BaseOffset)
	case s.Epoch < 0:
		return fmt.Errorf("%w: negative epoch %d", ErrBadKey, s.Epoch)
	case !isUploadID(s.UploadID):
		return fmt.Errorf("%w: upload id %q is not %d lowercase hex digits", ErrBadKey, s.UploadID, uploadIDLen)
	}
	return nil
}

// ManifestID orders a partition's manifests: by leader epoch, then sequence.
// The zero ID names no manifest (sequences start at 1).
type ManifestID struct {
	Epoch int32
	Seq   int64
}

// Less reports whether id sorts before o.
func (id ManifestID) Less(o ManifestID) bool {
	if id.Epoch != o.Epoch {
		return id.Epoch < o.Epoch
	}
	return id.Seq < o.Seq
}

// IsZero reports whether id names no manifest.
func (id ManifestID) IsZero() bool { return id == ManifestID{} }

func (id ManifestID) String() string { return fmt.Sprintf("(epoch %d, seq %d)", id.Epoch, id.Seq) }

// ManifestKey returns the key of a partition's manifest id.
func ManifestKey(topic TopicID, partition int32, id ManifestID) string {
	return ManifestPrefix(topic, partition) + pad(int64(id.Epoch), epochDigits) + "-" + pad(id.Seq, seqDigits) + manifestExt
}

// ManifestName is the parsed form of a manifest key.
type ManifestName struct {
	Topic     TopicID
	Partition int32
	ID        ManifestID
}

// Key returns the manifest key.
func (n ManifestName) Key() string { return ManifestKey(n.Topic, n.Partition, n.ID) }

// ParseSegmentKey parses a segment object key, checking every field and the
// hash prefix.
func ParseSegmentKey(key string) (SegmentName, error) {
	topic, part, rest, err := parsePartitionPrefix(key, segDir)
	if err != nil {
		return SegmentName{}, err
	}
	name, ok := strings.CutSuffix(rest, segSuffix)
	fields := strings.Split(name, "-")
	if !ok || len(fields) != 3 {
		return SegmentName{}, fmt.Errorf("%w: segment key %q", ErrBadKey, key)
	}
	base, err1 := parsePadded(fields[0], offsetDigits, 1<<63-1)
	epoch, err2 := parsePadded(fields[1], epochDigits, 1<<31-1)
	if err := errors.Join(err1, err2); err != nil || !isUploadID(fields[2]) {
		return SegmentName{}, fmt.Errorf("%w: segment key %q", ErrBadKey, key)
	}
	return SegmentName{Topic: topic, Partition: part, BaseOffset: base, Epoch: int32(epoch), UploadID: fields[2]}, nil
}

// ParseManifestKey parses a manifest key, checking every field and the hash
// prefix.
func ParseManifestKey(key string) (ManifestName, error) {
	topic, part, rest, err := parsePartitionPrefix(key, manifestDir)
	if err != nil {
		return ManifestName{}, err
	}
	name, ok := strings.CutSuffix(rest, manifestExt)
	epochS, seqS, ok2 := strings.Cut(name, "-")
	if !ok || !ok2 {
		return ManifestName{}, fmt.Errorf("%w: manifest key %q", ErrBadKey, key)
	}
	epoch, err1 := parsePadded(epochS, epochDigits, 1<<31-1)
	seq, err2 := parsePadded(seqS, seqDigits, 1<<63-1)
	if errors.Join(err1, err2) != nil || seq == 0 {
		return ManifestName{}, fmt.Errorf("%w: manifest key %q", ErrBadKey, key)
	}
	return ManifestName{Topic: topic, Partition: part, ID: ManifestID{Epoch: int32(epoch), Seq: seq}}, nil
}

// parsePartitionPrefix parses "<hash4>/t/<topic>/<partition>/<dir>" and
// returns what follows dir.
func parsePartitionPrefix(key, dir string) (TopicID, int32, string, error) {
	var topic TopicID
	bad := func() (TopicID, int32, string, error) {
		return TopicID{}, 0, "", fmt.Errorf("%w: %q", ErrBadKey, key)
	}
	parts := strings.SplitN(key, "/", 6)
	if len(parts) != 6 || parts[1] != "t" || parts[4]+"/" != dir || len(parts[2]) != 32 {
		return bad()
	}
	if n, err := hex.Decode(topic[:], []byte(parts[2])); err != nil || n != 16 || topic.String() != parts[2] {
		return bad()
	}
	p, err := strconv.ParseInt(parts[3], 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != parts[3] {
		return bad()
	}
	if hashPrefix(topic, int32(p)) != parts[0] {
		return TopicID{}, 0, "", fmt.Errorf("%w: %q: hash prefix does not match topic and partition", ErrBadKey, key)
	}
	return topic, int32(p), parts[5], nil
}

func pad(v int64, width int) string {
	s := strconv.FormatInt(v, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// parsePadded parses exactly width decimal digits no larger than limit.
func parsePadded(s string, width int, limit int64) (int64, error) {
	if len(s) != width {
		return 0, ErrBadKey
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadKey
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > limit {
		return 0, ErrBadKey
	}
	return v, nil
}

func isUploadID(s string) bool {
	if len(s) != uploadIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
