package manifest

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

var testTopic = TopicID{0x4f, 0x2a, 0x91, 0x07, 0x3c, 0x1d, 0x4e, 0x8b, 0x9a, 0x10, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77}

// The key layout is a public format: these exact strings must never change
// within key layout version 1.
func TestKeyLayoutIsStable(t *testing.T) {
	seg := SegmentName{Topic: testTopic, Partition: 7, BaseOffset: 1234, Epoch: 3, UploadID: "0123456789abcdef"}
	if got, want := seg.Key(), "74cb/t/4f2a91073c1d4e8b9a10223344556677/7/seg/00000000000000001234-0000000003-0123456789abcdef.seg"; got != want {
		t.Errorf("segment key\n got %s\nwant %s", got, want)
	}
	if got, want := ManifestKey(testTopic, 7, ManifestID{Epoch: 3, Seq: 42}), "74cb/t/4f2a91073c1d4e8b9a10223344556677/7/manifest/0000000003-00000000000000000042.mf"; got != want {
		t.Errorf("manifest key\n got %s\nwant %s", got, want)
	}
	if got, want := PartitionPrefix(testTopic, 0), hashPrefix(testTopic, 0)+"/t/4f2a91073c1d4e8b9a10223344556677/0/"; got != want {
		t.Errorf("partition prefix %s, want %s", got, want)
	}
}

func TestKeysRoundTripAndShareThePartitionPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var topic TopicID
		for i := range topic {
			topic[i] = byte(rng.IntN(256))
		}
		part := rng.Int32()
		seg := SegmentName{Topic: topic, Partition: part, BaseOffset: rng.Int64(), Epoch: rng.Int32(), UploadID: NewUploadID()}
		if err := seg.Check(); err != nil {
			t.Fatal(err)
		}
		got, err := ParseSegmentKey(seg.Key())
		if err != nil || got != seg {
			t.Fatalf("ParseSegmentKey(%s) = %+v, %v; want %+v", seg.Key(), got, err, seg)
		}
		mn := ManifestName{Topic: topic, Partition: part, ID: ManifestID{Epoch: rng.Int32(), Seq: 1 + rng.Int64N(1<<62)}}
		gotM, err := ParseManifestKey(mn.Key())
		if err != nil || gotM != mn {
			t.Fatalf("ParseManifestKey(%s) = %+v, %v; want %+v", mn.Key(), gotM, err, mn)
		}
		pp := PartitionPrefix(topic, part)
		for _, k := range []string{seg.Key(), mn.Key()} {
			if !strings.HasPrefix(k, pp) {
				t.Fatalf("%s is not under %s", k, pp)
			}
			for _, c := range k {
				if !strings.ContainsRune("0123456789abcdefghijklmnopqrstuvwxyz/.-", c) {
					t.Fatalf("%s holds %q, unsafe on some backends", k, c)
				}
			}
		}
	}
}

// Listing the manifest prefix (byte order) must return manifests in
// (epoch, seq) order, so the newest is the last.
func TestManifestKeysSortByEpochThenSeq(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var ids []ManifestID
	for range 300 {
		ids = append(ids, ManifestID{Epoch: rng.Int32N(1<<rng.IntN(31) + 0), Seq: 1 + rng.Int64N(1<<rng.IntN(62))})
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = ManifestKey(testTopic, 1, id)
	}
	slices.Sort(keys)
	for i := 1; i < len(keys); i++ {
		a, _ := ParseManifestKey(keys[i-1])
		b, _ := ParseManifestKey(keys[i])
		if b.ID.Less(a.ID) {
			t.Fatalf("%s sorts before %s but %s < %s", keys[i-1], keys[i], b.ID, a.ID)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	good := SegmentName{Topic: testTopic, Partition: 7, BaseOffset: 1234, Epoch: 3, UploadID: "0123456789abcdef"}.Key()
	goodM := ManifestKey(testTopic, 7, ManifestID{Epoch: 3, Seq: 42})
	other := SegmentName{Topic: testTopic, Partition: 8, BaseOffset: 1234, Epoch: 3, UploadID: "0123456789abcdef"}.Key()
	segs := map[string]string{
		"empty":               "",
		"manifest key":        goodM,
		"wrong hash":          "0000" + good[4:],
		"hash of other part":  other[:4] + good[4:],
		"uppercase topic":     strings.Replace(good, "4f2a", "4F2A", 1),
		"short topic":         strings.Replace(good, "4f2a91073c1d4e8b9a10223344556677", "4f2a91073c1d4e8b9a1022334455667", 1),
		"padded partition":    strings.Replace(good, "/7/", "/07/", 1),
		"negative partition":  strings.Replace(good, "/7/", "/-7/", 1),
		"short offset":        strings.Replace(good, "00000000000000001234", "0000000000000001234", 1),
		"offset overflow":     strings.Replace(good, "00000000000000001234", "99999999999999999999", 1),
		"epoch overflow":      strings.Replace(good, "-0000000003-", "-2147483648-", 1),
		"uppercase upload id": strings.Replace(good, "0123456789abcdef", "0123456789ABCDEF", 1),
		"short upload id":     strings.Replace(good, "0123456789abcdef", "0123456789abcde", 1),
		"no suffix":           strings.TrimSuffix(good, ".seg"),
		"extra field":         strings.Replace(good, ".seg", "-1.seg", 1),
		"extra directory":     strings.Replace(good, "/seg/", "/seg/x/", 1),
		"plus sign":           strings.Replace(good, "00000000000000001234", "+0000000000000001234", 1),
	}
	for name, k := range segs {
		if _, err := ParseSegmentKey(k); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: ParseSegmentKey(%q) = %v, want ErrBadKey", name, k, err)
		}
	}
	mans := map[string]string{
		"segment key": good,
		"seq zero":    strings.Replace(goodM, "00000000000000000042", "00000000000000000000", 1),
		"json suffix": strings.Replace(goodM, ".mf", ".json", 1),
		"no dash":     strings.Replace(goodM, "0000000003-", "0000000003", 1),
		"tmp file":    goodM + ".tmp",
	}
	for name, k := range mans {
		if _, err := ParseManifestKey(k); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: ParseManifestKey(%q) = %v, want ErrBadKey", name, k, err)
		}
	}
}

func TestTopicPrefixesEnumerateEveryPartition(t *testing.T) {
	got := TopicPrefixes(testTopic, 3)
	want := []string{PartitionPrefix(testTopic, 0), PartitionPrefix(testTopic, 1), PartitionPrefix(testTopic, 2)}
	if !slices.Equal(got, want) {
		t.Fatalf("TopicPrefixes = %v, want %v", got, want)
	}
	if len(TopicPrefixes(testTopic, 0)) != 0 {
		t.Fatal("a topic with no partitions has no prefixes")
	}
	// A re-created topic (new id, same name) shares no prefix with the old.
	other := testTopic
	other[0]++
	for _, p := range TopicPrefixes(other, 3) {
		for _, q := range got {
			if strings.HasPrefix(p, q) || strings.HasPrefix(q, p) {
				t.Fatalf("prefixes %s and %s overlap", p, q)
			}
		}
	}
}
