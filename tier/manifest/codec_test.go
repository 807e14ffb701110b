package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	big := &Manifest{Topic: testTopic, Partition: 3, Epoch: 9, Seq: 1 << 40}
	for i := range 2000 {
		big.Entries = append(big.Entries, nextEntry(big, int32(i/300), int64(1+i%977), int64(1+i*1000), 1_700_000_000_000+int64(i)))
	}
	cases := map[string]*Manifest{
		"sample":                 sampleManifest(),
		"sample with 1.1 fields": sampleManifestV11(),
		"empty":                  {Topic: testTopic, Partition: 0, Epoch: 0, Seq: 1},
		"empty with log start past everything": {Topic: testTopic, Partition: 2, Epoch: 3, Seq: 12, Prev: ManifestID{Epoch: 3, Seq: 11}, LogStartOffset: 1 << 50,
			Deleted: sampleManifest().Deleted},
		"2000 segments": big,
	}
	for name, m := range cases {
		if m.Partition != 7 {
			for i := range m.Deleted { // sample deleted keys belong to partition 7
				m.Deleted[i].Key = strings.Replace(m.Deleted[i].Key, PartitionPrefix(testTopic, 7), PartitionPrefix(testTopic, m.Partition), 1)
			}
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%s: decoded\n%+v\nwant\n%+v", name, got, m)
		}
	}
	t.Logf("2000 segments encode to %d bytes", len(mustEncodeT(t, big)))
}

func mustEncodeT(t testing.TB, m *Manifest) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenV1 decodes a manifest written by format version 1.0, so that
// manifests already in buckets stay readable. Never regenerate it for a new
// version: add a new golden file. To create it (once):
// STRATA_WRITE_GOLDEN=1 go test -run TestGoldenV1 ./tier/manifest
func TestGoldenV1(t *testing.T) {
	path := filepath.Join("testdata", "manifest-v1.bin")
	if os.Getenv("STRATA_WRITE_GOLDEN") != "" {
		if err := os.WriteFile(path, mustEncodeT(t, sampleManifest()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if want := sampleManifest(); !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded %s\n%+v\nwant\n%+v", path, m, want)
	}
	if got := m.Entries[1].Key; got != "74cb/t/4f2a91073c1d4e8b9a10223344556677/7/seg/00000000000000000200-0000000004-00000000000000a2.seg" {
		t.Fatalf("golden entry key %s", got)
	}
	// The 1.0 writer is still here byte for byte, and this build's 1.1
	// encoding of the same manifest decodes to it.
	if !bytes.Equal(encode(m, 0, nil), b) {
		t.Fatal("re-encoding the golden manifest as 1.0 changed its bytes")
	}
	if got, err := Decode(mustEncodeT(t, m)); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("golden manifest re-encoded as %d.%d: %v", VersionMajor, VersionMinor, err)
	}
}

// sampleManifestV11 is sampleManifest with the fields format 1.1 added.
func sampleManifestV11() *Manifest {
	m := sampleManifest()
	m.CleanerPoint = 200
	return m
}

// TestGoldenV11 decodes a manifest written by format version 1.1 (the
// cleaner point), which this build writes byte for byte. Never regenerate
// it: add a new golden file for a new version. To create it (once):
// STRATA_WRITE_GOLDEN=1 go test -run TestGoldenV11 ./tier/manifest
func TestGoldenV11(t *testing.T) {
	path := filepath.Join("testdata", "manifest-v1.1.bin")
	if os.Getenv("STRATA_WRITE_GOLDEN") != "" {
		if err := os.WriteFile(path, encode(sampleManifestV11(), 1, nil), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if major, minor := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]); major != 1 || minor != 1 {
		t.Fatalf("golden file is version %d.%d", major, minor)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if want := sampleManifestV11(); !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded %s\n%+v\nwant\n%+v", path, m, want)
	}
	if VersionMinor == 1 && !bytes.Equal(mustEncodeT(t, m), b) {
		t.Fatal("re-encoding the golden manifest changed its bytes")
	}
	// A 1.0 reader skips the cleaner point: everything else is the same.
	old, err := decode(b, 0)
	if err != nil {
		t.Fatalf("a 1.0 reader refused a 1.1 manifest: %v", err)
	}
	if want := sampleManifest(); !reflect.DeepEqual(old, want) {
		t.Fatalf("a 1.0 reader decoded\n%+v\nwant\n%+v", old, want)
	}
}

func TestValidateRejects(t *testing.T) {
	otherPart := SegmentName{Topic: testTopic, Partition: 8, BaseOffset: 200, Epoch: 4, UploadID: "00000000000000a2"}.Key()
	cases := map[string]func(m *Manifest){
		"negative partition":       func(m *Manifest) { m.Partition = -1 },
		"seq zero":                 func(m *Manifest) { m.Seq = 0 },
		"prev after self":          func(m *Manifest) { m.Prev = ManifestID{Epoch: 5, Seq: 9} },
		"prev from higher epoch":   func(m *Manifest) { m.Prev = ManifestID{Epoch: 6, Seq: 1} },
		"log start below first":    func(m *Manifest) { m.LogStartOffset = 89 },
		"log start past first":     func(m *Manifest) { m.LogStartOffset = 200 },
		"gap between segments":     func(m *Manifest) { m.Entries[0].NextOffset = 199; m.Entries[0].RecordCount = 10 },
		"overlapping segments":     func(m *Manifest) { m.Entries[0].NextOffset = 201 },
		"unsorted segments":        func(m *Manifest) { m.Entries[1], m.Entries[2] = m.Entries[2], m.Entries[1] },
		"empty segment":            func(m *Manifest) { m.Entries[2].NextOffset = 350 },
		"too many records":         func(m *Manifest) { m.Entries[2].RecordCount = 2 },
		"zero stored size":         func(m *Manifest) { m.Entries[0].StoredSize = 0 },
		"negative raw size":        func(m *Manifest) { m.Entries[0].RawSize = -1 },
		"timestamp below -1":       func(m *Manifest) { m.Entries[0].MaxTimestamp = -2 },
		"upload epoch from future": func(m *Manifest) { m.Epoch = 4; m.Entries[2].Epochs[0].Epoch = 4 },
		"no leader epochs":         func(m *Manifest) { m.Entries[0].Epochs = nil },
		"epoch start outside":      func(m *Manifest) { m.Entries[1].Epochs[1].StartOffset = 350 },
		"epochs not increasing":    func(m *Manifest) { m.Entries[1].Epochs[1].Epoch = 2 },
		"epochs go back":           func(m *Manifest) { m.Entries[2].Epochs[0].Epoch = 3 },
		"key base mismatch": func(m *Manifest) {
			m.Entries[0].Key = strings.Replace(m.Entries[0].Key, "00000000000000000090", "00000000000000000091", 1)
		},
		"key epoch mismatch":     func(m *Manifest) { m.Entries[0].UploadEpoch = 3; m.Entries[0].Epochs[0].Epoch = 3 },
		"key of other partition": func(m *Manifest) { m.Entries[1].Key = otherPart },
		"not a key":              func(m *Manifest) { m.Entries[1].Key = "x" },
		"same key twice":         func(m *Manifest) { m.Deleted[0].Key = m.Entries[0].Key },
		"deleted twice":          func(m *Manifest) { m.Deleted[1].Key = m.Deleted[0].Key },
		"deleted negative size":  func(m *Manifest) { m.Deleted[0].Size = -1 },
		"negative cleaner point": func(m *Manifest) { m.CleanerPoint = -1 },
	}
	for name, mutate := range cases {
		m := sampleManifest()
		mutate(m)
		err := m.Validate()
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
			continue
		}
		if _, err := Encode(m); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Encode = %v, want ErrInvalid", name, err)
		}
		// Decode validates too: the same manifest written without checks
		// is refused. (The encoding stores only the upload epoch, id and
		// base offset of a key, so a foreign or malformed key cannot be
		// written at all.)
		if name == "key of other partition" || name == "not a key" {
			continue
		}
		if _, err := Decode(encode(m, VersionMinor, nil)); err == nil {
			t.Errorf("%s: Decode accepted an invalid manifest", name)
		}
	}
}

// withCRC replaces the trailing checksum of b.
func withCRC(b []byte) []byte {
	b = bytes.Clone(b)
	body := b[:len(b)-crcSize]
	binary.BigEndian.PutUint32(b[len(body):], crc32.Checksum(body, castagnoli))
	return b
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	good := mustEncodeT(t, sampleManifest())
	flipped := bytes.Clone(good)
	flipped[40] ^= 1
	trailing := withCRC(append(bytes.Clone(good[:len(good)-crcSize]), 0, 0, 0, 0, 0))
	hugeCount := withCRC(append(append([]byte{}, good[:preambleSize]...), 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0))
	cases := map[string][]byte{
		"empty":            nil,
		"bad magic":        append([]byte("XMNF"), good[4:]...),
		"bit flip":         flipped,
		"trailing bytes":   trailing,
		"huge count":       hugeCount,
		"json, not binary": []byte(`{"version":1,"entries":[]}`),
	}
	for name, b := range cases {
		_, err := Decode(b)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode = %v, want ErrCorrupt", name, err)
		}
	}
	for n := range len(good) {
		if _, err := Decode(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncation to %d bytes: %v, want ErrCorrupt", n, err)
		}
		if n >= preambleSize+crcSize {
			if _, err := Decode(withCRC(good[:n])); err == nil {
				t.Fatalf("truncation to %d bytes with a fixed checksum decoded", n)
			}
		}
	}
}

func TestDecodeRefusesUnknownMajorVersion(t *testing.T) {
	b := mustEncodeT(t, sampleManifest())
	binary.BigEndian.PutUint16(b[4:], 2)
	binary.BigEndian.PutUint16(b[6:], 3)
	_, err := Decode(withCRC(b))
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Major != 2 || ve.Minor != 3 {
		t.Fatalf("Decode = %v, want a VersionError for 2.3", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "version 2.3") || !strings.Contains(msg, "major version 1") {
		t.Fatalf("unclear error %q", msg)
	}
}

// A newer minor version appends fields to records; this build skips them.
// The same extra bytes under the current minor version are corruption.
func TestDecodeSkipsNewerMinorVersionFields(t *testing.T) {
	m := sampleManifest()
	extra := []byte{0x01, 0x02, 0x03}
	got, err := Decode(encode(m, VersionMinor+1, extra))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %+v, want %+v", got, m)
	}
	if _, err := Decode(encode(m, VersionMinor, extra)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("extra fields at the current minor version: %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeManifest: Decode never panics, and whatever it accepts is valid
// and survives an encode/decode round trip unchanged.
func FuzzDecodeManifest(f *testing.F) {
	f.Add(mustEncodeT(f, sampleManifest()))
	f.Add(mustEncodeT(f, &Manifest{Topic: testTopic, Partition: 1, Epoch: 1, Seq: 1}))
	f.Add(encode(sampleManifest(), VersionMinor+1, []byte{9, 9}))
	f.Add(encode(sampleManifestV11(), 0, nil))
	for _, name := range []string{"manifest-v1.bin", "manifest-v1.1.bin"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			m, err := Decode(b)
			if err != nil {
				return
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("Decode accepted an invalid manifest: %v", err)
			}
			b2, err := Encode(m)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			m2, err := Decode(b2)
			if err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("round trip changed the manifest: %v", err)
			}
		}
		check(b)
		// Also with a correct checksum, so mutations reach the fields.
		if len(b) >= preambleSize+crcSize {
			check(withCRC(b))
		}
	})
}
